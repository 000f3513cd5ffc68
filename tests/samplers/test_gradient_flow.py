"""The gradient-flow ODE: its log density (Eq. 5.7) matches the closed form of a quadratic energy."""

import torch
from torch.distributions import MultivariateNormal

from pyro_diffvi.samplers import (
    gradient_flow,
    gradient_flow_log_prob,
)
from tests.samplers.energies import D64, A, quadratic, standard_normal


def test_ode_log_density_matches_the_closed_form_of_a_quadratic_energy():
    # x' = -A x  =>  x_T = M x_0 with M = exp(-A T); x_0 ~ N(0, I)  =>  x_T ~ N(0, M M^T) (a linear flow),
    # and log p_T(x_T) = log p_0(x_0) - log det M = log p_0(x_0) + T tr A (Eq. 5.7 with tr Hess E = tr A).
    time = 0.7
    M = torch.linalg.matrix_exp(-A * time)
    exact = MultivariateNormal(torch.zeros(2, dtype=D64), M @ M.T)
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=D64)
    res = gradient_flow_log_prob(quadratic, x, standard_normal(), time=time, num_steps=40)
    assert res.stderr is None
    err = (res.log_prob - exact.log_prob(x)).abs().max().item()
    assert err < 1e-4, err  # RK4 with 40 steps: measured 6.7e-6
    assert torch.allclose(res.initial, x @ torch.linalg.inv(M).T, atol=1e-6)
    # forward: samples x_T = M x_0 and the log-density change T tr A
    x0 = torch.randn(50, 2, generator=torch.Generator().manual_seed(1), dtype=D64)
    xT, log_det = gradient_flow(quadratic, x0, time=time, num_steps=40, with_log_det=True)
    assert torch.allclose(xT, x0 @ M.T, atol=1e-8)
    assert torch.allclose(log_det, torch.full((50,), time * A.trace().item(), dtype=D64), atol=1e-10)
    # the forward density of the samples equals the backward one at the same points
    back = gradient_flow_log_prob(quadratic, xT, standard_normal(), time=time, num_steps=40).log_prob
    assert torch.allclose(standard_normal().log_prob(x0) + log_det, back, atol=1e-8)
