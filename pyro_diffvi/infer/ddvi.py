r"""The regularized wake-sleep objective of DDVI (DDVI paper, Sec. 3.3-3.4, Eqs. 5-9)."""

from __future__ import annotations

import math

import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO
from pyro.infer.enum import get_importance_trace
from pyro.infer.util import is_validation_enabled
from pyro.util import check_if_enumerated

from pyro_diffvi.guides.protocols import LabelGuide, WakeSleepGuide, guide_parts
from pyro_diffvi.infer.alternatives import AlternativeTerms, alternative_terms, plate_nesting
from pyro_diffvi.infer.guard import GuardedObjective, check_on_nonfinite
from pyro_diffvi.infer.wake_sleep import model_log_joint, sleep_draws
from pyro_diffvi.util import check_positive_float, check_positive_int

SLEEP_VARIANTS = ("simplified", "wake-sleep", "none")
MEASURED_CHAIN_WEIGHTS = (1.0, 0.3)
"""The default ``(rws_weight, chain_elbo_weight)`` for a measuring ``DiffusionGuide`` (``selection="measured"``)."""

_SLEEP_HINT = (
    "The sleep term trains on the model's own draws of the latents: a prior whose draws overflow the dtype "
    "(e.g. LogNormal(0, 30)) makes it non-finite; use a tighter prior, float64, or sleep='none'."
)


