"""The building blocks of the posterior test problems: the model (a prior and a likelihood in a data plate), the
priors, the likelihoods and the mode maps the table of :mod:`pyro_diffvi.datasets.posteriors.table` combines.

Priors are ``prior(ref)`` on ``ref``'s device and dtype; likelihoods are ``likelihood(z)`` with batch shape
``z.shape[:-1] + (D,)``; mode maps send ``z`` of shape ``(..., d)`` to a long mode index. Every one is a module-level
function (bound with :func:`functools.partial`), so the models pickle.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution, constraints

from pyro_diffvi.ops.constants import LOG_2PI

__all__ = [
    "Funnel",
    "ProblemModel",
    "affine",
    "dummy",
    "first_and_parabola",
    "funnel_prior",
    "gamma_prior",
    "mixture_prior",
    "nearest",
    "norm_and_first",
    "normal_identity",
    "normal_map",
    "normal_prior",
    "poisson_sum",
    "quadrant",
    "sign_of_first",
    "square_first",
    "student_t",
]


class ProblemModel:
    """``with plate("data"): z ~ prior; x ~ likelihood(z).to_event(1)`` (a picklable callable).

    :param prior: ``prior(ref)`` builds the prior on ``ref``'s device and dtype.
    :param likelihood: ``likelihood(z)`` returns a distribution with batch shape ``z.shape[:-1] + (D,)``.
    :param latent_dim: ``d``.
    :param obs_dim: ``D``.

    Example:

    >>> import torch
    >>> from functools import partial
    >>> from pyro_diffvi.datasets.posteriors.components import ProblemModel, normal_identity, normal_prior
    >>> model = ProblemModel(partial(normal_prior, scales=(1.0, 1.0)), partial(normal_identity, scale=0.5), 2, 2)
    >>> model.log_joint(torch.zeros(2), torch.zeros(2)).shape
    torch.Size([])
    """

    def __init__(self, prior: Callable, likelihood: Callable, latent_dim: int, obs_dim: int):
        self.prior = prior
        self.likelihood = likelihood
        self.latent_dim = latent_dim
        self.obs_dim = obs_dim

    def __call__(self, x: torch.Tensor) -> None:
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise ValueError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[-1] != self.obs_dim:
            raise ValueError(f"x must have shape (N, {self.obs_dim}), got {tuple(x.shape)}")
        prior = self.prior(x)
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", prior)
            pyro.sample("x", self.likelihood(z).to_event(1), obs=x)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(z) + \\log p(x \\mid z)` with broadcasting (same distributions as the model)."""
        return self.prior(z).log_prob(z) + self.likelihood(z).log_prob(x).sum(-1)


class Funnel(TorchDistribution):
    """Neal's funnel: :math:`z_1 \\sim \\mathcal N(0, s^2)`, :math:`z_{2..d} \\mid z_1 \\sim
    \\mathcal N(0, e^{z_1})` (standard deviation :math:`e^{z_1/2}`), normalized.

    :param scale: :math:`s`, a tensor (its shape is the batch shape).
    :param dim: :math:`d`.

    Example:

    >>> import torch
    >>> from pyro_diffvi.datasets.posteriors.components import Funnel
    >>> Funnel(torch.tensor(1.0), 3).log_prob(torch.zeros(3)).exp().item() > 0
    True
    """

    arg_constraints = {"scale": constraints.positive}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, scale: torch.Tensor, dim: int, *, validate_args: bool | None = None):
        self.scale = scale
        self.dim = dim
        super().__init__(scale.shape, torch.Size([dim]), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Funnel, _instance)
        batch_shape = torch.Size(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        new.dim = self.dim
        super(Funnel, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.scale.dtype, device=self.scale.device)
        head = eps[..., :1] * self.scale.unsqueeze(-1)
        return torch.cat([head, eps[..., 1:] * torch.exp(head / 2)], dim=-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        head, tail = value[..., 0], value[..., 1:]
        log_head = -0.5 * (head / self.scale) ** 2 - self.scale.log() - 0.5 * LOG_2PI
        log_tail = -0.5 * tail**2 * torch.exp(-head).unsqueeze(-1) - 0.5 * head.unsqueeze(-1)
        return log_head + log_tail.sum(-1) - 0.5 * (self.dim - 1) * LOG_2PI


# Priors


def normal_prior(ref: torch.Tensor, scales: tuple[float, ...]) -> TorchDistribution:
    scale = ref.new_tensor(scales)
    return dist.Normal(torch.zeros_like(scale), scale).to_event(1)


def mixture_prior(
    ref: torch.Tensor, means: list, scale: float, weights: list | None
) -> TorchDistribution:
    loc = ref.new_tensor(means)
    probs = ref.new_tensor(weights) if weights is not None else torch.ones_like(loc[:, 0])
    components = dist.Normal(loc, torch.full_like(loc, scale)).to_event(1)
    return dist.MixtureSameFamily(dist.Categorical(probs=probs / probs.sum()), components)


def funnel_prior(ref: torch.Tensor, scale: float, dim: int) -> TorchDistribution:
    return Funnel(ref.new_tensor(scale), dim)


def gamma_prior(ref: torch.Tensor, concentration: float, rate: float, dim: int) -> TorchDistribution:
    return dist.Gamma(ref.new_tensor(concentration), ref.new_tensor(rate)).expand([dim]).to_event(1)


# Likelihoods


def normal_identity(z: torch.Tensor, scale: float) -> TorchDistribution:
    return dist.Normal(z, torch.full_like(z, scale))


def normal_map(z: torch.Tensor, loc_fn: Callable, scales: tuple[float, ...]) -> TorchDistribution:
    loc = loc_fn(z)
    return dist.Normal(loc, z.new_tensor(scales).expand(loc.shape))


def square_first(z: torch.Tensor) -> torch.Tensor:
    return torch.stack([z[..., 0] ** 2, z[..., 1]], dim=-1)


def norm_and_first(z: torch.Tensor) -> torch.Tensor:
    return torch.stack([z.norm(dim=-1), z[..., 0]], dim=-1)


def first_and_parabola(z: torch.Tensor, curvature: float) -> torch.Tensor:
    return torch.stack([z[..., 0], z[..., 1] + curvature * z[..., 0] ** 2], dim=-1)


def affine(z: torch.Tensor, matrix: list, offset: list | None) -> torch.Tensor:
    loc = z @ z.new_tensor(matrix).T
    return loc if offset is None else loc + z.new_tensor(offset)


def student_t(z: torch.Tensor, matrix: list, df: float, scale: float) -> TorchDistribution:
    loc = affine(z, matrix, None)
    return dist.StudentT(loc.new_tensor(df), loc, torch.full_like(loc, scale))


def poisson_sum(z: torch.Tensor) -> TorchDistribution:
    return dist.Poisson(torch.stack([z[..., 0], z[..., 1], z[..., 0] + z[..., 1]], dim=-1))


def dummy(z: torch.Tensor) -> TorchDistribution:
    loc = z.new_zeros(z.shape[:-1] + (1,))
    return dist.Normal(loc, torch.ones_like(loc))


# Mode maps


def quadrant(z: torch.Tensor) -> torch.Tensor:
    return (z[..., 0] > 0).long() + 2 * (z[..., 1] > 0).long()


def sign_of_first(z: torch.Tensor) -> torch.Tensor:
    return (z[..., 0] > 0).long()


def nearest(z: torch.Tensor, means: list) -> torch.Tensor:
    centers = z.new_tensor(means)
    return ((z.unsqueeze(-2) - centers) ** 2).sum(-1).argmin(-1)
