"""The closed-form evidences and exact mode masses equal quadrature, normal CDF products and the Gaussian identity."""

import math

import pytest
import torch

from pyro_diffvi.datasets.posteriors import (
    GMM40_MEANS,
    posterior_quadrature,
)
from pyro_diffvi.ops import QuadratureGrid
from tests.datasets.posteriors._shared import LOG_2PI, problem


def test_gmm40_means_and_mode_masses():
    means = torch.tensor(GMM40_MEANS, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    assert torch.allclose(means, ((torch.rand(40, 2, generator=gen) - 0.5) * 80).double())
    p = problem("gmm40")
    assert torch.allclose(p.mode_masses.sum(), torch.tensor(1.0, dtype=torch.float64))
    # A mean 15 away from all others owns exactly 1/40 (up to Phi(-7.5) ~ 3e-14).
    gap = (torch.cdist(means, means) + 1e9 * torch.eye(40, dtype=torch.float64)).min(-1).values
    isolated = gap > 15
    assert isolated.any()
    assert (p.mode_masses[0, isolated] - 1 / 40).abs().max() < 1e-12
    # Near other means, cells hold visibly more or less than 1/40. Check the 2 farthest from 1/40
    # by the midpoint rule on a box of half-width 10 around each mean (the target density in a cell
    # farther than 10 from its mean is below exp(-50)); cells cut the grid's cells obliquely, so
    # the rule's error is O(h): at most 3.2e-5 here (2e-6 with twice the resolution).
    farthest = (p.mode_masses[0] - 1 / 40).abs().argsort(descending=True)[:2]
    for k in farthest.tolist():
        center = means[k].tolist()
        grid = QuadratureGrid(
            (center[0] - 10, center[1] - 10), (center[0] + 10, center[1] + 10), (400, 400)
        )
        quad = posterior_quadrature(p, grid=grid)
        mass = quad.mode_masses[0, k] * (quad.log_px[0] - p.log_px[0]).exp()
        assert abs(mass - p.mode_masses[0, k]) < 5e-5
        assert abs(p.mode_masses[0, k] - 1 / 40) > 2e-4


@pytest.mark.parametrize(
    "name", ["four_modes", "mixture_overlapping", "mixture_separated", "positive", "gmm40"]
)


def test_closed_form_equals_quadrature(name):
    p = problem(name)
    quad = posterior_quadrature(p)
    assert quad.edge_mass.max() < 1e-8
    assert (quad.log_px - p.log_px).abs().max() < 1e-6


def test_four_modes_masses_are_normal_cdf_products():
    p = problem("four_modes")
    x = p.x.double()
    mu = torch.tensor([[-1.5, -1.5], [1.5, -1.5], [-1.5, 1.5], [1.5, 1.5]], dtype=torch.float64)
    var = 0.25 + 4.0
    centers = (4.0 * mu + 0.25 * x[:, None, :]) / var  # posterior component means (N, 4, 2)
    sd = math.sqrt(0.25 * 4.0 / var)
    log_w = -0.5 * ((x[:, None, :] - mu) ** 2).sum(-1) / var
    w = torch.softmax(log_w, -1)
    right = torch.special.ndtr(centers / sd)  # P(z_i > 0) per component and axis
    quadrant = torch.stack(
        [
            (1 - right[..., 0]) * (1 - right[..., 1]),
            right[..., 0] * (1 - right[..., 1]),
            (1 - right[..., 0]) * right[..., 1],
            right[..., 0] * right[..., 1],
        ],
        -1,
    )
    expected = (w[..., None] * quadrant).sum(-2)
    assert (expected - p.mode_masses).abs().max() < 1e-12
    # every mode matters: the smallest quadrant holds 5.7% of the mass on average
    assert p.mode_masses.min(-1).values.mean() > 0.03


def test_linear_gaussian_matches_exact_posterior_identity():
    # log p(x) = log p(x, m) + d/2 log 2 pi - 1/2 log det(H), H = -grad^2_z log p(x, z), m = mode,
    # exact for a Gaussian joint; H and m come from autograd on the model's log joint.
    p = problem("linear_gaussian_5d")
    x = p.x.double()[:8]
    d = p.latent_dim
    for n in range(x.shape[0]):

        def log_joint(z, xn=x[n]):
            return p.log_joint(xn, z)

        z0 = torch.zeros(d, dtype=torch.float64)
        hess = -torch.autograd.functional.hessian(log_joint, z0)
        grad = torch.autograd.functional.jacobian(log_joint, z0)
        mode = z0 + torch.linalg.solve(hess, grad)
        expected = log_joint(mode) + 0.5 * d * LOG_2PI - 0.5 * torch.linalg.slogdet(hess)[1]
        assert abs(expected.item() - p.log_px[n].item()) < 1e-9
    eig = torch.linalg.eigvalsh(hess)
    assert eig.max() / eig.min() > 20  # anisotropic posterior
