"""Noise-free Langevin dynamics and the gradient-flow ODE (Xiao 2022, Ch. 5): densities against closed forms
and quadrature, RK4's convergence order, the Hutchinson estimator against the exact trace."""

import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

from pyro_diffvi.distributions import EnergyDistribution
from pyro_diffvi.ops import energy_grad_and_hessian_trace, energy_hessian, odeint_fixed
from pyro_diffvi.samplers import (
    NoiseFreeSampler,
    gradient_flow,
    gradient_flow_log_prob,
    noise_free_langevin,
    noise_free_langevin_log_prob,
)

D64 = torch.float64
A = torch.tensor([[2.0, 0.6], [0.6, 1.0]], dtype=D64)  # symmetric positive definite


def quadratic(x):
    """E(z) = z^T A z / 2: grad E = A z, Hessian A."""
    return 0.5 * ((x @ A) * x).sum(-1)


def standard_normal(dim=2):
    return Independent(Normal(torch.zeros(dim, dtype=D64), 1.0), 1)


def mlp_energy(dim: int, seed: int = 0, scale: float = 1.0):
    """A fixed smooth non-quadratic energy (tanh MLP plus a confining quadratic)."""
    gen = torch.Generator().manual_seed(seed)
    w1 = torch.randn(dim, 16, generator=gen, dtype=D64)
    w2 = torch.randn(16, generator=gen, dtype=D64) / 4

    def energy(x):
        return scale * (torch.tanh(x @ w1) @ w2 + 0.25 * x.pow(2).sum(-1))

    return energy


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


def test_hutchinson_trace_is_unbiased_within_its_standard_error():
    # 5-D non-quadratic energy: the mean of v^T H v over 4000 Rademacher probes vs the exact trace
    dim, num_probes = 5, 4000
    energy = mlp_energy(dim, seed=5)
    x = torch.randn(6, dim, generator=torch.Generator().manual_seed(6), dtype=D64)
    grad, exact = energy_grad_and_hessian_trace(energy, x)
    _, hessian = energy_hessian(energy, x)
    assert torch.allclose(exact, hessian.diagonal(dim1=-2, dim2=-1).sum(-1), atol=1e-12)
    probes = torch.randint(0, 2, (num_probes, 6, dim), generator=torch.Generator().manual_seed(7)).to(D64) * 2 - 1
    _, estimates = energy_grad_and_hessian_trace(energy, x, probes=probes)
    mean, se = estimates.mean(0), estimates.std(0) / math.sqrt(num_probes)
    z = ((mean - exact) / se).abs()
    assert (z < 4).all(), z  # 4 SE: a false failure has probability < 4e-4 for the 6 points
    assert (se < 0.05 * exact.abs().clamp_min(1)).all()  # the estimator is informative at this size
    # the Hutchinson log-density in 5-D: its estimate is within 4 SE of the exact-trace log-density
    base = standard_normal(dim)
    exact_lp = gradient_flow_log_prob(energy, x, base, time=0.3, num_steps=10).log_prob
    est = gradient_flow_log_prob(energy, x, base, time=0.3, num_steps=10, trace="hutchinson", num_probes=400,
                                 generator=torch.Generator().manual_seed(8))
    assert est.stderr is not None and (est.stderr > 0).all()
    assert (((est.log_prob - exact_lp) / est.stderr).abs() < 4).all()


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
