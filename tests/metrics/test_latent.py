import math

import numpy as np
import pyro.distributions as dist
import pytest
import torch
from scipy.stats import gaussian_kde

from pyro_diffvi.metrics import GaussianKDE, latent_nll

COV = torch.tensor([[1.0, 0.6], [0.6, 2.0]], dtype=torch.float64)


def gaussian(n):
    return dist.MultivariateNormal(torch.zeros(2, dtype=torch.float64), covariance_matrix=COV).sample((n,))


def test_latent_nll_of_matching_gaussian_is_its_entropy(device):
    latents, prior = gaussian(3000).to(device), gaussian(3000).to(device)
    entropy = 0.5 * 2 * math.log(2 * math.pi * math.e) + 0.5 * torch.logdet(COV).item()
    est = latent_nll(latents, prior)
    # -log N(u) has sd sqrt(d/2) = 1, so stderr ~ 1/sqrt(3000) = 0.018; Scott smoothing adds
    # ~+0.003 (closed form for Gaussians) and KDE noise ~0.01: tolerance 0.08
    assert est.mean == pytest.approx(entropy, abs=0.08)
    assert est.stderr == pytest.approx(1 / math.sqrt(3000), rel=0.15)
    assert est.values.shape == (3000,)


def test_latent_nll_penalizes_a_prior_the_latents_miss():
    latents = gaussian(1000)
    matched = latent_nll(latents, gaussian(1000)).mean
    shifted = latent_nll(latents, gaussian(1000) + 3.0).mean
    assert shifted > matched + 2.0


def test_scott_bandwidth_matches_scipy_gaussian_kde():
    points, query = gaussian(200), gaussian(50)
    ours = GaussianKDE(points).log_prob(query, chunk_size=16)
    reference = gaussian_kde(points.numpy().T, bw_method="scott").logpdf(query.numpy().T)
    np.testing.assert_allclose(ours.numpy(), reference, rtol=1e-10, atol=1e-10)
    reference = gaussian_kde(points.numpy().T, bw_method="silverman").logpdf(query.numpy().T)
    np.testing.assert_allclose(
        GaussianKDE(points, bandwidth="silverman").log_prob(query).numpy(), reference, rtol=1e-10
    )


def test_float_bandwidth_is_isotropic_gaussian_mixture():
    points, query = gaussian(30), gaussian(7)
    mixture = dist.MixtureSameFamily(
        dist.Categorical(torch.ones(30, dtype=torch.float64)),
        dist.MultivariateNormal(points, covariance_matrix=0.3**2 * torch.eye(2, dtype=torch.float64)),
    )
    expected = mixture.log_prob(query)
    assert torch.allclose(GaussianKDE(points, bandwidth=0.3).log_prob(query), expected, atol=1e-10, rtol=0)


def test_input_validation():
    x = gaussian(10)
    with pytest.raises(ValueError, match="points must have shape"):
        GaussianKDE(x[:1])
    with pytest.raises(ValueError, match="bandwidth"):
        GaussianKDE(x, bandwidth="nope")
    with pytest.raises(ValueError, match="bandwidth"):
        GaussianKDE(x, bandwidth=-1.0)
    with pytest.raises(ValueError, match="columns"):
        GaussianKDE(x).log_prob(torch.zeros(5, 3, dtype=torch.float64))
    # issue 25 case 23: latent_nll names both of its arguments and their shapes
    with pytest.raises(ValueError, match=r"latents and prior_samples must have the same dimension, got latents of "
                                         r"shape \(10, 2\) and prior_samples of shape \(5, 3\)"):
        latent_nll(x, torch.zeros(5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="latents must have shape"):
        latent_nll(x[:1], x)
    with pytest.raises(ValueError, match="singular"):
        GaussianKDE(torch.zeros(10, 2))
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="prior_samples contains"):
        latent_nll(x, bad)
    with pytest.raises(ValueError, match="latents contains"):
        latent_nll(bad, x)
