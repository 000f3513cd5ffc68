"""Divergence guards shared by every objective: stop (or skip) a step whose loss or gradient is not finite
before any parameter is touched."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
from pyro import poutine

ON_NONFINITE = ("raise", "skip")


class DivergenceError(FloatingPointError):
    """Raised by an objective when a loss term or a gradient is NaN or infinite; no parameter has been
    updated when it is raised."""


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


def check_terms(objective: str, terms: dict[str, torch.Tensor], hint: str = "") -> None:
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
