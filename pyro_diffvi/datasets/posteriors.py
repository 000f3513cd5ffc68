"""Amortized posterior test problems with exact :math:`\\log p(x)` per observation.

Each problem is an ordinary Pyro model with one latent site ``"z"`` (event shape ``(d,)``) and one
observed site ``"x"`` (event shape ``(D,)``), both inside ``pyro.plate("data", N, dim=-1)``; its
parameters are fixed constants. The observations ``x`` are simulated from the model's own joint
(``poutine.uncondition``, ancestral sampling) with a seeded random stream, so a wake-sleep objective
that simulates :math:`(x, z) \\sim p(x, z)` sees the distribution the data came from. For every
observation the problem carries the exact log evidence

.. math::

    \\log p(x_n) = \\log \\int p(z)\\, p(x_n \\mid z)\\, dz,

in closed form where one exists, else by a float64 midpoint rule on a 2-D grid wide enough that
the integrand is negligible at its edges (:func:`posterior_quadrature`; the grid travels with the
problem so callers can refine it and check the edge mass). So the gap
:math:`\\log p(x) - \\text{ELBO}` of a guide is known exactly, and for multimodal posteriors the
exact posterior mass of each mode region (``mode_masses``) tells whether a guide covers every mode.

Amortized problems (``num_data`` observations; 2-D latent unless stated):

- ``four_modes``: equal mixture of 4 Gaussians at :math:`(\\pm1.5, \\pm1.5)`, sd 0.5, broad
  Gaussian likelihood; four posterior modes, one per quadrant. Closed form.
- ``sign_symmetric``: :math:`x_1 \\sim \\mathcal N(z_1^2, 0.1^2)` is symmetric under
  :math:`z_1 \\to -z_1`, so the posterior has two mirror modes of mass exactly 1/2. Quadrature.
- ``ring``: :math:`x_1 \\sim \\mathcal N(\\lVert z\\rVert, 0.1^2)`; a thin ring, tilted by a weak
  second observation. Quadrature on a polar grid.
- ``banana``: :math:`x_2 \\sim \\mathcal N(z_2 + z_1^2, 0.1^2)`; a curved ridge. Quadrature.
- ``mixture_overlapping``: 3 overlapping Gaussian components; a skewed unimodal posterior.
  Closed form.
- ``mixture_separated``: 3 well-separated components on a circle of radius 3 with unequal weights
  and a broad likelihood; several modes with non-negligible mass. Closed form.
- ``student_t``: Student-t (3 degrees of freedom) likelihood on 3 projections of ``z``.
  Quadrature.
- ``funnel``: a 2-D Neal funnel prior observed with noise; the posterior scale of :math:`z_2`
  changes with :math:`z_1`. Quadrature.
- ``positive``: Gamma latent with Poisson counts of rates :math:`(z_1, z_2, z_1 + z_2)`; a
  finite-sum closed form (and quadrature in :math:`\\log z`).
- ``linear_gaussian_5d``: 5-D latent, 8-D linear-Gaussian observation with anisotropic,
  correlated posterior. Closed form :math:`\\log\\mathcal N(x; b, AA^\\top + S)`.

Mode regions are the cells of the nearest component mean (quadrants for ``four_modes``, the sign
of :math:`z_1` for ``sign_symmetric``). Their masses are exact: for the Gaussian-mixture posteriors
(``four_modes``, ``mixture_separated``, ``gmm40``) each cell is a polygon, and the mass of an
isotropic Gaussian in a polygon is a sum of Owen's (1956) :math:`T` functions; for ``sign_symmetric``
they are 1/2 by symmetry.

Non-amortized sampling targets (``N = 1``): the latent's *prior* is the target density and a dummy
observation :math:`x \\sim \\mathcal N(0, 1)`, independent of ``z``, makes the posterior equal the
target, so :math:`\\log p(x) = \\log\\mathcal N(x; 0, 1)` exactly (the target's :math:`\\log Z = 0`).

- ``funnel_10d``: Neal's funnel (Neal, 2003) in 10 dimensions.
- ``gmm40``: the 40-component 2-D Gaussian mixture of the path integral sampler (Zhang & Chen,
  2022) and denoising diffusion sampler (Vargas et al., 2023) experiments.

Example: the exact log evidence scores a guide; :func:`elbo_gap` is the ELBO minus it, per
observation.

>>> from pyro_diffvi.datasets import make_problem
>>> problem = make_problem("four_modes", num_data=8)
>>> problem.x.shape, problem.log_px.dtype, problem.mode_masses.shape
(torch.Size([8, 2]), torch.float64, torch.Size([8, 4]))

References:

- R. M. Neal. *Slice sampling*. The Annals of Statistics 31(3):705-767, 2003.
- D. B. Owen. *Tables for computing bivariate normal probabilities*. The Annals of Mathematical
  Statistics 27(4):1075-1090, 1956.
- Q. Zhang, Y. Chen. *Path Integral Sampler: a stochastic control approach for sampling*.
  International Conference on Learning Representations (ICLR), 2022.
- F. Vargas, W. Grathwohl, A. Doucet. *Denoising Diffusion Samplers*. International Conference
  on Learning Representations (ICLR), 2023.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import TorchDistribution, constraints

from pyro_diffvi.datasets._files import check_float_dtype, data_device
from pyro_diffvi.ops.constants import LOG_2PI
from pyro_diffvi.ops.polygons import voronoi_masses
from pyro_diffvi.ops.quadrature import QuadratureGrid, make_grid
from pyro_diffvi.util import check_positive_int

__all__: list[str] = [
    "PROBLEMS",
    "PosteriorProblem",
    "Quadrature",
    "QuadratureGrid",
    "elbo_gap",
    "make_problem",
    "mode_mass_ratio",
    "posterior_quadrature",
]

# ---------------------------------------------------------------------------------------------
# Containers


@dataclass
class Quadrature:
    """Result of :func:`posterior_quadrature` (all float64).

    :ivar log_px: ``(N,)`` log evidence by the midpoint rule.
    :ivar mode_masses: ``(N, K)`` posterior mass of each mode region, or ``None`` when ``K == 1``.
    :ivar edge_mass: ``(N,)`` fraction of the posterior mass in the outermost ring of cells (a
        grid is wide enough when this is negligible, e.g. below ``1e-8``).

    >>> from pyro_diffvi.datasets import make_problem
    >>> from pyro_diffvi.datasets.posteriors import posterior_quadrature
    >>> quad = posterior_quadrature(make_problem("banana", num_data=4))
    >>> quad.log_px.shape, bool(quad.edge_mass.max() < 1e-8), quad.mode_masses is None
    (torch.Size([4]), True, True)
    """

    log_px: torch.Tensor
    mode_masses: torch.Tensor | None
    edge_mass: torch.Tensor


@dataclass
class PosteriorProblem:
    """A Pyro model with observations and their exact log evidence.

    :ivar name: key in :data:`PROBLEMS`.
    :ivar model: ``model(x)`` with ``x`` of shape ``(N, D)``; samples ``"z"`` (event shape ``(d,)``)
        and observes ``"x"`` (event shape ``(D,)``) inside ``pyro.plate("data", N)``. It creates
        every tensor on ``x``'s device and dtype and has no learnable parameters; it pickles.
    :ivar x: ``(N, D)`` observations simulated from the model's joint.
    :ivar log_px: ``(N,)`` float64 exact :math:`\\log p(x_n)`.
    :ivar latent_dim: ``d``.
    :ivar kind: ``"multimodal"``, ``"unimodal"`` or ``"curved"``.
    :ivar num_modes: ``K`` (1 unless multimodal).
    :ivar mode_of: maps ``z`` of shape ``(..., d)`` to a long mode index in ``0..K-1`` (``None``
        when ``K == 1``).
    :ivar mode_masses: ``(N, K)`` float64 exact posterior mass of each mode region (``None`` when
        ``K == 1``).
    :ivar description: one line.
    :ivar log_joint: ``log_joint(x, z)`` is :math:`\\log p(x, z)`, broadcasting the batch
        dimensions of ``x`` ``(..., D)`` and ``z`` ``(..., d)``; the exact posterior log density is
        ``log_joint(x, z) - log_px``.
    :ivar grid: the quadrature grid (2-D latents; ``None`` otherwise), covering ``x``'s posteriors.

    >>> import torch
    >>> from pyro_diffvi.datasets import make_problem
    >>> problem = make_problem("sign_symmetric", num_data=4)
    >>> problem.kind, problem.num_modes, problem.mode_masses[0].tolist()
    ('multimodal', 2, [0.5, 0.5])
    >>> problem.mode_of(torch.tensor([[-1.0, 0.0], [1.0, 0.0]])).tolist()
    [0, 1]
    """

    name: str
    model: Callable
    x: torch.Tensor
    log_px: torch.Tensor
    latent_dim: int
    kind: str
    num_modes: int
    mode_of: Callable | None
    mode_masses: torch.Tensor | None
    description: str
    log_joint: Callable | None = None
    grid: QuadratureGrid | None = None


# ---------------------------------------------------------------------------------------------
# The model


class _Model:
    """``with plate("data"): z ~ prior; x ~ likelihood(z).to_event(1)`` (a picklable callable).

    ``prior(ref)`` builds the prior on ``ref``'s device and dtype; ``likelihood(z)`` returns a
    distribution with batch shape ``z.shape[:-1] + (D,)``.
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


