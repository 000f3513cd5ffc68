r"""Mode coverage of a generative model's samples: modes covered, the high-quality share, the reverse KL.

For data with :math:`K` known modes (a Gaussian mixture such as 25-Gaussians, or StackedMNIST's 1000 digit
triples), each sample is assigned to a mode (its nearest mean, or a classifier's label). With the assignment
counts :math:`n_k` of :math:`N` samples and the data's mode probabilities :math:`\pi_k`:

* **modes covered**: the number of modes holding at least ``min_count`` *high-quality* samples;
* **high-quality share**: for a mixture, the fraction of samples within ``num_sds`` standard deviations of
  their nearest mean (3 by convention: the criterion of the 2-D mixture experiments of VEEGAN and PacGAN);
* **reverse KL**: :math:`\mathrm{KL}(\hat p \,\|\, \pi) = \sum_k \hat p_k \log(\hat p_k/\pi_k)` with
  :math:`\hat p_k = n_k/N` over all samples' assignments, the KL "from the categorical distribution of
  generated samples to the true data" of the StackedMNIST benchmarks (Lin et al. 2018; Xiao 2022, Table 6.3).
  It is finite when modes are missed and grows when the samples' modes are unbalanced.

References: A. Srivastava, L. Valkov, C. Russell, M. U. Gutmann, C. Sutton. *VEEGAN: Reducing Mode Collapse in
GANs using Implicit Variational Learning*. NeurIPS, 2017; Z. Lin, A. Khetan, G. Fanti, S. Oh. *PacGAN: The
power of two samples in generative adversarial networks*. NeurIPS, 2018; Z. Xiao. *Designing Deep Generative
Models with Symbiotic Composition*. PhD dissertation, University of Chicago, 2022, Sec. 6.4.3.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from pyro_diffvi.util import check_positive_float, check_positive_int

__all__ = ["ModeCoverage", "mixture_mode_coverage", "mode_coverage", "nearest_modes"]


class ModeCoverage(NamedTuple):
    """The result of :func:`mode_coverage` and :func:`mixture_mode_coverage`."""

    modes: int
    """modes holding at least ``min_count`` high-quality samples"""
    high_quality: float
    """the share of samples that are high-quality (1 when every sample counts)"""
    kl: float
    r"""the reverse KL :math:`\mathrm{KL}(\hat p\,\|\,\pi)` of all samples' mode assignments, in nats"""
    counts: torch.Tensor
    """the number of samples assigned to each mode, shape ``(K,)``"""
    high_quality_counts: torch.Tensor
    """the number of high-quality samples assigned to each mode, shape ``(K,)``"""


def mode_coverage(
    labels: torch.Tensor,
    num_modes: int,
    *,
    probs: torch.Tensor | None = None,
    high_quality: torch.Tensor | None = None,
    min_count: int = 1,
) -> ModeCoverage:
    r"""Mode coverage of samples with mode labels (e.g. a classifier's StackedMNIST labels).

    :param labels: integer mode labels in ``0..num_modes-1``, shape ``(N,)``.
    :param num_modes: :math:`K`.
    :param probs: the data's mode probabilities :math:`\pi`, shape ``(K,)``, positive (default uniform).
    :param high_quality: a boolean mask ``(N,)`` of the samples that count towards covering a mode (default all).
    :param min_count: high-quality samples a mode needs to count as covered.
    :return: :class:`ModeCoverage`.

    Example:

    >>> import torch
    >>> from pyro_diffvi.metrics import mode_coverage
    >>> result = mode_coverage(torch.tensor([0, 0, 1, 1]), 4)  # half the modes, evenly
    >>> result.modes, round(result.kl, 4)  # KL = log 2
    (2, 0.6931)
    """
    check_positive_int("num_modes", num_modes)
    check_positive_int("min_count", min_count)
    if not torch.is_tensor(labels) or labels.dim() != 1 or labels.numel() == 0 or labels.is_floating_point():
        raise ValueError("labels must be a non-empty 1-D integer tensor of mode labels")
    if labels.min() < 0 or labels.max() >= num_modes:
        raise ValueError(f"labels must lie in 0..{num_modes - 1}, got values from {labels.min()} to {labels.max()}")
    n = labels.numel()
    if probs is None:
        probs = torch.full((num_modes,), 1.0 / num_modes, dtype=torch.float64, device=labels.device)
    probs = torch.as_tensor(probs, dtype=torch.float64, device=labels.device)
    if probs.shape != (num_modes,) or not (probs > 0).all():
        raise ValueError(f"probs must be a positive tensor of shape ({num_modes},)")
    probs = probs / probs.sum()
    if high_quality is None:
        high_quality = torch.ones(n, dtype=torch.bool, device=labels.device)
    if high_quality.shape != (n,) or high_quality.dtype != torch.bool:
        raise ValueError(f"high_quality must be a boolean tensor of shape ({n},)")
    counts = torch.bincount(labels, minlength=num_modes)
    good = torch.bincount(labels[high_quality], minlength=num_modes)
    p_hat = counts.double() / n
    kl = torch.where(p_hat > 0, p_hat * (p_hat / probs).log(), torch.zeros_like(p_hat)).sum()
    return ModeCoverage(int((good >= min_count).sum()), high_quality.double().mean().item(), kl.item(), counts, good)


