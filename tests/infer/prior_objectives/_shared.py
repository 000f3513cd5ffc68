"""Energies and data of known densities shared by the prior-objective tests."""

import math

import torch
from torch import nn

from pyro_diffvi.distributions import GRBM

TRUE_MEAN = torch.tensor([1.0, -0.5], dtype=torch.float64)

TRUE_COV = torch.tensor([[1.0, 0.6], [0.6, 2.0]], dtype=torch.float64)


class QuadraticEnergy(nn.Module):
    """E(z) = 0.5 (z - m)^T L L^T (z - m), L lower triangular with a positive diagonal (a Gaussian)."""

    def __init__(self, dim: int = 2, dtype=torch.float64):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(dim, dtype=dtype))
        self.raw = nn.Parameter(torch.zeros(dim, dim, dtype=dtype))

    def chol(self) -> torch.Tensor:
        return torch.tril(self.raw, -1) + torch.diag(self.raw.diagonal().exp())

    def precision(self) -> torch.Tensor:
        L = self.chol()
        return L @ L.T

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((z - self.mean) @ self.chol()).pow(2).sum(-1)

    def energy(self, z: torch.Tensor) -> torch.Tensor:
        return self(z)

    def exact_log_partition(self) -> torch.Tensor:
        d = self.mean.shape[0]
        return 0.5 * d * math.log(2 * math.pi) - self.chol().diagonal().log().sum()


def gaussian_samples(n: int) -> torch.Tensor:
    return TRUE_MEAN + torch.randn(n, 2, dtype=torch.float64) @ torch.linalg.cholesky(TRUE_COV).T


def grid_log_partition(energy, lo: float, hi: float, num: int = 400) -> torch.Tensor:
    """log Z = log ∫ e^{-E} by the midpoint rule on a square grid (independent of any closed form)."""
    h = (hi - lo) / num
    axis = lo + h * (torch.arange(num, dtype=torch.float64) + 0.5)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        return torch.logsumexp(-energy(grid), 0) + 2 * math.log(h)


def fit(objective, energy, data, steps, lr, extra_params=(), batch_size=None):
    params = list(energy.parameters()) + list(extra_params)
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        batch = data if batch_size is None else data[torch.randint(len(data), (batch_size,))]
        opt.zero_grad()
        objective.loss(energy, batch).backward()
        opt.step()
        sched.step()


def eight_gaussians(n: int, radius: float = 2.0, std: float = 0.5) -> torch.Tensor:
    angles = torch.randint(8, (n,)).to(torch.float64) * (2 * math.pi / 8)
    centers = radius * torch.stack([angles.cos(), angles.sin()], -1)
    return centers + std * torch.randn(n, 2, dtype=torch.float64)


def random_grbm(visible=2, hidden=3, dtype=torch.float64) -> GRBM:
    g = torch.Generator().manual_seed(3)
    return GRBM(
        torch.randn(visible, generator=g, dtype=dtype) * 0.5,
        torch.randn(visible, generator=g, dtype=dtype) * 0.2,
        torch.randn(visible, hidden, generator=g, dtype=dtype),
        torch.randn(hidden, generator=g, dtype=dtype) * 0.5,
    )


def quadrature_log_likelihood(energy, data) -> float:
    with torch.no_grad():
        return (-energy(data).mean() - grid_log_partition(energy, -8.0, 8.0)).item()
