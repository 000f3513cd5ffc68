"""odeint_fixed: RK4 converges at fourth order, Euler at first."""

import math

import torch

from pyro_diffvi.ops import odeint_fixed

D64 = torch.float64

A = torch.tensor([[2.0, 0.6], [0.6, 1.0]], dtype=D64)  # symmetric positive definite


def test_rk4_has_fourth_order_and_euler_first_order_convergence():
    # y' = -A y, y(1) = exp(-A) y0: the global error falls 2^p-fold per halving of the step
    y0 = torch.tensor([[1.0, -2.0]], dtype=D64)
    exact = y0 @ torch.linalg.matrix_exp(-A).T
    for method, order, steps in (("rk4", 4, (4, 8, 16, 32)), ("euler", 1, (64, 128, 256, 512))):
        errors = [(odeint_fixed(lambda t, y: -y @ A.T, y0, t0=0.0, t1=1.0, num_steps=n, method=method) - exact)
                  .abs().max().item() for n in steps]
        orders = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
        assert all(abs(o - order) < 0.2 for o in orders[1:]), (method, orders)  # rk4 4.31, 4.15, 4.07
    # a time-dependent right-hand side (y' = cos t, y(pi/2) = 1) and a backward solve
    y = odeint_fixed(lambda t, y: torch.full_like(y, math.cos(t)), torch.zeros(1, dtype=D64), t0=0.0,
                     t1=math.pi / 2, num_steps=20)
    assert abs(y.item() - 1) < 1e-6
    back = odeint_fixed(lambda t, y: -y @ A.T, exact, t0=1.0, t1=0.0, num_steps=64)
    assert torch.allclose(back, y0, atol=1e-8)
