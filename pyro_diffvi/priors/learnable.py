r"""A learnable mixture prior for clustering: the first clustering strategy of the DDVI paper (Sec. 4.2).

The prior is a mixture of copies of one base distribution :math:`p_0` (any prior with an exact density: a
Gaussian, a pinwheel, ...) shifted to learnable locations :math:`\theta = (\mu_1, \dots, \mu_K)`,

.. math::

    p_\theta(z) = \sum_{k=1}^{K} \pi_k\, p_0(z - \mu_k), \qquad
    \log p_\theta(z) = \operatorname{logsumexp}_k\big(\log \pi_k + \log p_0(z - \mu_k)\big),

so the model's ELBO (and DDVI's objective, unchanged) fits the locations with the rest of the model. The
cluster of a latent is read from the components by Bayes' rule,
:math:`\hat c(z) = \arg\max_k \pi_k\, p_0(z - \mu_k)`.

References:

* W. T. Piriyakulkij, Y. Wang, V. Kuleshov. *Denoising Diffusion Variational Inference: Diffusion Models as
  Expressive Variational Posteriors*. arXiv:2401.02739, 2024 (Sec. 4.2, first strategy).
* N. Dilokthanakul, P. A. M. Mediano, M. Garnelo, M. C. H. Lee, H. Salimbeni, K. Arulkumaran, M. Shanahan.
  *Deep Unsupervised Clustering with Gaussian Mixture Variational Autoencoders*. arXiv:1611.02648, 2016.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn

from pyro_diffvi.priors.base import StructuredPrior
from pyro_diffvi.util import CheckedDevice, check_positive_float, check_positive_int

__all__ = ["LearnableMixture", "ShiftedMixture"]


class ShiftedMixture(StructuredPrior):
    r"""The mixture :math:`\sum_k \pi_k\, p_0(z - \mu_k)` at given locations and weights, a
    :class:`StructuredPrior` whose components are the clusters (``component(k)``, ``label_log_posterior``,
    ``sample_with_labels`` work as for every structured prior). Usually made by :class:`LearnableMixture`.

    The density is exact and differentiable in ``locs`` and ``logits``; draws are
    :math:`z = \mu_c + \varepsilon`, :math:`c \sim \mathrm{Cat}(\pi)`, :math:`\varepsilon \sim p_0`
    (reparameterized given :math:`c` when :math:`p_0` has ``rsample``).

    :param locs: component locations :math:`\mu`, shape ``(K, D)``.
    :param logits: unnormalized log weights, shape ``(K,)``.
    :param base: :math:`p_0`, a distribution with event shape ``(D,)`` and batch shape ``()``.

    Example:

    >>> import torch, pyro.distributions as dist
    >>> from pyro_diffvi.priors import ShiftedMixture
    >>> base = dist.Normal(torch.zeros(2), 1.0).to_event(1)
    >>> p = ShiftedMixture(torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), torch.zeros(2), base)
    >>> p.num_components, round(p.log_prob(torch.tensor([2.0, 0.0])).exp().item(), 4)  # (N(0) + N(4)) / 2
    (2, 0.0796)
    >>> p.cluster(torch.tensor([[1.5, 3.0], [-0.1, 0.0]]))
    tensor([1, 0])
    """

    def __init__(self, locs: torch.Tensor, logits: torch.Tensor, base, *, validate_args=None) -> None:
        if not torch.is_tensor(locs) or locs.dim() != 2 or not locs.is_floating_point():
            raise ValueError(f"locs must be a floating tensor of shape (K, D), got {getattr(locs, 'shape', locs)}")
        if not torch.is_tensor(logits) or logits.shape != locs.shape[:1]:
            raise ValueError(f"logits must have shape ({locs.shape[0]},), got {getattr(logits, 'shape', logits)}")
        if tuple(base.event_shape) != (locs.shape[1],) or tuple(base.batch_shape) != ():
            raise ValueError(
                f"base must have event shape ({locs.shape[1]},) and batch shape (), got "
                f"{tuple(base.event_shape)} and {tuple(base.batch_shape)}"
            )
        self.locs, self.logits, self.base = locs, logits, base
        super().__init__(dim=max(locs.shape[1], 2), device=locs.device, dtype=locs.dtype, validate_args=validate_args)
        self.dim = locs.shape[1]
        self._event_shape = torch.Size((self.dim,))

    @property
    def num_components(self) -> int:
        return self.locs.shape[0]

    @property
    def mixture_logits(self) -> torch.Tensor:
        return self.logits.log_softmax(-1)

    def component_log_probs(self, value: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p_0(z - \mu_k)` for every ``k``, shape ``value.shape[:-1] + (K,)``."""
        value = self._check_value(value)
        return self.base.log_prob(value.unsqueeze(-2) - self.locs.to(value))

    def cluster(self, value: torch.Tensor) -> torch.Tensor:
        r"""The cluster read-out :math:`\arg\max_k \log \pi_k + \log p_0(z - \mu_k)`, shape ``value.shape[:-1]``."""
        return self.label_log_posterior(value).argmax(-1)

    def _sample_given_labels(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        labels = labels.to(self.locs.device)
        noise = self.base.rsample(labels.shape) if self.base.has_rsample else self.base.sample(labels.shape)
        return self.locs[labels] + noise.to(self.locs)

    def sample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        return self.sample_with_labels(sample_shape)[0]

    def __repr__(self) -> str:
        return f"ShiftedMixture(num_components={self.num_components}, dim={self.dim}, base={self.base!r})"


class LearnableMixture(CheckedDevice, PyroModule):
    r"""A clustering prior with learnable component locations (the DDVI paper's first clustering strategy,
    Sec. 4.2): :math:`p_\theta(z) = \sum_k \pi_k\, p_0(z - \mu_k)` with :math:`\mu_k` (and, with
    ``learn_weights=True``, :math:`\pi = \mathrm{softmax}(\alpha)`) as parameters. Calling the module returns
    the current :class:`ShiftedMixture`; register it in the model with ``pyro.module`` so that the
    objective trains the locations with the decoder. Nothing in the objective changes.

    :param num_components: number of clusters :math:`K`.
    :param dim: latent size :math:`D`.
    :param base: the shape of every component :math:`p_0` (event shape ``(D,)``, exact ``log_prob``), e.g. a
        :class:`~pyro_diffvi.priors.Pinwheel` for pinwheel-shaped clusters; default
        :math:`\mathcal N(0, \sigma^2 I)` with :math:`\sigma` = ``scale``.
    :param scale: the default base's standard deviation.
    :param init_locs: initial locations ``(K, D)``; default: drawn from :math:`\mathcal N(0, s^2 I)` with
        ``init_spread`` :math:`s` (call :func:`pyro.set_rng_seed` first for a reproducible start).
    :param init_spread: standard deviation of the random initial locations.
    :param learn_weights: learn the mixture weights too (default: equal weights, fixed).

    Example:

    >>> import pyro, pyro.distributions as dist, torch
    >>> from pyro.infer import SVI, Trace_ELBO
    >>> from pyro.optim import Adam
    >>> from pyro_diffvi.guides import GaussianGuide
    >>> from pyro_diffvi.priors import LearnableMixture
    >>> pyro.set_rng_seed(0)
    >>> prior = LearnableMixture(num_components=3, dim=2, scale=0.5)
    >>> def model(x):
    ...     pyro.module("prior", prior)
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", prior())
    ...         pyro.sample("x", dist.Normal(z, 0.1).to_event(1), obs=x)
    >>> guide = GaussianGuide(model, "z", "x", encoder_hidden_dims=(16,))
    >>> svi = SVI(model, guide, Adam({"lr": 1e-2}), Trace_ELBO())
    >>> loss = svi.step(torch.randn(8, 2))
    >>> prior.locs.grad is not None, prior().cluster(torch.randn(8, 2)).shape
    (True, torch.Size([8]))
    """

    def __init__(
        self,
        num_components: int,
        *,
        dim: int = 2,
        base=None,
        scale: float = 1.0,
        init_locs: torch.Tensor | None = None,
        init_spread: float = 3.0,
        learn_weights: bool = False,
    ) -> None:
        super().__init__()
        k = check_positive_int("num_components", num_components)
        d = check_positive_int("dim", dim)
        if init_locs is None:
            init_locs = check_positive_float("init_spread", init_spread) * torch.randn(k, d)
        elif not torch.is_tensor(init_locs) or tuple(init_locs.shape) != (k, d):
            raise ValueError(
                f"init_locs must be a tensor of shape ({k}, {d}), got {getattr(init_locs, 'shape', init_locs)}"
            )
        self.locs = nn.Parameter(init_locs.detach().clone().to(torch.get_default_dtype()))
        logits = torch.zeros(k, dtype=self.locs.dtype)
        if learn_weights:
            self.logits = nn.Parameter(logits)
        else:
            self.register_buffer("logits", logits)
        self.scale = check_positive_float("scale", scale)
        self._base = base

    def base(self, like: torch.Tensor):
        """The component shape :math:`p_0` on ``like``'s device and dtype."""
        if self._base is not None:
            return self._base
        loc = like.new_zeros(like.shape[-1])
        return dist.Normal(loc, self.scale).to_event(1)

    def forward(self) -> ShiftedMixture:
        """The prior :math:`p_\\theta(z)` at the current parameters."""
        return ShiftedMixture(self.locs, self.logits, self.base(self.locs))

    def extra_repr(self) -> str:
        k, d = self.locs.shape
        return f"num_components={k}, dim={d}, scale={self.scale}" + (
            "" if self._base is None else f", base={self._base!r}"
        )
