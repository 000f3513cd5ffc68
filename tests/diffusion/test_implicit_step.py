"""The posterior-sampling step (Xiao 2022, Eq. 6.12) against the forward process's posterior by hand.

Moments are compared within standard errors: with n draws of a Gaussian of variance v, the sample mean has
SE sqrt(v / n) and the sample variance SE v sqrt(2 / (n - 1)); the tolerances are 5 SE (two-sided
probability 6e-7 per check at a fixed seed)."""

import math

import pytest
import torch

from pyro_diffvi.diffusion import GaussianDiffusion, posterior_sampling_step, vp_beta_schedule

N = 200_000


def hand_posterior(betas: torch.Tensor, t: int) -> tuple[float, float, float]:
    """q(x_{t-1} | x_t, x_0) = N(a x_0 + b x_t, v) by Bayes' rule on the forward chain (t >= 2)."""
    abar = torch.cumprod(1 - betas, 0).tolist()
    abar_prev, beta = abar[t - 2], betas[t - 1].item()
    # prior x_{t-1} | x_0 ~ N(sqrt(abar_prev) x_0, 1 - abar_prev);
    # likelihood x_t | x_{t-1} ~ N(sqrt(1 - beta) x_{t-1}, beta)
    precision = 1 / (1 - abar_prev) + (1 - beta) / beta
    v = 1 / precision
    return v * math.sqrt(abar_prev) / (1 - abar_prev), v * math.sqrt(1 - beta) / beta, v


def true_x0(x0: torch.Tensor):
    """A generator G(x_t, z, t) that ignores z and returns the true x_0 (noise_dim 3 to check z is drawn)."""

    def generator(x_t, z, t):
        assert z.shape == x_t.shape[:-1] + (3,)
        return x0

    generator.noise_dim = 3
    return generator


@pytest.mark.parametrize("t", [2, 3, 4])
def test_a_generator_of_the_true_x0_reproduces_the_forward_posterior(t, device):
    process = GaussianDiffusion(4, schedule="vp", dtype=torch.float64).to(device)
    x0 = torch.tensor([0.5, -1.0], dtype=torch.float64, device=device).expand(N, 2)
    x_t = torch.tensor([1.2, 0.3], dtype=torch.float64, device=device).expand(N, 2)
    step = posterior_sampling_step(process, true_x0(x0), x_t, t)
    a, b, v = hand_posterior(vp_beta_schedule(4, dtype=torch.float64), t)
    mean, var = step.x_prev.mean(0), step.x_prev.var(0)
    assert torch.allclose(mean, a * x0[0] + b * x_t[0], atol=5 * math.sqrt(v / N), rtol=0)
    assert torch.allclose(var, torch.full_like(var, v), atol=5 * v * math.sqrt(2 / (N - 1)), rtol=0)
    assert torch.equal(step.x0, x0)


def test_the_step_composes_with_the_forward_marginal(device):
    """x_t ~ q(x_t | x_0), then x_{t-1} ~ q(x_{t-1} | x_t, x_0): x_{t-1} ~ q(x_{t-1} | x_0), which is
    N(sqrt(abar) x_0, 1 - abar)."""
    process = GaussianDiffusion(4, schedule="vp", dtype=torch.float64).to(device)
    abar = torch.cumprod(1 - vp_beta_schedule(4, dtype=torch.float64), 0).tolist()
    x0 = torch.linspace(-2, 2, N, dtype=torch.float64, device=device).unsqueeze(-1)
    t = torch.randint(2, 5, (N,), device=device)
    x_t = process.q_sample(x0, t, torch.randn_like(x0))
    x_prev = posterior_sampling_step(process, lambda x_t, z, t: x0, x_t, t).x_prev
    abar_prev = torch.tensor(abar, dtype=torch.float64, device=device)[t - 2].unsqueeze(-1)
    standardized = (x_prev - abar_prev.sqrt() * x0) / (1 - abar_prev).sqrt()
    assert abs(standardized.mean().item()) < 5 / math.sqrt(N)
    assert abs(standardized.var().item() - 1) < 5 * math.sqrt(2 / (N - 1))


def test_the_last_step_returns_the_prediction_exactly():
    process = GaussianDiffusion(4, schedule="vp")
    x_t, x0 = torch.randn(7, 2), torch.randn(7, 2)
    assert torch.equal(posterior_sampling_step(process, lambda *a: x0, x_t, 1).x_prev, x0)
    t = torch.tensor([1, 2, 1, 3, 4, 1, 2])
    x_prev = posterior_sampling_step(process, lambda *a: x0, x_t, t).x_prev
    assert torch.equal(x_prev[t == 1], x0[t == 1]) and not torch.equal(x_prev[t > 1], x0[t > 1])


def test_noise_prediction_reads_as_the_same_posterior():
    """prediction="eps" with the true noise of x_t is the x_0 prediction with the true x_0 (Eq. 6.9)."""
    process = GaussianDiffusion(4, schedule="vp", dtype=torch.float64)
    x0, eps, noise = (torch.randn(50, 3, dtype=torch.float64) for _ in range(3))
    t = torch.randint(1, 5, (50,))
    x_t = process.q_sample(x0, t, eps)
    by_eps = posterior_sampling_step(process, lambda *a: eps, x_t, t, noise=noise, prediction="eps")
    by_x0 = posterior_sampling_step(process, lambda *a: x0, x_t, t, noise=noise)
    assert torch.allclose(by_eps.x_prev, by_x0.x_prev, atol=1e-10) and torch.allclose(by_eps.x0, x0, atol=1e-10)


def test_gradients_reach_the_generator():
    process = GaussianDiffusion(4, schedule="vp")
    shift = torch.zeros(2, requires_grad=True)
    step = posterior_sampling_step(process, lambda x_t, z, t: x_t + shift, torch.randn(5, 2), 3)
    step.x_prev.sum().backward()
    coef = process.at("posterior_coef_y0", 3).item()
    assert torch.allclose(shift.grad, torch.full((2,), 5 * coef))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"t": 5}, r"t must be in 1..4, got 5"),
        ({"t": 0}, r"t must be in 1..4, got 0"),
        ({"t": torch.ones(3, dtype=torch.long)}, r"t must be an int or a tensor of the batch shape \(5,\)"),
        ({"t": 2, "prediction": "v"}, "prediction must be one of"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    process = GaussianDiffusion(4, schedule="vp")
    t = kwargs.pop("t")
    with pytest.raises(ValueError, match=match):
        posterior_sampling_step(process, lambda *a: torch.zeros(5, 2), torch.zeros(5, 2), t, **kwargs)
