r"""A linear-Gaussian data distribution whose every diffusion quantity is known in closed form (float64).

:math:`z \sim \mathcal N(0, I_K)`, :math:`x = Wz + b + \sigma_x n`, :math:`n \sim \mathcal N(0, I_D)`, with orthogonal
columns of :math:`W`. Under the VP SDE, :math:`x_t = \alpha x + \sigma\epsilon`:

* :math:`p_t(x_t) = \mathcal N(\alpha b, \alpha^2(WW^\top + \sigma_x^2 I) + \sigma^2 I)` (the unconditional score);
* :math:`p_t(x_t|z) = \mathcal N(\alpha(Wz + b), v_t I)`, :math:`v_t = \alpha^2\sigma_x^2 + \sigma^2`
  (the conditional score);
* :math:`p_t(z|x_t) = \mathcal N(P_t^{-1}\alpha W^\top(x_t - \alpha b)/v_t, P_t^{-1})`,
  :math:`P_t = I + \alpha^2 W^\top W/v_t`, diagonal because :math:`W^\top W` is: the time-dependent Gaussian
  encoder's family holds it at every time.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_diffvi.diffusion import VPSDE, ScoreModel
from pyro_diffvi.distributions import DiffusionLikelihood
from pyro_diffvi.nn.time_encoder import TIME_SCALE

DTYPE = torch.float64


class LinearGaussianCase:
    def __init__(self, dim: int = 4, latent_dim: int = 2, noise_scale: float = 0.3, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(dim, latent_dim, generator=g, dtype=DTYPE))
        self.W = q * torch.linspace(2.0, 1.0, latent_dim, dtype=DTYPE)
        self.b = 0.5 * torch.randn(dim, generator=g, dtype=DTYPE)
        self.sx, self.dim, self.latent_dim = noise_scale, dim, latent_dim
        self.sde = VPSDE()
        self.cov = self.W @ self.W.T + noise_scale**2 * torch.eye(dim, dtype=DTYPE)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=DTYPE)
        return z @ self.W.T + self.b + self.sx * torch.randn(n, self.dim, generator=generator, dtype=DTYPE), z

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return dist.MultivariateNormal(self.b, self.cov).log_prob(x)

    def marginal_score(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = self.sde.marginal_coefficients(t)
        eye = torch.eye(self.dim, dtype=DTYPE)
        cov = a[..., None, None] ** 2 * self.cov + s[..., None, None] ** 2 * eye
        return -torch.linalg.solve(cov, (x_t - a[..., None] * self.b).unsqueeze(-1)).squeeze(-1)

    def conditional_score(self, x_t: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = self.sde.marginal_coefficients(t)
        v = (a**2 * self.sx**2 + s**2)[..., None]
        return -(x_t - a[..., None] * (z @ self.W.T + self.b)) / v

    def posterior(self, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, s = self.sde.marginal_coefficients(t)
        v = (a**2 * self.sx**2 + s**2)[..., None]
        precision = 1 + a[..., None] ** 2 * (self.W * self.W).sum(0) / v
        loc = a[..., None] * ((x_t - a[..., None] * self.b) @ self.W) / v / precision
        return loc, precision.rsqrt()

    def score_model(self) -> ScoreModel:
        """A ScoreModel whose network is the exact noise prediction of p_t(x_t)."""
        case = self

        class ExactNoise(nn.Module):
            def forward(self, x, time, context):
                t = time / TIME_SCALE
                return -case.sde.marginal_coefficients(t)[1][..., None] * case.marginal_score(x, t)

        return ScoreModel((self.dim,), network=ExactNoise(), sde=self.sde, gaussian_skip=False)

    def encoder(self) -> nn.Module:
        """The exact time-dependent posterior as an encoder ``(x_t, t) -> (loc, scale)``."""
        case = self

        class ExactEncoder(nn.Module):
            def forward(self, x, t=None):
                t = torch.zeros(x.shape[:-1], dtype=x.dtype) if t is None else torch.as_tensor(t).expand(x.shape[:-1])
                return case.posterior(x, t)

        return ExactEncoder()

    def model(self, score_model: ScoreModel, encoder: nn.Module, *, num_time_samples: int = 1, corrector=None):
        """The ScoreVAE Pyro model: z ~ N(0, I), x ~ DiffusionLikelihood(score_model, z, encoder)."""
        k = self.latent_dim

        def model(x):
            if corrector is not None:
                pyro.module("corrector", corrector)
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(x.new_zeros(k), 1.0).to_event(1))
                pyro.sample("x", DiffusionLikelihood(score_model, z, encoder=encoder, corrector=corrector,
                                                     num_time_samples=num_time_samples), obs=x)

        return model
