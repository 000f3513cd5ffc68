r"""Adversarial autoencoder training (AAEB; Makhzani et al. 2015), a baseline of the DDVI paper.

An adversarial autoencoder replaces the ELBO's KL term by a discriminator :math:`D_\psi(z)` that
tells samples of the prior :math:`p(z)` from samples of the aggregate posterior
:math:`q(z) = \mathbb{E}_{p_{\mathrm{data}}(x)}\, q_\phi(z|x)`. Per step it minimizes, for one
draw :math:`z_n \sim q_\phi(z|x_n)` per data point and prior draws :math:`\tilde z_n \sim p(z)`,

.. math::

    \mathcal{L}_{\mathrm{rec}} &= -\sum_n \log p_\theta(x_n | z_n)
        &&\text{(encoder and decoder; reconstruction phase)} \\
    \mathcal{L}_{D} &= -\sum_n \big[\log D_\psi(\tilde z_n) + \log(1 - D_\psi(z_n))\big]
        &&\text{(discriminator only)} \\
    \mathcal{L}_{G} &= -\sum_n \log D_\psi(z_n)
        &&\text{(encoder only; regularization phase, non-saturating)}

(Makhzani et al. 2015, Sec. 2). Sums over data points carry the data plate's scale, so minibatches
are scaled to the full data set like Pyro's ELBOs.

**There is no ELBO here.** An adversarial autoencoder does not bound :math:`\log p(x)`; the value
returned by :meth:`AdversarialAutoencoderLoss.loss` is the training objective
:math:`\mathcal{L}_{\mathrm{rec}} + \lambda \mathcal{L}_G + \mathcal{L}_D`, not a negative ELBO.
Its parts are reported in :attr:`AdversarialAutoencoderLoss.last_terms`. To compare with other
methods, report reconstruction and latent metrics (MMD, latent NLL), as the DDVI paper does ("N/A"
for the AAEB ELBO in its Tables 1-2).

References

- A. Makhzani, J. Shlens, N. Jaitly, I. Goodfellow, B. Frey. *Adversarial Autoencoders*.
  arXiv:1511.05644, 2015.
- W. T. Piriyakulkij, Y. Wang, V. Kuleshov. *Denoising Diffusion Variational Inference: Diffusion
  Models as Expressive Variational Posteriors*. arXiv:2401.02739, 2024 ("the DDVI paper").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites
from torch import nn
from torch.func import functional_call
from torch.nn.functional import softplus

from pyro_diffvi.infer.guard import GuardedObjective, check_on_nonfinite
from pyro_diffvi.nn import MLP
from pyro_diffvi.nn.mlp import activation as make_activation
from pyro_diffvi.util import check_positive_float, check_positive_int, check_widths, trace_until

__all__ = ["AdversarialAutoencoderLoss"]


class AdversarialAutoencoderLoss(GuardedObjective):
    r"""Adversarial autoencoder objective for an ordinary Pyro model and (amortized) guide.

    Use it in place of an ELBO::

        aae = AdversarialAutoencoderLoss()
        svi = SVI(model, guide, Adam({"lr": 1e-3}), loss=aae)
        svi.step(x)
        aae.last_terms   # {"reconstruction": ..., "discriminator": ..., "adversarial": ...}

    One SVI step updates encoder, decoder and discriminator together, with one backward pass:

    * reconstruction: the model is replayed on the guide's latents; every observed site's
      :math:`\log p(x|z)` (scaled and masked as in the model) enters :math:`\mathcal{L}_{\mathrm{rec}}`.
      The prior term :math:`\log p(z)` is *not* used (the discriminator replaces it).
    * prior samples: the model is run under ``poutine.uncondition`` without gradients and stopped
      once the regularized latents are drawn (:func:`~pyro_diffvi.util.trace_until`), so only
      :math:`\tilde z \sim p(z)` is drawn (the decoder is not evaluated unless a latent follows an
      observation).
    * min-max by detaching: :math:`\mathcal{L}_D` is evaluated on :math:`z_n` detached, so it trains
      only :math:`D_\psi`; :math:`\mathcal{L}_G` is evaluated with a parameter-detached copy of
      :math:`D_\psi` (``torch.func.functional_call``), so it trains only the encoder. Updates are
      simultaneous (not alternating phases); the non-saturating generator loss is used.

    The discriminators (one per latent site, an MLP on the flattened latent returning a logit) are
    registered with ``pyro.module("aae_discriminator", ...)`` during the loss, so ``SVI`` optimizes
    them with the same optimizer (after ``pyro.get_param_store().set_state(...)`` they adopt the
    store's tensors). As an ``nn.Module`` (``AdversarialAutoencoderLoss()(model, guide)``) its
    ``parameters()`` include them: call it once before creating a torch optimizer, as the default
    discriminators are built on the first call.

    **Divergence guard**: the terms ``"reconstruction"``, ``"discriminator"`` and
    ``"adversarial"`` are checked: with ``on_nonfinite="raise"`` a NaN or infinite term raises
    :class:`~pyro_diffvi.infer.guard.DivergenceError` naming it (from ``differentiable_loss``, and from
    ``loss_and_grads`` before the backward pass), and so does a non-finite gradient (after it), before
    any parameter is updated; with ``"skip"`` ``loss_and_grads`` drops the step's gradients and warns
    (``RuntimeWarning``), and ``differentiable_loss`` returns the non-finite value without raising.

    **Checkpoints**: :meth:`state_dict` / :meth:`load_state_dict` hold the discriminators.

    :param discriminator: an ``nn.Module`` mapping flattened latents ``batch + (D,)`` to logits
        ``batch + (1,)`` (one latent site), a mapping ``{site name: module}``, or ``None`` for a
        default MLP per latent site built on the first call.
    :param latent: latent site name(s) to regularize; default: every non-auxiliary latent site
        the guide samples.
    :param hidden_dims: hidden widths of the default discriminator.
    :param activation: hidden activation of the default discriminator.
    :param adversarial_weight: weight :math:`\lambda \ge 0` of the encoder's adversarial loss.
    :param num_particles: number of guide draws averaged per step (a positive int).
    :param on_nonfinite: ``"raise"`` (default) or ``"skip"``, see above.

    Example:

    >>> import pyro, torch
    >>> import pyro.distributions as dist
    >>> from torch import nn
    >>> from pyro.infer import SVI
    >>> from pyro_diffvi.infer import AdversarialAutoencoderLoss
    >>> pyro.clear_param_store(); pyro.set_rng_seed(0)
    >>> encoder, decoder = nn.Linear(3, 2), nn.Linear(2, 3)
    >>> def model(x):
    ...     pyro.module("decoder", decoder)
    ...     with pyro.plate("data", len(x)):
    ...         z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    ...         pyro.sample("x", dist.Normal(decoder(z), 1.0).to_event(1), obs=x)
    >>> def guide(x):  # a Gaussian encoder with a fixed scale
    ...     pyro.module("encoder", encoder)
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("z", dist.Normal(encoder(x), 0.5).to_event(1))
    >>> aae = AdversarialAutoencoderLoss(hidden_dims=(16,))
    >>> svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), loss=aae)
    >>> value = svi.step(torch.randn(8, 3))  # the AAE objective, not a negative ELBO
    >>> sorted(aae.last_terms)
    ['adversarial', 'discriminator', 'reconstruction']
    """

    def __init__(
        self,
        *,
        discriminator: nn.Module | Mapping[str, nn.Module] | None = None,
        latent: str | Sequence[str] | None = None,
        hidden_dims: Sequence[int] = (256, 256),
        activation: str = "leaky_relu",
        adversarial_weight: float = 1.0,
        num_particles: int = 1,
        on_nonfinite: str = "raise",
    ) -> None:
        super().__init__(num_particles=check_positive_int("num_particles", num_particles))
        self.on_nonfinite = check_on_nonfinite(on_nonfinite)
        self.adversarial_weight = check_positive_float("adversarial_weight", adversarial_weight, allow_zero=True)
        self.hidden_dims = check_widths("hidden_dims", hidden_dims)
        make_activation(activation)
        self.latent = None if latent is None else ((latent,) if isinstance(latent, str) else tuple(latent))
        self.activation = activation
        self._single = None
        self._user_mapping = isinstance(discriminator, Mapping)
        if discriminator is None:
            self.discriminators = nn.ModuleDict()
        elif isinstance(discriminator, nn.Module):
            self._single = discriminator
            self.discriminators = nn.ModuleDict()
        elif isinstance(discriminator, Mapping):
            if not all(isinstance(m, nn.Module) for m in discriminator.values()):
                raise TypeError("every value of the discriminator mapping must be a torch.nn.Module")
            self.discriminators = nn.ModuleDict(dict(discriminator))
        else:
            raise TypeError(
                f"discriminator must be an nn.Module, a mapping of site names to nn.Modules, or None, "
                f"got {type(discriminator).__name__}"
            )
        self.last_terms: dict[str, float] = {}
        self._widths: dict[str, int] = {}

    def _objective_modules(self) -> nn.Module:
        return self.discriminators

    # ---- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The discriminators' ``state_dict()`` s by latent site, and the input widths of the default
        ones (to rebuild them)."""
        return {
            "discriminators": {name: module.state_dict() for name, module in self.discriminators.items()},
            "widths": dict(self._widths),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the discriminators saved by :meth:`state_dict`, building default ones first (on the
        device and dtype of the saved tensors), so that the next call draws no initialization.

        :param state: a dict from :meth:`state_dict` of an objective built with the same arguments.
        :raises ValueError: naming ``state`` when it does not fit this objective's discriminators.
        """
        if not isinstance(state, dict) or set(state) != {"discriminators", "widths"}:
            raise ValueError(
                "state must be a dict with keys ['discriminators', 'widths'] (from "
                "AdversarialAutoencoderLoss.state_dict())"
            )
        for name, module_state in state["discriminators"].items():
            if name not in self.discriminators:
                if self._single is not None:
                    self.discriminators[name] = self._single
                elif name in state["widths"] and not self._user_mapping:
                    ref = next(t for t in module_state.values() if t.is_floating_point())
                    self._build_default(name, state["widths"][name], ref.device, ref.dtype)
                else:
                    raise ValueError(f"state holds a discriminator for site {name!r} that this objective lacks")
            self.discriminators[name].load_state_dict(module_state)

    # ---- ELBO interface -------------------------------------------------------------------------

    def _loss_and_terms(self, model, guide, args, kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The AAE objective :math:`\\mathcal{L}_{rec} + \\lambda \\mathcal{L}_G + \\mathcal{L}_D` (not an
        ELBO) and its terms by name."""
        totals = {"reconstruction": 0.0, "discriminator": 0.0, "adversarial": 0.0}
        for _ in range(self.num_particles):
            terms = self._terms(model, guide, args, kwargs)
            for key in totals:
                totals[key] = totals[key] + terms[key] / self.num_particles
        self.last_terms = {k: float(torch.as_tensor(v).detach()) for k, v in totals.items()}
        loss = -totals["reconstruction"] + self.adversarial_weight * totals["adversarial"] + totals["discriminator"]
        return loss, totals

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """Value of the AAE objective (a float; not a negative ELBO)."""
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def _get_trace(self, model, guide, args, kwargs):  # ELBO's abstract hook; not used by this objective
        raise NotImplementedError("AdversarialAutoencoderLoss computes its terms in _terms")

    # ---- the three terms ------------------------------------------------------------------------

    def _terms(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> dict[str, torch.Tensor]:
        full_guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)  # replays subsample indices too
        model_trace = prune_subsample_sites(
            poutine.trace(poutine.replay(model, trace=full_guide_trace)).get_trace(*args, **kwargs)
        )
        guide_trace = prune_subsample_sites(full_guide_trace)
        names = self._latent_names(model_trace, guide_trace)
        observed = [n for n, s in model_trace.nodes.items() if s["type"] == "sample" and s["is_observed"]]
        if not observed:
            raise ValueError("the model has no observed sample site: nothing to reconstruct")
        model_trace.compute_log_prob(site_filter=lambda name, site: site["is_observed"])
        reconstruction = sum(model_trace.nodes[n]["log_prob_sum"] for n in observed)
        prior = self._prior_latents(model, names, args, kwargs)
        discriminators = self._discriminators(names, model_trace)
        pyro.module("aae_discriminator", discriminators, update_module_params=True)
        disc_loss, adv_loss = 0.0, 0.0
        for name in names:
            site = model_trace.nodes[name]
            d, a = self._adversarial_terms(
                discriminators[name], site["value"], prior[name], site["fn"].event_dim, site["scale"]
            )
            disc_loss, adv_loss = disc_loss + d, adv_loss + a
        return {"reconstruction": reconstruction, "discriminator": disc_loss, "adversarial": adv_loss}

    @staticmethod
    def _adversarial_terms(
        discriminator: nn.Module, z_q: torch.Tensor, z_p: torch.Tensor, event_dim: int, scale
    ) -> tuple[torch.Tensor, torch.Tensor]:
        flat_q = z_q.reshape(z_q.shape[: z_q.dim() - event_dim] + (-1,))
        flat_p = z_p.reshape(z_p.shape[: z_p.dim() - event_dim] + (-1,)).to(flat_q)
        # -log D(z~p) - log(1 - D(z~q)), with D = sigmoid(logit); z~q detached: trains D only.
        disc = softplus(-discriminator(flat_p)).sum() + softplus(discriminator(flat_q.detach())).sum()
        # -log D(z~q) through a parameter-detached copy of D: trains the encoder only.
        frozen = {k: v.detach() for k, v in discriminator.named_parameters()}
        frozen.update(dict(discriminator.named_buffers()))
        adv = softplus(-functional_call(discriminator, frozen, (flat_q,))).sum()
        return scale * disc, scale * adv

    def _latent_names(self, model_trace, guide_trace) -> tuple[str, ...]:
        candidates = [
            n for n, s in guide_trace.nodes.items()
            if s["type"] == "sample" and not s["is_observed"] and not s["infer"].get("is_auxiliary")
            and n in model_trace.nodes and not model_trace.nodes[n]["is_observed"]
        ]
        if self.latent is None:
            if not candidates:
                raise ValueError("the guide samples no latent site of the model")
            return tuple(candidates)
        missing = [n for n in self.latent if n not in candidates]
        if missing:
            raise ValueError(f"latent site(s) {missing} are not latent sites sampled by the guide; found {candidates}")
        return self.latent

    @staticmethod
    def _prior_latents(model: Callable, names: Sequence[str], args: tuple, kwargs: dict) -> dict:
        """Draw the latents from the prior: the model unconditioned, stopped once they are all drawn."""
        with torch.no_grad():
            nodes = trace_until(poutine.uncondition(model), names, *args, **kwargs).nodes
        return {n: nodes[n]["value"].detach() for n in names}

    def _discriminators(self, names: Sequence[str], model_trace) -> nn.ModuleDict:
        if self._single is not None:
            if len(names) != 1:
                raise ValueError(
                    f"one discriminator module was given but the guide has {len(names)} latent sites "
                    f"{tuple(names)}; pass a mapping {{site name: module}}"
                )
            if names[0] not in self.discriminators:
                self.discriminators[names[0]] = self._single
        for name in names:
            if name not in self.discriminators:
                if self._user_mapping:
                    raise ValueError(f"no discriminator for latent site '{name}' in the mapping")
                site = model_trace.nodes[name]
                value = site["value"]
                width = math.prod(value.shape[value.dim() - site["fn"].event_dim :])
                self._build_default(name, width, value.device, value.dtype)
        return self.discriminators

    def _build_default(self, name: str, width: int, device, dtype) -> None:
        self._widths[name] = int(width)
        self.discriminators[name] = MLP(width, 1, hidden_dims=self.hidden_dims, activation=self.activation).to(
            device=device, dtype=dtype
        )
