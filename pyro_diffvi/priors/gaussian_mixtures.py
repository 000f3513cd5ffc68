"""Isotropic Gaussian mixtures on a ring (8-Gaussians) and on a grid (25-Gaussians)."""

from __future__ import annotations

import math

import torch

from pyro_diffvi.ops.constants import LOG_2PI
from pyro_diffvi.priors.base import StructuredPrior
from pyro_diffvi.util import check_positive_float, check_positive_int


class IsotropicGaussianMixture(StructuredPrior):
    """Equal-weight mixture of isotropic Gaussians,
    :math:`p(z) = \\frac1K \\sum_l \\mathcal{N}(z; \\mu_l, \\sigma^2 I)`.

    :param centers: component means, shape ``(K, 2)``.
    :param scale: common standard deviation :math:`\\sigma > 0`.
    :param dim: event size (extra coordinates are standard normal).

    Example:

    >>> import torch
    >>> from pyro_diffvi.priors import IsotropicGaussianMixture
    >>> prior = IsotropicGaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), scale=0.5)
    >>> prior.num_components, round(prior.log_prob(torch.tensor([1.0, 0.0])).item(), 4)
    (2, -1.1444)
    """

    def __init__(self, centers: torch.Tensor, scale: float, *, dim: int = 2, **kwargs) -> None:
        if not torch.is_tensor(centers) or centers.dim() != 2 or centers.shape[-1] != 2:
            shape = tuple(centers.shape) if torch.is_tensor(centers) else type(centers).__name__
            raise ValueError(f"centers must be a tensor of shape (K, 2), got {shape}")
        if not torch.isfinite(centers).all():
            raise ValueError("centers must be finite")
        self.scale = check_positive_float("scale", scale)
        super().__init__(dim=dim, **kwargs)
        self.centers = centers.to(device=self._device, dtype=self._dtype)

    @property
    def num_components(self) -> int:
        return self.centers.shape[0]

    def _buffers(self) -> dict[str, torch.Tensor]:
        return {"centers": self.centers}

    def _component_log_probs_2d(self, z2: torch.Tensor) -> torch.Tensor:
        centers = self.buffers_like(z2)["centers"]
        sq = ((z2.unsqueeze(-2) - centers) ** 2).sum(-1)
        return -0.5 * sq / self.scale**2 - 2 * math.log(self.scale) - LOG_2PI

    def _sample_2d(self, labels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        noise = torch.randn(
            labels.shape + (2,), dtype=self._dtype, device=self._device, generator=generator
        )
        return self.centers[labels] + self.scale * noise


class GaussianRing(IsotropicGaussianMixture):
    """``num_components`` equal-weight isotropic Gaussians with means evenly spaced on a circle.

    Component ``l`` has mean :math:`r(\\cos(2\\pi l/K), \\sin(2\\pi l/K))`.

    Defaults reproduce the "8-Gaussians" toy density used by the unnormalized-priors paper
    (its Sec. 4.1, data from Cao et al. 2019, which follow Grathwohl et al. 2019): means at radius
    :math:`4/\\sqrt2 = 2\\sqrt2` and standard deviation :math:`0.5/\\sqrt2`.

    References: *Variational Inference with Unnormalized Priors*. Anonymous authors, manuscript under double-blind
    review. W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud. *FFJORD: Free-form Continuous
    Dynamics for Scalable Reversible Generative Models*. ICLR, 2019.

    :param num_components: number of Gaussians ``K >= 1``.
    :param radius: circle radius ``> 0``.
    :param scale: standard deviation of each Gaussian ``> 0``.
    :param dim: event size (coordinates beyond two are standard normal).

    Example:

    >>> import pyro
    >>> from pyro_diffvi.priors import GaussianRing
    >>> pyro.set_rng_seed(0)
    >>> prior = GaussianRing(num_components=4, radius=2.0)
    >>> prior.centers.round(decimals=4).abs()
    tensor([[2., 0.],
            [0., 2.],
            [2., 0.],
            [0., 2.]])
    >>> prior.sample((3,)).shape
    torch.Size([3, 2])
    """

    def __init__(
        self,
        *,
        num_components: int = 8,
        radius: float = 2.0 * math.sqrt(2.0),
        scale: float = 0.5 / math.sqrt(2.0),
        dim: int = 2,
        **kwargs,
    ) -> None:
        k = check_positive_int("num_components", num_components)
        self.radius = check_positive_float("radius", radius)
        angles = 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
        centers = self.radius * torch.stack([angles.cos(), angles.sin()], dim=-1)
        super().__init__(centers, scale, dim=dim, **kwargs)


class GaussianGrid(IsotropicGaussianMixture):
    """``num_per_side**2`` equal-weight isotropic Gaussians on a square grid centred at the origin.

    Means are :math:`s\\,(i - (n-1)/2, j - (n-1)/2)` for :math:`i, j = 0..n-1`, label
    :math:`l = i\\,n + j`.

    Defaults reproduce the common "25-Gaussians" toy density (the experiments of Xiao (2022),
    Ch. 4 and 6): a 5 x 5 grid with spacing :math:`2/(2\\sqrt2) = 1/\\sqrt2` and standard deviation
    :math:`0.05/(2\\sqrt2)`, i.e. means in :math:`\\{-2, \\dots, 2\\} \\times 2` with std 0.05, all divided by
    :math:`2\\sqrt2`.

    References: Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation, University of
    Chicago, 2022.

    :param num_per_side: grid size ``n >= 1``.
    :param spacing: distance between neighbouring means ``> 0``.
    :param scale: standard deviation of each Gaussian ``> 0``.
    :param dim: event size (coordinates beyond two are standard normal).

    Example:

    >>> from pyro_diffvi.priors import GaussianGrid
    >>> prior = GaussianGrid(num_per_side=3, spacing=1.0)
    >>> prior.num_components, prior.centers[0], prior.centers[4]
    (9, tensor([-1., -1.]), tensor([0., 0.]))
    """

    def __init__(
        self,
        *,
        num_per_side: int = 5,
        spacing: float = 1.0 / math.sqrt(2.0),
        scale: float = 0.05 / (2.0 * math.sqrt(2.0)),
        dim: int = 2,
        **kwargs,
    ) -> None:
        n = check_positive_int("num_per_side", num_per_side)
        self.num_per_side = n
        self.spacing = check_positive_float("spacing", spacing)
        axis = self.spacing * (torch.arange(n, dtype=torch.float64) - (n - 1) / 2)
        centers = torch.cartesian_prod(axis, axis).reshape(n * n, 2)
        super().__init__(centers, scale, dim=dim, **kwargs)
