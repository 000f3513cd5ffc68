r"""Training VAEs whose latent sites have energy-based priors.

For a prior :math:`p_\beta(z) = e^{-E_\beta(z)}/Z_\beta` the ELBO is (the unnormalized-priors paper,
Eq. 4)

.. math::
    \mathcal L = \underbrace{\mathbb E_{q_\phi(z|x)}[\log p_\alpha(x|z) - E_\beta(z) - \log q_\phi(z|x)]}_
        {\text{partition-free bound } \mathcal A \;\le\; \log \tilde p(x) = \log p(x) + \log Z_\beta}
        - \log Z_\beta .

:math:`\log Z_\beta` does not depend on the encoder :math:`\phi` or the decoder :math:`\alpha`, so
:math:`\nabla_{\phi,\alpha}\mathcal A = \nabla_{\phi,\alpha}\mathcal L`: the encoder and decoder train on
:math:`\mathcal A`, which is exactly what :class:`~pyro.infer.Trace_ELBO` computes when the model's
``log_prob`` of an energy site is the unnormalized :math:`-E_\beta(z)`. The prior's parameters
:math:`\beta` get **no** gradient from :math:`\mathcal A`; they are trained by a pluggable
:mod:`~pyro_diffvi.infer.prior_objectives` objective on the aggregate-posterior samples
:math:`z \sim q_\phi(z|x)` (detached), as in Sec. 2.3 and Algorithms 1-2 of the unnormalized-priors
paper.

References

- *Variational Inference with Unnormalized Priors*. Anonymous authors, manuscript under double-blind
  review.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer import Trace_ELBO
from pyro.infer.util import torch_item
from pyro.params.param_store import normalize_param_name
from torch import Tensor, nn

from pyro_diffvi._pyro_compat import in_namespace
from pyro_diffvi.distributions.energy import find_energy_distribution
from pyro_diffvi.infer.guard import GuardedObjective, check_on_nonfinite
from pyro_diffvi.infer.prior_objectives import PriorObjective, energy_function
from pyro_diffvi.util import check_positive_int

__all__ = ["EnergyPriorELBO"]


class _TraceRecorder:
    """Wraps a model and a guide so that each of their runs leaves its :class:`~pyro.poutine.Trace`
    here (the energy sites' values and distributions, which the prior objective needs)."""

    def __init__(self, model: Callable, guide: Callable) -> None:
        self.model_traces: list = []
        self.guide_traces: list = []
        self.model = self._recording(model, self.model_traces)
        self.guide = self._recording(guide, self.guide_traces)

    @staticmethod
    def _recording(fn: Callable, traces: list) -> Callable:
        def recorded(*args, **kwargs):
            tracer = poutine.trace(fn)
            result = tracer(*args, **kwargs)
            traces.append(tracer.trace)
            return result

        return recorded

    def pairs(self, num: int) -> list[tuple]:
        """The last ``num`` (model trace, guide trace) pairs (earlier runs, e.g. Pyro's guess of
        ``max_plate_nesting``, are not particles of the loss)."""
        return list(zip(self.model_traces[-num:], self.guide_traces[-num:]))


class _EnergySite:
    """One latent site with an energy prior, as found in a model trace."""

    def __init__(self, name: str, model_site: dict, guide_site: dict):
        self.name = name
        self.site = model_site
        self.guide_site = guide_site
        self.prior = find_energy_distribution(model_site["fn"])
        self.samples = model_site["value"].detach().reshape((-1,) + tuple(self.prior.event_shape))

    def log_q(self) -> Tensor | None:
        """The guide's log density of each sample, shape ``(N,)`` (detached), or ``None`` when the guide
        does not sample the site with the prior's event shape."""
        site = self.guide_site
        if site.get("type") != "sample":
            return None
        with torch.no_grad():
            log_q = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
        return log_q.reshape(-1) if log_q.numel() == self.samples.shape[0] else None

    def trainable_prior(self):
        """The site's energy prior with gradients to its parameters (see
        :meth:`~pyro_diffvi.distributions.EnergyDistribution.with_parameter_gradients`)."""
        with_gradients = getattr(self.prior, "with_parameter_gradients", None)
        return with_gradients() if callable(with_gradients) else self.prior

    def parameter_gradient_cancellation(self) -> Tensor:
        r"""A zero-valued term whose gradient cancels :math:`\nabla_\beta` of this site's scaled
        ``log_prob`` sum in the model trace (its :math:`z`-gradient is zero)."""
        site = self.site
        log_p = site["fn"].log_prob(site["value"].detach())
        total = scale_and_mask(log_p, site["scale"], site["mask"]).sum()
        return total - total.detach()


class EnergyPriorELBO(GuardedObjective, Trace_ELBO):
    r"""Objective for models whose latent sites have energy-based (unnormalized) priors: Pyro's
    :class:`~pyro.infer.Trace_ELBO` for the encoder and decoder, plus a prior objective for the prior.

    * Encoder and decoder: gradient of the partition-free bound
      :math:`\mathcal A = \mathbb E_q[\log p(x|z) - E(z) - \log q(z|x)]` (Sec. 2.3 of the
      unnormalized-priors paper), computed by :meth:`pyro.infer.Trace_ELBO.differentiable_loss` (the
      model's ``log_prob`` of an energy site is the unnormalized :math:`-E(z)`); equal to the gradient of
      the true ELBO because :math:`\log Z` does not depend on them. Non-reparameterized guide sites use
      ``Trace_ELBO``'s score-function estimator.
    * Prior parameters: **no** gradient from :math:`\mathcal A` (a learnable prior module's
      distribution carries none outside a prior objective, see
      :mod:`pyro_diffvi.distributions.energy`; for a distribution built by hand from trainable tensors
      it is cancelled exactly with a zero-valued stop-gradient term); the gradient of
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

    **Divergence guard.** The loss has the named terms ``"partition-free bound"`` and
    ``"prior objective"``. With ``on_nonfinite="raise"`` a NaN or infinite term raises
    :class:`~pyro_diffvi.infer.guard.DivergenceError` naming it, from ``differentiable_loss`` and
    ``loss_and_grads`` (before the backward pass), and a non-finite gradient raises from
    ``loss_and_grads`` after it; either way before the optimizer touches any parameter. With ``"skip"``,
    ``loss_and_grads`` drops every gradient of such a step and warns (``RuntimeWarning``), so the step
    leaves all parameters unchanged; ``differentiable_loss`` then returns the non-finite value without
    raising. Independent of ``pyro.enable_validation``.

    **Checkpoints.** :meth:`state_dict` / :meth:`load_state_dict` hold the objective's state (the prior
    objective's, e.g. a flow or a replay buffer, and the prior/VAE classification of the parameters).
    With the param store, the optimizer's state and the RNG state, a resumed run equals the
    uninterrupted one bit for bit.

    References: *Variational Inference with Unnormalized Priors*. Anonymous authors, manuscript under
    double-blind review (Sec. 2.3, Eq. 4, Algorithms 1-2).

    :param prior_objective: a :class:`~pyro_diffvi.infer.prior_objectives.PriorObjective` (e.g.
        ``SlicedScoreMatchingLoss()``, ``AdversarialCDLoss()``), or ``None`` to keep the prior fixed.
    :param num_particles: guide draws per data point (a positive int), as in :class:`~pyro.infer.ELBO`.
    :param max_plate_nesting: as in :class:`~pyro.infer.ELBO`.
    :param vectorize_particles: draw the particles in one vectorized run, as in
        :class:`~pyro.infer.ELBO`.
    :param on_nonfinite: ``"raise"`` (default) or ``"skip"``, see above.
    :param kwargs: other options of :class:`~pyro.infer.ELBO` (``retain_graph``, ...).

    Example (a VAE with a GRBM prior; the prior gets its own learning rate):

    >>> import pyro, torch
    >>> import pyro.distributions as dist
    >>> from torch import nn
    >>> from pyro.infer import SVI
    >>> from pyro_diffvi.priors import GRBMPrior
    >>> from pyro_diffvi.infer import EnergyPriorELBO, SlicedScoreMatchingLoss
    >>> pyro.clear_param_store(); pyro.set_rng_seed(0)
    >>> prior, encoder, decoder = GRBMPrior(2, 4), nn.Linear(3, 4), nn.Linear(2, 3)
    >>> def model(x):
    ...     pyro.module("decoder", decoder)
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", prior())
    ...         pyro.sample("x", dist.Normal(decoder(z), 1.0).to_event(1), obs=x)
    >>> def guide(x):
    ...     pyro.module("encoder", encoder)
    ...     loc, log_scale = encoder(x).chunk(2, -1)
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))
    >>> elbo = EnergyPriorELBO(prior_objective=SlicedScoreMatchingLoss())
    >>> optim = pyro.optim.Adam(elbo.optim_args({"lr": 1e-3}, {"lr": 2e-4}))
    >>> svi = SVI(model, guide, optim, loss=elbo)
    >>> x = torch.randn(8, 3)
    >>> neg_bound = svi.step(x)  # -A: not a negative ELBO, log Z is missing
    >>> sorted(elbo.last_terms)
    ['partition_free_bound', 'prior_loss', 'ssm_loss']
    >>> sorted(elbo.prior_param_names)
    ['GRBMPrior.W', 'GRBMPrior.b', 'GRBMPrior.log_sigma', 'GRBMPrior.mu']
    """

    def __init__(
        self,
        *,
        prior_objective: PriorObjective | None = None,
        num_particles: int = 1,
        max_plate_nesting: float = math.inf,
        vectorize_particles: bool = False,
        on_nonfinite: str = "raise",
        **kwargs,
    ) -> None:
        if prior_objective is not None and not isinstance(prior_objective, PriorObjective):
            raise TypeError(
                "prior_objective must be a pyro_diffvi.infer.PriorObjective (e.g. SlicedScoreMatchingLoss()) "
                f"or None, got {type(prior_objective).__name__}"
            )
        super().__init__(
            num_particles=check_positive_int("num_particles", num_particles),
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=vectorize_particles,
            **kwargs,
        )
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
        param-store names classified as prior / VAE parameters so far.

        Example:

        >>> from pyro_diffvi.infer import EnergyPriorELBO, SlicedScoreMatchingLoss
        >>> sorted(EnergyPriorELBO(prior_objective=SlicedScoreMatchingLoss()).state_dict())
        ['classified_param_names', 'prior_objective', 'prior_param_names']
        """
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

        Example:

        >>> from pyro_diffvi.infer import EnergyPriorELBO, SlicedScoreMatchingLoss
        >>> source = EnergyPriorELBO(prior_objective=SlicedScoreMatchingLoss())
        >>> source.prior_param_names = {"GRBMPrior.W"}
        >>> target = EnergyPriorELBO(prior_objective=SlicedScoreMatchingLoss())
        >>> target.load_state_dict(source.state_dict())
        >>> target.prior_param_names
        {'GRBMPrior.W'}
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

    # ----------------------------------------------------------------------------------- prior
    @staticmethod
    def _energy_sites(model_trace, guide_trace) -> list[_EnergySite]:
        return [
            _EnergySite(name, site, guide_trace.nodes.get(name, {}))
            for name, site in model_trace.nodes.items()
            if site["type"] == "sample"
            and not site["is_observed"]
            and find_energy_distribution(site["fn"]) is not None
        ]

    def _prior_loss(self, sites: list[_EnergySite]) -> Tensor | None:
        objective = self.prior_objective
        if objective is None or not sites:
            return None
        total = 0.0
        terms: dict[str, float] = {}
        for site in sites:
            log_q = site.log_q() if objective.needs_log_q else None
            if objective.needs_log_q and log_q is None:
                raise ValueError(
                    f"{type(objective).__name__} needs the guide's log density of site {site.name!r} per "
                    "sample; the guide must sample this site with the energy prior's event shape"
                )
            if not bool(torch.isfinite(site.samples).all()):
                # diverged encoder: the term is non-finite (the divergence guard names it) instead of the
                # objective's input check raising a ValueError about its argument z
                total = total + site.samples.new_tensor(float("nan"))
                continue
            total = total + objective.loss(site.trainable_prior(), site.samples, log_q)
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
        """Per-parameter arguments for ``pyro.optim`` by param-store name: ``prior`` for the energy
        prior's parameters (found automatically in the first step, before the optimizer creates its
        per-parameter state) and for the objective's own modules (e.g. the adversarial flow, every name
        in its ``pyro.module`` namespace), ``vae`` for all others.

        :param vae: optimizer arguments of the encoder, decoder and any other parameter, e.g.
            ``{"lr": 1e-3}``.
        :param prior: optimizer arguments of the prior's parameters, e.g. ``{"lr": 2e-4}``.
        :return: a callable for ``pyro.optim.Adam(callable)``.

        Example:

        >>> from pyro_diffvi.infer import AdversarialCDLoss, EnergyPriorELBO
        >>> elbo = EnergyPriorELBO(prior_objective=AdversarialCDLoss())
        >>> args = elbo.optim_args({"lr": 1e-3}, {"lr": 2e-4})
        >>> args("adversarial_cd_flow.layers.0.weight"), args("encoder.weight")
        ({'lr': 0.0002}, {'lr': 0.001})
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
        recorder = _TraceRecorder(model, guide)
        with poutine.trace(param_only=True) as param_capture, warnings.catch_warnings():
            # a NaN bound is reported (or skipped) by the divergence guard, by name
            warnings.filterwarnings("ignore", message="Encountered NaN", category=UserWarning)
            neg_bound = Trace_ELBO.differentiable_loss(self, recorder.model, recorder.guide, *args, **kwargs)
        self._objective_terms: list[dict[str, float]] = []
        loss = torch.as_tensor(neg_bound)
        prior_total = None
        found_energy_site = False
        sites: list[_EnergySite] = []
        for model_trace, guide_trace in recorder.pairs(1 if self.vectorize_particles else self.num_particles):
            sites = self._energy_sites(model_trace, guide_trace)
            found_energy_site = found_energy_site or bool(sites)
            for site in sites:
                loss = loss + site.parameter_gradient_cancellation() / self.num_particles
            prior_loss = self._prior_loss(sites)
            if prior_loss is not None:
                prior_total = prior_loss / self.num_particles + (0.0 if prior_total is None else prior_total)
        if self.prior_objective is not None and not found_energy_site:
            raise ValueError(
                "EnergyPriorELBO(prior_objective=...) found no latent sample site with an energy-based prior "
                "(a distribution with normalized=False and an energy method, e.g. GRBM or EnergyDistribution)"
            )
        self._record_prior_param_names(sites, param_capture.trace)
        bound = -loss.detach()
        terms = {"partition-free bound": bound}
        self.last_terms = {"partition_free_bound": torch_item(bound)}
        if prior_total is not None:
            loss = loss + (prior_total - prior_total.detach())
            terms["prior objective"] = prior_total
            self.last_terms["prior_loss"] = torch_item(prior_total)
            for entry in self._objective_terms:
                for key, value in entry.items():
                    self.last_terms[key] = self.last_terms.get(key, 0.0) + value / len(self._objective_terms)
        return loss, terms

    def loss(self, model, guide, *args, **kwargs) -> float:
        r""":math:`-\mathcal A` as a float (the negative partition-free bound; not a negative ELBO).

        :param model: the model.
        :param guide: the guide.
        :param args: the model's and guide's arguments.
        :param kwargs: the model's and guide's keyword arguments.
        """
        return torch_item(self.differentiable_loss(model, guide, *args, **kwargs))
