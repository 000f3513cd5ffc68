r"""The implicit distribution of a few-step diffusion model with a generator denoiser (Xiao 2022, Alg. 2)."""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution
from torch import nn
from torch.distributions import constraints

from pyro_diffvi.diffusion import PREDICTIONS, GaussianDiffusion, posterior_sampling_step

__all__ = ["ImplicitDiffusion"]


def _reference(generator: nn.Module, process: GaussianDiffusion) -> torch.Tensor:
    """A tensor giving the device and dtype of the chain: the generator's first parameter, else the schedule's."""
    for tensor in generator.parameters() if isinstance(generator, nn.Module) else ():
        if tensor.is_floating_point():
            return tensor
    return process.betas


class ImplicitDiffusion(TorchDistribution):
    r"""Draws :math:`x_0` of a diffusion model whose denoising steps are
    :math:`p_\theta(x_{t-1}|x_t) = \int p(z)\, q(x_{t-1}|x_t, x_0 = G_\theta(x_t, z, t))\, dz` (Eq. 6.12), by
    Algorithm 2 of Xiao (2022):

    1. :math:`x_T \sim \mathcal N(0, I)`;
    2. for :math:`t = T, \dots, 1`: :math:`z \sim \mathcal N(0, I)`, :math:`x_0' = G_\theta(x_t, z, t)`,
       :math:`x_{t-1} \sim q(x_{t-1}|x_t, x_0')` (:func:`~pyro_diffvi.diffusion.posterior_sampling_step`);
    3. return :math:`x_0` (at :math:`t = 1` the posterior is the point mass at :math:`x_0'`).

    **An implicit model**: the density of :math:`x_0` is an intractable integral over the chain and the
    latents, so there is no :meth:`log_prob` (it raises); use it wherever draws are needed (``sample``,
    ``rsample``, a ``pyro.sample`` site that is never scored, metrics on samples). A draw costs ``T``
    generator evaluations (:attr:`nfe`).

    With a generator without latent (``noise_dim = 0``) this is the sampler of a Gaussian-step diffusion
    model (DDPM with the posterior variance :math:`\tilde\beta_t`, Eq. 6.6); ``prediction="eps"`` reads the
    network's output as the noise :math:`\hat\epsilon` (Eq. 6.9), as :class:`~pyro_diffvi.infer.DDPMLoss`
    trains it.

    :param generator: ``G(x_t, z, t) -> batch + (dim,)`` with attributes ``dim`` and ``noise_dim`` (e.g. a
        :class:`~pyro_diffvi.nn.DenoisingGenerator`); the chain runs on its parameters' device and dtype.
    :param process: the forward process whose ``num_steps`` and schedule define the chain.
    :param prediction: ``"x0"`` or ``"eps"``, what the generator outputs.
    :param batch_shape: batch shape of independent copies (default none).

    Example:

    >>> import torch
    >>> from pyro_diffvi.diffusion import GaussianDiffusion
    >>> from pyro_diffvi.distributions import ImplicitDiffusion
    >>> from pyro_diffvi.nn import DenoisingGenerator
    >>> p = ImplicitDiffusion(DenoisingGenerator(2, hidden_dims=(32,)), GaussianDiffusion(4, schedule="vp"))
    >>> p.sample((1000,)).shape, p.event_shape, p.nfe
    (torch.Size([1000, 2]), torch.Size([2]), 4)
    >>> p.log_prob(torch.zeros(2))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    NotImplementedError: ImplicitDiffusion is an implicit model: ...
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        generator: nn.Module,
        process: GaussianDiffusion,
        *,
        prediction: str = "x0",
        batch_shape: torch.Size | tuple = torch.Size(),
        validate_args: bool | None = None,
    ) -> None:
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if not isinstance(process, GaussianDiffusion):
            raise TypeError(f"process must be a GaussianDiffusion, got {type(process).__name__}")
        dim = getattr(generator, "dim", None)
        if not isinstance(dim, int) or dim < 1 or not callable(generator):
            raise TypeError("generator must be a callable G(x_t, z, t) with an int attribute dim (its width)")
        self.generator = generator
        self.process = process
        self.prediction = prediction
        super().__init__(torch.Size(batch_shape), torch.Size((dim,)), validate_args=validate_args)

    @property
    def num_steps(self) -> int:
        """:math:`T`, the number of denoising steps."""
        return self.process.num_steps

    @property
    def nfe(self) -> int:
        """Generator evaluations per draw (:math:`T`)."""
        return self.process.num_steps

    def expand(self, batch_shape, _instance=None) -> ImplicitDiffusion:
        new = self._get_checked_instance(ImplicitDiffusion, _instance)
        new.generator, new.process, new.prediction = self.generator, self.process, self.prediction
        super(ImplicitDiffusion, new).__init__(torch.Size(batch_shape), self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        """Draws by Algorithm 2, differentiable with respect to the generator's parameters.

        :param sample_shape: leading shape of the draws.
        :return: ``sample_shape + batch_shape + (dim,)``.
        """
        shape = self._extended_shape(torch.Size(sample_shape))
        ref = _reference(self.generator, self.process)
        n = math.prod(shape[:-1])
        x = torch.randn(n, shape[-1], device=ref.device, dtype=ref.dtype)
        for t in range(self.num_steps, 0, -1):
            x = posterior_sampling_step(self.process, self.generator, x, t, prediction=self.prediction).x_prev
        return x.reshape(shape)

    def sample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        """Draws by Algorithm 2, without gradients.

        :param sample_shape: leading shape of the draws.
        :return: ``sample_shape + batch_shape + (dim,)``.
        """
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Not available: raises ``NotImplementedError`` (an implicit model has no tractable density).

        :param value: unused.
        """
        raise NotImplementedError(
            "ImplicitDiffusion is an implicit model: its density is an intractable integral over the denoising "
            "chain and the generator's latents, so it has no log_prob; use its samples (sample, rsample)"
        )

    def __repr__(self) -> str:
        return (
            f"ImplicitDiffusion(num_steps={self.num_steps}, dim={self.event_shape[0]}, "
            f"prediction={self.prediction!r}, batch_shape={tuple(self.batch_shape)})"
        )
