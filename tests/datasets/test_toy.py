"""Toy 2-D datasets (statistics with known values) and the Rezende-Mohamed potentials (hand values)."""

import math

import pytest
import torch

from pyro_diffvi.datasets.toy import TOY_DATASETS, potential, sample_toy
from pyro_diffvi.priors import GaussianGrid, GaussianRing

N = 40000


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_shapes_dtype_and_seed(name, device):
    x = sample_toy(name, 100, seed=3, device=device, dtype=torch.float64)
    assert x.shape == (100, 2) and x.dtype == torch.float64 and x.device.type == device.type
    assert torch.isfinite(x).all()
    assert torch.equal(x, sample_toy(name, 100, seed=3, device=device, dtype=torch.float64))
    assert not torch.equal(x, sample_toy(name, 100, seed=4, device=device, dtype=torch.float64))


def within(estimate, expected, se, k=4.0):
    """|estimate - expected| < k standard errors (k = 4: false-alarm rate ~6e-5 per check)."""
    return abs(estimate - expected) < k * se


def test_8gaussians_moments_and_mode_occupancy():
    x = sample_toy("8gaussians", N, seed=0, dtype=torch.float64)
    ring = GaussianRing()
    # E|z|^2 = R^2 + 2 sigma^2 = 8 + 0.25
    sq = (x**2).sum(-1)
    assert within(sq.mean().item(), 8.25, sq.std().item() / math.sqrt(N))
    # by symmetry each Voronoi cell of the 8 means holds exactly 1/8 of the mass
    nearest = torch.cdist(x, ring.centers.double()).argmin(-1)
    frac = torch.bincount(nearest, minlength=8).double() / N
    assert ((frac - 1 / 8).abs() < 4 * math.sqrt(1 / 8 * 7 / 8 / N)).all()


def test_25gaussians_component_means_and_spread():
    x = sample_toy("25gaussians", N, seed=0, dtype=torch.float64)
    centers = GaussianGrid().centers.double()
    sigma = 0.05 / (2 * math.sqrt(2))
    nearest = torch.cdist(x, centers).argmin(-1)  # means are 28 stds apart: assignment is exact
    counts = torch.bincount(nearest, minlength=25).double()
    assert ((counts / N - 1 / 25).abs() < 4 * math.sqrt(1 / 25 * 24 / 25 / N)).all()
    for k in (0, 7, 12, 24):
        mean = x[nearest == k].mean(0)
        assert ((mean - centers[k]).abs() < 4 * sigma / counts[k].sqrt()).all()
    resid = ((x - centers[nearest]) ** 2).sum(-1)  # E = 2 sigma^2, sd of the estimate = 2 sigma^2 / sqrt(N)
    assert within(resid.mean().item(), 2 * sigma**2, 2 * sigma**2 / math.sqrt(N))


def test_checkerboard_occupancy():
    x = sample_toy("checkerboard", N, seed=0, dtype=torch.float64)
    assert (x >= -4).all() and (x < 4).all()
    cells = torch.floor(x / 2).long()  # in {-2, -1, 0, 1}
    assert ((cells.sum(-1) % 2) == 0).all()  # only "black" squares are occupied
    index = (cells[:, 0] + 2) * 4 + (cells[:, 1] + 2)
    frac = torch.bincount(index, minlength=16).double() / N
    black = frac[frac > 0]
    assert black.numel() == 8 and ((black - 1 / 8).abs() < 4 * math.sqrt(1 / 8 * 7 / 8 / N)).all()
    # uniform within squares: position inside a square has mean 1 and variance 4/12
    inside = x - 2 * cells
    assert (inside.mean(0) - 1).abs().max() < 4 * math.sqrt(1 / 3 / N)


def test_two_spirals_second_moment():
    x = sample_toy("2spirals", N, seed=0, dtype=torch.float64)
    # hand-computed: with n = 3 pi sqrt(u), E n^2 = 9 pi^2 / 2, E[n cos n] = -4 / (3 pi),
    # E[n sin n] = 2 (9 pi^2 - 4) / (9 pi^2); jitter U[0, 1/2)^2; noise var 0.01 per coordinate
    e_arm = 9 * math.pi**2 / 2 + 1 / 6 + 0.5 * (4 / (3 * math.pi) + 2 * (9 * math.pi**2 - 4) / (9 * math.pi**2))
    expected = e_arm / 9 + 0.02
    sq = (x**2).sum(-1)
    assert within(sq.mean().item(), expected, sq.std().item() / math.sqrt(N))
    assert (x.mean(0).abs() < 4 * x.std(0) / math.sqrt(N)).all()  # point symmetry


def test_swissroll_second_moment():
    x = sample_toy("swissroll", N, seed=0, dtype=torch.float64)
    a, b = 1.5 * math.pi, 4.5 * math.pi
    expected = 0.2**2 * (b**3 - a**3) / (3 * (b - a)) + 2 * 0.2**2  # lambda^2 E t^2 + 2 sigma^2
    sq = (x**2).sum(-1)
    assert within(sq.mean().item(), expected, sq.std().item() / math.sqrt(N))


def test_potentials_hand_computed_values():
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0], [1.0, -0.5]], dtype=torch.float64)
    u1_origin = 0.5 * (2 / 0.4) ** 2 + 0.5 * (2 / 0.6) ** 2 - math.log(2)  # = 17.3624...
    assert abs(potential("U1", z[0]).item() + u1_origin) < 1e-12
    assert abs(potential(1, z[1]).item() - math.log1p(math.exp(-0.5 * (4 / 0.6) ** 2))) < 1e-12
    assert abs(potential("U2", z[2]).item() + 0.5 * (1 / 0.4) ** 2) < 1e-12  # w1(1) = 1
    # at (1, -0.5): w1 = 1, w2 = 3, both U3 terms equal exp(-0.5 (1.5/0.35)^2)
    u3 = 0.5 * (1.5 / 0.35) ** 2 - math.log(2)
    assert abs(potential("U3", z[3]).item() + u3) < 1e-12
    # at (1, 0): w1 = 1, w3 = 3 sigmoid(0) = 1.5
    u4 = -math.log(math.exp(-0.5 * (1 / 0.4) ** 2) + math.exp(-0.5 * (0.5 / 0.35) ** 2))
    assert abs(potential(4, z[2]).item() + u4) < 1e-12
    assert potential("U3", z).shape == (4,)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown toy dataset"):
        sample_toy("moons", 10)
    with pytest.raises(ValueError, match="num_samples"):
        sample_toy("checkerboard", 0)
    with pytest.raises(ValueError, match="unknown potential"):
        potential("U5", torch.zeros(2))
    with pytest.raises(ValueError, match="trailing shape"):
        potential("U1", torch.zeros(3, 3))


def test_cuda_without_cuda_is_the_librarys_clear_error():
    # Issue 25, smaller: sample_toy(device="cuda") without CUDA was torch's "Torch not compiled with CUDA enabled".
    if torch.cuda.is_available():
        assert sample_toy("8gaussians", 4, device="cuda").is_cuda
    else:
        with pytest.raises(ValueError, match="device='cuda' requested but CUDA is not available"):
            sample_toy("8gaussians", 4, device="cuda")
    assert sample_toy("8gaussians", 4, device="cpu").device.type == "cpu"
