"""DiffusionPosterior: the bound term against step-by-step Gaussian log densities; shapes; errors."""

import math

import pytest
import torch

import pyro.distributions as dist
from pyro_diffvi.diffusion import Denoiser, GaussianDiffusion
from pyro_diffvi.distributions import DiffusionPosterior


def _posterior(variance="beta", context_dim=3, batch=(4,), T=4):
    torch.manual_seed(0)
    net = Denoiser(2, context_dim, time_dim=8, hidden_dims=(16,), learn_variance=variance == "learned").double()
    process = GaussianDiffusion(T, "cosine", dtype=torch.float64)
    loc = torch.randn(batch + (2,), dtype=torch.float64)
    scale = torch.rand(batch + (2,), dtype=torch.float64) + 0.5
    ctx = torch.randn(batch + (context_dim,), dtype=torch.float64) if context_dim else None
    return DiffusionPosterior(loc, scale, net, process, ctx, variance), net, process


@pytest.mark.parametrize("variance", ["beta", "posterior", "learned"])
def test_log_density_equals_explicit_trajectory_density(variance):
    q, net, process = _posterior(variance)
    T = process.num_steps
    noise = torch.randn((T + 1, 5, 4, 2), dtype=torch.float64)
    z, log_density = q.rsample_and_log_density((5,), noise=noise)
    ys = q.rsample_trajectory((5,), noise=noise)
    assert torch.equal(ys[0], z)
    # log q(y_T) + sum_t log q(y_{t-1}|y_t) - sum_t log r(y_t|y_{t-1}), each from its own Normal
    expected = dist.Normal(q.loc, q.scale).log_prob(ys[T]).sum(-1)
    betas, abar = process.betas, process.alphas_cumprod
    for t in range(T, 0, -1):
        out = net(ys[t], t, q.context)
        eps_hat = out[..., :2]
        mean = (ys[t] - betas[t - 1] / (1 - abar[t - 1]).sqrt() * eps_hat) / (1 - betas[t - 1]).sqrt()
        if variance == "beta":
            var = betas[t - 1].expand_as(mean)
        elif variance == "posterior":
            tt = max(t, 2)  # tilde-beta_1 = 0 is replaced by tilde-beta_2
            var = ((1 - abar[tt - 2]) / (1 - abar[tt - 1]) * betas[tt - 1]).expand_as(mean)
        else:
            tilde = (1 - abar[max(t, 2) - 2]) / (1 - abar[max(t, 2) - 1]) * betas[max(t, 2) - 1]
            v = torch.sigmoid(out[..., 2:])
            var = torch.exp(v * betas[t - 1].log() + (1 - v) * tilde.log())
        expected = expected + dist.Normal(mean, var.sqrt()).log_prob(ys[t - 1]).sum(-1)
        expected = expected - dist.Normal((1 - betas[t - 1]).sqrt() * ys[t - 1], betas[t - 1].sqrt()).log_prob(ys[t]).sum(-1)
    assert torch.allclose(log_density, expected, atol=1e-9)


def test_cached_log_prob_expand_and_reparameterization():
    q, _, _ = _posterior()
    z = q.rsample((3,))
    assert z.shape == (3, 4, 2) and q.log_prob(z).shape == (3, 4)
    with pytest.raises(ValueError, match="only defined for the sample"):
        q.log_prob(z.clone())
    big = q.expand((6, 4))
    assert big.batch_shape == (6, 4) and big.event_shape == (2,)
    draws = big.rsample()
    assert draws.shape == (6, 4, 2) and not torch.allclose(draws[0], draws[1])  # independent per row
    loc = q.loc.clone().requires_grad_()
    q2 = DiffusionPosterior(loc, q.scale, q.denoiser, q.process, q.context)
    q2.rsample().sum().backward()
    assert loc.grad is not None and loc.grad.abs().sum() > 0


def test_bad_arguments():
    q, net, process = _posterior()
    with pytest.raises(ValueError, match="variance must be one of"):
        DiffusionPosterior(q.loc, q.scale, net, process, q.context, "fixed")
    with pytest.raises(ValueError, match="learn_variance"):
        DiffusionPosterior(q.loc, q.scale, net, process, q.context, "learned")
    with pytest.raises(ValueError, match="trailing dimension 2"):
        DiffusionPosterior(q.loc[..., :1], q.scale[..., :1], net, process, q.context)
    with pytest.raises(ValueError, match="context must have trailing dimension 3"):
        DiffusionPosterior(q.loc, q.scale, net, process, q.context[..., :2])
    with pytest.raises(ValueError, match="noise must have shape"):
        q.rsample_and_log_density(noise=torch.zeros(2, 4, 2))
