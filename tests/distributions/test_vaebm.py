"""VAEBM: the VAE's log p(x) by latent quadrature is the exact marginal, the tilted density normalizes, Langevin in
the noise space leaves the tilted density invariant, stage one trains the VAE alone."""

import math

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch import nn

from pyro_diffvi.distributions import VAEBM
from pyro_diffvi.distributions.vaebm import default_latent_grid
from pyro_diffvi.guides import GaussianGuide
from pyro_diffvi.ops import QuadratureGrid

A = torch.tensor([[0.8, 0.3], [-0.2, 0.6]], dtype=torch.float64)

B = torch.tensor([0.3, -0.2], dtype=torch.float64)

S = 0.4

M = torch.tensor([0.5, 0.4], dtype=torch.float64)

K = torch.tensor([[1.5, 0.4], [0.4, 0.8]], dtype=torch.float64)

C = A @ A.T + S**2 * torch.eye(2, dtype=torch.float64)


class Quadratic(nn.Module):
    def __init__(self, m, k):
        super().__init__()
        self.m, self.k = nn.Parameter(m.clone()), nn.Parameter(k.clone())

    def forward(self, x):
        d = x - self.m
        return 0.5 * ((d @ self.k) * d).sum(-1)


class Zero(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x):
        return x.sum(-1) * 0.0 + self.c


def linear_decoder(min_scale=1e-3):
    dec = nn.Linear(2, 4).double()
    with torch.no_grad():
        dec.weight.zero_()
        dec.weight[:2] = A
        dec.bias[:2] = B
        dec.bias[2:] = math.log(math.expm1(S - min_scale))  # softplus^-1
    return dec


def closed_form():
    kinv = torch.linalg.inv(K)
    d = B - M
    log_z = -0.5 * torch.logdet(torch.eye(2, dtype=torch.float64) + C @ K) - 0.5 * d @ torch.linalg.solve(C + kinv, d)
    precision = torch.linalg.inv(C) + K
    cov = torch.linalg.inv(precision)
    mean = cov @ (torch.linalg.solve(C, B) + K @ M)
    return log_z.item(), mean, cov


def vaebm(energy=None):
    return VAEBM(linear_decoder(), energy if energy is not None else Quadratic(M, K), latent_dim=2, obs_dim=2)

# h = 0.07 in z: the z-integrand N(x; A z + b, s^2) has width s / |A| ~ 0.4
Z_GRID = default_latent_grid(num_points=240, half_width=8.0)

Z_COARSE = default_latent_grid(num_points=120, half_width=8.0)  # h = 0.13, still spectrally accurate (error < 1e-9)

X_GRID = QuadratureGrid(low=(-5.0, -5.0), high=(5.0, 5.0), num_points=(100, 100))

MASS_GRID = QuadratureGrid(low=(-6.0, -6.0), high=(6.0, 6.0), num_points=(200, 200))  # finer and wider


def test_vae_log_prob_by_latent_quadrature_is_the_exact_marginal():
    x = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 1.5
    exact = torch.distributions.MultivariateNormal(B, C).log_prob(x)
    # the midpoint rule is spectrally accurate for this smooth Gaussian integrand: error << 1e-8
    assert torch.allclose(vaebm().vae_log_prob(x, z_grid=Z_GRID), exact, atol=1e-8, rtol=0)


def test_tilted_density_normalizes_by_quadrature():
    model = vaebm()
    log_z_exact, _, _ = closed_form()
    log_z, edge = model.log_partition(X_GRID, z_grid=Z_COARSE)
    assert edge < 1e-8  # the x-box holds the mass
    assert log_z == pytest.approx(log_z_exact, abs=1e-7)
    # the normalized density integrates to 1 on a different (finer, wider) grid: the midpoint-rule error
    # for these smooth Gaussian-tailed integrands at h = 0.06 is far below 1e-6
    x, log_w, _ = MASS_GRID.nodes()
    mass = torch.logsumexp(model.log_prob(x, log_z, z_grid=Z_COARSE) + log_w, 0).exp().item()
    assert mass == pytest.approx(1.0, abs=1e-6)


def test_tilted_density_with_a_neural_energy_normalizes_and_matches_monte_carlo():
    torch.manual_seed(0)
    energy = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    with torch.no_grad():
        energy[0].weight.mul_(3.0)  # a bumpy tilt
    model = vaebm(energy)
    log_z, edge = model.log_partition(X_GRID, z_grid=Z_COARSE)
    fine, _ = model.log_partition(X_GRID.refined(factor=2), z_grid=Z_COARSE)
    assert edge < 1e-6 and abs(log_z - fine) < 1e-5  # converged in the grid
    mc, se = model.log_partition_mc(400_000)
    assert abs(mc - log_z) < 4 * se, (mc, se, log_z)  # an unbiased estimate of Z agrees within 4 SE
    x, log_w, _ = MASS_GRID.nodes()
    mass = torch.logsumexp(model.log_prob(x, log_z, z_grid=Z_COARSE) + log_w, 0).exp().item()
    assert mass == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("tilt", ["zero", "quadratic"])
def test_langevin_in_noise_space_leaves_the_tilted_gaussian_invariant(tilt):
    torch.manual_seed(1)
    if tilt == "zero":
        model, mean, cov = vaebm(Zero()), B, C
    else:
        model = vaebm()
        _, mean, cov = closed_form()
    n = 4000
    x, z, eps = model.sample(n, num_steps=300, step_size=0.15, metropolis=True)
    assert x.dtype == torch.float64 and eps.shape == (n, 4)
    # chains are independent: SE of a mean sqrt(var / n), of a covariance entry sqrt((S_ii S_jj + S_ij^2) / n)
    se_mean = (cov.diagonal() / n).sqrt()
    assert ((x.mean(0) - mean).abs() < 4 * se_mean).all(), (x.mean(0), mean)
    emp = torch.cov(x.T)
    se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov**2) / n).sqrt()
    assert ((emp - cov).abs() < 4 * se_cov).all(), (emp, cov)


def test_stage_one_trains_the_vae_with_a_package_guide_and_leaves_the_energy():
    pyro.clear_param_store()
    torch.manual_seed(3)
    model = VAEBM(nn.Linear(2, 4), nn.Linear(2, 1), latent_dim=2, obs_dim=2)
    x = torch.randn(64, 2)
    guide = GaussianGuide(model, latent="z", observed="x", encoder_hidden_dims=(16,))
    before = [p.detach().clone() for p in model.parameters()]
    svi = SVI(model, guide, Adam({"lr": 1e-2}), Trace_ELBO())
    for _ in range(3):
        svi.step(x)
    assert not torch.equal(before[0], model.decoder.weight)
    assert torch.equal(before[2], model.energy_fn.weight)
