"""Quadrature grids: every coordinate system integrates a density to one, refinement and make_grid size the cells,
the edges are the outermost cells."""

import math

import pytest
import torch

from pyro_diffvi.ops import LOG_2PI, QuadratureGrid, make_grid


def standard_normal_2d(z):
    return -0.5 * (z**2).sum(-1) - LOG_2PI


@pytest.mark.parametrize(
    "grid",
    [
        QuadratureGrid(low=(-7.0, -7.0), high=(7.0, 7.0), num_points=(80, 80)),
        QuadratureGrid(low=(0.0, 0.0), high=(math.sqrt(7.0), 2 * math.pi), num_points=(60, 64), coordinates="polar"),
        QuadratureGrid(
            low=(-7.0, -7.0), high=(7.0, 32.0), num_points=(100, 240), coordinates="parabolic", curvature=0.5
        ),
    ],
    ids=["cartesian", "polar", "parabolic"],
)
def test_a_standard_normal_integrates_to_one(grid):
    z, log_weight, _ = grid.nodes()
    assert z.dtype == torch.float64 and z.shape == (grid.size, 2)
    assert abs((standard_normal_2d(z) + log_weight).logsumexp(0).exp().item() - 1.0) < 1e-6


def test_log_coordinates_integrate_a_positive_density_to_one():
    grid = QuadratureGrid(low=(-24.0, -24.0), high=(3.6, 3.6), num_points=(300, 300), coordinates="log")
    z, log_weight, _ = grid.nodes()
    assert bool((z > 0).all())
    log_density = torch.distributions.Exponential(torch.ones((), dtype=torch.float64)).log_prob(z).sum(-1)
    assert abs((log_density + log_weight).logsumexp(0).exp().item() - 1.0) < 1e-6


def test_edges_refinement_and_bad_coordinates():
    grid = QuadratureGrid(low=(-1.0, -1.0), high=(1.0, 1.0), num_points=(4, 4))
    _, _, on_edge = grid.nodes()
    assert int(on_edge.sum()) == 12  # all but the 2 x 2 inner cells
    assert grid.refined(factor=3).num_points == (12, 12)
    with pytest.raises(ValueError, match="factor"):
        grid.refined(factor=0)
    with pytest.raises(ValueError, match="coordinates"):
        QuadratureGrid(low=(0.0, 0.0), high=(1.0, 1.0), num_points=(2, 2), coordinates="spherical")


def test_make_grid_has_even_cells_no_wider_than_the_step():
    grid = make_grid((-1.0, 0.0), (1.0, 3.0), (0.3, 0.7))
    assert grid.num_points == (8, 6)
    assert all(n % 2 == 0 for n in grid.num_points)
    assert (1.0 - -1.0) / grid.num_points[0] <= 0.3 and (3.0 - 0.0) / grid.num_points[1] <= 0.7
