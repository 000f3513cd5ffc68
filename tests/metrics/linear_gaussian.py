"""Linear-Gaussian model z ~ N(0, I), x | z ~ N(A z + b, s^2 I) with closed-form evidence and posterior."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch


class LinearGaussian:
    """Model, exact-posterior guide, a mismatched Gaussian guide and their closed-form quantities."""

    def __init__(self, dz=2, dx=3, s=0.5, dtype=torch.float64, seed=1, device="cpu"):
        gen = torch.Generator().manual_seed(seed)
        self.dz, self.dx, self.s = dz, dx, s
        self.A = torch.randn(dx, dz, generator=gen, dtype=dtype).to(device)
        self.b = torch.randn(dx, generator=gen, dtype=dtype).to(device)
        eye = torch.eye(dz, dtype=dtype, device=device)
        self.post_cov = torch.linalg.inv(eye + self.A.T @ self.A / s**2)
        self.post_tril = torch.linalg.cholesky(self.post_cov)

    def data(self, n: int, seed: int = 2) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.dz, generator=gen, dtype=self.A.dtype).to(self.A.device)
        noise = torch.randn(n, self.dx, generator=gen, dtype=self.A.dtype).to(self.A.device)
        return z @ self.A.T + self.b + self.s * noise

    def model(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(x[..., : self.dz]), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.A.T + self.b, self.s).to_event(1), obs=x)

    def posterior_mean(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b) @ self.A @ self.post_cov / self.s**2

    def exact_guide(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(self.posterior_mean(x), scale_tril=self.post_tril))

    def log_evidence(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x_n), shape (N,): x ~ N(b, A A^T + s^2 I)."""
        cov = self.A @ self.A.T + self.s**2 * torch.eye(self.dx, dtype=x.dtype, device=x.device)
        return dist.MultivariateNormal(self.b, covariance_matrix=cov).log_prob(x)

    # A deliberately wrong guide: q(z | x) = N(shrink * posterior mean, diag(var)).
    def wrong_guide_params(self, x: torch.Tensor, shrink: float = 0.5, std: float = 0.8):
        return shrink * self.posterior_mean(x), torch.full((self.dz,), std**2, dtype=x.dtype, device=x.device)

    def wrong_guide(self, x: torch.Tensor, shrink: float = 0.5, std: float = 0.8) -> None:
        loc, var = self.wrong_guide_params(x, shrink, std)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, var.sqrt()).to_event(1))

    def wrong_guide_elbo(self, x: torch.Tensor, shrink: float = 0.5, std: float = 0.8) -> torch.Tensor:
        """Closed-form E_q[log p(x, z) - log q(z | x)] per data point, shape (N,)."""
        m, v = self.wrong_guide_params(x, shrink, std)
        resid = x - m @ self.A.T - self.b
        trace_term = (self.A**2 @ v).sum()  # tr(A diag(v) A^T)
        log_lik = -0.5 * self.dx * math.log(2 * math.pi * self.s**2) - (
            resid.square().sum(-1) + trace_term
        ) / (2 * self.s**2)
        log_prior = -0.5 * self.dz * math.log(2 * math.pi) - 0.5 * (m.square().sum(-1) + v.sum())
        entropy = 0.5 * self.dz * math.log(2 * math.pi * math.e) + 0.5 * v.log().sum()
        return log_lik + log_prior + entropy
