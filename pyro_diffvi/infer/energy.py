r"""Training VAEs whose latent sites have energy-based priors (paper 001, Sec. 2.3, Algs. 1-2).

For a prior :math:`p_\beta(z) = e^{-E_\beta(z)}/Z_\beta` the ELBO is (paper 001, Eq. 4)

.. math::
    \mathcal L = \underbrace{\mathbb E_{q_\phi(z|x)}[\log p_\alpha(x|z) - E_\beta(z) - \log q_\phi(z|x)]}_
        {\text{partition-free bound } \mathcal A \;\le\; \log \tilde p(x) = \log p(x) + \log Z_\beta}
        - \log Z_\beta .

:math:`\log Z_\beta` does not depend on the encoder :math:`\phi` or the decoder :math:`\alpha`, so
:math:`\nabla_{\phi,\alpha}\mathcal A = \nabla_{\phi,\alpha}\mathcal L`: the encoder and decoder train on
:math:`\mathcal A`. The prior's parameters :math:`\beta` get **no** gradient from :math:`\mathcal A`
(design rule 4); they are trained by a pluggable :mod:`~pyro_diffvi.infer.prior_objectives` objective
on the aggregate-posterior samples :math:`z \sim q_\phi(z|x)` (detached).

Usage (separate learning rates for prior and VAE, as in the paper: 2e-4 and 1e-3)::

    elbo = EnergyPriorELBO(prior_objective=SlicedScoreMatching())
    svi = SVI(model, guide, pyro.optim.Adam(elbo.optim_args({"lr": 1e-3}, prior={"lr": 2e-4})), loss=elbo)
    for x in batches:
        neg_bound = svi.step(x)          # -A (NOT an ELBO: log Z is missing)
        elbo.last_terms                   # {"partition_free_bound": A, "prior_loss": ..., ...}
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from pyro import poutine
from pyro.distributions.util import is_identically_zero, scale_and_mask
from pyro.infer.enum import get_importance_trace
from pyro.infer.trace_elbo import _compute_log_r
from pyro.infer.util import is_validation_enabled, torch_item
from pyro.params.param_store import normalize_param_name
from pyro.util import check_if_enumerated
from torch import Tensor, nn

from pyro_diffvi._pyro_compat import in_namespace
from pyro_diffvi.infer.guard import GuardedObjective, check_on_nonfinite
from pyro_diffvi.infer.prior_objectives import PriorObjective, energy_function
from pyro_diffvi.util import check_positive_int

__all__ = [
    "EnergyPriorELBO",
    "find_energy_distribution",
    "split_optim_args",
]


def find_energy_distribution(fn):
    """The unnormalized energy distribution inside ``fn`` (unwrapping ``Independent``, ``Expanded``,
    ``Masked`` wrappers through ``base_dist``), or ``None`` if ``fn`` is not energy-based.

    A distribution counts as energy-based when it has ``normalized = False`` and an ``energy`` method
    (:class:`~pyro_diffvi.distributions.EnergyDistribution` and its subclasses such as ``GRBM``).
    """
    while fn is not None:
        if getattr(fn, "normalized", True) is False and callable(getattr(fn, "energy", None)):
            return fn
        fn = getattr(fn, "base_dist", None)
    return None


def split_optim_args(
    vae: dict, prior: dict, prior_prefixes: Iterable[str]
) -> Callable[[str], dict]:
    """Per-parameter optimizer arguments for ``pyro.optim`` by parameter name.

    :param vae: arguments for all other parameters, e.g. ``{"lr": 1e-3}``.
    :param prior: arguments for parameters under one of ``prior_prefixes`` (see :func:`in_namespace`:
        the prefix itself, or the prefix followed by a separator), e.g. ``{"lr": 2e-4}``.
    :param prior_prefixes: name prefixes such as ``("GRBMPrior", "adversarial_cd_flow")``; ``"prior"``
        covers ``prior.W`` but not ``prior2.W`` or ``priors``.
    :returns: a callable for ``pyro.optim.Adam(callable)``.
    """
    prefixes = (prior_prefixes,) if isinstance(prior_prefixes, str) else tuple(prior_prefixes)
    if not prefixes or not all(isinstance(p, str) and p for p in prefixes):
        raise ValueError(f"prior_prefixes must be a non-empty sequence of non-empty strings, got {prefixes!r}")
    for name, value in (("vae", vae), ("prior", prior)):
        if not isinstance(value, dict):
            raise TypeError(f"{name} must be a dict of optimizer arguments, got {type(value).__name__}")

    def optim_args(param_name: str) -> dict:
        return dict(prior if any(in_namespace(param_name, p) for p in prefixes) else vae)

    return optim_args


class _EnergySite:
    """One latent site with an energy prior, as found in a model trace."""

    def __init__(self, name: str, model_site: dict, guide_site: dict):
        self.name = name
        self.site = model_site
        self.prior = find_energy_distribution(model_site["fn"])
        event_shape = self.prior.event_shape
        self.samples = model_site["value"].detach().reshape((-1,) + tuple(event_shape))
        log_q = guide_site.get("log_prob")
        self.log_q = None
        if log_q is not None and log_q.numel() == self.samples.shape[0]:
            self.log_q = log_q.detach().reshape(-1)

    def trainable_prior(self):
        """The site's energy prior with gradients to its parameters (see
        :meth:`~pyro_diffvi.distributions.EnergyDistribution.with_parameter_gradients`)."""
        with_gradients = getattr(self.prior, "with_parameter_gradients", None)
        return with_gradients() if callable(with_gradients) else self.prior

    def parameter_gradient_cancellation(self) -> Tensor:
        r"""A zero-valued term whose gradient cancels :math:`\nabla_\beta` of this site's
        ``log_prob_sum`` in the model trace (its :math:`z`-gradient is zero)."""
        site = self.site
        log_p = site["fn"].log_prob(site["value"].detach())
        total = scale_and_mask(log_p, site["scale"], site["mask"]).sum()
        return total - total.detach()


class EnergyPriorELBO(GuardedObjective):
    r"""Objective for models whose latent sites have energy-based (unnormalized) priors.

    * Encoder and decoder: gradient of the partition-free bound (paper 001, Sec. 2.3)
      :math:`\mathcal A = \mathbb E_q[\log p(x|z) - E(z) - \log q(z|x)]` (the model's ``log_prob`` of an
      energy site is the unnormalized :math:`-E(z)`); equal to the gradient of the true ELBO because
      :math:`\log Z` does not depend on them. Non-reparameterized guide sites use the score-function
      estimator as in ``Trace_ELBO``.
    * Prior parameters: **no** gradient from :math:`\mathcal A` (a learnable prior module's
      distribution carries none outside a prior objective, see
      :mod:`pyro_diffvi.distributions.energy`; for a distribution built by hand from trainable tensors
      it is cancelled exactly with a zero-valued stop-gradient term, see
      :meth:`_EnergySite.parameter_gradient_cancellation`); gradient of
      ``prior_objective.loss(prior, z, log_q)`` on the detached aggregate-posterior samples instead (none
      when ``prior_objective is None``).

    **What the returned number is.** ``loss`` / ``loss_and_grads`` / ``differentiable_loss`` return
    :math:`-\mathcal A`, the negative partition-free bound averaged over particles: an upper bound on
    :math:`-\log \tilde p(x) = -\log p(x) - \log Z`. It is **not** a negative ELBO and not comparable
    across priors (it omits :math:`\log Z`); evaluate :math:`\log p(x)` with
    :func:`pyro_diffvi.metrics.energy_prior_log_likelihood`. The prior objective contributes a
    zero-valued term (``loss - loss.detach()``) to the returned tensor so that its gradient is included.
    After each call, ``last_terms`` holds ``partition_free_bound`` (:math:`\mathcal A`), ``prior_loss``
    (the objective's value, averaged over sites and particles) and the objective's own ``last_terms``.

    **Divergence guard** (design rule 8). The loss has the named terms ``"partition-free bound"`` and
    ``"prior objective"``. With ``on_nonfinite="raise"`` a NaN or infinite term raises
    :class:`~pyro_diffvi.infer.guard.DivergenceError` naming it, from ``differentiable_loss`` and
    ``loss_and_grads`` (before the backward pass), and a non-finite gradient raises from
    ``loss_and_grads`` after it; either way before the optimizer touches any parameter. With ``"skip"``,
    ``loss_and_grads`` drops every gradient of such a step and warns (``RuntimeWarning``), so the step
    leaves all parameters unchanged; ``differentiable_loss`` then returns the non-finite value without
    raising. Independent of ``pyro.enable_validation``.

    **Checkpoints** (design rule 8): :meth:`state_dict` / :meth:`load_state_dict` hold the objective's
    state (the prior objective's, e.g. a flow or a replay buffer, and the prior/VAE classification of the
    parameters). With the param store, the optimizer's state and the RNG state, a resumed run equals
    the uninterrupted one bit for bit.

    :param prior_objective: a :class:`~pyro_diffvi.infer.prior_objectives.PriorObjective` (e.g.
        ``SlicedScoreMatching()``, ``AdversarialCD()``), or ``None`` to keep the prior fixed.
    :param on_nonfinite: ``"raise"`` (default) or ``"skip"``, see above.
    :param kwargs: passed to :class:`pyro.infer.ELBO` (``num_particles``, a positive int,
        ``vectorize_particles``, ``max_plate_nesting``, ...).
    """

    def __init__(self, prior_objective: PriorObjective | None = None, on_nonfinite: str = "raise", **kwargs):
        if prior_objective is not None and not isinstance(prior_objective, PriorObjective):
            raise TypeError(
                "prior_objective must be a pyro_diffvi.infer.PriorObjective (e.g. SlicedScoreMatching()) "
                f"or None, got {type(prior_objective).__name__}"
            )
        check_positive_int("num_particles", kwargs.get("num_particles", 1))
        super().__init__(**kwargs)
        self.on_nonfinite = check_on_nonfinite(on_nonfinite)
        self.prior_objective = prior_objective
        self.last_terms: dict[str, float] = {}
        self.prior_param_names: set[str] = set()
        self._classified_param_names: set[str] = set()

    def _objective_modules(self) -> nn.Module:
        return self.prior_objective.auxiliary_modules if self.prior_objective is not None else nn.ModuleDict()

    # ----------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Training state for checkpoints: the prior objective's ``state_dict()`` (or ``None``) and the
        param-store names classified as prior / VAE parameters so far."""
        return {
            "prior_objective": None if self.prior_objective is None else self.prior_objective.state_dict(),
            "prior_param_names": sorted(self.prior_param_names),
            "classified_param_names": sorted(self._classified_param_names),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the state saved by :meth:`state_dict` into an objective built with the same arguments.

        :param state: a dict from :meth:`state_dict`.
        :raises ValueError: naming ``state`` when it lacks a key or its prior objective's state does not
            match ``prior_objective``.
        """
        keys = {"prior_objective", "prior_param_names", "classified_param_names"}
        if not isinstance(state, dict) or set(state) != keys:
            raise ValueError(f"state must be a dict with keys {sorted(keys)} (from EnergyPriorELBO.state_dict())")
        if (state["prior_objective"] is None) != (self.prior_objective is None):
            raise ValueError(
                "state was saved with prior_objective="
                f"{'None' if state['prior_objective'] is None else 'an objective'}, this EnergyPriorELBO has "
                f"prior_objective={self.prior_objective!r}"
            )
        if self.prior_objective is not None:
            self.prior_objective.load_state_dict(state["prior_objective"])
        self.prior_param_names = set(state["prior_param_names"])
        self._classified_param_names = set(state["classified_param_names"])

    # ----------------------------------------------------------------------------------- traces
    def _get_trace(self, model, guide, args, kwargs):
        model_trace, guide_trace = get_importance_trace(
            "flat", self.max_plate_nesting, model, guide, args, kwargs
        )
        if is_validation_enabled():
            check_if_enumerated(guide_trace)
        return model_trace, guide_trace

    @staticmethod
    def _energy_sites(model_trace, guide_trace) -> list[_EnergySite]:
        return [
            _EnergySite(name, site, guide_trace.nodes.get(name, {}))
            for name, site in model_trace.nodes.items()
            if site["type"] == "sample"
            and not site["is_observed"]
            and find_energy_distribution(site["fn"]) is not None
        ]

    @staticmethod
    def _bound_particle(model_trace, guide_trace) -> tuple[Tensor, Tensor]:
        """``(A, surrogate A)`` for one particle, as ``Trace_ELBO`` computes the ELBO."""
        bound = 0.0
        surrogate = 0.0
        log_r = None
        for site in model_trace.nodes.values():
            if site["type"] == "sample":
                bound = bound + site["log_prob_sum"].detach()
                surrogate = surrogate + site["log_prob_sum"]
        for site in guide_trace.nodes.values():
            if site["type"] != "sample":
                continue
            _, score_function_term, entropy_term = site["score_parts"]
            bound = bound - site["log_prob_sum"].detach()
            if not is_identically_zero(entropy_term):
                surrogate = surrogate - entropy_term.sum()
            if not is_identically_zero(score_function_term):
                if log_r is None:
                    log_r = _compute_log_r(model_trace, guide_trace)
                weight = log_r.sum_to(site["cond_indep_stack"])
                surrogate = surrogate + (weight * score_function_term).sum()
        return torch.as_tensor(bound), torch.as_tensor(surrogate)

    # ----------------------------------------------------------------------------------- prior
    def _prior_loss(self, sites: list[_EnergySite]) -> Tensor | None:
        objective = self.prior_objective
        if objective is None or not sites:
            return None
        total = 0.0
        terms: dict[str, float] = {}
        for site in sites:
            if objective.needs_log_q and site.log_q is None:
                raise ValueError(
                    f"{type(objective).__name__} needs the guide's log density of site {site.name!r} per "
                    "sample; the guide must sample this site with the energy prior's event shape"
                )
            if not bool(torch.isfinite(site.samples).all()):
                # diverged encoder: the term is non-finite (the divergence guard names it) instead of the
                # objective's input check raising a ValueError about its argument z
                total = total + site.samples.new_tensor(float("nan"))
                continue
            total = total + objective.loss(site.trainable_prior(), site.samples, site.log_q)
            for key, value in objective.last_terms.items():
                terms[key] = terms.get(key, 0.0) + value / len(sites)
        self._objective_terms.append(terms)
        return total / len(sites)

    def _record_prior_param_names(self, sites: list[_EnergySite], param_trace) -> None:
        """Remember the param-store names of the prior's parameters (those its energy depends on)."""
        params = {
            normalize_param_name(name): site["value"].unconstrained()
            for name, site in param_trace.nodes.items()
            if site["type"] == "param"
        }
        # names classified in an earlier step keep their class: only new parameters cost a gradient pass
        params = {k: v for k, v in params.items() if v.requires_grad and k not in self._classified_param_names}
        if not params or not sites:
            return
        self._classified_param_names.update(params)
        with torch.enable_grad():
            energy = sum(energy_function(site.trainable_prior())(site.samples).sum() for site in sites)
            if not energy.requires_grad:
                return
            grads = torch.autograd.grad(energy, list(params.values()), allow_unused=True, retain_graph=True)
        self.prior_param_names.update(name for name, g in zip(params, grads) if g is not None)

    def optim_args(self, vae: dict, prior: dict) -> Callable[[str], dict]:
        """Per-parameter arguments for ``pyro.optim`` (e.g. ``Adam(elbo.optim_args({"lr": 1e-3},
        prior={"lr": 2e-4}))``): ``prior`` for the energy prior's parameters (found automatically in the
        first step, before the optimizer creates its per-parameter state) and for the objective's own
        modules (e.g. the adversarial flow), ``vae`` for all others.
        """
        for name, value in (("vae", vae), ("prior", prior)):
            if not isinstance(value, dict):
                raise TypeError(f"{name} must be a dict of optimizer arguments, got {type(value).__name__}")

        def args(param_name: str) -> dict:
            aux = self.prior_objective.auxiliary_module_names() if self.prior_objective is not None else ()
            is_prior = param_name in self.prior_param_names or any(in_namespace(param_name, p) for p in aux)
            return dict(prior if is_prior else vae)

        return args

    # ----------------------------------------------------------------------------------- API
    def _loss_and_terms(self, model, guide, args, kwargs) -> tuple[Tensor, dict[str, Tensor]]:
        """The surrogate loss and its named terms (for the divergence guard)."""
        bound_total = 0.0
        surrogate_total = 0.0
        prior_total = None
        self._objective_terms: list[dict[str, float]] = []
        found_energy_site = False
        with poutine.trace(param_only=True) as param_capture:
            for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
                bound, surrogate = self._bound_particle(model_trace, guide_trace)
                sites = self._energy_sites(model_trace, guide_trace)
                found_energy_site = found_energy_site or bool(sites)
                for site in sites:
                    surrogate = surrogate - site.parameter_gradient_cancellation()
                bound_total = bound_total + bound / self.num_particles
                surrogate_total = surrogate_total + surrogate / self.num_particles
                prior_loss = self._prior_loss(sites)
                if prior_loss is not None:
                    prior_total = prior_loss / self.num_particles + (0.0 if prior_total is None else prior_total)
        if self.prior_objective is not None and not found_energy_site:
            raise ValueError(
                "EnergyPriorELBO(prior_objective=...) found no latent sample site with an energy-based prior "
                "(a distribution with normalized=False and an energy method, e.g. GRBM or EnergyDistribution)"
            )
        self._record_prior_param_names(sites, param_capture.trace)
        loss = -torch.as_tensor(surrogate_total)
        loss = loss - loss.detach() + (-torch.as_tensor(bound_total)).to(loss)
        terms = {"partition-free bound": torch.as_tensor(bound_total)}
        self.last_terms = {"partition_free_bound": torch_item(bound_total)}
        if prior_total is not None:
            loss = loss + (prior_total - prior_total.detach())
            terms["prior objective"] = prior_total
            self.last_terms["prior_loss"] = torch_item(prior_total)
            for entry in self._objective_terms:
                for key, value in entry.items():
                    self.last_terms[key] = self.last_terms.get(key, 0.0) + value / len(self._objective_terms)
        return loss, terms

    def loss(self, model, guide, *args, **kwargs) -> float:
        """:math:`-\\mathcal A` as a float (negative partition-free bound; not a negative ELBO)."""
        return torch_item(self.differentiable_loss(model, guide, *args, **kwargs))
