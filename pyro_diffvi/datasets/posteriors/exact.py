r"""The exact answers of the posterior test problems: closed-form log evidences and exact posterior masses of mode
regions (Gaussian mixtures: the cells of the nearest mean, by Owen's :math:`T`, :mod:`pyro_diffvi.ops.polygons`)."""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch

from pyro_diffvi.ops.constants import LOG_2PI
from pyro_diffvi.ops.polygons import voronoi_masses

__all__ = [
    "equal_masses",
    "mixture_log_px",
    "mixture_posterior_masses",
    "linear_log_px",
    "positive_log_px",
    "target_log_px",
    "uniform_mixture_masses",
]


def mixture_log_px(x: torch.Tensor, means: list, scale: float, weights: list | None, noise: float):
    """:math:`\\log \\sum_k w_k \\mathcal N(x; \\mu_k, (s^2 + \\sigma^2) I)` in closed form."""
    mu = x.new_tensor(means)
    w = x.new_tensor(weights) if weights is not None else torch.ones_like(mu[:, 0])
    var = scale**2 + noise**2
    sq = ((x.unsqueeze(-2) - mu) ** 2).sum(-1)
    d = mu.shape[-1]
    log_comp = -0.5 * sq / var - 0.5 * d * (math.log(var) + LOG_2PI)
    return (log_comp + (w / w.sum()).log()).logsumexp(-1)


def mixture_posterior_masses(
    x: torch.Tensor, means: list, scale: float, weights: list | None, noise: float
) -> torch.Tensor:
    """Exact nearest-mean cell masses of the posterior of ``sum_k w_k N(mu_k, s^2 I)`` prior and
    ``N(z, sigma^2 I)`` likelihood: a mixture with means :math:`(\\sigma^2\\mu_k + s^2 x)/(s^2 +
    \\sigma^2)`, standard deviation :math:`s\\sigma/\\sqrt{s^2 + \\sigma^2}` and weights
    :math:`\\propto w_k\\,\\mathcal N(x; \\mu_k, (s^2 + \\sigma^2) I)`."""
    mu = x.new_tensor(means)
    w = x.new_tensor(weights) if weights is not None else torch.ones_like(mu[:, 0])
    var = scale**2 + noise**2
    centers = (noise**2 * mu + scale**2 * x.unsqueeze(-2)) / var  # (N, K, 2)
    log_w = (w / w.sum()).log() - 0.5 * ((x.unsqueeze(-2) - mu) ** 2).sum(-1) / var
    log_w = log_w - log_w.logsumexp(-1, keepdim=True)
    return voronoi_masses(means, centers, scale * noise / math.sqrt(var), log_w)


def positive_log_px(x: torch.Tensor, concentration: float, rate: float) -> torch.Tensor:
    """Exact :math:`\\log p(x)` of the Gamma-Poisson problem by splitting the third count:
    :math:`x_3 = y_1 + y_2` with :math:`y_i \\sim \\mathrm{Poisson}(z_i)`."""
    a, b = concentration, rate
    x1, x2, x3 = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    k = torch.arange(int(x3.max().item()) + 1, dtype=x.dtype, device=x.device)
    valid = k <= x3

    def log_g(count, other):  # log of integral of Gamma(z; a, b) Poi(count; z) Poi(other; z) dz
        n = count + other
        return (
            a * math.log(b)
            + torch.lgamma(a + n)
            - math.lgamma(a)
            - torch.lgamma(count + 1)
            - torch.lgamma(other + 1)
            - (a + n) * math.log(b + 2)
        )

    terms = log_g(x1, k) + log_g(x2, (x3 - k).clamp(min=0))
    return terms.masked_fill(~valid, -math.inf).logsumexp(-1)


def linear_log_px(x: torch.Tensor, matrix: list, offset: list, noise: tuple) -> torch.Tensor:
    """:math:`\\log\\mathcal N(x; b, AA^\\top + \\mathrm{diag}\\,\\sigma^2)`, the evidence of a
    linear-Gaussian model."""
    a = x.new_tensor(matrix)
    cov = a @ a.T + torch.diag(x.new_tensor(noise) ** 2)
    return dist.MultivariateNormal(x.new_tensor(offset), cov).log_prob(x)


def target_log_px(x: torch.Tensor) -> torch.Tensor:
    """:math:`\\log\\mathcal N(x; 0, I)`, the evidence of a sampling target's dummy observation."""
    return (-0.5 * x**2 - 0.5 * LOG_2PI).sum(-1)


def equal_masses(x: torch.Tensor, num_modes: int) -> torch.Tensor:
    """Mode masses ``1 / num_modes`` for every observation (a posterior symmetric between its modes), float64.

    :param x: observations ``(N, D)``.
    :param num_modes: the number of modes.
    """
    return torch.full((x.shape[0], num_modes), 1 / num_modes, dtype=torch.float64, device=x.device)


def uniform_mixture_masses(x: torch.Tensor, means: list, scale: float) -> torch.Tensor:
    """The nearest-mean cell masses of an equal-weight mixture of isotropic Gaussians (a sampling target's posterior,
    whatever ``x``), float64, one row per observation.

    :param x: observations ``(N, D)``.
    :param means: the component means ``(K, 2)``.
    :param scale: the components' standard deviation.
    """
    centers = x.new_tensor(means).expand(x.shape[0], len(means), 2)
    log_weights = torch.full_like(centers[..., 0], -math.log(len(means)))
    return voronoi_masses(means, centers, scale, log_weights)