def nearest_modes(samples: torch.Tensor, centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest of ``centers`` to each sample and the Euclidean distance to it.

    :param samples: shape ``(N, D)``.
    :param centers: shape ``(K, D)``.
    :return: ``(labels, distances)``, each of shape ``(N,)``.

    Example:

    >>> import torch
    >>> from pyro_diffvi.metrics import nearest_modes
    >>> nearest_modes(torch.tensor([[0.9, 0.0], [0.0, -2.0]]), torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    (tensor([1, 0]), tensor([0.1000, 2.0000]))
    """
    if samples.dim() != 2 or centers.dim() != 2 or samples.shape[1] != centers.shape[1]:
        raise ValueError(
            f"samples (N, D) and centers (K, D) must share D, got {tuple(samples.shape)} and {tuple(centers.shape)}"
        )
    distances = torch.cdist(samples, centers.to(samples))
    best, labels = distances.min(dim=1)
    return labels, best


def mixture_mode_coverage(
    samples: torch.Tensor,
    centers: torch.Tensor,
    scale: float,
    *,
    probs: torch.Tensor | None = None,
    num_sds: float = 3.0,
    min_count: int = 1,
) -> ModeCoverage:
    r"""Mode coverage of samples of an isotropic Gaussian mixture with means ``centers`` and standard deviation
    ``scale`` (e.g. :class:`~pyro_diffvi.priors.GaussianGrid`, 25-Gaussians): each sample is assigned to its
    nearest mean and is high-quality when within ``num_sds * scale`` of it.

    :param samples: shape ``(N, D)``.
    :param centers: the mixture's means, shape ``(K, D)``.
    :param scale: the components' standard deviation.
    :param probs: the components' weights (default equal).
    :param num_sds: the high-quality radius in standard deviations.
    :param min_count: high-quality samples a mode needs to count as covered.
    :return: :class:`ModeCoverage`.

    Example:

    >>> import torch
    >>> from pyro_diffvi.metrics import mixture_mode_coverage
    >>> from pyro_diffvi.priors import GaussianGrid
    >>> grid = GaussianGrid()
    >>> exact = mixture_mode_coverage(grid.sample((10000,)), grid.centers, grid.scale)
    >>> exact.modes, exact.high_quality > 0.98, exact.kl < 0.01  # data from the mixture itself
    (25, True, True)
    """
    if not torch.is_tensor(samples) or not samples.is_floating_point():
        raise ValueError("samples must be a floating-point tensor of shape (N, D)")
    scale = check_positive_float("scale", scale)
    num_sds = check_positive_float("num_sds", num_sds)
    labels, distances = nearest_modes(samples, centers)
    return mode_coverage(labels, centers.shape[0], probs=probs, high_quality=distances <= num_sds * scale,
                         min_count=min_count)
