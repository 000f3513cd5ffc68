"""SSIM against a hand computation of Wang et al.'s formula and against torchmetrics; L2."""

import math

import pytest
import torch

from pyro_diffvi.metrics import l2_distance, ssim

F64 = torch.float64


def test_ssim_of_one_window_equals_the_formula_by_hand():
    # an 11 x 11 image: the window fits once, so SSIM is the formula with Gaussian-weighted statistics
    torch.manual_seed(0)
    x, y = torch.rand(11, 11, dtype=F64), torch.rand(11, 11, dtype=F64)
    g = [math.exp(-((i - 5) ** 2) / (2 * 1.5**2)) for i in range(11)]
    w = torch.tensor([[a * b for b in g] for a in g], dtype=F64)
    w = w / w.sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
    cxy = (w * (x - mx) * (y - my)).sum()
    c1, c2 = 0.01**2, 0.03**2
    by_hand = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert torch.allclose(ssim(x[None], y[None]), by_hand[None], atol=1e-12)


def test_ssim_reflect_padding_equals_torchmetrics():
    from torchmetrics.functional.image import structural_similarity_index_measure

    torch.manual_seed(1)
    x = torch.rand(6, 1, 28, 28, dtype=F64)
    y = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    ours = ssim(x.reshape(6, 784), y.reshape(6, 784), image_shape=(28, 28), padding="reflect")
    theirs = structural_similarity_index_measure(y, x, data_range=1.0, reduction="none")
    assert torch.allclose(ours, theirs, atol=1e-10)


def test_ssim_properties_and_errors():
    torch.manual_seed(2)
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    assert torch.allclose(ssim(x, x), torch.ones(2, 3))
    assert torch.allclose(ssim(x, y), ssim(y, x))
    assert (ssim(x, y) < ssim(x, (x + 0.05 * y).clamp(0, 1))).all()  # closer images, higher SSIM
    with pytest.raises(ValueError, match="same shape"):
        ssim(x, y[:1])
    with pytest.raises(ValueError, match="window_size"):
        ssim(x[..., :8, :8], y[..., :8, :8])
    with pytest.raises(ValueError, match="last dimension of 784"):
        ssim(torch.rand(2, 100), torch.rand(2, 100), image_shape=(28, 28))


def test_l2_distance():
    x, y = torch.zeros(3, 2, 2), torch.full((3, 2, 2), 0.5)
    assert torch.allclose(l2_distance(x, y, event_dim=2), torch.ones(3))