class DDVI_ELBO(GuardedObjective):
    r"""The DDVI objective (Eq. 9 and Sec. 3.3),

    .. math::

        \mathcal L_{\mathrm{rec}} + \beta_{\mathrm{reg}}\mathcal L_{\mathrm{reg}}
            + \beta_{\mathrm{diff}}\mathcal L_{\mathrm{diff}}.

    *Wake term.* For a guide whose sites carry :math:`\log q(y, z|x) - \log r(y|z)` (a
    :class:`~pyro_diffvi.guides.DiffusionGuide`), the Markovian ELBO (Eq. 5) splits as

    * :math:`\mathcal L_{\mathrm{rec}} = \mathbb E_q[\log p_\theta(x|z)]`: the log densities of the model's
      observed sites (factors included);
    * :math:`\mathcal L_{\mathrm{reg}} = \mathbb E_q[\log p(z) + \log r(y|z) - \log q(y, z|x)]`: the model's
      latent sites minus the guide's sites.

    With ``reg_weight = 1`` their sum is the ELBO, a lower bound on :math:`\log p(x)`.

    *Sleep term* (``sleep_weight`` times :math:`\mathcal L_{\mathrm{diff}}`, Eq. 9, noise-prediction form of
    Sec. 3.4):

    .. math::

        \mathbb E_{t,\epsilon}\|\epsilon
        - \epsilon_\phi(\sqrt{\bar\alpha_t} z + \sqrt{1-\bar\alpha_t}\epsilon, t, c)\|^2

    at draws :math:`z` from the model, computed by the guide's ``sleep_loss``; data-plate scaling as in
    the wake term. Gradients of this term reach only the guide (the draws are detached).

    * ``sleep="wake-sleep"`` (default): :math:`(x, z) \sim p_\theta` by ``poutine.uncondition(model)``; the
      denoiser reads the encoding of the simulated :math:`x`, and the head term (``sleep_head=True``)
      trains the Gaussian head too: for a standardized chain the head's forward KL
      :math:`-\log\mathcal N(z; \text{loc}, \text{scale}^2)`, which keeps the standardized draws of order
      one (without it the sleep draws of a mode-seeking head lie far out and training diverged on the
      ring, banana and sign-symmetric problems of :mod:`pyro_diffvi.datasets.posteriors`); for the
      paper's chain the KL term :math:`\mathrm{KL}(r(y_T|z)\,\|\,q_\phi(y_T|x))` of Eq. 9.
    * ``sleep="simplified"``: :math:`z \sim p(z)` (the model run without a guide, its observations
      kept); the denoiser does not see :math:`x` (context ``None``; a conditional denoiser reads zeros).
      For the algorithm exactly as in the paper use ``DiffusionGuide(..., conditional=False,
      standardize=False)`` (a standardized chain needs the simulated ``x`` and refuses this variant).
    * ``sleep="none"``: the unregularized DDVI (the Markovian ELBO only).

    *Warm-up* (sleep first, ``warmup_steps = N``). For the first ``N`` training steps the guide learns
    from the sleep term alone and a learned model (a VAE's decoder, a learned prior) from the wake term
    at the guide's draws held fixed (:meth:`model_term`), as in Hinton's wake-sleep algorithm; then every
    parameter trains on the objective above. The bound is not evaluated in the warm-up (``last_terms``
    reports ``nan`` for ``elbo``, ``rec`` and ``reg``). Guide parts without a sleep term (a classifier,
    an ``AutoNormal`` of a global latent) train in the warm-up only by the classification term, and a
    call in which a label part enumerates its label leaves the model untrained too. Measured
    (docs/results.md): on a 16-D MNIST VAE with an :math:`\mathcal N(0, I)` prior, ``warmup_steps=100``
    raised the test ELBO after 470 steps from -145.6 to -136.1 nats (3 seeds; an IAF flow guide:
    -137.3; a Gaussian guide given the same start by :class:`~pyro_diffvi.infer.WakeSleepStartLoss`,
    -136.9); but on the 2-D pinwheel VAE of the main demo it cost 1.8 nats, with a learned mixture prior
    it merged two clusters on 1-2 seeds of 6, and on fixed models it is no reliable cure for a chain held
    at its Gaussian head (``four_modes`` took off in 3 of 6 runs with 200 steps, 6 of 6 with 500). It is
    therefore off by default (the paper's Algorithm 1) and recommended for VAEs with a fixed prior. The
    step count lives in the guide (``guide.training_steps``, saved by its ``state_dict``), so a resumed
    run continues the schedule, a loss object can serve several guides, and every route counts alike:
    ``SVI.step``, the module of ``ELBO.__call__`` and any call of :meth:`differentiable_loss` with
    gradients enabled.

    *Chain terms* (a :class:`~pyro_diffvi.guides.DiffusionGuide` with ``selection="measured"``; the
    mechanism of docs/guide.md, "Safe by default"). The guide holds a Gaussian head and a chain that
    starts exactly at it, and emits whichever its measured bound favours. In each call the guide also draws,
    at the real :math:`x`, one draw of the head, one of the averaged chain and :math:`K` =
    ``num_rws_particles`` draws :math:`y^k_{0:T}` of the trained chain; the model's log joint at all of them
    takes one vectorized model call (:func:`~pyro_diffvi.infer.alternatives.local_log_joint`). From them:

    * the head's own ELBO :math:`\mathbb E_{q_h}[\log p(x, z) - \log q_h(z|x)]`, added to the objective while
      the chain is emitted, so that the fallback keeps training as a Gaussian guide would;
    * the chain's log weights :math:`\log w_k = \log p(x, z^k) + \log r(y^k_{1:T}|z^k) - \log q(y^k_{0:T}|x)`:
      their mean is the chain's Markovian bound (weight ``chain_elbo_weight``: reverse KL, sharpening at the
      observed data), and their self-normalized exponentials :math:`\bar w_k` weight the denoising loss at
      the chain's own draws (weight ``rws_weight``): the wake-phase :math:`q` update of reweighted wake-sleep
      (Bornschein & Bengio 2015; Le et al. 2019, Sec. 3) on DDVI's extended space, a forward KL at the real
      :math:`x` that covers modes where the reverse KL collapses them;
    * the lead of the emitted chain's bound over the head's, per data point, recorded by the guide's
      :class:`~pyro_diffvi.guides.BoundSelector` (its signal for the handover from head to chain).

    The model's parameters learn only from the emitted posterior's bound (the other draws pass
    :data:`~pyro_diffvi.infer.alternatives.MODEL_GRADIENT_SHARE` of their gradient to them). The number
    reported as ``elbo`` is the bound of the emitted posterior, so it is a true ELBO whatever trains the
    chain. For a guide with ``selection="chain"`` (the default) these terms are off unless ``rws_weight`` or
    ``chain_elbo_weight`` is set.

    After each evaluation ``self.last_terms`` holds floats ``elbo`` (the ELBO estimate of this
    batch for the emitted posterior, averaged over particles), ``rec``, ``reg``, ``sleep`` (the denoising
    loss) and ``loss``; with chain terms also ``head`` and ``chain`` (the two bounds, summed over the batch),
    ``rws`` (the reweighted loss), ``lead`` (nats per data point) and ``ess`` (the weights' effective sample
    size, of :math:`K`).
    To evaluate the bound alone use ``-Trace_ELBO(num_particles=...).loss(model, guide, ...)`` on the
    same guide (or ``last_terms["elbo"]``).

    :param reg_weight: weight :math:`\beta_{\mathrm{reg}} > 0` of the prior-regularization term.
    :param sleep_weight: weight :math:`\beta_{\mathrm{diff}} \ge 0` of the sleep term.
    :param sleep: ``"simplified"``, ``"wake-sleep"`` or ``"none"``.
    :param sleep_head: include the Gaussian head's KL term in the wake-sleep variant.
    :param num_particles: particles of the wake term (the sleep term simulates one draw per datum).
    :param num_sleep_particles: draws of the noise level :math:`t` and noise :math:`\epsilon` per simulated
        draw in the sleep term (the guide's ``sleep_loss(..., num_particles=)``). The default 8 cuts the
        variance of the denoising loss, which comes mostly from the random noise level, at the cost of
        one small denoiser evaluation per draw and no extra simulation or encoding. Measured
        (docs/results.md): on ``four_modes`` of :mod:`pyro_diffvi.datasets.posteriors` the ELBO gap went
        from -0.55 to about -0.2 nats in half the runs (4 of 8; the others stay near the Gaussian guide's
        -0.7); on the main demo DDVI's lead over the Gaussian guide went from +0.45 to +1.00 nats (3 seeds);
        a step of the paper's MNIST VAE costs 3.1-3.4 Gaussian-guide steps against 2.7 with one draw.
        ``1`` is the paper's estimator.
    :param rws_weight: weight of the reweighted wake-sleep term (``0`` leaves it out); by default 1 for a
        measuring guide (``selection="measured"``) and 0 otherwise (:data:`MEASURED_CHAIN_WEIGHTS`).
    :param num_rws_particles: :math:`K`, the chain's draws per datum for the reweighted and chain-bound terms.
    :param chain_elbo_weight: weight of the trained chain's own Markovian bound at its :math:`K` draws (the
        emitted posterior's bound enters with weight 1; an emitted averaged chain has no trainable
        parameters, so that term then trains the model alone); by default 0.3 for a measuring guide, else 0.
    :param warmup_steps: number of initial training steps in which the guide learns from the sleep term
        alone and the model from :meth:`model_term` (needs a sleep term; counted by the guide's
        ``training_steps``; see *Warm-up* above).
    :param classification_weight: weight :math:`\alpha \ge 0` of the M2 classification term
        :math:`-\sum_i \log q(l_i|x_i)` on labelled data, for guides with a :class:`~pyro_diffvi.guides.LabelGuide` part
        (Kingma et al. 2014, Eq. 9; the DDVI paper's semi-supervised objective, Sec. 4.1).
    :param on_nonfinite: what a non-finite loss term (``rec``, ``reg``, ``sleep``) or gradient does:
        ``"raise"`` (default) a :class:`~pyro_diffvi.infer.guard.DivergenceError` naming it before any
        parameter is updated; ``"skip"`` a warning, and the step leaves every parameter unchanged.

    Other arguments are those of :class:`~pyro.infer.ELBO`.

    Example (a linear-Gaussian VAE; the loss is the negative ELBO plus the sleep term):

    >>> import math, pyro, pyro.distributions as dist, torch
    >>> from pyro.infer import SVI, Trace_ELBO
    >>> from pyro.optim import Adam
    >>> from pyro_diffvi.guides import DiffusionGuide
    >>> from pyro_diffvi.infer import DDVI_ELBO
    >>> def model(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    ...         pyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)
    >>> guide = DiffusionGuide(model, "z", "x", num_steps=5)
    >>> loss = DDVI_ELBO(sleep="wake-sleep")
    >>> svi = SVI(model, guide, Adam({"lr": 1e-3}), loss)
    >>> step_loss = svi.step(torch.randn(16, 2))
    >>> sorted(loss.last_terms)
    ['classification', 'elbo', 'loss', 'rec', 'reg', 'sleep']
    >>> all(math.isfinite(v) for v in loss.last_terms.values())
    True

    References: W. T. Piriyakulkij, Y. Wang, V. Kuleshov. *Denoising Diffusion Variational Inference:
    Diffusion Models as Expressive Variational Posteriors*. arXiv:2401.02739, 2024.
    """

    def __init__(
        self,
        *,
        reg_weight: float = 1.0,
        sleep_weight: float = 1.0,
        sleep: str = "wake-sleep",
        sleep_head: bool = True,
        num_particles: int = 1,
        num_sleep_particles: int = 8,
        rws_weight: float | None = None,
        num_rws_particles: int = 8,
        chain_elbo_weight: float | None = None,
        warmup_steps: int = 0,
        classification_weight: float = 0.0,
        on_nonfinite: str = "raise",
        max_plate_nesting: float = float("inf"),
        vectorize_particles: bool = False,
        strict_enumeration_warning: bool = True,
    ) -> None:
        if sleep not in SLEEP_VARIANTS:
            raise ValueError(f"sleep must be one of {SLEEP_VARIANTS}, got {sleep!r}")
        check_positive_float("reg_weight", reg_weight)
        check_positive_float("sleep_weight", sleep_weight, allow_zero=True)
        check_positive_int("warmup_steps", warmup_steps, minimum=0)
        check_positive_int("num_particles", num_particles)
        self.num_sleep_particles = check_positive_int("num_sleep_particles", num_sleep_particles)
        self.rws_weight = (
            None if rws_weight is None else check_positive_float("rws_weight", rws_weight, allow_zero=True)
        )
        self.num_rws_particles = check_positive_int("num_rws_particles", num_rws_particles)
        self.chain_elbo_weight = (
            None if chain_elbo_weight is None
            else check_positive_float("chain_elbo_weight", chain_elbo_weight, allow_zero=True)
        )
        if warmup_steps and (sleep == "none" or sleep_weight == 0):
            raise ValueError(
                "warmup_steps > 0 trains the sleep term alone: it needs sleep != 'none' and sleep_weight > 0"
            )
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=vectorize_particles,
            strict_enumeration_warning=strict_enumeration_warning,
        )
        self.reg_weight = float(reg_weight)
        self.sleep_weight = float(sleep_weight)
        self.sleep = sleep
        self.sleep_head = sleep_head
        self.warmup_steps = warmup_steps
        self.classification_weight = check_positive_float(
            "classification_weight", classification_weight, allow_zero=True
        )
        self._enumerated_elbo = TraceEnum_ELBO(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=vectorize_particles,
            strict_enumeration_warning=strict_enumeration_warning,
        )
        self.on_nonfinite = check_on_nonfinite(on_nonfinite)
        self.last_terms: dict[str, float] = {}
        self._divergence_hint = _SLEEP_HINT

    def _get_trace(self, model, guide, args, kwargs):
        model_trace, guide_trace = get_importance_trace("flat", self.max_plate_nesting, model, guide, args, kwargs)
        if is_validation_enabled():
            check_if_enumerated(guide_trace)
        return model_trace, guide_trace

    # ---- terms --------------------------------------------------------------------------------

    def wake_terms(self, model, guide, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Differentiable particle averages of :math:`\mathcal L_{\mathrm{rec}}` and
        :math:`\mathcal L_{\mathrm{reg}}` for the posterior the guide emits."""
        rec, reg, _ = self._wake(model, guide, args, kwargs)
        return rec, reg

    def _wake(self, model, guide, args: tuple, kwargs: dict):
        rec, reg, first = 0.0, 0.0, None
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            first = (guide_trace, plate_nesting(model_trace)) if first is None else first
            rec_p, reg_p = 0.0, 0.0
            for name, site in model_trace.nodes.items():
                if site["type"] != "sample":
                    continue
                if site["is_observed"]:
                    rec_p = rec_p + site["log_prob_sum"]
                else:
                    reg_p = reg_p + site["log_prob_sum"]
            for name, site in guide_trace.nodes.items():
                if site["type"] != "sample":
                    continue
                if not site["fn"].has_rsample:
                    raise ValueError(
                        f"DDVI_ELBO needs reparameterized guide sites; site '{name}' is not "
                        "(use TraceGraph_ELBO / TraceEnum_ELBO for discrete latents)"
                    )
                reg_p = reg_p - site["log_prob_sum"]
            rec = rec + rec_p / self.num_particles
            reg = reg + reg_p / self.num_particles
        return torch.as_tensor(rec), torch.as_tensor(reg), first

    def sleep_term(self, model, guide, *args, **kwargs) -> torch.Tensor:
        r"""The denoising loss :math:`-\mathcal L_{\mathrm{diff}}` (Eq. 9) at draws from the model, summed over data
        with the data plates' scale, of every part of ``guide`` that follows
        :class:`~pyro_diffvi.guides.WakeSleepGuide`."""
        return self._sleep(model, guide, args, kwargs)[0]

    def _sleep(self, model, guide, args: tuple, kwargs: dict, *, gaussian_heads: bool = False):
        parts = self._sleep_parts(guide)
        use_observed = self.sleep == "wake-sleep"
        trace = sleep_draws(model, parts, args, kwargs, latents_only=not use_observed)
        losses = [
            part.sleep_loss(
                trace, use_observed=use_observed, head=self.sleep_head, num_particles=self.num_sleep_particles
            )
            for part in parts
        ]
        if gaussian_heads and use_observed:  # the warm-up: an emitted Gaussian head learns by its forward KL
            losses += [-part.sleep_log_prob(trace) for part in parts if getattr(part, "exact_density", False)]
        return torch.stack(losses).sum(), trace

    def model_term(self, model, guide, *args, **kwargs) -> torch.Tensor:
        r""":math:`\mathbb E_{q}[\log p_\theta(x, z)]` at draws :math:`z` of the guide held fixed (particle
        average, :func:`~pyro_diffvi.infer.wake_sleep.model_log_joint`): the wake term's gradient for the
        model's parameters alone, which trains a learned model (a VAE's decoder, a learned prior) during
        the warm-up while the guide learns from the sleep term."""
        return model_log_joint(self, model, guide, args, kwargs)

    @staticmethod
    def _sleep_parts(guide) -> list[WakeSleepGuide]:
        parts = guide_parts(guide, protocol=WakeSleepGuide)
        if not parts:
            raise TypeError(
                f"the sleep term needs a guide with a sleep loss (a DiffusionGuide, alone or in an AutoGuideList; see "
                f"WakeSleepGuide), got {type(guide).__name__}; use sleep='none' or Trace_ELBO for other guides"
            )
        return parts

    # ---- ELBO interface -----------------------------------------------------------------------

    def _loss_and_terms(self, model, guide, args: tuple, kwargs: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        r"""The loss as a differentiable tensor,

        .. math::

            -(\mathcal L_{\mathrm{rec}} + \beta_{\mathrm{reg}}\mathcal L_{\mathrm{reg}})
                + \beta_{\mathrm{diff}}\,(-\mathcal L_{\mathrm{diff}}).

        In the warm-up the loss is the sleep term minus :meth:`model_term`. Each call
        with gradients enabled (``SVI.step``, ``ELBO.__call__``'s module, a training loop calling this
        method) counts one training step in the guide's ``training_steps``, which its ``state_dict``
        saves, so a resumed run continues the schedule where it stopped."""
        parts = guide_parts(guide, protocol=WakeSleepGuide)
        labels = guide_parts(guide, protocol=LabelGuide)
        if self.classification_weight > 0 and not labels:
            raise ValueError(
                f"classification_weight={self.classification_weight} needs a label guide (a ClassifierGuide in an "
                f"AutoGuideList) for its classification term, got {type(guide).__name__} with none; "
                "use classification_weight=0 for a guide without labels"
            )
        enumerated = any(part.enumerates(*args, **kwargs) for part in labels)
        training = torch.is_grad_enabled()
        warm = bool(parts) and min(part.training_steps for part in parts) < self.warmup_steps
        measured: dict[str, torch.Tensor] = {}
        if warm:
            sleep = self._guarded("sleep", lambda: self._sleep(model, guide, args, kwargs, gaussian_heads=True)[0])
            elbo = rec = reg = torch.full_like(sleep, math.nan)  # the bound is not evaluated in the warm-up
            loss = self.sleep_weight * sleep
            terms = {"sleep": sleep}
            if not enumerated:
                terms["model"] = self._guarded("model", self.model_term, model, guide, *args, **kwargs)
                loss = loss - terms["model"]
        else:
            collectors = [] if enumerated else [part for part in parts if self._collects(part)]
            for part in collectors if not self.vectorize_particles else []:
                part.request_alternatives(self.num_rws_particles)
            if enumerated:
                elbo = self._guarded("elbo", self.enumerated_elbo, model, guide, *args, **kwargs)
                rec = reg = torch.full_like(elbo, math.nan)  # the enumerated bound is not split
                loss = -elbo
                terms = {"elbo": elbo}
            else:
                nan = torch.tensor(math.nan)
                rec, reg, first = self._guarded(
                    "rec/reg", self._wake, model, guide, args, kwargs, nan=(nan, nan, None)
                )
                elbo = rec + reg
                loss = -(rec + self.reg_weight * reg)
                terms = {"rec": rec, "reg": reg}
                if collectors and self.vectorize_particles:
                    first = self._unvectorized_trace(guide, collectors, args, kwargs)
                for part in collectors:
                    alternatives = part.take_alternatives()
                    if alternatives is None or first is None:
                        continue
                    found = self._guarded(
                        "alternatives", alternative_terms, model, first[0], part, alternatives, args, kwargs,
                        max_plate_nesting=first[1],
                    )
                    if not isinstance(found, AlternativeTerms):  # a divergence skipped (on_nonfinite="skip")
                        loss = loss + found
                        continue
                    loss = loss + self._alternative_loss(part, found, terms, measured)
                    if training:
                        part.record_lead(found.lead)
            sleep = torch.zeros_like(loss)
            if self.sleep != "none" and self.sleep_weight > 0:
                sleep = self._guarded("sleep", self.sleep_term, model, guide, *args, **kwargs)
                loss = loss + self.sleep_weight * sleep
            terms["sleep"] = sleep
        classification = torch.zeros_like(loss)
        if self.classification_weight > 0 and labels:
            classification = torch.stack([part.classification_loss(*args, **kwargs) for part in labels]).sum()
            loss = loss + self.classification_weight * classification
            terms["classification"] = classification
        values = torch.stack([elbo, rec, reg, sleep, classification, loss]).detach().tolist()  # one host sync
        self.last_terms = dict(zip(("elbo", "rec", "reg", "sleep", "classification", "loss"), values))
        self.last_terms.update({key: float(value) for key, value in measured.items()})
        if training:
            for part in parts:
                part.training_steps += 1
                if hasattr(part, "update_average"):
                    part.update_average()
        return loss, terms

    def _unvectorized_trace(self, guide, collectors: list, args: tuple, kwargs: dict):
        """A guide trace outside the vectorized particle plate, which draws the collectors' alternatives (their
        values cannot share the particle dimension of the wake term's trace)."""
        for part in collectors:
            part.request_alternatives(self.num_rws_particles)
        return poutine.trace(guide).get_trace(*args, **kwargs), int(self.max_plate_nesting)

    def _collects(self, part) -> bool:
        """Whether ``part`` hands this objective draws of its posteriors (a DiffusionGuide with a head to train, a
        choice to measure or a chain trained by the reweighted or bound terms)."""
        if not hasattr(part, "request_alternatives"):
            return False
        return part.selection == "measured" or any(weight > 0 for weight in self._chain_weights(part))

    def _chain_weights(self, part) -> tuple[float, float]:
        """``rws_weight`` and ``chain_elbo_weight`` for ``part``, their defaults following its ``selection``."""
        rws, chain = MEASURED_CHAIN_WEIGHTS if part.selection == "measured" else (0.0, 0.0)
        return (rws if self.rws_weight is None else self.rws_weight,
                chain if self.chain_elbo_weight is None else self.chain_elbo_weight)

    def _alternative_loss(self, part, found, terms: dict, measured: dict) -> torch.Tensor:
        """The loss terms of one part's alternatives: the head's bound when the head is not emitted, the chain's
        share of its bound and its reweighted sleep loss."""
        rws_weight, chain_elbo_weight = self._chain_weights(part)
        loss = rws_weight * found.reweighted_sleep - chain_elbo_weight * found.chain_elbo
        terms["rws"] = terms.get("rws", 0.0) + found.reweighted_sleep
        terms["chain"] = terms.get("chain", 0.0) + found.chain_elbo
        if part.selection == "measured" and part.choice != "head":  # keep training the fallback
            loss = loss - found.head_elbo
            terms["head"] = terms.get("head", 0.0) + found.head_elbo
        measured["head"] = measured.get("head", 0.0) + found.head_elbo.detach()
        measured["chain"] = measured.get("chain", 0.0) + found.chain_elbo.detach()
        measured["rws"] = measured.get("rws", 0.0) + found.reweighted_sleep.detach()
        measured["lead"] = torch.tensor(found.lead)
        measured["ess"] = torch.tensor(found.effective_sample_size)
        return loss

    def enumerated_elbo(self, model, guide, *args, **kwargs) -> torch.Tensor:
        r"""The ELBO with the guide's enumerated labels summed out exactly (:class:`~pyro.infer.TraceEnum_ELBO`),
        for calls that leave a label latent; needs ``reg_weight = 1`` (the enumerated bound is not split)."""
        if self.reg_weight != 1:
            raise ValueError(
                "reg_weight != 1 needs the rec/reg split, which the enumerated bound of an unlabelled call lacks"
            )
        return -self._enumerated_elbo.differentiable_loss(model, guide, *args, **kwargs)

    def _term_hint(self, term: str) -> str:
        return _SLEEP_HINT if term == "sleep" else "Lower the learning rate or check the data."
