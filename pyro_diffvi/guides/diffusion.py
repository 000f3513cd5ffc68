"""Amortized diffusion guide of DDVI (Piriyakulkij, Wang and Kuleshov, DDVI paper Sec. 3)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro import poutine
from torch import nn
from torch.distributions import Normal, kl_divergence

from pyro_diffvi.diffusion import REVERSE_VARIANCES, Denoiser, GaussianDiffusion, make_schedule
from pyro_diffvi.distributions.diffusion import DiffusionPosterior
from pyro_diffvi.guides.gaussian import GaussianGuide
from pyro_diffvi.util import check_positive_int, check_widths


class DiffusionGuide(GaussianGuide):
    r"""Amortized diffusion posterior :math:`q_\phi(z|x)` for every latent site of a Pyro model.

    Each latent site gets a :class:`~pyro_diffvi.distributions.DiffusionPosterior`: the Gaussian head
    :math:`\mathcal N(\text{loc}_\phi(x), \text{scale}_\phi(x)^2)` of :class:`GaussianGuide` (same linear head on
    the encoder's context) and ``num_steps`` learned Gaussian denoising steps
    :math:`q_\phi(u_{t-1}|u_t, x)` whose noise predictor :math:`\epsilon_\phi(u_t, t, c)` sees the context
    ``c`` (``conditional=True``, full DDVI) or not (``conditional=False``, the simplified wake-sleep of
    Sec. 3.4). The site's log density is the bound term of the Markovian ELBO (Eq. 5), so plain
    :class:`~pyro.infer.Trace_ELBO` computes a lower bound on :math:`\log p(x)`;
    :class:`~pyro_diffvi.infer.DDVI_ELBO` adds the wake-sleep regularizer (Eq. 9) through :meth:`sleep_loss`.

    Defaults (measured on :mod:`pyro_diffvi.datasets.posteriors`, see docs/guide.md):

    * ``standardize=True``: the chain runs in the coordinates standardized by the head,
      :math:`z = \text{loc} + \text{scale}\odot u_0`, :math:`u_T \sim \mathcal N(0, I)`, so one schedule fits every
      posterior scale and prior unit;
    * the denoiser has the skip :math:`\epsilon_\phi = \sqrt{1-\bar\alpha_t}\,u_t + \mathrm{net}` with a zero
      output layer, so a new guide *is* its Gaussian head exactly (the chain's auxiliary gap is zero) and
      training can only add to it;
    * ``schedule="cosine"`` (:math:`\bar\alpha_T \approx 0`: the chain can build multimodality from noise),
      ``variance="learned"`` (trained by the wake term and, in the sleep term, by the trajectory forward KL);
    * ``path_gradient=True``: the path-derivative gradient of the bound (unbiased, much lower
      variance; it is what keeps the wake phase from undoing what the sleep phase learned).

    The paper's chain is ``DiffusionGuide(..., schedule="linear", variance="beta", standardize=False,
    path_gradient=False)`` (its linear schedule :math:`10^{-4}..0.02` at ``T = 20`` leaves
    :math:`\bar\alpha_T = 0.82`: the chain stays close to the identity).

    Example:

    >>> import torch
    >>> from pyro_diffvi.datasets import make_problem
    >>> problem = make_problem("linear_gaussian_5d")   # a Pyro model (sites "z", "x") with exact log p(x)
    >>> model, x = problem.model, problem.x
    >>> from pyro.infer import SVI, Trace_ELBO
    >>> from pyro.optim import Adam
    >>> from pyro_diffvi.guides import DiffusionGuide
    >>> from pyro_diffvi.infer import DDVI_ELBO
    >>> guide = DiffusionGuide(model, latent="z", observed="x", num_steps=5)
    >>> svi = SVI(model, guide, Adam({"lr": 1e-3}), loss=DDVI_ELBO())
    >>> losses = [svi.step(x) for _ in range(3)]
    >>> bound = -Trace_ELBO(num_particles=4).loss(model, guide, x)   # the Markovian ELBO alone
    >>> bound < problem.log_px.sum().item()
    True

    :param num_steps: :math:`T`, the number of denoising steps.
    :param schedule: forward-process schedule: ``"cosine"``, ``"linear"`` (:math:`10^{-4}..0.02`, the
        paper's) or explicit betas of shape ``(T,)``.
    :param variance: reverse variances: ``"learned"``, ``"beta"`` (:math:`\beta_t`) or ``"posterior"``
        (:math:`\tilde\beta_t`).
    :param standardize: diffuse in the head's standardized coordinates (see above).
    :param path_gradient: path-derivative gradients of the bound term (for ``Trace_ELBO``-type
        objectives; set ``False`` to train with an importance-weighted objective such as ``RenyiELBO``).
    :param conditional: whether the denoiser reads the encoder's context.
    :param denoiser_hidden_dims: hidden widths of each denoiser (paper: four layers of 128).
    :param time_dim: width of the denoiser's time embedding.
    :param denoiser_activation: hidden activation of the denoiser.

    The other parameters (``encoder``, ``encoder_hidden_dims``, ``encoder_activation``, ``observed_fn``, ``min_scale``,
    ``init_scale``) are those of :class:`GaussianGuide` and :class:`AmortizedGuide`. Constrained latents
    are diffused in their unconstrained space. ``training_steps`` (the DDVI objective's schedule
    position) is part of the ``state_dict``.
    """

    def __init__(
        self,
        model,
        latent: str | Sequence[str],
        observed: str | Sequence[str],
        *,
        num_steps: int = 20,
        schedule: str | Sequence[float] | torch.Tensor = "cosine",
        variance: str = "learned",
        standardize: bool = True,
        path_gradient: bool = True,
        conditional: bool = True,
        denoiser_hidden_dims: Sequence[int] = (128, 128, 128, 128),
        time_dim: int = 32,
        denoiser_activation: str = "silu",
        **kwargs,
    ) -> None:
        if variance not in REVERSE_VARIANCES:
            raise ValueError(f"variance must be one of {REVERSE_VARIANCES}, got {variance!r}")
        check_positive_int("num_steps", num_steps)
        check_widths("denoiser_hidden_dims", denoiser_hidden_dims)
        check_positive_int("time_dim", time_dim)
        super().__init__(model, latent, observed, **kwargs)
        make_schedule(schedule, num_steps)  # validates the schedule now (as GaussianDiffusion will)
        self._schedule = schedule
        self.num_steps = num_steps
        self.variance = variance
        self.conditional = bool(conditional)
        self.standardize = bool(standardize)
        self.path_gradient = bool(path_gradient)
        self.training_steps = 0  # gradient evaluations of a DDVI objective so far (saved in state_dict)
        self._denoiser_kwargs = dict(
            time_dim=time_dim, hidden_dims=tuple(denoiser_hidden_dims), activation=denoiser_activation
        )

    def _build_posteriors(self) -> None:
        super()._build_posteriors()
        param = next(self.encoder.parameters())
        # built in the parameters' dtype from the float64 schedule (a cast would round twice)
        self.process = GaussianDiffusion(self.num_steps, schedule=self._schedule, dtype=param.dtype).to(param.device)
        denoisers = [
            Denoiser(
                self.latent_dims[name],
                context_dim=self._denoiser_context_dim(name),
                learn_variance=self.variance == "learned",
                skip=self.process.sqrt_one_minus_alphas_cumprod if self.standardize else None,
                **self._denoiser_kwargs,
            )
            for name in self.latent_names
        ]
        self.denoisers = self._like_encoder(nn.ModuleList(denoisers))

    def _denoiser_context_dim(self, name: str) -> int:
        if not self.conditional:
            return 0
        return 2 * self.latent_dims[name] if self.context_dim is None else self.context_dim

    def denoiser_context(self, name: str, context) -> torch.Tensor | None:
        """What the denoiser of ``name`` reads: the context, ``[loc, scale]`` for a tuple encoder, or ``None``."""
        if not self.conditional:
            return None
        return torch.cat(context, dim=-1) if self.context_dim is None else context

    exact_density = False  # the site density is the auxiliary bound term of Eq. 5

    def posterior(self, name: str, context) -> DiffusionPosterior:
        loc, scale = self.loc_scale(name, context)
        index = self.latent_names.index(name)
        return DiffusionPosterior(
            loc,
            scale,
            self.denoisers[index],
            self.process,
            self.denoiser_context(name, context),
            variance=self.variance,
            standardize=self.standardize,
            path_gradient=self.path_gradient,
        )

    def get_extra_state(self) -> dict:
        return {"training_steps": self.training_steps}

    def set_extra_state(self, state: dict) -> None:
        self.training_steps = int(state["training_steps"])

    # ---- sleep phase (DDVI Eq. 9): the WakeSleepGuide protocol of DDVI_ELBO -------------------------

    def sleep_loss(
        self, model_trace: poutine.Trace, *, use_observed: bool = True, head: bool = True, num_particles: int = 1
    ) -> torch.Tensor:
        r"""The sleep term :math:`-\mathcal L_{\mathrm{diff}}` (DDVI paper, Eq. 9) at the model's draws in
        ``model_trace``: the per-datum loss of :meth:`site_sleep_loss` at each of this guide's latent sites,
        summed over the data with the sites' (data-plate) scales. Its gradients reach the guide only (the
        draws are detached), and the networks used are registered with Pyro's param store, so ``SVI``
        optimizes them.

        :param model_trace: a trace of the model holding values of this guide's latent sites and, with
            ``use_observed``, of its observed sites (simulated by ``poutine.uncondition``).
        :param use_observed: encode the traced observed values into the denoiser's context (full
            wake-sleep) or use no context (the simplified sleep of the DDVI paper, Sec. 3.4).
        :param head: include the term of the Gaussian head.
        :param num_particles: draws of the noise level and noise per model draw (see :meth:`site_sleep_loss`).
        :return: a scalar tensor.
        """
        return self.call_in_context(self._sleep_loss, model_trace, use_observed, head, num_particles)

    def _sleep_loss(
        self, model_trace: poutine.Trace, use_observed: bool, head: bool, num_particles: int
    ) -> torch.Tensor:
        sites = model_trace.nodes
        context = self.simulated_context(model_trace) if use_observed else None
        total = 0.0
        for name in self.latent_names:
            z = sites[name]["value"].detach()
            loss = self.site_sleep_loss(name, z, context, head=head, num_particles=num_particles)
            total = total + (loss * sites[name]["scale"]).sum()
        return torch.as_tensor(total)

    def site_sleep_loss(
        self, name: str, z: torch.Tensor, context=None, *, head: bool = True, num_particles: int = 1
    ) -> torch.Tensor:
        r"""Per-datum denoising loss :math:`-\mathcal L_{\mathrm{diff}}` of latent ``name`` at a model draw ``z`` (Eq.
        9).

        .. math::

            \|\epsilon - \epsilon_\phi(\sqrt{\bar\alpha_t} u_0 + \sqrt{1-\bar\alpha_t}\epsilon, t, c)\|^2
            \;+\; \text{head term},

        with :math:`t \sim \mathcal U\{1..T\}` and :math:`\epsilon \sim \mathcal N(0, I)` (the noise-prediction
        form of the sum of KL terms, Sec. 3.4), averaged over ``num_particles`` independent draws of
        :math:`(t, \epsilon)` per model draw (one batched denoiser call), plus, for learned variances, the
        variance part of the trajectory forward KL (:meth:`_variance_loss`). Standardized chains denoise
        :math:`u_0 = (z - \text{loc})/\text{scale}` (head detached) and their head term is
        :math:`-\log\mathcal N(z; \text{loc}, \text{scale}^2)` (the head learns the posterior's moments, a forward
        KL); the paper's chain denoises :math:`z` and its head term is
        :math:`\mathrm{KL}(r(y_T|z)\,\|\,q_\phi(y_T|x))`. The head term is added when ``head`` and a context
        (the encoding of the simulated ``x``) are given.

        :param name: latent site name.
        :param z: the model's value of the site (detached), shape ``batch_shape + event_shape``.
        :param context: encoder output for the simulated observations, or ``None`` (simplified
            wake-sleep: a conditional denoiser then reads a zero context).
        :param head: include the KL term of the Gaussian head.
        :param num_particles: draws of :math:`(t, \epsilon)` per model draw. The noise level is the main
            source of variance of a denoising loss; more draws per simulated :math:`(x, z)` cost one
            denoiser evaluation each, no simulation or encoding.
        :return: tensor of shape ``batch_shape``.
        """
        y0 = self.flatten_latent(name, z)
        batch_shape = y0.shape[:-1]
        head_loss = None
        if self.standardize:
            if context is None:
                raise ValueError(
                    "a standardized chain (standardize=True) denoises z in the coordinates of the Gaussian head "
                    "of the simulated x: its sleep term needs the context of x (DDVI_ELBO(sleep='wake-sleep')); "
                    "for the simplified sleep of the paper use DiffusionGuide(..., standardize=False)"
                )
            loc, scale = self.loc_scale(name, context)
            # the denoiser learns the standardized draws; the head their moments (a forward KL)
            u0 = (y0 - loc.detach()) / scale.detach()
            if head:
                head_loss = -Normal(loc, scale).log_prob(y0).sum(-1)
        else:
            u0 = y0
            if head and context is not None:
                head_loss = self._head_kl(name, y0, context)
        denoiser = self.denoisers[self.latent_names.index(name)]
        if context is None:
            ctx = u0.new_zeros(batch_shape + (denoiser.context_dim,)) if denoiser.context_dim else None
        else:
            ctx = self.denoiser_context(name, context)
        particles = (check_positive_int("num_particles", num_particles),)
        u0 = u0.expand(particles + u0.shape)
        ctx = None if ctx is None else ctx.expand(particles + ctx.shape)
        t = torch.randint(1, self.num_steps + 1, u0.shape[:-1], device=y0.device)
        eps = torch.randn_like(u0)
        u_t = self.process.q_sample(u0, t, eps)
        out = denoiser(u_t, t, ctx)
        eps_hat = out[..., : u0.shape[-1]]
        loss = (eps - eps_hat).pow(2).sum(-1)
        if self.variance == "learned":
            loss = loss + self._variance_loss(u0, u_t, t, eps_hat.detach(), out[..., u0.shape[-1]:])
        loss = loss.mean(0)
        return loss if head_loss is None else loss + head_loss

    def _variance_loss(self, u0, u_t, t, eps_hat, v) -> torch.Tensor:
        r""":math:`T\,\mathrm{KL}\big(r(u_{t-1}|u_t, u_0)\,\|\,q(u_{t-1}|u_t)\big)` (:math:`-T \log q(u_0|u_1)` at t =
        1), the
        step's term of the trajectory forward KL, with the mean held fixed: it trains the learned variances
        (the hybrid loss of Nichol & Dhariwal 2021, Sec. 3.1), which the noise-prediction loss does not see."""
        process = self.process
        q = Normal(process.mean_from_eps(u_t, t, eps_hat), (0.5 * process.learned_log_variance(t, v)).exp())
        r = process.posterior(u_t, u0, t.clamp(min=2))  # r(u_{t-1}|u_t, u_0); a point mass at u_0 for t = 1
        per_coordinate = torch.where((t == 1).unsqueeze(-1), -q.log_prob(u0), kl_divergence(r, q))
        return self.num_steps * per_coordinate.sum(-1)

    def _head_kl(self, name: str, y0: torch.Tensor, context) -> torch.Tensor:
        r"""The head's KL term, :math:`\mathrm{KL}(r_T \,\|\, \mathcal N(\text{loc}, \text{scale}^2))` with
        :math:`r_T = \mathcal N(\sqrt{\bar\alpha_T} z, (1-\bar\alpha_T) I)`."""
        loc, scale = self.loc_scale(name, context)
        r_T = Normal(self.process.sqrt_alphas_cumprod[-1] * y0, self.process.sqrt_one_minus_alphas_cumprod[-1])
        return kl_divergence(r_T, Normal(loc, scale)).sum(-1)
