"""Variance schedules against their defining formulas."""

import math

import pytest
import torch

from pyro_diffvi.diffusion import (
    GaussianDiffusion,
    cosine_beta_schedule,
    linear_beta_schedule,
    make_schedule,
    vp_beta_schedule,
)


def test_linear_schedule_endpoints_and_spacing():
    betas = linear_beta_schedule(20, dtype=torch.float64)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert torch.allclose(betas.diff(), torch.full((19,), (0.02 - 1e-4) / 19, dtype=torch.float64))
    # abar_T = prod(1 - beta_t): about 0.82 for the paper's T = 20 setting
    assert torch.prod(1 - betas).item() == pytest.approx(0.8168, abs=1e-3)


def test_cosine_schedule_matches_alpha_bar_formula():
    T, s = 10, 0.008
    betas = cosine_beta_schedule(T, max_beta=0.999, dtype=torch.float64)
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    abar = torch.cumprod(1 - betas, 0)
    for t in range(1, T):  # the last beta is clipped at 0.999
        assert abar[t - 1].item() == pytest.approx(f(t) / f(0), rel=1e-10)
    assert betas[-1].item() == pytest.approx(0.999)
    clipped = cosine_beta_schedule(T, dtype=torch.float64)  # default clip 0.5
    assert clipped.max().item() == pytest.approx(0.5) and torch.equal(clipped[betas < 0.5], betas[betas < 0.5])


def test_make_schedule_validation():
    assert make_schedule([0.1, 0.2], 2).shape == (2,)
    with pytest.raises(ValueError, match="schedule must be one of"):
        make_schedule("quadratic", 5)
    with pytest.raises(ValueError, match="shape \\(3,\\)"):
        make_schedule([0.1, 0.2], 3)
    with pytest.raises(ValueError, match="\\(0, 1\\)"):
        make_schedule([0.1, 1.2], 2)
    with pytest.raises(ValueError, match="num_steps"):
        linear_beta_schedule(0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: cosine_beta_schedule(10, s=-0.5), "s must be finite and >= 0"),
        (lambda: cosine_beta_schedule(True), "num_steps must be an integer"),
        (lambda: linear_beta_schedule(2.0), "num_steps must be an integer"),
    ],
)
def test_schedule_arguments_are_checked(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_explicit_betas_are_checked_in_the_dtype_they_are_used_in():
    betas = torch.tensor([0.1, 1 - 1e-10], dtype=torch.float64)  # fine in float64, exactly 1 in float32
    assert make_schedule(betas, 2, dtype=torch.float64).max() < 1
    with pytest.raises(ValueError, match=r"in torch.float32"):
        make_schedule(betas, 2, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"in torch.float32"):
        GaussianDiffusion(2, schedule=betas, dtype=torch.float32)


def test_vp_schedule_matches_the_vp_sde_variance_at_every_step():
    """Eq. 6.15's betas give 1 - abar_t = sigma^2(t/T) of Eq. 6.14 at every step, for every T."""
    beta_min, beta_max = 0.1, 20.0
    for T in (1, 2, 4, 8, 1000):
        betas = vp_beta_schedule(T, dtype=torch.float64)
        abar = torch.cumprod(1 - betas, 0)
        for t in sorted({1, T // 2 or 1, T}):
            s = t / T
            sigma2 = 1 - math.exp(-beta_min * s - 0.5 * (beta_max - beta_min) * s**2)
            assert 1 - abar[t - 1].item() == pytest.approx(sigma2, rel=1e-12)
    # T = 4, the dissertation's setting: large steps ending at nearly pure noise
    betas = vp_beta_schedule(4, dtype=torch.float64)
    assert betas[0].item() == pytest.approx(1 - math.exp(-0.1 / 4 - 0.5 * 19.9 / 16), rel=1e-12)
    assert torch.equal(make_schedule("vp", 4, dtype=torch.float64), betas)


def test_vp_schedule_errors_name_the_argument():
    with pytest.raises(ValueError, match="num_steps must be an integer >= 1, got 0"):
        vp_beta_schedule(0)
    with pytest.raises(ValueError, match="beta_max must be >= beta_min"):
        vp_beta_schedule(4, beta_min=1.0, beta_max=0.5)
    with pytest.raises(ValueError, match="beta_min must be finite and >= 0"):
        vp_beta_schedule(4, beta_min=-0.1)
    # one step of beta_max = 40: beta = 1 - 2e-9, exactly 1 in float32 (a chain would divide by zero)
    with pytest.raises(ValueError, match=r"torch.float32 rounds to 0 or 1 \(it cannot represent this schedule\)"):
        vp_beta_schedule(1, beta_max=40.0)
    assert vp_beta_schedule(1, beta_max=40.0, dtype=torch.float64).item() < 1
    with pytest.raises(ValueError, match="in torch.float32"):  # through GaussianDiffusion too
        GaussianDiffusion(1, schedule=vp_beta_schedule(1, beta_max=40.0, dtype=torch.float64), dtype=torch.float32)
