"""Sliced score matching fits energies to samples of known densities, checked against closed forms."""

import math

import pytest
import torch

from pyro_diffvi.infer.prior_objectives import (
    SlicedScoreMatchingLoss,
)
from pyro_diffvi.priors import GRBMPrior
from tests.infer.prior_objectives._shared import (
    TRUE_COV,
    TRUE_MEAN,
    QuadraticEnergy,
    eight_gaussians,
    fit,
    gaussian_samples,
)


def test_ssm_loss_matches_closed_form_for_a_gaussian():
    # For E = 0.5 (z-m)^T P (z-m): J = E_z[-tr(P) + 0.5 (z-m)^T P^2 (z-m)] (expectation over v, Rademacher).
    energy = QuadraticEnergy()
    with torch.no_grad():
        energy.mean.copy_(torch.tensor([0.3, 0.1]))
        energy.raw.copy_(torch.tensor([[0.2, 0.0], [0.5, -0.3]]))
    z = gaussian_samples(500)
    P = energy.precision().detach()
    d = z - energy.mean.detach()
    exact = (-P.trace() + 0.5 * ((d @ P) * (d @ P)).sum(-1)).mean()
    vr = SlicedScoreMatchingLoss(num_projections=1, projection="rademacher").loss(energy, z)
    # Rademacher v: v^T P v = tr P + 2 v1 v2 P12; the VR loss is then exact up to the P12 term, whose
    # average over 500 signs has sd 2|P12|/sqrt(500).
    assert abs(vr.item() - exact.item()) < 5 * 2 * abs(P[0, 1].item()) / math.sqrt(500)
    plain = SlicedScoreMatchingLoss(num_projections=200, projection="gaussian", variance_reduction=False).loss(
        energy, z
    )
    assert abs(plain.item() - exact.item()) < 0.05 * abs(exact.item()) + 0.05


@pytest.mark.parametrize("projection,variance_reduction", [("rademacher", True), ("gaussian", False)])
def test_ssm_recovers_gaussian_parameters(projection, variance_reduction):
    n = 2000
    z = gaussian_samples(n)
    energy = QuadraticEnergy()
    ssm = SlicedScoreMatchingLoss(num_projections=1, projection=projection, variance_reduction=variance_reduction)
    fit(ssm, energy, z, steps=250, lr=0.05)
    # The exact SM optimum on a sample is (sample mean, inverse sample covariance): the fit must reach it
    # up to the optimizer's residual noise...
    sample_precision = torch.linalg.inv(torch.cov(z.T, correction=0))
    assert torch.allclose(energy.mean.detach(), z.mean(0), atol=0.05)
    assert torch.allclose(energy.precision().detach(), sample_precision, atol=0.06)
    # ...and the true parameters up to sampling error: SE sqrt(C_ii / n) <= 0.032 for the mean and about
    # |P_ij| sqrt(2 / n) <= 0.04 for the precision; tolerances are ~4 SE plus the residual above.
    assert torch.allclose(energy.mean.detach(), TRUE_MEAN, atol=0.15)
    assert torch.allclose(energy.precision().detach(), torch.linalg.inv(TRUE_COV), atol=0.2)


def test_grbm_ssm_beats_single_gaussian_on_eight_gaussians():
    train, test = eight_gaussians(4000), eight_gaussians(4000)
    prior = GRBMPrior(dim=2, num_hidden=6, init_scale=0.5).double()
    fit(SlicedScoreMatchingLoss(num_projections=2), prior, train, steps=400, lr=0.03, batch_size=512)
    grbm = prior()
    with torch.no_grad():
        grbm_ll = (-grbm.energy(test) - grbm.exact_log_partition()).mean().item()
    mean, cov = train.mean(0), torch.cov(train.T)  # closed-form Gaussian MLE (ddof difference negligible)
    gauss_ll = torch.distributions.MultivariateNormal(mean, cov).log_prob(test).mean().item()
    # The test-set means have SE ~ sd(log p)/sqrt(4000) ~ 0.015 nats; require a 0.05-nat gain.
    assert grbm_ll > gauss_ll + 0.05, (grbm_ll, gauss_ll)
