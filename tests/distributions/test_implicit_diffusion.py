"""ImplicitDiffusion: Algorithm 2 with an exact denoiser draws the distribution Bayes' rule predicts.

For Gaussian data x_0 ~ N(m, s^2) (per coordinate), q(x_0 | x_t) = N(v (m / s^2 + sqrt(abar) x_t / (1 - abar)), v)
with 1 / v = 1 / s^2 + abar / (1 - abar). A generator that draws from it, G(x_t, z, t) = mean + sqrt(v) z, makes
each step the exact reverse kernel q(x_{t-1} | x_t) (Eq. 6.12), so the chain composes to q(x_0 | x_T) and, from
x_T ~ N(0, I), draws x_0 with mean v_T m / s^2 and variance v_T + (v_T sqrt(abar_T) / (1 - abar_T))^2. Moments
are compared within 5 standard errors (mean: sqrt(var / n); variance: var sqrt(2 / (n - 1)))."""

import math

import pytest
import torch
from torch import nn

from pyro_diffvi.diffusion import GaussianDiffusion, vp_beta_schedule
from pyro_diffvi.distributions import ImplicitDiffusion
from pyro_diffvi.nn import DenoisingGenerator

N = 100_000


class ExactDenoiser(nn.Module):
    """Draws x_0 ~ q(x_0 | x_t) for data N(m, s^2) (``prediction="x0"``), or returns E[eps | x_t] (``"eps"``)."""

    def __init__(self, m, s, betas, prediction="x0"):
        super().__init__()
        self.register_buffer("m", torch.as_tensor(m, dtype=torch.float64))
        self.register_buffer("s2", torch.as_tensor(s, dtype=torch.float64) ** 2)
        self.register_buffer("abar", torch.cumprod(1 - betas, 0))
        self.dim = self.m.numel()
        self.noise_dim = self.dim if prediction == "x0" else 0
        self.prediction = prediction

    def forward(self, x_t, z, t):
        abar = self.abar[torch.as_tensor(t) - 1]
        v = 1 / (1 / self.s2 + abar / (1 - abar))
        mean = v * (self.m / self.s2 + abar.sqrt() * x_t / (1 - abar))
        if self.prediction == "x0":
            return mean + v.sqrt() * z
        return (x_t - abar.sqrt() * mean) / (1 - abar).sqrt()  # E[eps | x_t], from x_t = sqrt(abar) x_0 + ...


def expected_moments(m, s, betas):
    abar = torch.cumprod(1 - betas, 0)[-1].item()
    m, s2 = torch.tensor(m, dtype=torch.float64), torch.tensor(s, dtype=torch.float64) ** 2
    v = 1 / (1 / s2 + abar / (1 - abar))
    return v * m / s2, v + (v * math.sqrt(abar) / (1 - abar)) ** 2


@pytest.mark.parametrize("num_steps", [1, 4, 20])
def test_algorithm_2_with_an_exact_denoiser_draws_the_composed_reverse_chain(num_steps, device):
    m, s = [1.0, -2.0], [0.5, 2.0]
    betas = vp_beta_schedule(num_steps, dtype=torch.float64)
    process = GaussianDiffusion(num_steps, schedule="vp", dtype=torch.float64)
    p = ImplicitDiffusion(ExactDenoiser(m, s, betas).to(device), process)
    x = p.sample((N,))
    assert x.shape == (N, 2) and x.dtype == torch.float64 and x.device.type == device.type
    mean, var = expected_moments(m, s, betas)
    assert ((x.mean(0).cpu() - mean).abs() < 5 * (var / N).sqrt()).all()
    assert ((x.var(0).cpu() - var).abs() < 5 * var * math.sqrt(2 / (N - 1))).all()
    # the VP process ends near N(0, I): the chain's output is within a few 1e-3 of the data's moments
    assert torch.allclose(mean, torch.tensor(m, dtype=torch.float64), atol=2e-3)


def test_a_noise_predictor_with_gaussian_steps_draws_the_linear_gaussian_recursion():
    """DDPM's sampler for N(0, I) data with the exact E[eps | x_t]: x_0' = sqrt(abar_t) x_t, then
    x_{t-1} = (a_t sqrt(abar_t) + b_t) x_t + sqrt(v_t) eps with the posterior's (a_t, b_t, v_t) by Bayes' rule,
    so Var x_{t-1} = (a_t sqrt(abar_t) + b_t)^2 Var x_t + v_t from Var x_T = 1 (below 1: the posterior variance
    is smaller than the exact reverse variance beta_t of a Gaussian step)."""
    betas = vp_beta_schedule(4, dtype=torch.float64)
    net = ExactDenoiser([0.0, 0.0], [1.0, 1.0], betas, prediction="eps")
    x = ImplicitDiffusion(net, GaussianDiffusion(4, schedule="vp", dtype=torch.float64), prediction="eps").sample((N,))
    abar = torch.cumprod(1 - betas, 0).tolist()
    var = 1.0
    for t in range(4, 1, -1):
        beta, abar_prev = betas[t - 1].item(), abar[t - 2]
        v = 1 / (1 / (1 - abar_prev) + (1 - beta) / beta)
        a, b = v * math.sqrt(abar_prev) / (1 - abar_prev), v * math.sqrt(1 - beta) / beta
        var = (a * math.sqrt(abar[t - 1]) + b) ** 2 * var + v
    var = abar[0] * var  # the last step returns x_0' = sqrt(abar_1) x_1
    assert 0.2 < var < 0.5
    assert (x.mean(0).abs() < 5 * math.sqrt(var / N)).all()
    assert ((x.var(0) - var).abs() < 5 * var * math.sqrt(2 / (N - 1))).all()


def test_shapes_batch_shape_and_gradients():
    torch.manual_seed(0)
    generator = DenoisingGenerator(3, noise_dim=2, hidden_dims=(8,))
    p = ImplicitDiffusion(generator, GaussianDiffusion(4, schedule="vp"))
    assert p.sample().shape == (3,) and p.sample((2, 5)).shape == (2, 5, 3)
    q = p.expand((4,))
    assert q.batch_shape == (4,) and q.sample((2,)).shape == (2, 4, 3) and q.nfe == 4
    assert not p.sample((2,)).requires_grad
    p.rsample((16,)).pow(2).sum().backward()
    assert all(w.grad is not None and torch.isfinite(w.grad).all() for w in generator.parameters())
    # the chain follows the generator's dtype
    double = ImplicitDiffusion(generator.double(), GaussianDiffusion(4, schedule="vp"))
    assert double.sample((2,)).dtype == torch.float64


def test_it_is_documented_and_enforced_as_implicit():
    p = ImplicitDiffusion(DenoisingGenerator(2, hidden_dims=(8,)), GaussianDiffusion(4, schedule="vp"))
    with pytest.raises(NotImplementedError, match="implicit model"):
        p.log_prob(torch.zeros(2))
    assert "implicit model" in ImplicitDiffusion.__doc__
    with pytest.raises(ValueError, match="prediction must be one of"):
        ImplicitDiffusion(DenoisingGenerator(2, hidden_dims=(8,)), GaussianDiffusion(4, schedule="vp"), prediction="v")
    with pytest.raises(TypeError, match="process must be a GaussianDiffusion"):
        ImplicitDiffusion(DenoisingGenerator(2, hidden_dims=(8,)), 4)
