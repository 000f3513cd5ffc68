"""Noise-free Langevin dynamics (Xiao 2022, Ch. 5): densities against closed forms and quadrature, the sampler's
draws and scores (RK4's convergence order is in tests/ops/test_ode.py, the Hutchinson estimator in
tests/ops/test_hessian.py)."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from pyro_diffvi.distributions import EnergyDistribution
from pyro_diffvi.ops import odeint_fixed
from pyro_diffvi.samplers import (
    NoiseFreeSampler,
    gradient_flow,
    gradient_flow_log_prob,
    noise_free_langevin,
    noise_free_langevin_log_prob,
)
from tests.samplers.energies import D64, A, mlp_energy, quadratic, standard_normal


def test_discrete_noise_free_density_matches_the_closed_form_of_a_quadratic_energy():
    # x_{k+1} = (I - h A) x_k  =>  x_K = B x_0, B = (I - h A)^K, x_K ~ N(0, B B^T)
    h, k = 0.1, 7
    B = torch.linalg.matrix_power(torch.eye(2, dtype=D64) - h * A, k)
    exact = MultivariateNormal(torch.zeros(2, dtype=D64), B @ B.T)
    x0 = torch.randn(40, 2, generator=torch.Generator().manual_seed(2), dtype=D64)
    xK, log_det = noise_free_langevin(quadratic, x0, num_steps=k, step_size=h, with_log_det=True)
    assert torch.allclose(xK, x0 @ B.T, atol=1e-12)
    assert torch.allclose(standard_normal().log_prob(x0) - log_det, exact.log_prob(xK), atol=1e-10)
    res = noise_free_langevin_log_prob(quadratic, xK, standard_normal(), num_steps=k, step_size=h, tol=1e-13)
    assert torch.allclose(res.log_prob, exact.log_prob(xK), atol=1e-9)
    # Euler's solution of the ODE is the same map
    assert torch.allclose(gradient_flow(quadratic, x0, time=k * h, num_steps=k, method="euler"), xK, atol=1e-12)


def test_densities_of_a_nonlinear_energy_integrate_to_one_by_quadrature():
    # no closed form: the ODE density (Eq. 5.7) and the discrete density (Eq. 5.9) each integrate to 1
    # by the midpoint rule on a box holding all but ~1e-6 of the mass (the base is N(0, I) and the flow contracts)
    energy = mlp_energy(2, seed=3)
    n, lim = 160, 5.0
    h = 2 * lim / n
    axis = -lim + h * (torch.arange(n, dtype=D64) + 0.5)
    points = torch.cartesian_prod(axis, axis)
    ode = gradient_flow_log_prob(energy, points, standard_normal(), time=0.5, num_steps=20).log_prob
    mass_ode = (ode.exp().sum() * h * h).item()
    discrete = noise_free_langevin_log_prob(energy, points, standard_normal(), num_steps=5, step_size=0.1).log_prob
    mass_discrete = (discrete.exp().sum() * h * h).item()
    assert abs(mass_ode - 1) < 1e-5, mass_ode  # measured 1 - 4e-11
    assert abs(mass_discrete - 1) < 1e-5, mass_discrete  # measured 1 + 2e-8
    # the two densities differ (different maps), but the discrete density of forward samples is the
    # inverse-map density at those samples
    x0 = torch.randn(30, 2, generator=torch.Generator().manual_seed(4), dtype=D64)
    xK, log_det = noise_free_langevin(energy, x0, num_steps=5, step_size=0.1, with_log_det=True)
    res = noise_free_langevin_log_prob(energy, xK, standard_normal(), num_steps=5, step_size=0.1, tol=1e-13)
    assert torch.allclose(res.initial, x0, atol=1e-9)
    assert torch.allclose(res.log_prob, standard_normal().log_prob(x0) - log_det, atol=1e-9)


def test_sampler_option_draws_and_scores_its_own_samples():
    torch.manual_seed(0)
    sampler = NoiseFreeSampler(num_steps=10, step_size=0.05, method="rk4")
    assert sampler.time == pytest.approx(0.5)
    d = EnergyDistribution(quadratic, (2,), sampler=sampler, dtype=D64)
    x = d.sample((20000,))
    M = torch.linalg.matrix_exp(-A * 0.5)
    cov = torch.cov(x.T)
    # sample covariance of 20000 draws: SE of each entry below 0.01 x its scale
    assert torch.allclose(cov, M @ M.T, atol=0.02), cov
    lp = sampler.log_prob(quadratic, x[:10]).log_prob
    exact = MultivariateNormal(torch.zeros(2, dtype=D64), M @ M.T).log_prob(x[:10])
    assert torch.allclose(lp, exact, atol=1e-5)
    euler = NoiseFreeSampler(num_steps=5, step_size=0.1, method="euler", base_distribution="uniform", init_scale=2.0)
    x0 = euler.base(2, dtype=D64).sample((7,))
    assert torch.allclose(euler.run(quadratic, x0), noise_free_langevin(quadratic, x0, num_steps=5, step_size=0.1))
    lp = euler.log_prob(quadratic, euler.run(quadratic, x0)).log_prob
    B = torch.linalg.matrix_power(torch.eye(2, dtype=D64) - 0.1 * A, 5)
    assert torch.allclose(lp, torch.full((7,), -2 * math.log(4.0) - torch.linalg.slogdet(B)[1].item(), dtype=D64))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="method"):
        NoiseFreeSampler(method="dopri5")
    with pytest.raises(ValueError, match="base_distribution"):
        NoiseFreeSampler(base_distribution="laplace")
    with pytest.raises(ValueError, match="num_steps"):
        odeint_fixed(lambda t, y: y, torch.ones(1), t0=0.0, t1=1.0, num_steps=0)
    with pytest.raises(ValueError, match="trace"):
        gradient_flow_log_prob(quadratic, torch.zeros(1, 2, dtype=D64), standard_normal(), time=1.0, num_steps=2,
                               trace="skilling")
    with pytest.raises(ValueError, match="num_probes"):
        gradient_flow_log_prob(quadratic, torch.zeros(1, 2, dtype=D64), standard_normal(), time=1.0, num_steps=2,
                               trace="hutchinson", num_probes=1)
    with pytest.raises(ValueError, match="init"):
        gradient_flow(quadratic, torch.zeros(2), time=1.0, num_steps=2)
    with pytest.raises(RuntimeError, match="step_size"):  # h * Lip(grad E) = 0.7 * 2.28 > 1: not invertible
        noise_free_langevin_log_prob(quadratic, torch.ones(1, 2, dtype=D64), standard_normal(), num_steps=1,
                                     step_size=0.7, max_iter=50)
    with pytest.raises(ValueError, match="hutchinson"):
        NoiseFreeSampler().log_prob(quadratic, torch.zeros(1, 2, dtype=D64), trace="hutchinson")


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_a_misspelt_trace_is_named_as_itself(method):
    # Issue 25 case 21: trace='exactt' under method='euler' was reported as 'hutchinson'.
    with pytest.raises(ValueError, match="trace must be 'exact' or 'hutchinson', got 'exactt'"):
        NoiseFreeSampler(method=method).log_prob(quadratic, torch.zeros(1, 2, dtype=D64), trace="exactt")
