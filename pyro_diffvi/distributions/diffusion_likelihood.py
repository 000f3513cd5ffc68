r"""A likelihood :math:`p(x|z)` defined by a diffusion model: ScoreVAE's decoder and the DiffDecoder baseline.

The conditional data score drives the reverse VP SDE (ScoreVAE paper, Eq. 9). It is built in one of two ways:

* **ScoreVAE** (Sec. 3.3, Bayes' rule for scores): an *unconditional*, pretrained score model
  :math:`s_\theta(x_t, t) \approx \nabla_{x_t}\log p_t(x_t)` plus the latent posterior score of the
  time-dependent Gaussian encoder,

  .. math::

      s_{\theta,\phi}(x_t, z, t) = s_\theta(x_t, t) + \nabla_{x_t}\log q_{t,\phi}(z|x_t)\; [+\, c_\psi(x_t, z, t)],

  the bracket being ScoreVAE+'s corrector (Sec. 3.6). The model :math:`p_{\theta,\phi}(x|z)` depends on the
  encoder :math:`\phi`, so the likelihood holds it; a
  :class:`~pyro_diffvi.guides.TimeDependentGaussianGuide` built with the same encoder is its guide at
  :math:`t = 0`. The score model is frozen: it is evaluated without gradient, so no objective changes it.
* **DiffDecoder** (Sec. 3.2; Preechakul et al. 2022): a *conditional* score model
  :math:`s_\theta(x_t, z, t) \approx \nabla_{x_t}\log p_t(x_t|z)`, trained with the encoder (gradients flow).

:meth:`DiffusionLikelihood.log_prob` is **not** an exact log density, which has no closed form: it is an
unbiased one-draw estimate of the lower bound of Song et al. (2021, Theorem 3) on :math:`\log p(x|z)`
(:func:`~pyro_diffvi.diffusion.sde_bound_terms`, with every constant of the ScoreVAE paper's Appendix A.1).
An ELBO that uses it, :class:`~pyro.infer.Trace_ELBO` or :class:`~pyro_diffvi.infer.ScoreVAE_ELBO`, therefore
estimates a lower bound on :math:`\log p(x)` (:func:`pyro_diffvi.metrics.elbo` reports it with a standard
error). Importance-weighted bounds (``iwae``, ``RenyiELBO``) need an unbiased estimate of :math:`p(x|z)`
itself and are **not** bounds with this likelihood.

:meth:`DiffusionLikelihood.sample` decodes: the reverse SDE (``sampler="sde"``) or the probability-flow ODE
(``"ode"``) with the combined score, from :math:`x_T \sim \mathcal N(0, I)`.

References:

- G. Batzolis, J. Stanczuk, C.-B. Schönlieb. *Variational Diffusion Auto-encoder: Latent Space Extraction
  from Pre-trained Diffusion Models*. arXiv:2304.12141, 2023.
- Y. Song, C. Durkan, I. Murray, S. Ermon. *Maximum Likelihood Training of Score-Based Diffusion Models*.
  NeurIPS, 2021.
- K. Preechakul, N. Chatthee, S. Wizadwongsa, S. Suwajanakorn. *Diffusion Autoencoders: Toward a
  Meaningful and Decodable Representation*. CVPR, 2022.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from pyro.distributions import TorchDistribution
from torch import Tensor, nn
from torch.distributions import constraints

from pyro_diffvi.diffusion import ScoreModel, probability_flow_sample, reverse_sde_sample, sde_bound_terms
from pyro_diffvi.nn import encoder_score
from pyro_diffvi.util import check_finite, check_positive_int

SAMPLERS = ("sde", "ode")


class DiffusionLikelihood(TorchDistribution):
    r"""The likelihood :math:`p(x|z)` of a diffusion decoder (module docstring), for a Pyro model's observed site.

    :param score_model: an unconditional :class:`~pyro_diffvi.diffusion.ScoreModel` (ScoreVAE; frozen) or a
        conditional one with ``context_dim`` equal to the latent width (DiffDecoder; trained).
    :param z: the latent, ``batch_shape + (K,)``.
    :param encoder: the time-dependent encoder ``encoder(x_t, t) -> (loc, scale)`` of :math:`q_{t,\phi}(z|x_t)`
        (e.g. :class:`~pyro_diffvi.nn.GaussianTimeEncoder`); required with an unconditional score model,
        not allowed with a conditional one.
    :param corrector: ScoreVAE+'s corrector :math:`c_\psi`, a conditional
        :class:`~pyro_diffvi.diffusion.ScoreModel` whose noise prediction is added (its score is
        :math:`-\hat c_\psi/\sigma`); build it with ``zero_init=True, gaussian_skip=False`` so that it starts as no
        correction.
    :param num_time_samples: draws of :math:`(t, \epsilon)` per data point in :meth:`log_prob`.
    :param sampler: ``"sde"`` or ``"ode"``, the decoder of :meth:`sample`.
    :param num_steps: solver steps of :meth:`sample`.

    Example (a ScoreVAE decoder: pretrained score model, encoder, latent):

    >>> import torch
    >>> from pyro_diffvi.diffusion import ScoreModel
    >>> from pyro_diffvi.distributions import DiffusionLikelihood
    >>> from pyro_diffvi.nn import GaussianTimeEncoder
    >>> score_model = ScoreModel((6,), network_options={"global_hidden_dims": [32]})
    >>> encoder = GaussianTimeEncoder(6, 2, hidden_dims=(32,))
    >>> likelihood = DiffusionLikelihood(score_model, torch.randn(5, 2), encoder=encoder, num_steps=20)
    >>> likelihood.batch_shape, likelihood.event_shape
    (torch.Size([5]), torch.Size([6]))
    >>> x = likelihood.sample()            # decoded by the reverse SDE
    >>> likelihood.log_prob(x).shape       # an estimate of a lower bound on log p(x | z)
    torch.Size([5])
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(
        self,
        score_model: ScoreModel,
        z: Tensor,
        *,
        encoder: nn.Module | None = None,
        corrector: ScoreModel | None = None,
        num_time_samples: int = 1,
        sampler: str = "sde",
        num_steps: int = 500,
        validate_args: bool | None = None,
    ) -> None:
        if not isinstance(score_model, ScoreModel):
            raise TypeError(f"score_model must be a pyro_diffvi.diffusion.ScoreModel, got {type(score_model).__name__}")
        if not torch.is_tensor(z) or z.dim() < 1 or not z.is_floating_point():
            got = getattr(z, "shape", z)
            raise ValueError(f"z must be a floating-point tensor of shape batch_shape + (K,), got {got!r}")
        k = z.shape[-1]
        if score_model.context_dim == 0 and encoder is None:
            raise ValueError(
                "encoder is required with an unconditional score model: ScoreVAE's decoder adds the encoder's score "
                "grad_x log q_t(z | x_t) to the score model's (pass encoder=the guide's time-dependent encoder)"
            )
        if score_model.context_dim and encoder is not None:
            raise ValueError(
                f"encoder must be None with a conditional score model (context_dim={score_model.context_dim}): it "
                "models grad log p(x_t | z) itself (DiffDecoder)"
            )
        if score_model.context_dim not in (0, k):
            raise ValueError(f"score_model has context_dim={score_model.context_dim}, but z has width {k}")
        if corrector is not None:
            if not isinstance(corrector, ScoreModel) or corrector.context_dim != k:
                raise ValueError(f"corrector must be a conditional ScoreModel with context_dim={k} (the latent width)")
            if corrector.gaussian_skip:
                raise ValueError("corrector must be built with gaussian_skip=False: it adds a correction, not a score")
            if corrector.data_shape != score_model.data_shape:
                raise ValueError(
                    f"corrector has data_shape {corrector.data_shape}, the score model {score_model.data_shape}"
                )
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        self.score_model, self.z, self.encoder, self.corrector = score_model, z, encoder, corrector
        self.num_time_samples = check_positive_int("num_time_samples", num_time_samples)
        self.sampler = sampler
        self.num_steps = check_positive_int("num_steps", num_steps)
        super().__init__(z.shape[:-1], torch.Size(score_model.data_shape), validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, self.score_model.event_dim)

    @property
    def frozen(self) -> bool:
        """Whether the score model is held fixed (an unconditional, pretrained prior) or trained (DiffDecoder)."""
        return self.score_model.context_dim == 0

    def expand(self, batch_shape, _instance=None) -> DiffusionLikelihood:
        batch_shape = torch.Size(batch_shape)
        return DiffusionLikelihood(
            self.score_model, self.z.expand(batch_shape + self.z.shape[-1:]), encoder=self.encoder,
            corrector=self.corrector, num_time_samples=self.num_time_samples, sampler=self.sampler,
            num_steps=self.num_steps, validate_args=self._validate_args if _instance is None else None,
        )

    def noise_fn(self, z: Tensor, *, encoder_grad: bool = False, corrector_grad: bool = False):
        r"""``noise_fn(x_t, t)``: the combined noise prediction :math:`-\sigma(t)\, s_{\theta,\phi}(x_t, z, t)`.

        :param z: the latent, broadcast against the states' batch shape.
        :param encoder_grad: differentiable in the encoder's parameters (and ``z``), for training.
        :param corrector_grad: differentiable in the corrector's parameters.
        """
        model, sde = self.score_model, self.score_model.sde

        def noise(x_t: Tensor, t: Tensor) -> Tensor:
            batch_shape = x_t.shape[: x_t.dim() - model.event_dim]
            latent = z.expand(batch_shape + z.shape[-1:])
            with torch.no_grad() if self.frozen else nullcontext():
                eps = model.noise(x_t, t, None if self.frozen else latent)
            if self.encoder is not None:
                flat = x_t.reshape(batch_shape + (-1,))
                create_graph = encoder_grad and torch.is_grad_enabled()
                score = encoder_score(self.encoder, latent, flat, t, create_graph=create_graph).reshape(x_t.shape)
                _, sigma = sde.marginal_coefficients(t)
                eps = eps - sigma.reshape(sigma.shape + (1,) * model.event_dim) * score
            if self.corrector is not None:
                with nullcontext() if corrector_grad else torch.no_grad():
                    eps = eps + self.corrector.noise(x_t, t, latent)
            return eps

        return noise

    def _check_value(self, x: Tensor) -> Tensor:
        n = self.score_model.event_dim
        if not torch.is_tensor(x) or x.dim() < n or tuple(x.shape[x.dim() - n :]) != self.score_model.data_shape:
            raise ValueError(
                f"the observed x must have shape batch_shape + {self.score_model.data_shape}, the data shape of the "
                f"score model, got {tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}: pass a score model "
                "trained on data of this shape"
            )
        check_finite("the observed x", x)
        batch_shape = torch.broadcast_shapes(x.shape[: x.dim() - n], self.batch_shape)
        return x.expand(batch_shape + self.event_shape)

    def bound_terms(self, x: Tensor, *, encoder_grad: bool = True, corrector_grad: bool = True) -> dict[str, Tensor]:
        r"""The terms of the lower bound on :math:`\log p(x|z)` (:func:`~pyro_diffvi.diffusion.sde_bound_terms`):
        ``"prior"``, ``"divergence"``, ``"dsm"``, ``"truncation"``, each of shape ``batch_shape``.

        :param x: the data, ``batch_shape + data_shape`` (broadcast).
        :param encoder_grad: let gradients reach the encoder's parameters (and ``z``).
        :param corrector_grad: let gradients reach the corrector's parameters.
        """
        x = self._check_value(x)
        z = self.z.expand(x.shape[: x.dim() - self.score_model.event_dim] + self.z.shape[-1:])
        if not encoder_grad:
            z = z.detach()
        noise = self.noise_fn(z, encoder_grad=encoder_grad, corrector_grad=corrector_grad)
        return sde_bound_terms(
            self.score_model.sde, noise, x, event_dim=self.score_model.event_dim,
            num_time_samples=self.num_time_samples,
        )

    def log_prob(self, value: Tensor) -> Tensor:
        r"""An unbiased estimate of a **lower bound** on :math:`\log p(x|z)` (not the log density), differentiable
        in the encoder, the corrector and a conditional score model.

        :param value: the data ``x``.
        """
        return sum(self.bound_terms(value).values())

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        """Decode: :math:`x \\sim p(x|z)` by the reverse SDE or the probability-flow ODE (``sampler``), from
        :math:`x_T \\sim \\mathcal N(0, I)`; the result carries no gradient.

        :param sample_shape: the shape of independent draws per latent.
        """
        shape = torch.Size(sample_shape) + self.batch_shape
        init = torch.randn(shape + self.event_shape, dtype=self.z.dtype, device=self.z.device)
        noise = self.noise_fn(self.z.expand(shape + self.z.shape[-1:]))
        draw = reverse_sde_sample if self.sampler == "sde" else probability_flow_sample
        return draw(self.score_model.sde, noise, init, event_dim=self.score_model.event_dim, num_steps=self.num_steps)
