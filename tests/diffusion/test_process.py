"""The Gaussian forward process against hand-composed transitions and Bayes' rule."""

import math

import pyro.distributions as dist
import pytest
import torch

from pyro_diffvi.diffusion import GaussianDiffusion


def _hand_marginals(betas):
    """Compose y_t = sqrt(1-b_t) y_{t-1} + sqrt(b_t) e_t by hand: y_t | y_0 ~ N(a_t y_0, v_t)."""
    a, v, out = 1.0, 0.0, []
    for b in betas.tolist():
        a = a * math.sqrt(1 - b)
        v = (1 - b) * v + b
        out.append((a, v))
    return out


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_marginals_match_composed_transitions(schedule):
    process = GaussianDiffusion(12, schedule=schedule, dtype=torch.float64)
    y0 = torch.tensor([[-1.3], [0.4], [2.0]], dtype=torch.float64)
    for t, (a, v) in enumerate(_hand_marginals(process.betas), start=1):
        m = process.marginal(y0, t)
        assert torch.allclose(m.loc, a * y0, atol=1e-12)
        assert torch.allclose(m.scale, torch.full_like(y0, math.sqrt(v)), atol=1e-12)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_posterior_matches_bayes_rule(schedule):
    process = GaussianDiffusion(10, schedule=schedule, dtype=torch.float64)
    marg = _hand_marginals(process.betas)
    y0 = torch.tensor([[0.7]], dtype=torch.float64)
    y_t = torch.tensor([[-0.2]], dtype=torch.float64)
    for t in range(2, 11):
        a_prev, v_prev = marg[t - 2]
        b = float(process.betas[t - 1])
        # prior y_{t-1}|y_0 ~ N(a_prev y0, v_prev), likelihood y_t|y_{t-1} ~ N(sqrt(1-b) y_{t-1}, b)
        precision = 1 / v_prev + (1 - b) / b
        mean = (a_prev * y0 / v_prev + math.sqrt(1 - b) * y_t / b) / precision
        post = process.posterior(y_t, y0, t)
        assert torch.allclose(post.loc, mean, atol=1e-10)
        assert torch.allclose(post.scale ** 2, torch.full_like(mean, 1 / precision), atol=1e-10)
    with pytest.raises(ValueError, match="t >= 2"):
        process.posterior(y_t, y0, 1)


def test_batched_times_and_eps_mean():
    process = GaussianDiffusion(20, schedule="linear", dtype=torch.float64)
    y0 = torch.randn(50, 3, dtype=torch.float64)
    t = torch.randint(2, 21, (50,))
    eps = torch.randn(50, 3, dtype=torch.float64)
    y_t = process.q_sample(y0, t, eps)
    # with the true noise, the noise-prediction mean is the posterior mean (DDPM identity)
    assert torch.allclose(process.mean_from_eps(y_t, t, eps), process.posterior(y_t, y0, t).loc, atol=1e-10)
    for i in range(3):
        ti = int(t[i])
        assert torch.allclose(process.marginal(y0[i], ti).loc, process.marginal(y0, t).loc[i], atol=1e-12)


def test_log_forward_density_is_sum_of_transitions():
    process = GaussianDiffusion(6, schedule="cosine", dtype=torch.float64)
    ys = torch.randn(7, 4, 2, dtype=torch.float64)
    expected = sum(
        dist.Normal(math.sqrt(1 - float(b)) * ys[t - 1], math.sqrt(float(b))).log_prob(ys[t]).sum(-1)
        for t, b in enumerate(process.betas, start=1)
    )
    assert torch.allclose(process.log_forward_density(ys), expected, atol=1e-10)
    with pytest.raises(ValueError, match="T \\+ 1"):
        process.log_forward_density(ys[:-1])


def test_time_out_of_range():
    process = GaussianDiffusion(5)
    with pytest.raises(ValueError, match="t must be in 1..5"):
        process.marginal(torch.zeros(2), 6)


def test_a_schedule_whose_alpha_bar_underflows_in_the_dtype_is_refused():
    # 16 steps of beta = 1 - 2e-7 (each representable in float32): alpha_bar_t = (2e-7)^t, which float32
    # (smallest subnormal 1.4e-45) holds up to t = 6 (6.4e-41) and rounds to 0 from t = 7 (1.3e-47)
    betas = torch.full((16,), 1 - 2e-7, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"underflows to 0 in torch.float32 from t = 7 \(alpha_bar_7 = 1.28e-47\)"):
        GaussianDiffusion(16, schedule=betas)
    process = GaussianDiffusion(16, schedule=betas, dtype=torch.float64)  # float64 holds it
    assert process.sqrt_alphas_cumprod[-1].item() == pytest.approx(2e-7**8, rel=1e-6)
