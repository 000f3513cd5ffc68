import math

import pytest
import torch

from pyro_diffvi.metrics import DDVI_MMD_SIGMAS, mmd, mmd2, rbf_mixture_kernel

D = 3
MU1, S1 = torch.zeros(D, dtype=torch.float64), 3.0
MU2, S2 = torch.tensor([6.0, 0.0, -4.0], dtype=torch.float64), 6.0


def expected_kernel(mean_diff: torch.Tensor, var: float, sigmas=DDVI_MMD_SIGMAS) -> float:
    """E exp(-|W|^2 / (2 sigma^2)) summed over sigmas, for W ~ N(mean_diff, var I_D)."""
    sq = mean_diff.square().sum().item()
    return sum(
        (s**2 / (s**2 + var)) ** (D / 2) * math.exp(-sq / (2 * (s**2 + var))) for s in sigmas
    )


def population_terms():
    kxx = expected_kernel(torch.zeros(D), 2 * S1**2)
    kyy = expected_kernel(torch.zeros(D), 2 * S2**2)
    kxy = expected_kernel(MU1 - MU2, S1**2 + S2**2)
    return kxx, kyy, kxy


def sample(m, n):
    return MU1 + S1 * torch.randn(m, D, dtype=torch.float64), MU2 + S2 * torch.randn(n, D, dtype=torch.float64)


def test_kernel_convention_by_hand():
    x = torch.tensor([[0.0, 0.0]])
    y = torch.tensor([[3.0, 4.0]])  # squared distance 25
    expected = sum(math.exp(-25 / (2 * s**2)) for s in DDVI_MMD_SIGMAS)
    assert rbf_mixture_kernel(x, y).item() == pytest.approx(expected, rel=1e-6)
    assert mmd2(x, y, unbiased=False).item() == pytest.approx(2 * 6 - 2 * expected, rel=1e-6)
    assert rbf_mixture_kernel(x, y, sigmas=[5.0]).item() == pytest.approx(math.exp(-0.5), rel=1e-6)


def test_v_statistic_of_identical_sets_is_exactly_zero():
    x = torch.randn(300, 5)
    assert mmd2(x, x.clone(), unbiased=False, chunk_size=64).item() == 0.0
    assert mmd(x, x, unbiased=False).item() == 0.0


def test_u_statistic_of_identical_sets_by_hand():
    # with y = x: mean_offdiag(K) * 2 - 2 * mean(K) = -2 (trace(K)/m - mean_offdiag(K)) / m ... by hand
    x = torch.randn(50, 2, dtype=torch.float64)
    k = rbf_mixture_kernel(x, x)
    m = x.shape[0]
    off = (k.sum() - k.trace()) / (m * (m - 1))
    assert mmd2(x, x).item() == pytest.approx((2 * off - 2 * k.mean()).item(), rel=1e-10)


def test_mmd2_matches_population_value_for_two_gaussians(device):
    kxx, kyy, kxy = population_terms()
    population = kxx + kyy - 2 * kxy
    x, y = (t.to(device) for t in sample(600, 500))
    # sd of the U-statistic at these sizes ~ 0.03 (measured over 20 seeds): tolerance ~3.5 sd
    assert mmd2(x, y, chunk_size=256).item() == pytest.approx(population, abs=0.1)
    assert population > 0.1  # the test separates the distributions


def test_u_statistic_unbiased_and_v_statistic_bias():
    kxx, kyy, kxy = population_terms()
    population = kxx + kyy - 2 * kxy
    m, n, reps = 10, 15, 300
    u, v = [], []
    for _ in range(reps):
        x, y = sample(m, n)
        u.append(mmd2(x, y).item())
        v.append(mmd2(x, y, unbiased=False).item())
    u, v = torch.tensor(u), torch.tensor(v)
    k0 = float(len(DDVI_MMD_SIGMAS))  # k(x, x)
    v_expected = population + (k0 - kxx) / m + (k0 - kyy) / n  # E[V] = MMD^2 + diagonal bias
    # means of 300 replicates: within 4 standard errors
    assert abs(u.mean().item() - population) < 4 * u.std().item() / math.sqrt(reps)
    assert abs(v.mean().item() - v_expected) < 4 * v.std().item() / math.sqrt(reps)


def test_chunking_and_flattening_do_not_change_the_value():
    x, y = sample(100, 70)
    ref = mmd2(x, y)
    assert mmd2(x, y, chunk_size=13).item() == pytest.approx(ref.item(), rel=1e-12)
    assert mmd2(x.reshape(100, 3, 1), y.reshape(70, 1, 3)).item() == pytest.approx(ref.item(), rel=1e-12)


def test_input_validation():
    x = torch.randn(10, 3)
    with pytest.raises(ValueError, match="same number of features"):
        mmd2(x, torch.randn(10, 4))
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="y contains"):
        mmd2(x, bad)
    with pytest.raises(ValueError, match="at least 2 samples"):
        mmd2(x, x[:1])
    with pytest.raises(ValueError, match="sigmas"):
        mmd2(x, x, sigmas=[1.0, -2.0])
    with pytest.raises(ValueError, match="chunk_size"):
        mmd2(x, x, chunk_size=0)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        mmd2(x.numpy(), x)


def test_integer_samples_are_compared_as_their_float_values():
    # Issue 25 case 22: integer tensors raised torch's cdist dtype error. By hand, sigma = 1, x = {0, 1},
    # y = {0, 2}: the V-statistic is [(2 + 2e^{-1/2}) + (2 + 2e^{-2}) - 2(1 + e^{-2} + 2e^{-1/2})] / 4
    # = (1 - e^{-1/2}) / 2.
    x, y = torch.tensor([[0], [1]]), torch.tensor([[0], [2]])
    v = mmd2(x, y, sigmas=(1.0,), unbiased=False)
    assert v.dtype == torch.float64
    assert v.item() == pytest.approx((1 - math.exp(-0.5)) / 2, rel=1e-12)
    assert mmd2(x, y.float(), sigmas=(1.0,), unbiased=False).item() == pytest.approx(v.item(), rel=1e-6)
    assert mmd(x.bool(), x.bool(), sigmas=(1.0,), unbiased=False).item() == 0.0
    with pytest.raises(TypeError, match="x must be a real tensor"):
        mmd2(x.to(torch.complex64), y)
