import math

import pytest
import torch

from pyro_diffvi.nn.mlp import MLP
from pyro_diffvi.samplers import langevin
from pyro_diffvi.samplers.langevin import energy_and_grad

MEAN = torch.tensor([1.0, -0.5], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)


def gaussian_energy(device):
    mean, precision = MEAN.to(device), torch.linalg.inv(COV).to(device)

    def energy(z):
        d = z - mean
        return 0.5 * torch.einsum("...i,ij,...j->...", d, precision, d)

    return energy, precision


def cov_and_se(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample covariance of independent chains and the standard error of each entry."""
    c = z - z.mean(0)
    prods = c[:, :, None] * c[:, None, :]
    return prods.mean(0), prods.std(0) / math.sqrt(z.shape[0])


def test_ula_stationary_covariance_matches_exact_discretised_value(device):
    # For E = (z - m)^T P (z - m) / 2, ULA is the AR(1) chain z' - m = A (z - m) + s sqrt(2h) eps, A = I - hP,
    # whose stationary covariance S solves S = A S A^T + 2 h s^2 I, i.e. S = s^2 (P - h P^2 / 2)^{-1}.
    energy, P = gaussian_energy(device)
    h, s = 0.25, 0.7
    S = s**2 * torch.linalg.inv(P - 0.5 * h * P @ P)
    z, rate = langevin(
        energy, torch.zeros(6000, 2, dtype=torch.float64, device=device), num_steps=150, step_size=h, noise_scale=s
    )
    assert z.shape == (6000, 2) and torch.equal(rate, torch.ones(6000, dtype=torch.float64, device=device))
    se_mean = z.std(0) / math.sqrt(z.shape[0])
    assert ((z.mean(0) - MEAN.to(device)).abs() < 4 * se_mean).all()  # ULA has no mean bias for a Gaussian
    cov, se = cov_and_se(z)
    assert ((cov - S).abs() < 4 * se).all(), (cov, S, se)
    # the O(h) bias is real: the unadjusted chain does not sample the target covariance s^2 * COV
    assert ((cov - s**2 * COV.to(device)).abs() > 4 * se).any()


def test_mala_is_unbiased_for_gaussian(device):
    energy, _ = gaussian_energy(device)
    init = 3.0 * torch.randn(6000, 2, dtype=torch.float64, device=device)
    z, rate = langevin(energy, init, num_steps=150, step_size=0.25, metropolis=True)
    assert 0.5 < rate.mean() < 1.0
    se_mean = z.std(0) / math.sqrt(z.shape[0])
    assert ((z.mean(0) - MEAN.to(device)).abs() < 4 * se_mean).all()
    cov, se = cov_and_se(z)
    assert ((cov - COV.to(device)).abs() < 4 * se).all(), (cov, COV, se)


def test_langevin_batched_chains_and_no_parameter_gradients(device):
    net = MLP(3, 1, hidden_dims=(8,)).to(device)
    energy = lambda z: net(z).squeeze(-1) + 0.5 * z.pow(2).sum(-1)  # noqa: E731
    z, rate = langevin(energy, torch.randn(4, 5, 3, device=device), num_steps=5, step_size=0.01, metropolis=True)
    assert z.shape == (4, 5, 3) and rate.shape == (4, 5) and not z.requires_grad
    assert all(p.grad is None for p in net.parameters())
    e, g = energy_and_grad(energy, z)
    assert e.shape == (4, 5) and g.shape == z.shape


def test_energy_and_grad_matches_closed_form(device):
    energy, P = gaussian_energy(device)
    z = torch.randn(7, 2, dtype=torch.float64, device=device)
    e, g = energy_and_grad(energy, z)
    torch.testing.assert_close(g, (z - MEAN.to(device)) @ P)
    torch.testing.assert_close(e, 0.5 * ((z - MEAN.to(device)) @ P * (z - MEAN.to(device))).sum(-1))


def test_langevin_bad_arguments(device):
    energy, _ = gaussian_energy(device)
    init = torch.zeros(3, 2, dtype=torch.float64, device=device)
    with pytest.raises(ValueError, match="step_size"):
        langevin(energy, init, num_steps=1, step_size=0.0)
    with pytest.raises(ValueError, match="step_size"):
        langevin(energy, init, num_steps=1, step_size=-0.1)
    with pytest.raises(ValueError, match="noise_scale=1"):
        langevin(energy, init, num_steps=1, step_size=0.1, noise_scale=0.5, metropolis=True)
    with pytest.raises(ValueError, match="num_steps"):
        langevin(energy, init, num_steps=-1, step_size=0.1)
    with pytest.raises(ValueError, match="energy_fn"):
        langevin(lambda z: z.pow(2), init, num_steps=1, step_size=0.1)  # per coordinate, not one energy per chain
    with pytest.raises(ValueError, match="energy_fn"):
        langevin(lambda z: z.sum(0), init, num_steps=1, step_size=0.1)  # summed over chains
    with pytest.raises(TypeError, match="init"):
        langevin(energy, [[0.0, 0.0]], num_steps=1, step_size=0.1)


def test_divergent_ula_warns_with_step_size_and_chain_count(device):
    # per-chain curvature: the update z' = (1 - h c) z + noise is stable for c = 0.01 and blows up as
    # 99^k for c = 100 (h = 1): after 200 steps those two chains are inf / NaN in float64.
    curvature = torch.tensor([0.01, 100.0, 0.01, 100.0], dtype=torch.float64, device=device)
    energy = lambda z: 0.5 * (curvature[:, None] * z.pow(2)).sum(-1)  # noqa: E731
    init = torch.ones(4, 2, dtype=torch.float64, device=device)
    with pytest.warns(RuntimeWarning, match=r"ULA: 2 of 4 chain\(s\) have non-finite .* step_size=1.0"):
        z, _ = langevin(energy, init, num_steps=200, step_size=1.0)
    assert torch.isfinite(z[[0, 2]]).all() and not torch.isfinite(z[[1, 3]]).any()
    # a stable step gives no warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        langevin(energy, init, num_steps=20, step_size=1e-3)
