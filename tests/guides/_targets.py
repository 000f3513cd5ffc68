"""Target models with exact log p(x) for the guide tests (tests/guides/test_*.py and tests/integration/)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import ClippedAdam
from pyro.poutine.util import prune_subsample_sites

PARTICLES = "_test_particles"


@dataclass
class Problem:
    model: Callable
    x: torch.Tensor
    log_px: torch.Tensor  # exact log p(x_n), shape (N,)


def linear_gaussian(device, num_data: int = 6, noise: float = 0.5, dtype=torch.float32) -> Problem:
    r"""z ~ N(0, I_2), x ~ N(A z + b, s^2 I_3); exactly log p(x) = log N(x; b, A A^T + s^2 I)."""
    g = torch.Generator().manual_seed(1)
    A = torch.tensor([[1.0, 0.5], [-0.3, 0.8], [0.6, -1.2]])
    b = torch.tensor([0.5, -1.0, 0.2])
    z = torch.randn(num_data, 2, generator=g)
    x = (z @ A.T + b + noise * torch.randn(num_data, 3, generator=g)).to(device, dtype)
    A, b = A.to(device, dtype), b.to(device, dtype)

    def model(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ A.T + b, noise).to_event(1), obs=x)

    cov = A @ A.T + noise**2 * torch.eye(3, device=device, dtype=dtype)
    log_px = dist.MultivariateNormal(b.double(), cov.double()).log_prob(x.double())
    return Problem(model, x, log_px)


def bimodal(device, num_data: int = 6, noise: float = 0.3) -> Problem:
    r"""z ~ N(0, I_2), x ~ N((z_1^2, z_2), s^2 I): the posterior has two modes z_1 = ±sqrt(x_1).

    log p(x) by 2-D quadrature on [-6, 6]^2 (601^2 nodes; the integrand is negligible outside).
    """
    g = torch.Generator().manual_seed(2)
    z = torch.randn(num_data, 2, generator=g)
    z[:, 0] = 1.2 + 0.3 * z[:, 0].abs()  # well-separated modes at +-z_1
    x = torch.stack([z[:, 0] ** 2, z[:, 1]], -1) + noise * torch.randn(num_data, 2, generator=g)
    x = x.to(device)

    def mean(z):
        return torch.stack([z[..., 0] ** 2, z[..., 1]], -1)

    def model(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(mean(z), noise).to_event(1), obs=x)

    grid = torch.linspace(-6.0, 6.0, 601, dtype=torch.float64)
    zz = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    log_joint = dist.Normal(0.0, 1.0).log_prob(zz).sum(-1, keepdim=True) + dist.Normal(
        mean(zz)[:, None, :], noise
    ).log_prob(x.double().cpu()[None]).sum(-1)
    cell = (grid[1] - grid[0]) ** 2
    log_px = (torch.logsumexp(log_joint, 0) + math.log(cell)).to(device)
    return Problem(model, x, log_px)


def elbo_estimate(model, guide, x, num_particles: int = 2000) -> tuple[float, float]:
    """Monte-Carlo ELBO of the whole batch, sum over data points, and its standard error."""
    with torch.no_grad(), pyro.plate(PARTICLES, num_particles, dim=-2):
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, guide_trace)).get_trace(x)
    log_w = 0.0
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for site in prune_subsample_sites(trace).nodes.values():
            if site["type"] == "sample":
                lp = site["fn"].log_prob(site["value"])
                log_w = log_w + sign * lp.reshape(num_particles, -1).sum(-1).double()
    return log_w.mean().item(), (log_w.std() / math.sqrt(num_particles)).item()


def train(model, guide, x, num_steps: int, lr: float = 3e-2, final_lr: float = 3e-3,
          num_particles: int = 32) -> list[float]:
    """Adam with an exponentially decaying learning rate lr -> final_lr (less end-of-run jitter)."""
    loss = Trace_ELBO(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1)
    decay = (final_lr / lr) ** (1.0 / num_steps)
    svi = SVI(model, guide, ClippedAdam({"lr": lr, "lrd": decay, "clip_norm": 100.0}), loss)
    return [svi.step(x) for _ in range(num_steps)]
