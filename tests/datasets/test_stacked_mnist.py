"""StackedMNIST: every channel is an MNIST image of the split and the label is its digits' triple."""

import math

import pytest
import torch

from pyro_diffvi.datasets import STACKED_MNIST_MODES, load_mnist, load_stacked_mnist, stacked_label


def test_channels_are_mnist_images_and_labels_their_digits():
    mnist, digits = load_mnist("test")
    images, labels = load_stacked_mnist("test", num_samples=300, seed=3)
    assert images.shape == (300, 3 * 784) and labels.shape == (300,) and images.dtype == torch.float32
    # find each channel among the MNIST test images by a random projection (exact copies project exactly)
    key = torch.randn(784, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    table = mnist.double() @ key
    channels = images.reshape(300, 3, 784).double() @ key
    match = (channels.unsqueeze(-1) - table).abs().argmin(-1)  # (300, 3) indices into the test split
    assert torch.equal(images.reshape(300, 3, 784), mnist[match])
    assert torch.equal(labels, digits[match][:, 0] * 100 + digits[match][:, 1] * 10 + digits[match][:, 2])


def test_mode_frequencies_are_the_product_of_digit_frequencies():
    """P(label = 100 a + 10 b + c) = f_a f_b f_c with the split's digit frequencies f; checked on the hundreds
    digit and on all 1000 labels (chi-square within 5 SD of its mean 999)."""
    _, digits = load_mnist("test")
    freq = torch.bincount(digits, minlength=10).double() / len(digits)
    n = 60_000
    _, labels = load_stacked_mnist("test", num_samples=n, seed=1)
    assert labels.shape == (n,)
    first = torch.bincount(labels // 100, minlength=10).double() / n
    assert ((first - freq).abs() < 5 * (freq * (1 - freq) / n).sqrt()).all()
    expected = (freq[:, None, None] * freq[None, :, None] * freq[None, None, :]).reshape(1000) * n
    chi2 = ((torch.bincount(labels, minlength=1000) - expected) ** 2 / expected).sum().item()
    assert abs(chi2 - 999) < 5 * math.sqrt(2 * 999)
    assert labels.unique().numel() == STACKED_MNIST_MODES


def test_draws_are_seeded_and_follow_the_device_and_dtype(device):
    a, la = load_stacked_mnist("test", num_samples=10, seed=0, device=device, dtype=torch.float64)
    b, lb = load_stacked_mnist("test", num_samples=10, seed=0)
    assert a.device.type == device.type and a.dtype == torch.float64
    assert torch.equal(a.cpu().float(), b) and torch.equal(la.cpu(), lb)
    assert not torch.equal(load_stacked_mnist("test", num_samples=10, seed=1)[1], lb)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="split must be one of"):
        load_stacked_mnist("valid")
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        load_stacked_mnist("test", num_samples=0)
    with pytest.raises(ValueError, match=r"digits must be an integer tensor of shape \(N, 3\)"):
        stacked_label(torch.zeros(4, 2, dtype=torch.long))
