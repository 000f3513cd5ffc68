"""Energies shared by the sampler and Hessian tests: a quadratic with closed forms, a smooth non-quadratic MLP
(import as ``from tests.samplers.energies import ...``)."""

import torch
from torch.distributions import Independent, Normal

D64 = torch.float64
A = torch.tensor([[2.0, 0.6], [0.6, 1.0]], dtype=D64)  # symmetric positive definite


def quadratic(x):
    """E(z) = z^T A z / 2: grad E = A z, Hessian A."""
    return 0.5 * ((x @ A) * x).sum(-1)


def standard_normal(dim=2):
    return Independent(Normal(torch.zeros(dim, dtype=D64), 1.0), 1)


def mlp_energy(dim: int, seed: int = 0, scale: float = 1.0):
    """A fixed smooth non-quadratic energy (tanh MLP plus a confining quadratic)."""
    gen = torch.Generator().manual_seed(seed)
    w1 = torch.randn(dim, 16, generator=gen, dtype=D64)
    w2 = torch.randn(16, generator=gen, dtype=D64) / 4

    def energy(x):
        return scale * (torch.tanh(x @ w1) @ w2 + 0.25 * x.pow(2).sum(-1))

    return energy
