"""DDPMLoss, the Gaussian-step baseline: its loss at the exact noise predictor, resume, errors."""

import io
import math

import pytest
import torch
from torch import nn

from pyro_diffvi.diffusion import vp_beta_schedule
from pyro_diffvi.errors import DivergenceError
from pyro_diffvi.infer import DDPMLoss
from pyro_diffvi.nn import DenoisingGenerator
from pyro_diffvi.util import set_seed


class ExactNoisePredictor(nn.Module):
    """E[eps | x_t] = sqrt(1 - abar_t) x_t for N(0, I) data; a parameter ``scale`` multiplies it (1: exact)."""

    dim, noise_dim = 3, 0

    def __init__(self, num_steps):
        super().__init__()
        self.register_buffer("abar", torch.cumprod(1 - vp_beta_schedule(num_steps, dtype=torch.float64), 0))
        self.scale = nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

    def forward(self, x_t, z, t):
        return self.scale * (1 - self.abar[t - 1]).sqrt().unsqueeze(-1) * x_t


def test_the_loss_at_the_exact_predictor_is_the_residual_variance():
    """E||eps - E[eps | x_t]||^2 = d Var(eps | x_t) = d abar_t, averaged over t uniform: d mean(abar). The batch
    mean of n i.i.d. per-point losses has SE sd / sqrt(n); the tolerance is 5 SE."""
    T, n = 4, 200_000
    ddpm = DDPMLoss(ExactNoisePredictor(T), num_steps=T)
    loss, terms = ddpm.loss(torch.randn(n, 3, dtype=torch.float64))
    expected = 3 * torch.cumprod(1 - vp_beta_schedule(T, dtype=torch.float64), 0).mean().item()
    # per-point loss: abar_t chi^2_3; its variance E[2 * 3 abar^2 + 9 abar^2] - (3 mean abar)^2 over t
    abar = torch.cumprod(1 - vp_beta_schedule(T, dtype=torch.float64), 0)
    sd = math.sqrt((15 * abar**2).mean().item() - expected**2)
    assert abs(loss.item() - expected) < 5 * sd / math.sqrt(n) and terms["ddpm"] is loss
    # the exact predictor is a minimum: the gradient in its scale, the batch mean of g = -2 (eps - f).f, vanishes;
    # given x_t, eps - f ~ N(0, abar I) is independent of f = sqrt(1 - abar) x_t, so Var g = 12 E[abar (1 - abar)]
    loss.backward()
    se = math.sqrt(12 * (abar * (1 - abar)).mean().item() / n)
    assert abs(ddpm.network.scale.grad.item()) < 5 * se


def test_the_x0_loss_at_the_exact_predictor_is_the_posterior_variance():
    """With prediction="x0" and E[x_0 | x_t] = sqrt(abar_t) x_t (N(0, I) data): E||x_0 - E[x_0|x_t]||^2 is
    d (1 - abar_t), averaged over t; the per-point loss is (1 - abar) chi^2_3, of variance
    15 E[(1 - abar)^2] - (3 E[1 - abar])^2."""
    T, n = 4, 200_000
    abar = torch.cumprod(1 - vp_beta_schedule(T, dtype=torch.float64), 0)

    class ExactMean(ExactNoisePredictor):
        def forward(self, x_t, z, t):
            return self.scale * self.abar[t - 1].sqrt().unsqueeze(-1) * x_t

    ddpm = DDPMLoss(ExactMean(T), num_steps=T, prediction="x0")
    loss, _ = ddpm.loss(torch.randn(n, 3, dtype=torch.float64))
    expected = 3 * (1 - abar).mean().item()
    sd = math.sqrt((15 * (1 - abar) ** 2).mean().item() - expected**2)
    assert abs(loss.item() - expected) < 5 * sd / math.sqrt(n)
    assert ddpm.distribution().prediction == "x0"
    with pytest.raises(ValueError, match="prediction must be one of"):
        DDPMLoss(ExactMean(T), num_steps=T, prediction="v")


def build(init_seed: int, **kwargs):
    set_seed(init_seed)
    net = DenoisingGenerator(2, noise_dim=0, hidden_dims=(16, 16))
    ddpm = DDPMLoss(net, num_steps=10, **kwargs)
    return ddpm, torch.optim.Adam(net.parameters(), lr=1e-2)


def test_a_resumed_run_equals_the_uninterrupted_run_bit_for_bit():
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(5))
    ddpm, opt = build(0)
    set_seed(1)
    reference = [ddpm.step(x, opt) for _ in range(6)]
    reference_state = ddpm.state_dict()
    ddpm, opt = build(0)
    set_seed(1)
    values = [ddpm.step(x, opt) for _ in range(3)]
    buffer = io.BytesIO()
    torch.save({"loss": ddpm.state_dict(), "opt": opt.state_dict(), "rng": torch.get_rng_state()}, buffer)
    ddpm, opt = build(7)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=False)
    ddpm.load_state_dict(checkpoint["loss"])
    opt.load_state_dict(checkpoint["opt"])
    torch.set_rng_state(checkpoint["rng"])
    values += [ddpm.step(x, opt) for _ in range(3)]
    assert values == reference
    state = ddpm.state_dict()
    for part in ("network",):
        assert all(torch.equal(a, b) for a, b in zip(reference_state[part].values(), state[part].values()))
    assert all(torch.equal(a, b) for a, b in zip(reference_state["ema"]["network"].values(),
                                                  state["ema"]["network"].values()))
    assert state["ema"]["num_updates"] == 6


def test_errors_and_the_guard():
    with pytest.raises(ValueError, match="network.noise_dim must be 0"):
        DDPMLoss(DenoisingGenerator(2, noise_dim=2, hidden_dims=(8,)))
    with pytest.raises(ValueError, match="num_steps must be an integer >= 1, got 0"):
        DDPMLoss(DenoisingGenerator(2, noise_dim=0, hidden_dims=(8,)), num_steps=0)
    ddpm, opt = build(0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        ddpm.step(torch.randn(4, 5), opt)
    with torch.no_grad():
        ddpm.network.net.net[0].weight[0, 0] = float("inf")
    with pytest.raises(DivergenceError, match=r"DDPMLoss: non-finite loss term\(s\) \['ddpm'\]"):
        ddpm.step(torch.randn(4, 2), opt)
    assert ddpm.num_updates == 0
