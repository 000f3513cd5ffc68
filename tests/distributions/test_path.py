"""PathIntegralPosterior: its density of a draw is the sum of the Gaussian transition terms, at the optimal drift the
gap vanishes as the steps grow."""

import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal

from pyro_diffvi.diffusion import Denoiser
from pyro_diffvi.distributions import PathIntegralPosterior


class FollmerDrift(nn.Module):
    r"""The exact continuous-time optimal drift for the target :math:`\mathcal N(m, s^2 I)` and reference
    :math:`\sigma W_t`: the reference conditioned on its end point, :math:`u^*(y, t) = (E[y_1|y_t = y] - y)/(1 - t)`
    with :math:`y_t | y_1 \sim \mathcal N(t y_1, \sigma^2 t (1 - t))` and :math:`y_1 \sim \mathcal N(m, s^2)`."""

    def __init__(self, m, s, sigma, num_steps):
        super().__init__()
        self.m, self.s, self.sigma, self.num_steps = m, s, sigma, num_steps
        self.dim, self.context_dim = m.shape[-1], 0

    def forward(self, y, t, context=None):
        t = (torch.as_tensor(t, dtype=y.dtype) - 1) / self.num_steps  # step index k + 1 -> time k h
        t = t.unsqueeze(-1) if t.dim() else t
        gain = self.s**2 / (t * self.s**2 + self.sigma**2 * (1 - t))
        return (self.m + gain * (y - t * self.m) - y) / (1 - t)


def test_at_the_optimal_drift_the_gap_shrinks_to_zero_as_the_steps_grow():
    # the Euler chain under the continuous-time optimal drift: the bound's gap (a path-space KL) is the
    # discretization error only, and must fall monotonically towards zero (about 1.5 / K nats here)
    torch.manual_seed(0)
    m, s, sigma, n = torch.tensor([1.5, -1.0], dtype=torch.float64), 0.5, 1.0, 20000
    gaps = []
    for K in (2, 5, 20, 100):
        q = PathIntegralPosterior(FollmerDrift(m, s, sigma, K), num_steps=K, sigma=sigma, batch_shape=(n,))
        noise = torch.randn(K, n, 2, dtype=torch.float64)
        z, log_density = q.rsample_and_log_density(noise=noise)
        w = Normal(m, s).log_prob(z).sum(-1) - log_density  # log p(x, z) - log p(x): the gap per draw
        gaps.append((w.mean().item(), w.std().item() / math.sqrt(n)))
    # measured: K=2 -0.722 (0.012), 5 -0.255 (0.006), 20 -0.056 (0.0025), 100 -0.011 (0.0011)
    for (gap, se), (next_gap, next_se) in zip(gaps, gaps[1:]):
        assert next_gap - gap > 5 * math.hypot(se, next_se)
    assert gaps[-1][0] < 3 * gaps[-1][1]
    assert gaps[-1][0] > -0.03  # close to the exact bound at K = 100


def test_density_of_a_draw_is_the_sum_of_the_gaussian_transition_terms():
    torch.manual_seed(1)
    K, sigma, d = 7, 0.8, 3
    drift = Denoiser(d, context_dim=4, hidden_dims=(16, 16)).double()  # random (non-zero) drift
    context = torch.randn(5, 4, dtype=torch.float64)
    loc, scale = torch.randn(5, d, dtype=torch.float64), torch.rand(5, d, dtype=torch.float64) + 0.5
    noise = torch.randn(K, 2, 5, d, dtype=torch.float64)
    for path_gradient in (False, True):
        q = PathIntegralPosterior(drift, context, num_steps=K, sigma=sigma, loc=loc, scale=scale,
                                  path_gradient=path_gradient)
        z, log_density = q.rsample_and_log_density((2,), noise=noise)
        y = q.rsample_trajectory((2,), noise=noise).detach()
        h = 1.0 / K
        expected = Normal(0.0, sigma).log_prob(y[K]).sum(-1) - scale.log().sum(-1)
        for k in range(K):
            u = drift(y[k], k + 1, context)  # the network's own forward, not the chain's stepper
            expected = expected + Normal(y[k] + u * h, sigma * math.sqrt(h)).log_prob(y[k + 1]).sum(-1)
            expected = expected - Normal(y[k], sigma * math.sqrt(h)).log_prob(y[k + 1]).sum(-1)
        assert torch.allclose(y[0], torch.zeros_like(y[0]))
        assert torch.allclose(z, loc + scale * y[K], atol=1e-12)
        assert torch.allclose(log_density, expected, atol=1e-6, rtol=0)


def test_posterior_rejects_bad_shapes():
    drift = Denoiser(2, context_dim=3, hidden_dims=(8,))
    with pytest.raises(ValueError, match="context must have trailing dimension 3"):
        PathIntegralPosterior(drift, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="both loc and scale"):
        PathIntegralPosterior(drift, torch.zeros(4, 3), loc=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="trailing dimension 2"):
        PathIntegralPosterior(drift, torch.zeros(4, 3), loc=torch.zeros(4, 3), scale=torch.ones(4, 3))
    q = PathIntegralPosterior(drift, torch.zeros(4, 3), num_steps=3)
    with pytest.raises(ValueError, match="noise must have shape"):
        q.rsample_and_log_density(noise=torch.zeros(2, 4, 2))
    with pytest.raises(ValueError, match="only defined for the sample it has just drawn"):
        q.log_prob(torch.zeros(4, 2))
    assert q.expand((5, 4)).rsample().shape == (5, 4, 2)
