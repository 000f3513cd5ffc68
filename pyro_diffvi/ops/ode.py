"""Fixed-step ODE solvers (classical Runge-Kutta and Euler) for tensors and tuples of tensors."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from pyro_diffvi.util import check_positive_int

__all__ = ["METHODS", "State", "check_method", "odeint_fixed"]

State = Tensor | Sequence[Tensor]
"""An ODE state: a tensor, or a tuple of tensors (an augmented state such as ``(x, log_det)``)."""

METHODS = ("rk4", "euler")


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def odeint_fixed(
    func: Callable[[float, tuple[Tensor, ...]], tuple[Tensor, ...]] | Callable[[float, Tensor], Tensor],
    init: State,
    *,
    t0: float,
    t1: float,
    num_steps: int,
    method: str = "rk4",
) -> State:
    r"""Solve :math:`y' = f(t, y)`, :math:`y(t_0) = y_0` to :math:`t_1` with ``num_steps`` equal steps.

    ``method="rk4"``: the classical fourth-order Runge-Kutta scheme, with :math:`\Delta = (t_1 - t_0)/n`,

    .. math::

        k_1 = f(t, y),\; k_2 = f(t + \tfrac\Delta2, y + \tfrac\Delta2 k_1),\;
        k_3 = f(t + \tfrac\Delta2, y + \tfrac\Delta2 k_2),\; k_4 = f(t + \Delta, y + \Delta k_3),\quad
        y \leftarrow y + \tfrac\Delta6 (k_1 + 2k_2 + 2k_3 + k_4),

    global error :math:`O(\Delta^4)`; ``method="euler"``: :math:`y \leftarrow y + \Delta f(t, y)`, error
    :math:`O(\Delta)`. :math:`t_1 < t_0` integrates backwards. Everything is vectorized over the batch
    and differentiable through autograd when ``f`` is. The fixed-step solver stands in for the adaptive
    Dormand-Prince solver of Xiao (2022), Sec. 5.5.3 (Eq. 5.6's "ODESolve"; Chen et al., 2018).

    :param func: ``f(t, y)``; ``y`` a tensor, or a tuple of tensors (then ``f`` returns a tuple of the
        same shapes: an augmented state such as ``(x, log_det)``).
    :param init: the initial state (tensor or tuple of tensors).
    :param t0: initial time.
    :param t1: final time.
    :param num_steps: number of steps ``>= 1``.
    :param method: ``"rk4"`` or ``"euler"``.
    :return: :math:`y(t_1)`, of the structure of ``init``.

    Example (:math:`y' = -y`, :math:`y(1) = e^{-1}`):

    >>> import math, torch
    >>> from pyro_diffvi.ops import odeint_fixed
    >>> y = odeint_fixed(lambda t, y: -y, torch.ones(1, dtype=torch.float64), t0=0.0, t1=1.0, num_steps=10)
    >>> abs(y.item() - math.exp(-1)) < 1e-6
    True
    """
    num_steps = check_positive_int("num_steps", num_steps)
    check_method(method)
    if not (math.isfinite(float(t0)) and math.isfinite(float(t1))):
        raise ValueError(f"t0 and t1 must be finite, got t0={t0!r}, t1={t1!r}")
    single = torch.is_tensor(init)
    y = (init,) if single else tuple(init)
    if not y or not all(torch.is_tensor(v) for v in y):
        raise TypeError("init must be a tensor or a non-empty tuple of tensors")

    def f(t: float, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        out = func(t, state[0]) if single else func(t, state)
        out = (out,) if single else tuple(out)
        if len(out) != len(state) or any(o.shape != s.shape for o, s in zip(out, state)):
            raise ValueError("func(t, y) must return derivatives of the same structure and shapes as y")
        return out

    def axpy(state, a: float, k):
        return tuple(s + a * d for s, d in zip(state, k))

    dt = (float(t1) - float(t0)) / num_steps
    t = float(t0)
    for _ in range(num_steps):
        k1 = f(t, y)
        if method == "euler":
            y = axpy(y, dt, k1)
        else:
            k2 = f(t + dt / 2, axpy(y, dt / 2, k1))
            k3 = f(t + dt / 2, axpy(y, dt / 2, k2))
            k4 = f(t + dt, axpy(y, dt, k3))
            y = tuple(s + (dt / 6) * (a + 2 * b + 2 * c + d) for s, a, b, c, d in zip(y, k1, k2, k3, k4))
        t += dt
    return y[0] if single else y
