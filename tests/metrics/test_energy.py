"""AIS-based log-likelihood estimate of an energy-prior model vs the exact log p(x) of a linear-Gaussian model."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_diffvi.distributions import EnergyDistribution
from pyro_diffvi.metrics.energy import energy_prior_log_likelihood

PRIOR_MEAN = torch.tensor([0.5, -1.0], dtype=torch.float64)
PRIOR_PREC = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
A = torch.tensor([[1.0, 0.5], [-0.3, 0.8], [0.2, -1.0]], dtype=torch.float64)
C = torch.tensor([0.1, 0.0, -0.2], dtype=torch.float64)
NOISE = 0.7


def quadratic_energy(z):
    d = z - PRIOR_MEAN
    return 0.5 * ((d @ PRIOR_PREC) * d).sum(-1)


def model(x):
    prior = EnergyDistribution(quadratic_energy, (2,), dtype=torch.float64)  # unnormalized N(m, P^-1)
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", prior)
        pyro.sample("x", dist.Normal(z @ A.T + C, NOISE).to_event(1), obs=x)


def exact_posterior(x):
    precision = PRIOR_PREC + A.T @ A / NOISE**2
    cov = torch.linalg.inv(precision)
    mean = (PRIOR_MEAN @ PRIOR_PREC + (x - C) @ A / NOISE**2) @ cov
    return mean, cov


def guide(x, inflate=1.15):
    mean, cov = exact_posterior(x)
    scale_tril = inflate * torch.linalg.cholesky(cov)  # slightly too wide: IWAE has a real MC error
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.MultivariateNormal(mean, scale_tril=scale_tril))


def exact_log_px(x):
    cov = A @ torch.linalg.inv(PRIOR_PREC) @ A.T + NOISE**2 * torch.eye(3, dtype=torch.float64)
    return dist.MultivariateNormal(PRIOR_MEAN @ A.T + C, cov).log_prob(x)


def data(n=40):
    z = PRIOR_MEAN + torch.randn(n, 2, dtype=torch.float64) @ torch.linalg.cholesky(torch.linalg.inv(PRIOR_PREC)).T
    return z @ A.T + C + NOISE * torch.randn(n, 3, dtype=torch.float64)


def test_ais_log_likelihood_matches_exact():
    x = data()
    result = energy_prior_log_likelihood(
        model, guide, x, num_particles=200, num_chains=200, num_ais_steps=100, ais_kwargs={"step_size": 0.3}
    )
    exact = exact_log_px(x).mean().item()
    true_log_z = math.log(2 * math.pi) - 0.5 * torch.logdet(PRIOR_PREC).item()
    log_z, log_z_se = result.log_partition["z"]
    assert abs(log_z - true_log_z) < 3 * log_z_se + 1e-3
    assert result.stderr > 0 and result.sites_per_point == {"z": 1}
    # within 3 Monte-Carlo standard errors (IWAE delta-method + AIS, combined)
    assert abs(result.mean - exact) < 3 * result.stderr, (result.mean, exact, result.stderr)
    assert "ESTIMATE" in str(result)


def test_exact_log_partition_override():
    x = data(20)
    true_log_z = math.log(2 * math.pi) - 0.5 * torch.logdet(PRIOR_PREC).item()
    result = energy_prior_log_likelihood(model, guide, x, num_particles=200, log_partition={"z": true_log_z})
    exact = exact_log_px(x)
    assert result.log_partition["z"] == (pytest.approx(true_log_z), 0.0)
    # per point: only the IWAE error remains (the guide is 15% too wide; 200 samples)
    assert abs(result.mean - exact.mean().item()) < 3 * result.stderr + 1e-6
    # per-point IWAE SE here is about 0.02 (stderr * sqrt(20)): allow 4 SE
    assert torch.allclose(result.values, exact, atol=0.08)
    with pytest.raises(ValueError, match="unknown energy-prior sites"):
        energy_prior_log_likelihood(model, guide, x, log_partition={"w": 0.0})
