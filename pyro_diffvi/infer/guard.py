"""Divergence guards shared by every objective: stop (or skip) a step whose loss or gradient is not finite
before any parameter is touched."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from pyro import poutine
from pyro.infer.elbo import ELBO, ELBOModule
from pyro.infer.util import torch_item
from torch import Tensor, nn

from pyro_diffvi.errors import DivergenceError

ON_NONFINITE = ("raise", "skip")


def check_on_nonfinite(value: str) -> str:
    """Validate an objective's ``on_nonfinite`` argument."""
    if value not in ON_NONFINITE:
        raise ValueError(f"on_nonfinite must be one of {ON_NONFINITE}, got {value!r}")
    return value


def nonfinite_terms(terms: dict[str, torch.Tensor]) -> list[str]:
    """Names of the terms whose (summed) value is NaN or infinite, with one host synchronization."""
    if not terms:
        return []
    values = torch.stack([torch.as_tensor(t).detach().sum().to(torch.float64).cpu() for t in terms.values()])
    return [name for name, ok in zip(terms, torch.isfinite(values).tolist()) if not ok]


def check_terms(objective: str, terms: dict[str, torch.Tensor], *, hint: str = "") -> None:
    """Raise :class:`DivergenceError` naming every non-finite term of ``objective``'s loss."""
    bad = nonfinite_terms(terms)
    if bad:
        raise DivergenceError(
            f"{objective}: non-finite loss term(s) {bad} (values "
            f"{ {k: float(torch.as_tensor(terms[k]).detach().sum()) for k in bad} }); no parameter was updated. "
            "Typical causes: a learning rate too large, NaN/inf data, a prior whose draws overflow the dtype. "
            + hint
        )


