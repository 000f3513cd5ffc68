"""The Hessian and its trace: exact against the full Hessian, Hutchinson unbiased within its standard error."""

import math

import torch
from torch.distributions import Independent, Normal

from pyro_diffvi.ops import energy_grad_and_hessian_trace, energy_hessian
from pyro_diffvi.samplers import (
    gradient_flow_log_prob,
)

D64 = torch.float64


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
