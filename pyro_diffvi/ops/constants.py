"""Numerical constants shared across the package."""

from __future__ import annotations

import math

__all__ = ["LOG_2PI"]

LOG_2PI = math.log(2 * math.pi)
r""":math:`\log 2\pi`, the normalizer of a standard normal density per dimension (times -1/2)."""
