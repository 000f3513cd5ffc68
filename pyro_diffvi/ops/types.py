"""Type aliases shared across the package."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

__all__ = ["EnergyFn"]

EnergyFn = Callable[[Tensor], Tensor]
"""An energy callable ``energy_fn(z) -> E(z)``: states of shape ``batch + event_shape`` to energies of shape
``batch``."""