def nonfinite_gradients(params: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the parameters whose gradient has a NaN or infinite entry, with one host synchronization."""
    named = [(n, p.grad) for n, p in params if p.grad is not None]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(g).all() for _, g in named]).tolist()
    return [n for (n, _), ok in zip(named, finite) if not ok]


@contextmanager
def captured_params() -> Iterator[dict[str, torch.Tensor]]:
    """Record the (unconstrained) Pyro parameters used inside the block, by name, as ``SVI.step`` does."""
    params: dict[str, torch.Tensor] = {}
    with poutine.trace(param_only=True) as tracer:
        yield params
    for name, site in tracer.trace.nodes.items():
        params[name] = site["value"].unconstrained()


def guard_gradients(objective: str, params: dict[str, torch.Tensor], on_nonfinite: str, terms: str) -> bool:
    """After a backward pass: with ``on_nonfinite="raise"`` raise :class:`DivergenceError` naming the
    parameters with non-finite gradients; with ``"skip"`` drop every gradient of the step (so the
    optimizer leaves all parameters alone) and warn. Returns ``True`` if the step is clean."""
    bad = nonfinite_gradients(params.items())
    if not bad:
        return True
    return skip_or_raise(
        objective, on_nonfinite, params, f"non-finite gradient(s) of {bad[:5]}{'...' if len(bad) > 5 else ''} "
        f"({len(bad)} parameter(s); loss terms: {terms})"
    )


def skip_or_raise(objective: str, on_nonfinite: str, params: dict[str, torch.Tensor], what: str) -> bool:
    """Raise :class:`DivergenceError`, or (``on_nonfinite="skip"``) clear the gradients and warn."""
    if on_nonfinite == "raise":
        raise DivergenceError(
            f"{objective}: {what}; no parameter was updated. Lower the learning rate, clip gradients "
            "(pyro.optim.ClippedAdam), check the data, or pass on_nonfinite='skip' to skip such batches."
        )
    for p in params.values():
        p.grad = None
    warnings.warn(f"{objective}: {what}; the step was skipped (on_nonfinite='skip')", RuntimeWarning)
    return False


class ObjectiveModule(ELBOModule):
    """:class:`pyro.infer.elbo.ELBOModule` that also holds an objective's own modules (an adversarial
    flow, discriminators), so that ``module.parameters()`` hands them to a plain torch optimizer.

    Objectives that build such modules lazily build them on the first call: call the module once
    (``loss_fn(x)``) before creating the optimizer, as with Pyro's autoguides.

    :param model: the model (an ``nn.Module`` for its parameters to be included).
    :param guide: the guide (likewise).
    :param elbo: the objective.
    :param objective_modules: a container (e.g. ``nn.ModuleDict``) of the objective's modules, filled in
        place as they are built.
    """

    def __init__(self, model, guide, elbo, objective_modules: nn.Module) -> None:
        super().__init__(model, guide, elbo)
        self.objective_modules = objective_modules


class GuardedObjective(ELBO):
    """Base of objectives whose loss is a sum of named terms: the divergence guard of
    :mod:`pyro_diffvi.infer.guard` (``on_nonfinite``) in :meth:`differentiable_loss` and
    :meth:`loss_and_grads`, and an :class:`ObjectiveModule` from ``objective(model, guide)``.

    Subclasses set ``self.on_nonfinite`` (validated by
    :func:`~pyro_diffvi.infer.guard.check_on_nonfinite`) and implement ``_loss_and_terms(model, guide,
    args, kwargs) -> (loss, {term name: value})``; those with modules of their own override
    ``_objective_modules``.
    """

    on_nonfinite: str = "raise"
    _divergence_hint: str = ""  # appended to the error of a non-finite term

    def _loss_and_terms(self, model, guide, args, kwargs) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def _term_hint(self, term: str) -> str:
        """What to do about a divergence of ``term`` (appended to its error)."""
        return self._divergence_hint or "Lower the learning rate or check the data."

    def _guarded(self, term: str, compute, *args, nan=None, **kwargs):
        """``compute(*args, **kwargs)``, where a distribution refusing non-finite parameters (Pyro's validation
        error) is a divergence of ``term``: a :class:`DivergenceError` naming it, or with
        ``on_nonfinite="skip"`` the value ``nan`` (default a NaN scalar), which the step then drops."""
        try:
            return compute(*args, **kwargs)
        except ValueError as error:
            if "found invalid values" not in str(error):
                raise
            if self.on_nonfinite == "raise":
                raise DivergenceError(
                    f"{type(self).__name__}: non-finite loss term(s) ['{term}']: a distribution got non-finite "
                    f"parameters ({str(error).splitlines()[0]}); no parameter was updated. {self._term_hint(term)}"
                ) from error
            return torch.tensor(math.nan) if nan is None else nan

    def _objective_modules(self) -> nn.Module:
        return nn.ModuleDict()

    def __call__(self, model, guide) -> ObjectiveModule:
        """An ``nn.Module`` computing :meth:`differentiable_loss` (Pyro's ``ELBOModule``) whose
        ``parameters()`` include the objective's own modules; when the objective builds them lazily,
        call it once before creating the optimizer."""
        return ObjectiveModule(model, guide, self, self._objective_modules())

    def loss(self, model, guide, *args, **kwargs) -> float:
        """The loss as a float, evaluated without gradients (so not a training step)."""
        with torch.no_grad():
            return torch_item(self.differentiable_loss(model, guide, *args, **kwargs))

    def differentiable_loss(self, model, guide, *args, **kwargs) -> Tensor:
        """The loss as a differentiable tensor (see the class docstring for its value and gradient);
        raises :class:`~pyro_diffvi.infer.guard.DivergenceError` naming a non-finite term unless
        ``on_nonfinite="skip"`` (then the non-finite value is returned)."""
        loss, terms = self._loss_and_terms(model, guide, args, kwargs)
        if self.on_nonfinite == "raise":
            check_terms(type(self).__name__, terms, hint=self._divergence_hint)
        return loss

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """Backpropagate the loss and return its value. A non-finite term (before the backward pass) or
        gradient (after it) raises :class:`~pyro_diffvi.infer.guard.DivergenceError`, or with
        ``on_nonfinite="skip"`` drops every gradient of the step and warns; either way before the
        optimizer touches any parameter."""
        name = type(self).__name__
        with captured_params() as params:
            loss, terms = self._loss_and_terms(model, guide, args, kwargs)
        bad = nonfinite_terms(terms)
        if bad:
            if self.on_nonfinite == "raise":
                check_terms(name, terms, hint=self._divergence_hint)
            skip_or_raise(name, self.on_nonfinite, params, f"non-finite loss term(s) {bad}")
            return torch_item(loss)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        guard_gradients(name, params, self.on_nonfinite, ", ".join(terms))
        return torch_item(loss)