class _Funnel(TorchDistribution):
    """Neal's funnel: :math:`z_1 \\sim \\mathcal N(0, s^2)`, :math:`z_{2..d} \\mid z_1 \\sim
    \\mathcal N(0, e^{z_1})` (standard deviation :math:`e^{z_1/2}`), normalized."""

    arg_constraints = {"scale": constraints.positive}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, scale: torch.Tensor, dim: int, validate_args: bool | None = None):
        self.scale = scale
        self.dim = dim
        super().__init__(scale.shape, torch.Size([dim]), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(_Funnel, _instance)
        batch_shape = torch.Size(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        new.dim = self.dim
        super(_Funnel, new).__init__(batch_shape, self.event_shape, validate_args=False)
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


# Priors: ``prior(ref)`` on ref's device/dtype.


def _normal_prior(ref: torch.Tensor, scales: tuple[float, ...]) -> TorchDistribution:
    scale = ref.new_tensor(scales)
    return dist.Normal(torch.zeros_like(scale), scale).to_event(1)


def _mixture_prior(
    ref: torch.Tensor, means: list, scale: float, weights: list | None
) -> TorchDistribution:
    loc = ref.new_tensor(means)
    probs = ref.new_tensor(weights) if weights is not None else torch.ones_like(loc[:, 0])
    components = dist.Normal(loc, torch.full_like(loc, scale)).to_event(1)
    return dist.MixtureSameFamily(dist.Categorical(probs=probs / probs.sum()), components)


def _funnel_prior(ref: torch.Tensor, scale: float, dim: int) -> TorchDistribution:
    return _Funnel(ref.new_tensor(scale), dim)


def _gamma_prior(ref: torch.Tensor, concentration: float, rate: float, dim: int) -> TorchDistribution:
    return dist.Gamma(ref.new_tensor(concentration), ref.new_tensor(rate)).expand([dim]).to_event(1)


# Likelihoods: ``likelihood(z)`` with batch shape z.shape[:-1] + (D,).


def _normal_identity(z: torch.Tensor, scale: float) -> TorchDistribution:
    return dist.Normal(z, torch.full_like(z, scale))


def _normal_map(z: torch.Tensor, loc_fn: Callable, scales: tuple[float, ...]) -> TorchDistribution:
    loc = loc_fn(z)
    return dist.Normal(loc, z.new_tensor(scales).expand(loc.shape))


def _square_first(z: torch.Tensor) -> torch.Tensor:
    return torch.stack([z[..., 0] ** 2, z[..., 1]], dim=-1)


def _norm_and_first(z: torch.Tensor) -> torch.Tensor:
    return torch.stack([z.norm(dim=-1), z[..., 0]], dim=-1)


def _first_and_parabola(z: torch.Tensor, curvature: float) -> torch.Tensor:
    return torch.stack([z[..., 0], z[..., 1] + curvature * z[..., 0] ** 2], dim=-1)


def _affine(z: torch.Tensor, matrix: list, offset: list | None) -> torch.Tensor:
    loc = z @ z.new_tensor(matrix).T
    return loc if offset is None else loc + z.new_tensor(offset)


def _student_t(z: torch.Tensor, matrix: list, df: float, scale: float) -> TorchDistribution:
    loc = _affine(z, matrix, None)
    return dist.StudentT(loc.new_tensor(df), loc, torch.full_like(loc, scale))


def _poisson_sum(z: torch.Tensor) -> TorchDistribution:
    return dist.Poisson(torch.stack([z[..., 0], z[..., 1], z[..., 0] + z[..., 1]], dim=-1))


def _dummy(z: torch.Tensor) -> TorchDistribution:
    loc = z.new_zeros(z.shape[:-1] + (1,))
    return dist.Normal(loc, torch.ones_like(loc))


# Mode maps.


def _quadrant(z: torch.Tensor) -> torch.Tensor:
    return (z[..., 0] > 0).long() + 2 * (z[..., 1] > 0).long()


def _sign_of_first(z: torch.Tensor) -> torch.Tensor:
    return (z[..., 0] > 0).long()


def _nearest(z: torch.Tensor, means: list) -> torch.Tensor:
    centers = z.new_tensor(means)
    return ((z.unsqueeze(-2) - centers) ** 2).sum(-1).argmin(-1)


# ---------------------------------------------------------------------------------------------
# Quadrature


def posterior_quadrature(
    problem: PosteriorProblem, *, x: torch.Tensor | None = None, grid: QuadratureGrid | None = None
) -> Quadrature:
    """Log evidence and mode masses of a 2-D-latent problem by the float64 midpoint rule.

    .. math::

        \\log p(x_n) \\approx \\log \\sum_g w_g\\, p(x_n, z_g), \\qquad
        P(\\text{mode } k \\mid x_n) \\approx \\frac{\\sum_{g:\\,\\mathrm{mode}(z_g) = k}
        w_g\\, p(x_n, z_g)}{\\sum_g w_g\\, p(x_n, z_g)}

    vectorized over the observations, the grid processed in chunks.

    :param problem: a problem with a ``grid`` (2-D latent).
    :param x: observations ``(N, D)`` (default: ``problem.x``); they must lie where ``grid``
        covers their posteriors (check ``edge_mass``).
    :param grid: default ``problem.grid``; pass ``problem.grid.refined(2)`` to check convergence.
    :return: a :class:`Quadrature`.

    >>> from pyro_diffvi.datasets import make_problem
    >>> from pyro_diffvi.datasets.posteriors import posterior_quadrature
    >>> problem = make_problem("four_modes", num_data=4)  # closed form, so the rule can be checked
    >>> quad = posterior_quadrature(problem)
    >>> bool((quad.log_px - problem.log_px).abs().max() < 1e-6)
    True
    """
    grid = problem.grid if grid is None else grid
    if grid is None or problem.log_joint is None:
        raise ValueError(f"problem {problem.name!r} has no quadrature grid (latent_dim != 2)")
    x = problem.x if x is None else x
    if not torch.is_tensor(x) or x.dim() != 2 or x.shape[-1] != problem.x.shape[-1]:
        raise ValueError(f"x must be a tensor of shape (N, {problem.x.shape[-1]})")
    x = x.to(torch.float64)
    nodes, log_weight, on_edge = grid.nodes(device=x.device)
    num_modes = problem.num_modes if problem.mode_of is not None else 1
    chunk = min(2**16, max(1024, 2**22 // (x.shape[0] * x.shape[1])))
    totals, edges, modes = [], [], []
    with pyro.validation_enabled(False):  # the support checks would dominate the cost
        for start in range(0, nodes.shape[0], chunk):
            z = nodes[start : start + chunk]
            log_f = problem.log_joint(x.unsqueeze(-2), z) + log_weight[start : start + chunk]  # (N, G)
            totals.append(log_f.logsumexp(-1))
            edges.append(log_f.masked_fill(~on_edge[start : start + chunk], -math.inf).logsumexp(-1))
            if num_modes > 1:
                peak = log_f.max(-1, keepdim=True).values
                onehot = torch.nn.functional.one_hot(problem.mode_of(z), num_modes).to(log_f.dtype)
                modes.append(((log_f - peak).exp() @ onehot).log() + peak)
    log_px = torch.stack(totals, -1).logsumexp(-1)
    edge_mass = (torch.stack(edges, -1).logsumexp(-1) - log_px).exp()
    mode_masses = None
    if num_modes > 1:
        mode_masses = (torch.stack(modes, -1).logsumexp(-1) - log_px.unsqueeze(-1)).exp()
    return Quadrature(log_px=log_px, mode_masses=mode_masses, edge_mass=edge_mass)


def _mixture_posterior_masses(
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


# ---------------------------------------------------------------------------------------------
# Builders


def _check_args(num_data: int, seed: int, device, dtype) -> tuple[torch.device, torch.dtype]:
    check_positive_int("num_data", num_data)
    check_positive_int("seed", seed, minimum=0)
    return data_device(device), check_float_dtype(dtype)


def _simulate(model: _Model, num_data: int, seed: int) -> torch.Tensor:
    """Draw ``x`` from the model's joint by running it unconditioned (float64, CPU), seeded
    without touching the global random state."""
    placeholder = torch.zeros(num_data, model.obs_dim, dtype=torch.float64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trace = poutine.trace(poutine.uncondition(model)).get_trace(placeholder)
    return trace.nodes["x"]["value"].detach()


def _build_problem(
    name: str,
    model: _Model,
    num_data: int,
    seed: int,
    device,
    dtype,
    kind: str,
    description: str,
    grid_fn: Callable[[torch.Tensor], QuadratureGrid] | None = None,
    closed_form: Callable[[torch.Tensor], torch.Tensor] | None = None,
    num_modes: int = 1,
    mode_of: Callable | None = None,
    exact_masses: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> PosteriorProblem:
    """Simulate ``num_data`` observations ``x`` from ``model`` (seeded, as :func:`make_problem`
    documents) and assemble the problem; ``log_px`` (and mode masses) by the closed forms where
    given, else by quadrature on ``grid_fn(x)``."""
    device, dtype = _check_args(num_data, seed, device, dtype)
    x = _simulate(model, num_data, seed).to(device=device, dtype=dtype)
    x64 = x.to(torch.float64)
    problem = PosteriorProblem(
        name=name,
        model=model,
        x=x,
        log_px=closed_form(x64) if closed_form is not None else torch.empty(0),
        latent_dim=model.latent_dim,
        kind=kind,
        num_modes=num_modes,
        mode_of=mode_of,
        mode_masses=exact_masses(x64) if exact_masses is not None else None,
        description=description,
        log_joint=model.log_joint,
        grid=grid_fn(x64) if grid_fn is not None else None,
    )
    needs_masses = mode_of is not None and exact_masses is None
    if closed_form is None or needs_masses:
        result = posterior_quadrature(problem)
        if closed_form is None:
            problem.log_px = result.log_px
        if needs_masses:
            problem.mode_masses = result.mode_masses
    return problem


def _mixture_log_px(x: torch.Tensor, means: list, scale: float, weights: list | None, noise: float):
    """:math:`\\log \\sum_k w_k \\mathcal N(x; \\mu_k, (s^2 + \\sigma^2) I)` in closed form."""
    mu = x.new_tensor(means)
    w = x.new_tensor(weights) if weights is not None else torch.ones_like(mu[:, 0])
    var = scale**2 + noise**2
    sq = ((x.unsqueeze(-2) - mu) ** 2).sum(-1)
    d = mu.shape[-1]
    log_comp = -0.5 * sq / var - 0.5 * d * (math.log(var) + LOG_2PI)
    return (log_comp + (w / w.sum()).log()).logsumexp(-1)


# 1. four_modes -------------------------------------------------------------------------------

_FOUR_MEANS = [[-1.5, -1.5], [1.5, -1.5], [-1.5, 1.5], [1.5, 1.5]]  # ordered as _quadrant


def four_modes(*, num_data: int = 64, seed: int = 0, device=None, dtype=torch.float32) -> PosteriorProblem:
    """Four posterior modes, one per quadrant.

    .. math::

        z \\sim \\tfrac14 \\sum_{k=1}^4 \\mathcal N\\big((\\pm1.5, \\pm1.5), 0.5^2 I\\big), \\qquad
        x \\mid z \\sim \\mathcal N(z, 2^2 I), \\qquad
        p(x) = \\tfrac14 \\sum_k \\mathcal N(x; \\mu_k, 4.25\\, I).

    ``mode_of`` is the quadrant, index :math:`[z_1 > 0] + 2 [z_2 > 0]`.
    """
    model = _Model(
        partial(_mixture_prior, means=_FOUR_MEANS, scale=0.5, weights=None),
        partial(_normal_identity, scale=2.0),
        latent_dim=2,
        obs_dim=2,
    )

    def grid(x64):  # posterior component means lie within 1.42 + 0.06 |x|, sd 0.485
        half = 6.5 + 0.06 * x64.abs().max().item()
        return make_grid((-half, -half), (half, half), 0.1)

    return _build_problem(
        "four_modes",
        model,
        num_data, seed, device, dtype,
        "multimodal",
        "equal mixture of 4 Gaussians at (+-1.5, +-1.5), sd 0.5; x ~ N(z, 2^2 I): one mode per quadrant",
        grid_fn=grid,
        closed_form=partial(_mixture_log_px, means=_FOUR_MEANS, scale=0.5, weights=None, noise=2.0),
        num_modes=4,
        mode_of=_quadrant,
        exact_masses=partial(
            _mixture_posterior_masses, means=_FOUR_MEANS, scale=0.5, weights=None, noise=2.0
        ),
    )


# 2. sign_symmetric ---------------------------------------------------------------------------

_SIGN_PRIOR = (1.5, 1.0)
_SIGN_NOISE = (0.1, 0.5)


def sign_symmetric(*, num_data: int = 64, seed: int = 0, device=None, dtype=torch.float32) -> PosteriorProblem:
    """Two mirror modes from a likelihood symmetric under :math:`z_1 \\to -z_1`.

    .. math::

        z \\sim \\mathcal N(0, \\mathrm{diag}(1.5^2, 1)), \\qquad
        x \\mid z \\sim \\mathcal N\\big((z_1^2, z_2), \\mathrm{diag}(0.1^2, 0.5^2)\\big).

    The posterior is symmetric in :math:`z_1`, so each mode (``mode_of`` = :math:`[z_1 > 0]`) has
    mass exactly 1/2; the modes sit near :math:`z_1 = \\pm\\sqrt{x_1}` with width
    :math:`0.1 / (2\\sqrt{x_1})`. They are separated (the posterior density of :math:`z_1` at 0
    is below 10% of its peak) when :math:`x_1 \\gtrsim 0.2`, i.e. for about 3/4 of the draws;
    for the rest (:math:`|z_1|` small) the two modes merge.
    """
    model = _Model(
        partial(_normal_prior, scales=_SIGN_PRIOR),
        partial(_normal_map, loc_fn=_square_first, scales=_SIGN_NOISE),
        latent_dim=2,
        obs_dim=2,
    )

    def grid(x64):
        # z1^2 stays within 15 likelihood sds of x1; the z1-width of a mode at z1 = sqrt(x1) is
        # 0.1 / (2 sqrt(x1)); z2's posterior is N(0.8 x2, 0.45^2).
        top = max(x64[:, 0].max().item(), 0.0)
        half1 = math.sqrt(top + 15 * _SIGN_NOISE[0]) + 0.3
        step1 = min(0.05, 0.8 * _SIGN_NOISE[0] / (2 * math.sqrt(top + 1e-3)))
        lo2, hi2 = 0.8 * x64[:, 1].min().item() - 5.0, 0.8 * x64[:, 1].max().item() + 5.0
        return make_grid((-half1, lo2), (half1, hi2), (step1, 0.2))

    return _build_problem(
        "sign_symmetric",
        model,
        num_data, seed, device, dtype,
        "multimodal",
        "z ~ N(0, diag(1.5^2, 1)); x ~ N((z1^2, z2), diag(0.1^2, 0.5^2)): two mirror modes in z1",
        grid_fn=grid,
        num_modes=2,
        mode_of=_sign_of_first,
        exact_masses=lambda x64: torch.full((x64.shape[0], 2), 0.5, dtype=torch.float64, device=x64.device),
    )


# 3. ring -------------------------------------------------------------------------------------

_RING_NOISE = (0.1, 1.0)


def ring(*, num_data: int = 64, seed: int = 0, device=None, dtype=torch.float32) -> PosteriorProblem:
    """A thin ring.

    .. math::

        z \\sim \\mathcal N(0, I), \\qquad
        x \\mid z \\sim \\mathcal N\\big((\\lVert z \\rVert, z_1), \\mathrm{diag}(0.1^2, 1)\\big).

    The posterior concentrates on the circle :math:`\\lVert z \\rVert \\approx x_1` (width 0.1);
    the weak :math:`x_2` makes the density around the circle uneven (often a crescent), without
    cutting the ring. Quadrature on a polar grid with :math:`s = \\sqrt{\\lVert z \\rVert}`, as the
    likelihood has a cone at :math:`z = 0` that a Cartesian grid resolves only to :math:`O(h^3)`.
    """
    model = _Model(
        partial(_normal_prior, scales=(1.0, 1.0)),
        partial(_normal_map, loc_fn=_norm_and_first, scales=_RING_NOISE),
        latent_dim=2,
        obs_dim=2,
    )

    def grid(x64):
        # Polar grid with s = sqrt(|z|), as the likelihood has a cone at z = 0. The outer radius is
        # 15 likelihood sds beyond the largest ring, which is 0.1 / (2 s) wide in s; the angular
        # factor exp(x2 z1 - z1^2 / 2) has Fourier modes up to about |x2| r + r^2 / 2.
        top = max(2.0, x64[:, 0].max().item() + 1.5)
        step = min(0.01, 0.4 * _RING_NOISE[0] / (2 * math.sqrt(top)))
        modes = x64[:, 1].abs().max().item() * top + top**2 / 2
        num_angles = max(128, 4 * math.ceil(modes) + 64)
        return make_grid(
            (0.0, 0.0), (math.sqrt(top), 2 * math.pi), (step, 2 * math.pi / num_angles), "polar"
        )

    return _build_problem(
        "ring",
        model,
        num_data, seed, device, dtype,
        "curved",
        "z ~ N(0, I); x ~ N((|z|, z1), diag(0.1^2, 1)): posterior on a thin ring of radius ~x1",
        grid_fn=grid,
    )


# 4. banana -----------------------------------------------------------------------------------

_BANANA_CURVATURE = 1.0
_BANANA_NOISE = (1.0, 0.1)


def banana(*, num_data: int = 64, seed: int = 0, device=None, dtype=torch.float32) -> PosteriorProblem:
    """A curved (banana-shaped) ridge.

    .. math::

        z \\sim \\mathcal N(0, I), \\qquad
        x \\mid z \\sim \\mathcal N\\big((z_1, z_2 + z_1^2), \\mathrm{diag}(1, 0.1^2)\\big).

    The posterior follows the parabola :math:`z_2 = x_2 - z_1^2` (width 0.1 in :math:`z_2`) over
    the range of :math:`z_1` allowed by the weak :math:`x_1` and the prior: an arch when
    :math:`z_1 \\approx 0`, a bent arm otherwise. For 90% of the draws the best linear function
    of :math:`z_1` leaves over 7 times the posterior variance of :math:`z_2` that
    :math:`z_2 + z_1^2` does. Quadrature on the sheared grid :math:`u = (z_1, z_2 + z_1^2)`.
    """
    model = _Model(
        partial(_normal_prior, scales=(1.0, 1.0)),
        partial(
            _normal_map,
            loc_fn=partial(_first_and_parabola, curvature=_BANANA_CURVATURE),
            scales=_BANANA_NOISE,
        ),
        latent_dim=2,
        obs_dim=2,
    )

    def grid(x64):
        # u2 = z2 + z1^2 is within 15 likelihood sds of x2 and the prior keeps |z1| and |z2| below
        # 6.5; across the ridge the posterior is at most 0.1 wide.
        lo2 = x64[:, 1].min().item() - 15 * _BANANA_NOISE[1]
        hi2 = x64[:, 1].max().item() + 15 * _BANANA_NOISE[1]
        half1 = min(6.5, math.sqrt(max(hi2, 0.0) + 6.5))
        step = (0.05, 0.6 * _BANANA_NOISE[1])
        return make_grid((-half1, lo2), (half1, hi2), step, "parabolic", _BANANA_CURVATURE)

    return _build_problem(
        "banana",
        model,
        num_data, seed, device, dtype,
        "curved",
        "z ~ N(0, I); x ~ N((z1, z2 + z1^2), diag(1, 0.1^2)): posterior along a parabola",
        grid_fn=grid,
    )


# 5-6. Gaussian-mixture priors with a Gaussian likelihood ---------------------------------------


def _mixture_problem(
    name: str, means: list, weights: list, scale: float, noise: float, kind: str, description: str,
    grid_half_width: Callable[[float], float], cell: float, num_data: int, seed: int, device, dtype,
) -> PosteriorProblem:
    r"""A problem with prior :math:`\sum_k w_k \mathcal N(\mu_k, s^2 I)` and :math:`x|z \sim \mathcal N(z, \sigma^2 I)`:
    closed-form log p(x); for ``kind="multimodal"`` the modes are the cells of the nearest mean, with
    exact masses. ``grid_half_width(max |x|)`` sizes the (checking) quadrature grid."""
    mixture = dict(means=means, scale=scale, weights=weights)
    model = _Model(partial(_mixture_prior, **mixture), partial(_normal_identity, scale=noise), latent_dim=2, obs_dim=2)

    def grid(x64):
        half = grid_half_width(x64.abs().max().item())
        return make_grid((-half, -half), (half, half), cell)

    modes = {}
    if kind == "multimodal":
        modes = dict(
            num_modes=len(means),
            mode_of=partial(_nearest, means=means),
            exact_masses=partial(_mixture_posterior_masses, **mixture, noise=noise),
        )
    return _build_problem(
        name, model, num_data, seed, device, dtype, kind, description, grid_fn=grid,
        closed_form=partial(_mixture_log_px, **mixture, noise=noise), **modes,
    )


def mixture_overlapping(
    *, num_data: int = 64, seed: int = 0, device=None, dtype=torch.float32
) -> PosteriorProblem:
    r"""Three overlapping components: a skewed, unimodal posterior.

    .. math::

        z \sim \textstyle\sum_k w_k \mathcal N(\mu_k, 0.7^2 I), \qquad
        x \mid z \sim \mathcal N(z, 0.8^2 I), \qquad
        p(x) = \textstyle\sum_k w_k \mathcal N(x; \mu_k, (0.7^2 + 0.8^2) I),

    with :math:`w = (0.5, 0.3, 0.2)` and means :math:`(0, 0), (1.2, 0.4), (-0.4, 1.1)`.
    """
    return _mixture_problem(
        "mixture_overlapping", [[0.0, 0.0], [1.2, 0.4], [-0.4, 1.1]], [0.5, 0.3, 0.2], 0.7, 0.8, "unimodal",
        "3 overlapping Gaussian components (sd 0.7), x ~ N(z, 0.8^2 I): skewed unimodal posterior",
        # posterior component means lie within 1.2 + 0.44 |x|, sd 0.53
        lambda max_abs_x: 6.7 + 0.45 * max_abs_x, 0.1, num_data, seed, device, dtype,
    )


def mixture_separated(
    *, num_data: int = 64, seed: int = 0, device=None, dtype=torch.float32
) -> PosteriorProblem:
    r"""Three well-separated components and a broad likelihood: several weighted modes.

    .. math::

        z \sim \textstyle\sum_k w_k \mathcal N(\mu_k, 0.4^2 I), \qquad
        x \mid z \sim \mathcal N(z, 2.5^2 I), \qquad
        p(x) = \textstyle\sum_k w_k \mathcal N(x; \mu_k, (0.4^2 + 2.5^2) I),

    with means on the circle of radius 3 at angles 90, 210 and 330 degrees and
    :math:`w = (0.5, 0.3, 0.2)`. ``mode_of`` is the nearest mean.
    """
    means = [[3.0 * math.cos(a), 3.0 * math.sin(a)] for a in (math.pi / 2, 7 * math.pi / 6, 11 * math.pi / 6)]
    return _mixture_problem(
        "mixture_separated", means, [0.5, 0.3, 0.2], 0.4, 2.5, "multimodal",
        "3 components (sd 0.4) on a circle of radius 3, weights (0.5, 0.3, 0.2), x ~ N(z, 2.5^2 I)",
        # posterior component means lie within 2.93 + 0.025 |x|, sd 0.39
        lambda max_abs_x: 7.5 + 0.03 * max_abs_x, 0.08, num_data, seed, device, dtype,
    )


# 7. student_t --------------------------------------------------------------------------------

_STUDENT_MATRIX = [[1.0, 0.0], [0.0, 1.0], [0.7, -0.7]]
_STUDENT_DF = 3.0
_STUDENT_SCALE = 0.5


def student_t(*, num_data: int = 64, seed: int = 0, device=None, dtype=torch.float32) -> PosteriorProblem:
    """A heavy-tailed likelihood.

    .. math::

        z \\sim \\mathcal N(0, I), \\qquad
        x_j \\mid z \\sim \\mathrm{StudentT}\\big(3,\\, (Az)_j,\\, 0.5\\big), \\quad
        A = \\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\\\ 0.7 & -0.7 \\end{pmatrix}.
    """
    model = _Model(
        partial(_normal_prior, scales=(1.0, 1.0)),
        partial(_student_t, matrix=_STUDENT_MATRIX, df=_STUDENT_DF, scale=_STUDENT_SCALE),
        latent_dim=2,
        obs_dim=3,
    )

    def grid(x64):
        return make_grid((-6.5, -6.5), (6.5, 6.5), 0.1)

    return _build_problem(
        "student_t",
        model,
        num_data, seed, device, dtype,
        "unimodal",
        "z ~ N(0, I); x ~ StudentT(3, A z, 0.5) with x of dim 3: heavy-tailed likelihood",
        grid_fn=grid,
    )


# 8. funnel -----------------------------------------------------------------------------------

_FUNNEL_SCALE = 1.5
_FUNNEL_NOISE = (1.0, 0.5)


def funnel(*, num_data: int = 64, seed: int = 0, device=None, dtype=torch.float32) -> PosteriorProblem:
    """A 2-D funnel observed with noise.

    .. math::

        z_1 \\sim \\mathcal N(0, 1.5^2), \\quad z_2 \\mid z_1 \\sim \\mathcal N(0, e^{z_1}), \\qquad
        x \\mid z \\sim \\mathcal N\\big(z, \\mathrm{diag}(1, 0.5^2)\\big).

    The posterior width in :math:`z_2` shrinks with :math:`z_1` (standard deviation
    :math:`(e^{-z_1} + 4)^{-1/2}`); the grid step in :math:`z_2` resolves it wherever the posterior
    has mass.
    """
    model = _Model(
        partial(_funnel_prior, scale=_FUNNEL_SCALE, dim=2),
        partial(_normal_map, loc_fn=torch.clone, scales=_FUNNEL_NOISE),
        latent_dim=2,
        obs_dim=2,
    )

    def grid(x64):
        # z1's posterior is about N(0.69 x1, 0.83^2), pulled up to 2 log|x2| by a large x2; z2 is
        # within 10 likelihood sds of x2 and 0.04 resolves its width wherever z1 has mass.
        lo1 = min(x64[:, 0].min().item(), 0.0) - 7.0
        hi1 = max(x64[:, 0].max().item(), 2 * math.log1p(x64[:, 1].abs().max().item()), 0.0) + 7.0
        lo2, hi2 = x64[:, 1].min().item() - 5.0, x64[:, 1].max().item() + 5.0
        return make_grid((lo1, lo2), (hi1, hi2), (0.08, 0.04))

    return _build_problem(
        "funnel",
        model,
        num_data, seed, device, dtype,
        "unimodal",
        "z1 ~ N(0, 1.5^2), z2 ~ N(0, exp(z1)); x ~ N(z, diag(1, 0.5^2)): funnel-shaped posterior",
        grid_fn=grid,
    )


# 9. positive ---------------------------------------------------------------------------------

_GAMMA = (2.0, 1.0)  # concentration, rate


def _positive_log_px(x: torch.Tensor, concentration: float, rate: float) -> torch.Tensor:
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


def positive(*, num_data: int = 64, seed: int = 0, device=None, dtype=torch.float32) -> PosteriorProblem:
    """A positive latent with Poisson counts.

    .. math::

        z_i \\sim \\mathrm{Gamma}(2, 1), \\qquad
        x \\mid z \\sim \\mathrm{Poisson}\\big((z_1, z_2, z_1 + z_2)\\big).

    Quadrature runs on :math:`\\log z`; the closed form splits :math:`x_3` into two Poisson parts:
    :math:`p(x) = \\sum_{k=0}^{x_3} g(x_1, k)\\, g(x_2, x_3 - k)` with
    :math:`g(m, n) = \\frac{b^a\\,\\Gamma(a + m + n)}{\\Gamma(a)\\, m!\\, n!\\, (b + 2)^{a + m + n}}`.
    """
    model = _Model(
        partial(_gamma_prior, concentration=_GAMMA[0], rate=_GAMMA[1], dim=2),
        _poisson_sum,
        latent_dim=2,
        obs_dim=3,
    )

    def grid(x64):
        high = math.log(x64.max().item() + 10.0) + 1.0
        return make_grid((-14.0, -14.0), (high, high), 0.08, coordinates="log")

    return _build_problem(
        "positive",
        model,
        num_data, seed, device, dtype,
        "unimodal",
        "z ~ Gamma(2, 1)^2; x ~ Poisson((z1, z2, z1 + z2)): positive latent, count data",
        grid_fn=grid,
        closed_form=partial(_positive_log_px, concentration=_GAMMA[0], rate=_GAMMA[1]),
    )


# 10. linear_gaussian_5d ----------------------------------------------------------------------

_LINEAR_COLUMN_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
_LINEAR_NOISE = (0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0)


def _linear_constants() -> tuple[list, list]:
    gen = torch.Generator().manual_seed(1234)
    g = torch.randn(8, 5, generator=gen, dtype=torch.float64) / math.sqrt(8)
    matrix = g * torch.tensor(_LINEAR_COLUMN_SCALES, dtype=torch.float64)
    offset = torch.randn(8, generator=gen, dtype=torch.float64)
    return matrix.tolist(), offset.tolist()


_LINEAR_MATRIX, _LINEAR_OFFSET = _linear_constants()


def _linear_log_px(x: torch.Tensor, matrix: list, offset: list, noise: tuple) -> torch.Tensor:
    a = x.new_tensor(matrix)
    cov = a @ a.T + torch.diag(x.new_tensor(noise) ** 2)
    return dist.MultivariateNormal(x.new_tensor(offset), cov).log_prob(x)


def linear_gaussian_5d(
    *, num_data: int = 64, seed: int = 0, device=None, dtype=torch.float32
) -> PosteriorProblem:
    """A 5-D linear-Gaussian model with an anisotropic, correlated posterior.

    .. math::

        z \\sim \\mathcal N(0, I_5), \\qquad x \\mid z \\sim \\mathcal N(Az + b, S), \\qquad
        p(x) = \\mathcal N(x; b, AA^\\top + S),

    with :math:`A = G\\,\\mathrm{diag}(0.25, 0.5, 1, 2, 4)`, :math:`G_{ij} \\sim \\mathcal N(0, 1/8)`
    and :math:`b_i \\sim \\mathcal N(0, 1)` fixed (drawn once from a generator seeded 1234), and
    :math:`S = \\mathrm{diag}(0.5^2 \\times 4, 1^2 \\times 4)`.
    """
    model = _Model(
        partial(_normal_prior, scales=(1.0,) * 5),
        partial(
            _normal_map,
            loc_fn=partial(_affine, matrix=_LINEAR_MATRIX, offset=_LINEAR_OFFSET),
            scales=_LINEAR_NOISE,
        ),
        latent_dim=5,
        obs_dim=8,
    )
    return _build_problem(
        "linear_gaussian_5d",
        model,
        num_data, seed, device, dtype,
        "unimodal",
        "z ~ N(0, I_5); x ~ N(A z + b, S), x of dim 8, column scales 0.25..4: correlated Gaussian",
        closed_form=partial(
            _linear_log_px, matrix=_LINEAR_MATRIX, offset=_LINEAR_OFFSET, noise=_LINEAR_NOISE
        ),
    )


# Sampling targets ----------------------------------------------------------------------------


def _target_log_px(x: torch.Tensor) -> torch.Tensor:
    return (-0.5 * x**2 - 0.5 * LOG_2PI).sum(-1)


def _sampling_target(
    name: str, prior: Callable, latent_dim: int, kind: str, description: str,
    num_data: int, seed: int, device, dtype, **finish_kwargs,
) -> PosteriorProblem:
    """A non-amortized problem whose latent prior is the target, with one dummy observation
    independent of ``z`` (``num_data`` is validated but ``N = 1``)."""
    model = _Model(prior, _dummy, latent_dim=latent_dim, obs_dim=1)
    _check_args(num_data, seed, device, dtype)
    return _build_problem(
        name, model, 1, seed, device, dtype, kind, description, closed_form=_target_log_px, **finish_kwargs
    )


def funnel_10d(*, num_data: int = 64, seed: int = 0, device=None, dtype=torch.float32) -> PosteriorProblem:
    """Neal's funnel in 10 dimensions as a sampling target (one observation).

    .. math::

        z_1 \\sim \\mathcal N(0, 3^2), \\quad z_{2..10} \\mid z_1 \\sim \\mathcal N(0, e^{z_1}),
        \\qquad x \\sim \\mathcal N(0, 1) \\text{ independent of } z.

    The posterior :math:`p(z \\mid x)` is the funnel and :math:`\\log p(x) = \\log\\mathcal N(x; 0, 1)`
    (the funnel is normalized, :math:`\\log Z = 0`). ``num_data`` is validated but ignored: ``N = 1``.
    """
    return _sampling_target(
        "funnel_10d",
        partial(_funnel_prior, scale=3.0, dim=10),
        10,
        "unimodal",
        "sampling target: Neal's funnel, z1 ~ N(0, 3^2), z2..10 ~ N(0, exp(z1)); dummy x, N = 1",
        num_data, seed, device, dtype,
    )


def _gmm40_means() -> list:
    gen = torch.Generator().manual_seed(0)
    return ((torch.rand(40, 2, generator=gen) - 0.5) * 80).double().tolist()


_GMM40_MEANS = _gmm40_means()


def gmm40(*, num_data: int = 64, seed: int = 0, device=None, dtype=torch.float32) -> PosteriorProblem:
    """The 40-component 2-D Gaussian mixture of Zhang & Chen (2022, path integral sampler) and
    Vargas et al. (2023, denoising diffusion samplers) as a sampling target (``N = 1``).

    .. math::

        z \\sim \\tfrac1{40} \\sum_{k=1}^{40} \\mathcal N(\\mu_k, I), \\qquad
        x \\sim \\mathcal N(0, 1) \\text{ independent of } z,

    with means uniform on :math:`[-40, 40]^2` (``(torch.rand(40, 2) - 0.5) * 80`` from a CPU
    generator seeded 0; the closest two are 1.18 apart). :math:`\\log p(x) = \\log\\mathcal N(x; 0,
    1)`. ``mode_of`` is the nearest mean; ``mode_masses`` are the exact target masses of the
    nearest-mean cells (Owen's :math:`T`), within 3e-4 of 1/40. ``num_data`` is validated but
    ignored.
    """

    def grid(x64):
        # unit components: a step of 0.25 resolves them (the mode masses are exact, not from it)
        return make_grid((-48.0, -48.0), (48.0, 48.0), 0.25)

    def masses(x64):
        centers = x64.new_tensor(_GMM40_MEANS).expand(x64.shape[0], 40, 2)
        log_weights = torch.full_like(centers[..., 0], -math.log(40))
        return voronoi_masses(_GMM40_MEANS, centers, 1.0, log_weights)

    return _sampling_target(
        "gmm40",
        partial(_mixture_prior, means=_GMM40_MEANS, scale=1.0, weights=None),
        2,
        "multimodal",
        "sampling target: 40 unit Gaussians with means uniform in [-40, 40]^2 (seed 0); dummy x, N = 1",
        num_data, seed, device, dtype,
        grid_fn=grid,
        num_modes=40,
        mode_of=partial(_nearest, means=_GMM40_MEANS),
        exact_masses=masses,
    )


PROBLEMS: dict[str, Callable[..., PosteriorProblem]] = {
    "four_modes": four_modes,
    "sign_symmetric": sign_symmetric,
    "ring": ring,
    "banana": banana,
    "mixture_overlapping": mixture_overlapping,
    "mixture_separated": mixture_separated,
    "student_t": student_t,
    "funnel": funnel,
    "positive": positive,
    "linear_gaussian_5d": linear_gaussian_5d,
    "funnel_10d": funnel_10d,
    "gmm40": gmm40,
}


def make_problem(
    name: str, *, num_data: int = 64, seed: int = 0, device=None, dtype: torch.dtype = torch.float32
) -> PosteriorProblem:
    """Build the problem ``name`` of :data:`PROBLEMS`.

    :param name: a key of :data:`PROBLEMS`.
    :param num_data: number of observations ``N >= 1`` (ignored by the sampling targets
        ``funnel_10d`` and ``gmm40``, which have ``N = 1``).
    :param seed: non-negative seed of the simulated observations (the global RNG is untouched).
    :param device: device of ``x`` (default CPU; ``"auto"`` picks CUDA when present).
    :param dtype: floating dtype of ``x`` (``log_px`` and ``mode_masses`` are always float64).
    :return: a :class:`PosteriorProblem`.

    >>> from pyro_diffvi.datasets import PROBLEMS, make_problem
    >>> problem = make_problem("linear_gaussian_5d", num_data=16, seed=1)
    >>> problem.x.shape, problem.latent_dim, problem.kind
    (torch.Size([16, 8]), 5, 'unimodal')
    >>> make_problem("gmm40").x.shape  # sampling targets have one dummy observation
    torch.Size([1, 1])
    >>> len(PROBLEMS)
    12
    """
    if not isinstance(name, str) or name not in PROBLEMS:
        raise ValueError(f"unknown problem name {name!r}; expected one of {list(PROBLEMS)}")
    return PROBLEMS[name](num_data=num_data, seed=seed, device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Scoring a guide against the exact answers


def elbo_gap(problem: PosteriorProblem, guide: Callable, *, num_particles: int = 256) -> tuple[float, float]:
    r"""The ELBO's gap to the exact evidence, :math:`\frac1N\sum_n (\widehat{\mathrm{ELBO}}_n - \log p(x_n))`, in nats
    per observation (:math:`\le 0` up to Monte-Carlo error for a valid bound), and its standard error over
    the ``num_particles`` draws per observation.

    :param problem: a :class:`PosteriorProblem`.
    :param guide: a guide for ``problem.model`` (called as ``guide(problem.x)``).
    :param num_particles: draws per observation.
    :return: ``(mean gap, standard error)``.

    >>> import pyro, pyro.distributions as dist
    >>> from pyro_diffvi.datasets import make_problem
    >>> from pyro_diffvi.datasets.posteriors import elbo_gap
    >>> def guide(x):  # a fixed broad Gaussian guide
    ...     with pyro.plate("data", x.shape[0], dim=-1):
    ...         return {"z": pyro.sample("z", dist.Normal(x.new_zeros(2), 3.0).to_event(1))}
    >>> pyro.set_rng_seed(0)
    >>> gap, stderr = elbo_gap(make_problem("four_modes", num_data=8), guide, num_particles=64)
    >>> gap < 0, stderr > 0  # a valid bound: the ELBO is below the exact log evidence
    (True, True)
    """
    from pyro_diffvi.metrics import log_weights  # metrics do not depend on datasets

    weights = log_weights(problem.model, guide, problem.x, num_particles=num_particles, max_particles_per_chunk=64)
    values = weights.values.double()
    per_particle = (values - problem.log_px.to(values)).mean(-1)
    return per_particle.mean().item(), per_particle.std().item() / math.sqrt(num_particles)


def mode_mass_ratio(
    problem: PosteriorProblem, guide: Callable, *, num_particles: int = 256, min_mass: float = 0.02
) -> tuple[float, list[float]]:
    """The smallest ratio (guide's mass / exact mass) over the modes whose exact mass is at least
    ``min_mass``, both pooled over the observations; 1 means every mode gets its exact share.

    :param problem: a multimodal :class:`PosteriorProblem` (with ``mode_of`` and ``mode_masses``).
    :param guide: a guide for ``problem.model`` returning ``{"z": z}``; its site ``"z"`` is drawn
        ``num_particles`` times per observation.
    :param num_particles: draws per observation.
    :param min_mass: modes with less exact mass are left out of the ratio.
    :return: ``(smallest ratio, the guide's pooled mass of every mode)``.

    >>> import pyro, pyro.distributions as dist
    >>> from pyro_diffvi.datasets import make_problem
    >>> from pyro_diffvi.datasets.posteriors import mode_mass_ratio
    >>> def guide(x):  # only ever proposes the quadrant z1 > 0, z2 > 0
    ...     with pyro.plate("data", x.shape[0], dim=-1):
    ...         return {"z": pyro.sample("z", dist.Normal(x.new_tensor([1.5, 1.5]), 0.1).to_event(1))}
    >>> pyro.set_rng_seed(0)
    >>> ratio, masses = mode_mass_ratio(make_problem("four_modes", num_data=8), guide, num_particles=16)
    >>> ratio, masses
    (0.0, [0.0, 0.0, 0.0, 1.0])
    """
    if problem.mode_of is None or problem.mode_masses is None:
        raise ValueError(f"problem {problem.name!r} has no mode regions (kind {problem.kind!r})")
    with torch.no_grad():
        z = guide(problem.x.repeat(num_particles, *([1] * (problem.x.dim() - 1))))["z"]
    modes = problem.mode_of(z).reshape(num_particles, -1)
    guide_mass = torch.stack([(modes == m).double().mean() for m in range(problem.num_modes)]).cpu()
    exact = problem.mode_masses.double().mean(0).cpu()
    kept = exact >= min_mass
    return (guide_mass[kept] / exact[kept]).min().item(), guide_mass.tolist()
