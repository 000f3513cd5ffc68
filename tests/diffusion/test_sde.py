"""VPSDE: the closed forms against quadrature and simulation, the log-SNR inverse, the time proposals."""

import math

import pytest
import torch

from pyro_diffvi.diffusion import VPSDE

F64 = torch.float64


def test_integral_and_kernel_match_quadrature_and_simulation():
    sde = VPSDE()
    t = torch.linspace(0.0, 1.0, 20001, dtype=F64)
    beta = sde.beta(t)
    quad = torch.cat([torch.zeros(1, dtype=F64), torch.cumulative_trapezoid(beta, t)])
    assert torch.allclose(sde.integral_beta(t), quad, atol=1e-8)
    # Euler-Maruyama of dx = -beta x / 2 dt + sqrt(beta) dw from x0 = 1: mean alpha(t), variance sigma(t)^2
    torch.manual_seed(0)
    x, n, dt = torch.ones(200000, dtype=F64), 2000, 0.6 / 2000
    for i in range(n):
        b = sde.beta(torch.tensor(i * dt, dtype=F64))
        x = x - 0.5 * b * x * dt + torch.sqrt(b * dt) * torch.randn_like(x)
    alpha, sigma = sde.marginal_coefficients(torch.tensor(0.6, dtype=F64))
    se_mean, se_var = sigma / math.sqrt(len(x)), sigma**2 * math.sqrt(2 / len(x))
    assert abs(x.mean() - alpha) < 4 * se_mean + 1e-3  # + the Euler bias O(dt)
    assert abs(x.var() - sigma**2) < 4 * se_var + 1e-3


def test_variance_preserving_and_log_snr_inverse():
    sde = VPSDE(beta_min=0.2, beta_max=10.0, t_min=1e-4, t_max=0.9)
    t = torch.linspace(1e-4, 0.9, 50, dtype=F64)
    alpha, sigma = sde.marginal_coefficients(t)
    assert torch.allclose(alpha**2 + sigma**2, torch.ones_like(t))
    assert torch.allclose(sde.log_snr(t), torch.log(alpha**2 / sigma**2))
    assert torch.allclose(sde.time_from_log_snr(sde.log_snr(t)), t, rtol=1e-10)
    # d lambda / dt = -beta / sigma^2 (the likelihood proposal's density, unnormalized)
    h = 1e-6
    slope = (sde.log_snr(t + h) - sde.log_snr(t - h)) / (2 * h)
    assert torch.allclose(slope, -sde.beta(t) / sigma**2, rtol=1e-4)  # central differences: O(h^2 / t^3)
    assert sde.time_from_log_snr(sde.log_snr(torch.tensor(0.5))).dtype == torch.float32


@pytest.mark.parametrize("proposal", ["likelihood", "uniform"])
def test_sample_time_weights_integrate(proposal):
    sde = VPSDE()
    torch.manual_seed(1)
    t, w = sde.sample_time((400000,), proposal=proposal, like=torch.zeros((), dtype=F64))
    assert t.min() >= sde.t_min and t.max() <= sde.t_max
    cases = ((lambda s: s**2, (1 - sde.t_min**3) / 3), (lambda s: torch.cos(3 * s), (math.sin(3) - math.sin(3e-5)) / 3))
    for h, exact in cases:
        values = w * h(t)
        assert abs(values.mean().item() - exact) < 4 * values.std().item() / math.sqrt(len(t))
    if proposal == "likelihood":  # lambda(t) is uniform: its quartiles are those of a uniform
        lam = sde.log_snr(t)
        q = torch.quantile(lam[:100000], torch.tensor([0.25, 0.5, 0.75], dtype=F64))
        lo, hi = sde.log_snr(torch.tensor(1.0, dtype=F64)), sde.log_snr(torch.tensor(sde.t_min, dtype=F64))
        assert torch.allclose(q, lo + (hi - lo) * torch.tensor([0.25, 0.5, 0.75], dtype=F64), atol=0.02 * (hi - lo))
        assert math.isclose(sde.log_snr_range(), (hi - lo).item())


def test_drift_perturb_prior():
    sde = VPSDE()
    x, t = torch.randn(3, 2, 5), torch.rand(3, 2)
    assert torch.allclose(sde.drift(x, t), -0.5 * sde.beta(t)[..., None] * x)
    noise = torch.randn(3, 2, 5)
    alpha, sigma = sde.marginal_coefficients(t)
    assert torch.allclose(sde.perturb(x, t, noise), alpha[..., None] * x + sigma[..., None] * noise)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1)
    assert torch.allclose(sde.prior_log_prob(x, 1), expected, atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="beta_max must be >= beta_min"):
        VPSDE(beta_min=1.0, beta_max=0.5)
    with pytest.raises(ValueError, match="t_min must be < t_max"):
        VPSDE(t_min=1.0, t_max=0.5)
    with pytest.raises(ValueError, match="proposal must be one of"):
        VPSDE().sample_time((2,), proposal="log", like=torch.zeros(()))
    assert VPSDE() == VPSDE(**VPSDE().config()) and VPSDE() != VPSDE(beta_max=10.0)
