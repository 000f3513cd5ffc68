"""Amortized diffusion guide of DDVI (Piriyakulkij, Wang and Kuleshov, DDVI paper Sec. 3)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.distributions import biject_to

from pyro_diffvi.diffusion import REVERSE_VARIANCES, Denoiser, GaussianDiffusion
from pyro_diffvi.distributions.diffusion import DiffusionPosterior
from pyro_diffvi.guides.gaussian import GaussianGuide


class DiffusionGuide(GaussianGuide):
    r"""Amortized diffusion posterior :math:`q_\phi(z|x)` for every latent site of a Pyro model.

    Each latent site gets a :class:`~pyro_diffvi.distributions.DiffusionPosterior`: the Gaussian head
    :math:`q_\phi(y_T|x)` of :class:`GaussianGuide` (same linear head on the encoder's context), followed
    by ``num_steps`` learned Gaussian denoising steps :math:`q_\phi(y_{t-1}|y_t, x)` whose noise
    predictor :math:`\epsilon_\phi(y_t, t, c)` sees the context ``c`` (``conditional=True``, full DDVI) or
    not (``conditional=False``, the simplified wake-sleep of Sec. 3.4). The site's log density is
    :math:`\log q_\phi(y_{0:T}|x) - \log r(y_{1:T}|y_0)`, so plain :class:`~pyro.infer.Trace_ELBO` computes
    the Markovian ELBO (Eq. 5), a lower bound on :math:`\log p(x)`; :class:`~pyro_diffvi.infer.DDVI_ELBO`
    adds the wake-sleep regularizer (Eq. 9) through :meth:`sleep_loss`.

    Example::

        guide = DiffusionGuide(model, latent="z", observed="x", num_steps=20)
        svi = SVI(model, guide, Adam({"lr": 1e-3}), loss=DDVI_ELBO(sleep="wake-sleep"))
        bound = -Trace_ELBO(num_particles=16).loss(model, guide, x_test)   # the ELBO alone

    :param num_steps: :math:`T`, the number of denoising steps.
    :param schedule: forward-process schedule: ``"linear"`` (:math:`10^{-4}..0.02`, the paper's), ``"cosine"``
        or explicit betas of shape ``(T,)``.
    :param variance: reverse variances: ``"beta"`` (:math:`\beta_t`), ``"posterior"`` (:math:`\tilde\beta_t`)
        or ``"learned"``.
    :param conditional: whether the denoiser reads the encoder's context.
    :param denoiser_hidden_dims: hidden widths of each denoiser (paper: four layers of 128).
    :param time_dim: width of the denoiser's time embedding.
    :param denoiser_activation: hidden activation of the denoiser.

    The other parameters (``encoder``, ``hidden_dims``, ``activation``, ``observed_fn``, ``min_scale``,
    ``init_scale``) are those of :class:`GaussianGuide` and :class:`AmortizedGuide`. Constrained latents
    are diffused in their unconstrained space.
    """

    def __init__(
        self,
        model,
        latent: str | Sequence[str],
        observed: str | Sequence[str],
        num_steps: int = 20,
        encoder: nn.Module | None = None,
        *,
        schedule: str | Sequence[float] | torch.Tensor = "linear",
        variance: str = "beta",
        conditional: bool = True,
        denoiser_hidden_dims: Sequence[int] = (128, 128, 128, 128),
        time_dim: int = 32,
        denoiser_activation: str = "silu",
        **kwargs,
    ) -> None:
        if variance not in REVERSE_VARIANCES:
            raise ValueError(f"variance must be one of {REVERSE_VARIANCES}, got {variance!r}")
        super().__init__(model, latent, observed, encoder, **kwargs)
        self.process = GaussianDiffusion(num_steps, schedule)  # validates num_steps and schedule now
        self._schedule = schedule
        self.num_steps = num_steps
        self.variance = variance
        self.conditional = bool(conditional)
        self._denoiser_kwargs = dict(
            time_dim=time_dim, hidden_dims=tuple(denoiser_hidden_dims), activation=denoiser_activation
        )

    def _build_posteriors(self) -> None:
        super()._build_posteriors()
        param = next(self.encoder.parameters())
        # rebuilt in the parameters' dtype from the float64 schedule (a cast would round twice)
        self.process = GaussianDiffusion(self.num_steps, self._schedule, dtype=param.dtype).to(param.device)
        denoisers = [
            Denoiser(
                self.latent_dims[name],
                self._denoiser_context_dim(name),
                learn_variance=self.variance == "learned",
                **self._denoiser_kwargs,
            ).to(device=param.device, dtype=param.dtype)
            for name in self.latent_names
        ]
        self.denoisers = nn.ModuleList(denoisers)

    def _denoiser_context_dim(self, name: str) -> int:
        if not self.conditional:
            return 0
        return 2 * self.latent_dims[name] if self.context_dim is None else self.context_dim

    def denoiser_context(self, name: str, context) -> torch.Tensor | None:
        """What the denoiser of ``name`` reads: the context, ``[loc, scale]`` for a tuple encoder, or ``None``."""
        if not self.conditional:
            return None
        return torch.cat(context, dim=-1) if self.context_dim is None else context

    def posterior(self, name: str, context) -> DiffusionPosterior:
        loc, scale = self.loc_scale(name, context)
        index = self.latent_names.index(name)
        return DiffusionPosterior(
            loc,
            scale,
            self.denoisers[index],
            self.process,
            self.denoiser_context(name, context),
            self.variance,
        )

    # ---- sleep phase (DDVI Eq. 9), used by DDVI_ELBO --------------------------------------------

    def flatten_latent(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """A model value of latent ``name`` mapped to the guide's flattened unconstrained space."""
        event_shape = self.latent_event_shapes[name]
        value = biject_to(self._latent_supports[name]).inv(value)
        batch_shape = value.shape[: value.dim() - len(event_shape)]
        return value.reshape(batch_shape + (self.latent_dims[name],))

    def sleep_loss(
        self,
        name: str,
        z: torch.Tensor,
        context=None,
        head: bool = True,
    ) -> torch.Tensor:
        r"""Per-datum denoising loss :math:`-\mathcal L_{\mathrm{diff}}` of latent ``name`` at a model draw ``z`` (Eq. 9).

        .. math::

            \|\epsilon - \epsilon_\phi(\sqrt{\bar\alpha_t} z + \sqrt{1-\bar\alpha_t}\epsilon, t, c)\|^2
            \;+\; \mathrm{KL}\big(r(y_T|z)\,\|\,q_\phi(y_T|x)\big),

        with :math:`t \sim \mathcal U\{1..T\}` and :math:`\epsilon \sim \mathcal N(0, I)` (the noise-prediction
        form of the sum of KL terms, Sec. 3.4). The KL term on the Gaussian head is added when ``head``
        and a context (the encoding of the simulated ``x``) are given.

        :param name: latent site name.
        :param z: the model's value of the site (detached), shape ``batch_shape + event_shape``.
        :param context: encoder output for the simulated observations, or ``None`` (simplified
            wake-sleep: a conditional denoiser then reads a zero context).
        :param head: include the KL term of the Gaussian head.
        :return: tensor of shape ``batch_shape``.
        """
        y0 = self.flatten_latent(name, z)
        batch_shape = y0.shape[:-1]
        t = torch.randint(1, self.num_steps + 1, batch_shape, device=y0.device)
        eps = torch.randn_like(y0)
        y_t = self.process.q_sample(y0, t, eps)
        denoiser = self.denoisers[self.latent_names.index(name)]
        if context is None:
            ctx = y0.new_zeros(batch_shape + (denoiser.context_dim,)) if denoiser.context_dim else None
        else:
            ctx = self.denoiser_context(name, context)
        eps_hat = denoiser(y_t, t, ctx)[..., : y0.shape[-1]]
        loss = (eps - eps_hat).pow(2).sum(-1)
        if head and context is not None:
            loss = loss + self._head_kl(name, y0, context)
        return loss

    def _head_kl(self, name: str, y0: torch.Tensor, context) -> torch.Tensor:
        r""":math:`\mathrm{KL}(\mathcal N(\sqrt{\bar\alpha_T} z, (1-\bar\alpha_T) I)\,\|\,\mathcal N(\text{loc}, \text{scale}^2))`."""
        loc, scale = self.loc_scale(name, context)
        m = self.process.sqrt_alphas_cumprod[-1] * y0
        v = 1 - self.process.alphas_cumprod[-1]
        var_q = scale.pow(2)
        kl = 0.5 * ((v + (m - loc).pow(2)) / var_q - 1 + var_q.log() - torch.log(v))
        return kl.sum(-1)
