"""The Hessian and its trace: exact against the full Hessian, Hutchinson unbiased within its standard error."""

import math

import torch

from pyro_diffvi.ops import energy_grad_and_hessian_trace, energy_hessian
from pyro_diffvi.samplers import (
    gradient_flow_log_prob,
)
from tests.samplers.energies import D64, mlp_energy, standard_normal


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
