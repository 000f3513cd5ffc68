import pytest
import torch

from pyro_diffvi.datasets import Minibatches, binarize_images, load_digits, load_mnist

# Per-class counts of the standard MNIST split (LeCun & Cortes).
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
# Per-class counts of the UCI optical digits test set bundled with scikit-learn.
DIGITS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


@pytest.mark.parametrize(
    "split, counts", [("train", MNIST_TRAIN_COUNTS), ("test", MNIST_TEST_COUNTS)]
)
def test_mnist_standard_split(split, counts):
    x, y = load_mnist(split)
    assert x.shape == (sum(counts), 784) and x.dtype == torch.float32
    assert y.shape == (sum(counts),) and y.dtype == torch.int64
    assert torch.bincount(y, minlength=10).tolist() == counts
    assert x.min().item() == 0.0 and 0.99 < x.max().item() <= 1.0


def test_mnist_device_and_dtype(device):
    x, y = load_mnist("test", device=device, dtype=torch.float64)
    assert x.device.type == device.type and y.device.type == device.type
    assert x.dtype == torch.float64


def test_mnist_returns_copies_of_the_cache():
    x, _ = load_mnist("test")
    x.zero_()
    assert load_mnist("test")[0].sum().item() > 0


def test_static_binarization_is_fixed_by_seed():
    grey, _ = load_mnist("test")
    a, _ = load_mnist("test", binarize="static", seed=3)
    b, _ = load_mnist("test", binarize="static", seed=3)
    c, _ = load_mnist("test", binarize="static", seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    # Pixels with grey level 0 or 1 are deterministic.
    assert (a[grey == 0] == 0).all() and (a[grey == 1] == 1).all()
    # E[mean bit] = mean grey level; SE = sqrt(sum g(1-g)) / n; 5 SE tolerance.
    n = grey.numel()
    se = (grey * (1 - grey)).sum().sqrt() / n
    assert abs(a.mean() - grey.mean()) < 5 * se


def test_dynamic_binarization_draws_fresh_bits():
    grey, labels = load_mnist("test")
    grey, labels = grey[:2000], labels[:2000]
    batches = Minibatches(grey, labels, batch_size=2000, shuffle=False, binarize="dynamic", seed=0)
    (x1, y1), = list(batches)
    (x2, y2), = list(batches)
    assert torch.equal(y1, labels) and torch.equal(y2, labels)
    assert set(x1.unique().tolist()) == {0.0, 1.0}
    variance = grey * (1 - grey)
    n = grey.numel()
    # Mean of the bits vs the grey-level mean: SE = sqrt(sum g(1-g)) / n, 5 SE tolerance.
    se = variance.sum().sqrt() / n
    for x in (x1, x2):
        assert abs(x.mean() - grey.mean()) < 5 * se
    # Two independent draws differ at a pixel with probability 2 g (1 - g);
    # the number of differing pixels has variance sum p(1 - p) with p = 2 g (1 - g).
    p = 2 * variance
    differing = (x1 != x2).sum()
    assert abs(differing - p.sum()) < 5 * (p * (1 - p)).sum().sqrt()
    # Same seed -> same stream.
    again = Minibatches(grey, labels, batch_size=2000, shuffle=False, binarize="dynamic", seed=0)
    assert torch.equal(next(iter(again))[0], x1)


def test_minibatches_cover_each_row_once_per_epoch():
    x = torch.arange(10.0).unsqueeze(-1) / 10
    y = torch.arange(10)
    batches = Minibatches(x, y, batch_size=4, seed=1)
    assert len(batches) == 3
    epochs = [list(batches) for _ in range(2)]
    for epoch in epochs:
        assert [b[0].shape[0] for b in epoch] == [4, 4, 2]
        rows = torch.cat([b[1] for b in epoch])
        assert sorted(rows.tolist()) == list(range(10))
        assert torch.equal(torch.cat([b[0] for b in epoch]).squeeze(-1), rows / 10)
    assert not torch.equal(epochs[0][0][1], epochs[1][0][1])  # reshuffled
    dropped = Minibatches(x, batch_size=4, drop_last=True, shuffle=False)
    assert len(dropped) == 2
    assert torch.equal(torch.cat(list(dropped)), x[:8])


def test_minibatches_on_device(device):
    x = torch.rand(6, 3, device=device)
    batch = next(iter(Minibatches(x, batch_size=6, binarize="dynamic")))
    assert batch.device.type == device.type and batch.shape == (6, 3)
    x_batch, y_batch = next(iter(Minibatches(x, torch.arange(6, device=device), batch_size=4)))
    assert x_batch.device.type == y_batch.device.type == device.type
    assert torch.equal(x[y_batch], x_batch)


def test_digits_fallback():
    x, y = load_digits("all")
    assert x.shape == (1797, 64) and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == DIGITS_COUNTS
    # Grey levels were integers 0..16.
    assert torch.equal(x * 16, (x * 16).round()) and x.max().item() == 1.0
    train, _ = load_digits("train")
    test, _ = load_digits("test")
    assert train.shape == (1437, 64) and test.shape == (360, 64)
    assert torch.equal(torch.cat([train, test]), x)
    bits, _ = load_digits("train", binarize="static", seed=0)
    assert set(bits.unique().tolist()) == {0.0, 1.0}


def test_binarize_images_mean():
    g = torch.full((100_000,), 0.3)
    bits = binarize_images(g, generator=torch.Generator().manual_seed(0))
    # SE of the mean = sqrt(0.3 * 0.7 / 1e5) = 0.00145; 5 SE tolerance.
    assert abs(bits.mean().item() - 0.3) < 5 * 0.00145


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(split="valid"), "split must be one of"),
        (dict(binarize="otsu"), "binarize must be one of"),
        (dict(binarize="dynamic"), "Minibatches"),
        (dict(seed=-1), "seed must be an integer >= 0"),
        (dict(dtype=torch.int64), "dtype must be a floating-point"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_digits(**kwargs)
    if "split" not in kwargs:
        with pytest.raises(ValueError, match=message):
            load_mnist(**kwargs)


def test_bad_minibatch_arguments():
    x = torch.rand(5, 2)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        Minibatches(x, batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        Minibatches(x, batch_size=-3)
    with pytest.raises(ValueError, match="binarize must be one of"):
        Minibatches(x, binarize="static")
    with pytest.raises(ValueError, match="labels must be a tensor with 5 rows"):
        Minibatches(x, torch.zeros(4))
    with pytest.raises(TypeError, match="images must be a floating-point"):
        Minibatches(torch.zeros(5, 2, dtype=torch.int64))


def test_binarize_images_names_the_expected_range():
    # Issue 25 case 24: 0-255 grey levels raised torch's "Expected p_in >= 0 && p_in <= 1".
    with pytest.raises(ValueError, match=r"images must be grey levels in \[0, 1\], got values in \[0, 255\] "
                                         r"\(for 0-255 grey levels pass images / 255\)"):
        binarize_images(torch.tensor([0.0, 128.0, 255.0]))
    with pytest.raises(ValueError, match=r"got values in \[-0.5, 1\]"):
        binarize_images(torch.tensor([-0.5, 1.0]))
    with pytest.raises(ValueError, match="images must be grey levels"):
        binarize_images(torch.tensor([float("nan"), 0.5]))
    with pytest.raises(TypeError, match="got dtype torch.uint8"):
        binarize_images(torch.tensor([0, 255], dtype=torch.uint8))
    assert binarize_images(torch.tensor([0.0, 1.0])).tolist() == [0.0, 1.0]  # the range's ends are grey levels
