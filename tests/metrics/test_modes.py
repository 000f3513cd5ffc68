"""Mode coverage against counts and KL divergences computed by hand."""

import math

import pytest
import torch

from pyro_diffvi.metrics import mixture_mode_coverage, mode_coverage, nearest_modes
from pyro_diffvi.priors import GaussianGrid


def test_counts_modes_and_reverse_kl_by_hand():
    labels = torch.tensor([0, 0, 0, 1, 2, 2])  # 3 of 4 modes, shares 1/2, 1/6, 1/3
    result = mode_coverage(labels, 4)
    kl = 0.5 * math.log(0.5 / 0.25) + (1 / 6) * math.log((1 / 6) / 0.25) + (1 / 3) * math.log((1 / 3) / 0.25)
    assert result.modes == 3 and result.counts.tolist() == [3, 1, 2, 0] and result.high_quality == 1.0
    assert result.kl == pytest.approx(kl, rel=1e-12)
    # a non-uniform reference and a threshold: mode 1 (one sample) no longer counts
    probs = torch.tensor([0.4, 0.1, 0.4, 0.1])
    result = mode_coverage(labels, 4, probs=probs, min_count=2)
    kl = 0.5 * math.log(0.5 / 0.4) + (1 / 6) * math.log((1 / 6) / 0.1) + (1 / 3) * math.log((1 / 3) / 0.4)
    assert result.modes == 2 and result.kl == pytest.approx(kl, rel=1e-12)
    # only high-quality samples cover a mode; every sample enters the KL
    quality = torch.tensor([True, False, False, False, True, True])
    result = mode_coverage(labels, 4, high_quality=quality)
    assert result.modes == 2 and result.high_quality == pytest.approx(0.5) and result.kl == pytest.approx(
        mode_coverage(labels, 4).kl
    )
    assert result.high_quality_counts.tolist() == [1, 0, 2, 0]
    # the exact distribution has KL 0
    assert mode_coverage(torch.arange(8) % 4, 4).kl == 0.0


def test_mixture_coverage_uses_the_nearest_mean_and_the_3_sd_radius():
    centers = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    scale = 0.1
    samples = torch.tensor([
        [0.29, 0.0],    # 2.9 SD from centre 0: high quality
        [1.0, 0.31],    # 3.1 SD from centre 1: assigned to it, not high quality
        [0.05, 0.98],   # near centre 2
        [0.55, 0.0],    # nearest is centre 1 (0.45 away), far from any: low quality
    ])
    labels, distances = nearest_modes(samples, centers)
    assert labels.tolist() == [0, 1, 2, 1]
    assert torch.allclose(distances, torch.tensor([0.29, 0.31, math.hypot(0.05, 0.02), 0.45]))
    result = mixture_mode_coverage(samples, centers, scale)
    assert result.modes == 2 and result.high_quality == pytest.approx(0.5) and result.counts.tolist() == [1, 2, 1]
    assert mixture_mode_coverage(samples, centers, scale, num_sds=3.2).modes == 3


def test_draws_of_25_gaussians_themselves_cover_every_mode():
    """The data's own samples: 25 modes, high-quality share P(chi_2 <= 3) = 1 - exp(-9/2) = 0.9889 (SE 0.001 at
    n = 10,000) and a KL of order (K - 1) / (2 n) = 0.0012."""
    grid = GaussianGrid()
    n = 10_000
    x = grid.sample_with_labels((n,), generator=torch.Generator().manual_seed(0))[0]
    result = mixture_mode_coverage(x, grid.centers, grid.scale, min_count=300)
    share = 1 - math.exp(-4.5)
    assert result.modes == 25
    assert abs(result.high_quality - share) < 5 * math.sqrt(share * (1 - share) / n)
    assert 0 < result.kl < 0.005


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: mode_coverage(torch.tensor([0, 4]), 4), r"labels must lie in 0..3"),
        (lambda: mode_coverage(torch.tensor([0.0, 1.0]), 4), "integer tensor"),
        (lambda: mode_coverage(torch.tensor([0, 1]), 2, probs=torch.tensor([1.0, 0.0])), "positive tensor of shape"),
        (lambda: mode_coverage(torch.tensor([0, 1]), 2, min_count=0), "min_count must be an integer >= 1"),
        (lambda: nearest_modes(torch.zeros(3, 2), torch.zeros(4, 3)), "must share D"),
        (lambda: mixture_mode_coverage(torch.zeros(3, 2), torch.zeros(4, 2), 0.0), "scale must be finite and > 0"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
