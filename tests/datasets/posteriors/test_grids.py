"""The problems' quadrature grids cover the posteriors: refinement changes nothing, the edge mass is negligible."""

import math

import pytest
import torch

from pyro_diffvi.datasets.posteriors import (
    posterior_quadrature,
)
from tests.datasets.posteriors._shared import AMORTIZED_GRID_NAMES, LOG_2PI, normal_log_prob, problem


@pytest.mark.parametrize("name", AMORTIZED_GRID_NAMES)
def test_quadrature_converges_and_grid_is_wide_enough(name):
    p = problem(name)
    x = p.x[:16]
    coarse = posterior_quadrature(p, x=x)
    fine = posterior_quadrature(p, x=x, grid=p.grid.refined(factor=2))
    assert coarse.edge_mass.max() < 1e-8 and fine.edge_mass.max() < 1e-8
    assert (coarse.log_px - fine.log_px).abs().max() < 1e-4
    # the stored values agree with the quadrature (identical when they come from it)
    assert (coarse.log_px - p.log_px[:16]).abs().max() < 1e-6
    if p.mode_masses is not None:
        assert (coarse.mode_masses - fine.mode_masses).abs().max() < 1e-4
        assert (coarse.mode_masses - p.mode_masses[:16]).abs().max() < 1e-4


def test_ring_polar_quadrature():
    # p(x) in polar coordinates r = s^2 (smooth at the origin, where |z| has a cone), theta periodic
    p = problem("ring")
    x = p.x.double()
    top = math.sqrt(x[:, 0].max().item() + 1.5)
    num_s, num_t = 1500, 192
    s = top / num_s * (torch.arange(num_s, dtype=torch.float64) + 0.5)
    r = s**2
    theta = 2 * math.pi / num_t * torch.arange(num_t, dtype=torch.float64)
    z1 = r[:, None] * theta.cos()  # (R, T)
    expected = []
    for xs in x.split(16):
        # N(z; 0, I) dz = r exp(-r^2 / 2) / (2 pi) dr dtheta, dr = 2 s ds
        log_radial = (2 * s * r).log() - 0.5 * r**2 - LOG_2PI + normal_log_prob(xs[:, :1], r, 0.01)
        log_angular = normal_log_prob(xs[:, 1:2, None], z1, 1.0)  # (n, R, T)
        inner = (log_angular + math.log(2 * math.pi / num_t)).logsumexp(-1)
        expected.append((log_radial + inner + math.log(top / num_s)).logsumexp(-1))
    expected = torch.cat(expected)
    assert (expected - p.log_px).abs().max() < 1e-7
