"""Gaussian masses of polygons (Owen's T): a large square holds all the mass, a half-plane half of it, the cells of
symmetric sites share it equally; clipping a polygon by a half-plane."""

import numpy as np
import torch

from pyro_diffvi.ops import clip_polygon, gaussian_polygon_mass, voronoi_cells, voronoi_masses

SQUARE = np.array([[-50.0, -50.0], [50.0, -50.0], [50.0, 50.0], [-50.0, 50.0]])


def test_a_large_square_holds_all_the_mass():
    mass = gaussian_polygon_mass(np.array([[0.0, 0.0], [1.0, -2.0]]), 1.5, SQUARE)
    np.testing.assert_allclose(mass, [1.0, 1.0], atol=1e-12)


def test_a_half_plane_holds_half_the_mass_of_a_centred_gaussian():
    half = clip_polygon(SQUARE, np.array([1.0, 0.0]), 0.0)  # x <= 0
    assert half[:, 0].max() <= 0.0
    np.testing.assert_allclose(gaussian_polygon_mass(np.array([[0.0, 3.0]]), 0.7, half), [0.5], atol=1e-12)


def test_cells_of_symmetric_sites_share_the_mass_equally():
    sites = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    cells = voronoi_cells(sites, 30.0)
    assert len(cells) == 4
    masses = voronoi_masses(sites.tolist(), torch.zeros(1, 1, 2, dtype=torch.float64), 1.0,
                            torch.zeros(1, 1, dtype=torch.float64))
    assert masses.shape == (1, 4)
    torch.testing.assert_close(masses, torch.full((1, 4), 0.25, dtype=torch.float64), atol=1e-12, rtol=0)
