"""A wake-sleep start for amortized guides with an exact density (Hinton et al. 1995), then any objective."""

from __future__ import annotations

import torch
from pyro import poutine
from pyro.infer import ELBO, Trace_ELBO
from pyro.infer.enum import get_importance_trace

from pyro_diffvi.guides.protocols import guide_parts
from pyro_diffvi.infer.guard import GuardedObjective, check_on_nonfinite
from pyro_diffvi.util import check_positive_int, trace_until


def model_log_joint(elbo: ELBO, model, guide, args: tuple, kwargs: dict) -> torch.Tensor:
    r""":math:`\mathbb E_q[\log p_\theta(x, z)]` at draws of ``guide`` held fixed (``elbo.num_particles``
    particles, averaged): the wake phase's gradient for the model's parameters alone."""

    def fixed_guide(*guide_args, **guide_kwargs):
        with torch.no_grad():
            return guide(*guide_args, **guide_kwargs)

    total = 0.0
    for model_trace, _ in elbo._get_traces(model, fixed_guide, args, kwargs):
        total = total + model_trace.log_prob_sum() / elbo.num_particles
    return torch.as_tensor(total)


def sleep_draws(model, parts: list, args: tuple, kwargs: dict, *, latents_only: bool = False) -> poutine.Trace:
    """Set up the guide ``parts`` and draw from the model for a sleep phase, detached and unseen by any
    outer trace: ``(x, z)`` by ``poutine.uncondition``, or with ``latents_only`` ``z`` alone (the model
    stopped before its likelihood, at the parts' latent sites)."""
    for part in parts:
        part.setup(*args, **kwargs)
    with torch.no_grad(), poutine.block(hide_types=["sample"]):
        if latents_only:
            return trace_until(model, [name for part in parts for name in part.latent_names], *args, **kwargs)
        return poutine.trace(poutine.uncondition(model)).get_trace(*args, **kwargs)


def _exact_density_parts(guide) -> list:
    parts = guide_parts(guide)  # every part, nested AutoGuideLists included
    refused = [type(part).__name__ for part in parts if not getattr(part, "exact_density", False)]
    if refused:
        raise TypeError(
            f"WakeSleepStartLoss needs guides with an exact log density (GaussianGuide, FlowGuide), got {refused}; "
            "for a DiffusionGuide use DDVI_ELBO(warmup_steps=...)"
        )
    return parts


class WakeSleepStartLoss(GuardedObjective):
    r"""``objective`` after a start by the classic wake-sleep algorithm (Hinton et al. 1995).

    For the first ``warmup_steps`` training steps the loss is

    .. math::

        -\mathbb E_{p_\theta(x, z)}\big[\log q_\phi(z|x)\big] \;-\; \mathbb E_{q_\phi(z|x)}\big[\log p_\theta(x, z)\big]

    with :math:`(x, z)` drawn from the model (``poutine.uncondition``, detached) in the first term, the
    sleep phase that trains the guide by the forward KL, and the guide's draws held fixed in the second,
    the wake phase that trains the model (a VAE's decoder, a learned prior). Then ``objective``
    (default :class:`~pyro.infer.Trace_ELBO`) trains everything. The same start as
    :class:`~pyro_diffvi.infer.DDVI_ELBO`'s ``warmup_steps``, for guides whose density is exact
    (:class:`~pyro_diffvi.guides.GaussianGuide`, :class:`~pyro_diffvi.guides.FlowGuide`, or an
    ``AutoGuideList`` of them). Measured (docs/results.md): on a 16-D MNIST VAE with an
    :math:`\mathcal N(0, I)` prior, 100 steps of it raised the test ELBO after 470 steps from -145.2 to
    -136.9 nats for the Gaussian guide and from -137.3 to -135.1 for the IAF flow (3 seeds,
    ``benchmarks/mnist16.py``), but on the 2-D pinwheel VAE of the main demo it cost the Gaussian guide
    1.5 nats, so compare with a run without. Not a bound during the start: ``last_terms`` reports the
    two terms (``sleep``, the forward KL's guide term, and ``model``), then ``loss``.

    The step count is the objective's (``state_dict()``/``load_state_dict()`` to checkpoint it with the
    guide and optimizer); calls with gradients enabled count.

    Example:

    >>> import pyro, torch
    >>> from pyro.infer import SVI
    >>> from pyro.optim import Adam
    >>> from pyro_diffvi.datasets import make_problem
    >>> from pyro_diffvi.guides import GaussianGuide
    >>> from pyro_diffvi.infer import WakeSleepStartLoss
    >>> problem = make_problem("linear_gaussian_5d")
    >>> guide = GaussianGuide(problem.model, "z", "x")
    >>> loss = WakeSleepStartLoss(warmup_steps=2)
    >>> svi = SVI(problem.model, guide, Adam({"lr": 1e-3}), loss)
    >>> _ = [svi.step(problem.x) for _ in range(3)]
    >>> loss.state_dict()
    {'steps': 3}

    :param objective: the objective after the start (an ``ELBO``; default ``Trace_ELBO()``).
    :param warmup_steps: training steps of the wake-sleep start.
    :param num_particles: guide draws per datum in the wake phase's model term.
    :param on_nonfinite: ``"raise"`` or ``"skip"`` a step with a non-finite term or gradient
        (:class:`~pyro_diffvi.infer.guard.DivergenceError`).
    """

    def __init__(
        self, *, objective: ELBO | None = None, warmup_steps: int = 100, num_particles: int = 1,
        on_nonfinite: str = "raise",
    ) -> None:
        super().__init__(num_particles=check_positive_int("num_particles", num_particles))
        if objective is not None and not isinstance(objective, ELBO):
            raise TypeError(f"objective must be a pyro.infer.ELBO, got {type(objective).__name__}")
        self.objective = Trace_ELBO() if objective is None else objective
        self.warmup_steps = check_positive_int("warmup_steps", warmup_steps, minimum=0)
        self.on_nonfinite = check_on_nonfinite(on_nonfinite)
        self.steps = 0
        self.last_terms: dict[str, float] = {}

    def _get_trace(self, model, guide, args, kwargs):
        return get_importance_trace("flat", self.max_plate_nesting, model, guide, args, kwargs)

    def sleep_term(self, model, guide, *args, **kwargs) -> torch.Tensor:
        r""":math:`-\sum_n \log q_\phi(z_n|x_n)` at one draw :math:`(x_n, z_n)` of the model per datum."""
        parts = _exact_density_parts(guide)
        trace = sleep_draws(model, parts, args, kwargs)
        return -torch.stack([part.sleep_log_prob(trace) for part in parts]).sum()

    def _loss_and_terms(self, model, guide, args: tuple, kwargs: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.steps < self.warmup_steps:
            terms = {
                "sleep": self._guarded("sleep", self.sleep_term, model, guide, *args, **kwargs),
                "model": self._guarded("model", model_log_joint, self, model, guide, args, kwargs),
            }
            loss = terms["sleep"] - terms["model"]
        else:
            loss = self.objective.differentiable_loss(model, guide, *args, **kwargs)
            terms = {"loss": loss}
        self.last_terms = {name: float(value.detach()) for name, value in terms.items()}
        if torch.is_grad_enabled():
            self.steps += 1
        return loss, terms

    def state_dict(self) -> dict:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
