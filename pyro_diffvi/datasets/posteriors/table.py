r"""The table of posterior test problems: one :class:`~pyro_diffvi.datasets.posteriors.ProblemSpec` row per problem
(its prior, likelihood, grid, exact answers), and :func:`make_problem`, which builds one.

The rows, with the model each one describes (every problem has ``z`` in plate ``"data"`` and the observation
``x | z``; see the package docstring for what each probes):

- ``four_modes``: :math:`z \sim \frac14 \sum_k \mathcal N((\pm1.5, \pm1.5), 0.5^2 I)`, :math:`x | z \sim
  \mathcal N(z, 2^2 I)`; :math:`p(x) = \frac14 \sum_k \mathcal N(x; \mu_k, 4.25 I)`; ``mode_of`` is the
  quadrant, :math:`[z_1 > 0] + 2 [z_2 > 0]`.
- ``sign_symmetric``: :math:`z \sim \mathcal N(0, \mathrm{diag}(1.5^2, 1))`, :math:`x | z \sim \mathcal N((z_1^2,
  z_2), \mathrm{diag}(0.1^2, 0.5^2))`: symmetric in :math:`z_1`, so each mode (:math:`[z_1 > 0]`) has mass exactly
  1/2; the modes sit near :math:`z_1 = \pm\sqrt{x_1}` with width :math:`0.1 / (2\sqrt{x_1})` and are separated
  (the density of :math:`z_1` at 0 below 10% of its peak) when :math:`x_1 \gtrsim 0.2`, for about 3/4 of the draws.
- ``ring``: :math:`z \sim \mathcal N(0, I)`, :math:`x | z \sim \mathcal N((\lVert z\rVert, z_1), \mathrm{diag}(0.1^2,
  1))`: the posterior concentrates on the circle :math:`\lVert z\rVert \approx x_1` (width 0.1), made uneven (often
  a crescent) by the weak :math:`x_2`; quadrature on a polar grid.
- ``banana``: :math:`z \sim \mathcal N(0, I)`, :math:`x | z \sim \mathcal N((z_1, z_2 + z_1^2), \mathrm{diag}(1,
  0.1^2))`: the posterior follows the parabola :math:`z_2 = x_2 - z_1^2`; for 90% of the draws the best linear
  function of :math:`z_1` leaves over 7 times the posterior variance of :math:`z_2` that :math:`z_2 + z_1^2`
  does; quadrature on the sheared grid.
- ``mixture_overlapping``: :math:`z \sim \sum_k w_k \mathcal N(\mu_k, 0.7^2 I)` with :math:`w = (0.5, 0.3, 0.2)`,
  means :math:`(0, 0), (1.2, 0.4), (-0.4, 1.1)`, :math:`x | z \sim \mathcal N(z, 0.8^2 I)`: skewed, unimodal.
- ``mixture_separated``: :math:`z \sim \sum_k w_k \mathcal N(\mu_k, 0.4^2 I)`, means on the circle of radius 3 at
  90, 210 and 330 degrees, :math:`w = (0.5, 0.3, 0.2)`, :math:`x | z \sim \mathcal N(z, 2.5^2 I)`; ``mode_of`` is
  the nearest mean.
- ``student_t``: :math:`z \sim \mathcal N(0, I)`, :math:`x_j | z \sim \mathrm{StudentT}(3, (Az)_j, 0.5)` with
  :math:`A = (1, 0; 0, 1; 0.7, -0.7)`.
- ``funnel``: :math:`z_1 \sim \mathcal N(0, 1.5^2)`, :math:`z_2 | z_1 \sim \mathcal N(0, e^{z_1})`, :math:`x | z
  \sim \mathcal N(z, \mathrm{diag}(1, 0.5^2))`: the width in :math:`z_2` is :math:`(e^{-z_1} + 4)^{-1/2}`.
- ``positive``: :math:`z_i \sim \mathrm{Gamma}(2, 1)`, :math:`x | z \sim \mathrm{Poisson}((z_1, z_2, z_1 + z_2))`;
  the closed form splits :math:`x_3` into two Poisson parts; quadrature runs on :math:`\log z`.
- ``linear_gaussian_5d``: :math:`z \sim \mathcal N(0, I_5)`, :math:`x | z \sim \mathcal N(Az + b, S)` with
  :math:`A = G\,\mathrm{diag}(0.25, 0.5, 1, 2, 4)`, :math:`G_{ij} \sim \mathcal N(0, 1/8)` and :math:`b_i \sim
  \mathcal N(0, 1)` drawn once from a generator seeded 1234, :math:`S = \mathrm{diag}(0.5^2 \times 4, 1^2 \times
  4)`; :math:`p(x) = \mathcal N(x; b, AA^\top + S)`.
- ``funnel_10d`` (sampling target): Neal's funnel in 10 dimensions, :math:`z_1 \sim \mathcal N(0, 3^2)`,
  :math:`z_{2..10} | z_1 \sim \mathcal N(0, e^{z_1})`.
- ``gmm40`` (sampling target): :math:`z \sim \frac1{40} \sum_k \mathcal N(\mu_k, I)` with means uniform on
  :math:`[-40, 40]^2` (:data:`GMM40_MEANS`; the closest two are 1.18 apart); ``mode_masses`` are the exact target
  masses of the nearest-mean cells, within 3e-4 of 1/40.
"""

from __future__ import annotations

import math
from functools import partial

import torch

from pyro_diffvi.datasets.posteriors import exact, grids
from pyro_diffvi.datasets.posteriors.components import (
    affine,
    first_and_parabola,
    funnel_prior,
    gamma_prior,
    mixture_prior,
    nearest,
    norm_and_first,
    normal_identity,
    normal_map,
    normal_prior,
    poisson_sum,
    quadrant,
    sign_of_first,
    square_first,
    student_t,
)
from pyro_diffvi.datasets.posteriors.problem import PosteriorProblem, ProblemSpec

__all__ = ["GMM40_MEANS", "PROBLEMS", "make_problem"]


def _linear_constants() -> tuple[list, list]:
    gen = torch.Generator().manual_seed(1234)
    g = torch.randn(8, 5, generator=gen, dtype=torch.float64) / math.sqrt(8)
    matrix = g * torch.tensor((0.25, 0.5, 1.0, 2.0, 4.0), dtype=torch.float64)  # the column scales
    offset = torch.randn(8, generator=gen, dtype=torch.float64)
    return matrix.tolist(), offset.tolist()


def _gmm40_means() -> list:
    gen = torch.Generator().manual_seed(0)
    return ((torch.rand(40, 2, generator=gen) - 0.5) * 80).double().tolist()


GMM40_MEANS: list = _gmm40_means()
"""The 40 means of ``gmm40``: ``(torch.rand(40, 2) - 0.5) * 80`` from a CPU generator seeded 0."""

_FOUR_MEANS = [[-1.5, -1.5], [1.5, -1.5], [-1.5, 1.5], [1.5, 1.5]]  # ordered as components.quadrant
_FOUR = dict(means=_FOUR_MEANS, scale=0.5, weights=None)
_SIGN_NOISE = (0.1, 0.5)
_RING_NOISE = (0.1, 1.0)
_BANANA_CURVATURE, _BANANA_NOISE = 1.0, (1.0, 0.1)
_OVERLAPPING = dict(means=[[0.0, 0.0], [1.2, 0.4], [-0.4, 1.1]], scale=0.7, weights=[0.5, 0.3, 0.2])
_SEPARATED = dict(
    means=[[3.0 * math.cos(a), 3.0 * math.sin(a)] for a in (math.pi / 2, 7 * math.pi / 6, 11 * math.pi / 6)],
    scale=0.4,
    weights=[0.5, 0.3, 0.2],
)
_STUDENT = dict(matrix=[[1.0, 0.0], [0.0, 1.0], [0.7, -0.7]], df=3.0, scale=0.5)
_GAMMA = dict(concentration=2.0, rate=1.0)
_LINEAR_MATRIX, _LINEAR_OFFSET = _linear_constants()
_LINEAR_NOISE = (0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0)

_ROWS = [
    ProblemSpec(
        "four_modes", "multimodal",
        "equal mixture of 4 Gaussians at (+-1.5, +-1.5), sd 0.5; x ~ N(z, 2^2 I): one mode per quadrant",
        prior=partial(mixture_prior, **_FOUR), latent_dim=2,
        likelihood=partial(normal_identity, scale=2.0), obs_dim=2,
        # posterior component means lie within 1.42 + 0.06 |x|, sd 0.485
        grid=partial(grids.square, base=6.5, slope=0.06, step=0.1),
        closed_form=partial(exact.mixture_log_px, **_FOUR, noise=2.0),
        num_modes=4, mode_of=quadrant, exact_masses=partial(exact.mixture_posterior_masses, **_FOUR, noise=2.0),
    ),
    ProblemSpec(
        "sign_symmetric", "multimodal",
        "z ~ N(0, diag(1.5^2, 1)); x ~ N((z1^2, z2), diag(0.1^2, 0.5^2)): two mirror modes in z1",
        prior=partial(normal_prior, scales=(1.5, 1.0)), latent_dim=2,
        likelihood=partial(normal_map, loc_fn=square_first, scales=_SIGN_NOISE), obs_dim=2,
        grid=partial(grids.sign_symmetric, noise=_SIGN_NOISE),
        num_modes=2, mode_of=sign_of_first, exact_masses=partial(exact.equal_masses, num_modes=2),
    ),
    ProblemSpec(
        "ring", "curved",
        "z ~ N(0, I); x ~ N((|z|, z1), diag(0.1^2, 1)): posterior on a thin ring of radius ~x1",
        prior=partial(normal_prior, scales=(1.0, 1.0)), latent_dim=2,
        likelihood=partial(normal_map, loc_fn=norm_and_first, scales=_RING_NOISE), obs_dim=2,
        grid=partial(grids.ring, noise=_RING_NOISE),
    ),
    ProblemSpec(
        "banana", "curved",
        "z ~ N(0, I); x ~ N((z1, z2 + z1^2), diag(1, 0.1^2)): posterior along a parabola",
        prior=partial(normal_prior, scales=(1.0, 1.0)), latent_dim=2,
        likelihood=partial(
            normal_map, loc_fn=partial(first_and_parabola, curvature=_BANANA_CURVATURE), scales=_BANANA_NOISE
        ),
        obs_dim=2,
        grid=partial(grids.banana, noise=_BANANA_NOISE, curvature=_BANANA_CURVATURE),
    ),
    ProblemSpec(
        "mixture_overlapping", "unimodal",
        "3 overlapping Gaussian components (sd 0.7), x ~ N(z, 0.8^2 I): skewed unimodal posterior",
        prior=partial(mixture_prior, **_OVERLAPPING), latent_dim=2,
        likelihood=partial(normal_identity, scale=0.8), obs_dim=2,
        # posterior component means lie within 1.2 + 0.44 |x|, sd 0.53
        grid=partial(grids.square, base=6.7, slope=0.45, step=0.1),
        closed_form=partial(exact.mixture_log_px, **_OVERLAPPING, noise=0.8),
    ),
    ProblemSpec(
        "mixture_separated", "multimodal",
        "3 components (sd 0.4) on a circle of radius 3, weights (0.5, 0.3, 0.2), x ~ N(z, 2.5^2 I)",
        prior=partial(mixture_prior, **_SEPARATED), latent_dim=2,
        likelihood=partial(normal_identity, scale=2.5), obs_dim=2,
        # posterior component means lie within 2.93 + 0.025 |x|, sd 0.39
        grid=partial(grids.square, base=7.5, slope=0.03, step=0.08),
        closed_form=partial(exact.mixture_log_px, **_SEPARATED, noise=2.5),
        num_modes=3, mode_of=partial(nearest, means=_SEPARATED["means"]),
        exact_masses=partial(exact.mixture_posterior_masses, **_SEPARATED, noise=2.5),
    ),
    ProblemSpec(
        "student_t", "unimodal",
        "z ~ N(0, I); x ~ StudentT(3, A z, 0.5) with x of dim 3: heavy-tailed likelihood",
        prior=partial(normal_prior, scales=(1.0, 1.0)), latent_dim=2,
        likelihood=partial(student_t, **_STUDENT), obs_dim=3,
        grid=partial(grids.fixed, half_width=6.5, step=0.1),
    ),
    ProblemSpec(
        "funnel", "unimodal",
        "z1 ~ N(0, 1.5^2), z2 ~ N(0, exp(z1)); x ~ N(z, diag(1, 0.5^2)): funnel-shaped posterior",
        prior=partial(funnel_prior, scale=1.5, dim=2), latent_dim=2,
        likelihood=partial(normal_map, loc_fn=torch.clone, scales=(1.0, 0.5)), obs_dim=2,
        grid=grids.funnel,
    ),
    ProblemSpec(
        "positive", "unimodal",
        "z ~ Gamma(2, 1)^2; x ~ Poisson((z1, z2, z1 + z2)): positive latent, count data",
        prior=partial(gamma_prior, **_GAMMA, dim=2), latent_dim=2,
        likelihood=poisson_sum, obs_dim=3,
        grid=grids.positive,
        closed_form=partial(exact.positive_log_px, **_GAMMA),
    ),
    ProblemSpec(
        "linear_gaussian_5d", "unimodal",
        "z ~ N(0, I_5); x ~ N(A z + b, S), x of dim 8, column scales 0.25..4: correlated Gaussian",
        prior=partial(normal_prior, scales=(1.0,) * 5), latent_dim=5,
        likelihood=partial(
            normal_map, loc_fn=partial(affine, matrix=_LINEAR_MATRIX, offset=_LINEAR_OFFSET), scales=_LINEAR_NOISE
        ),
        obs_dim=8,
        closed_form=partial(exact.linear_log_px, matrix=_LINEAR_MATRIX, offset=_LINEAR_OFFSET, noise=_LINEAR_NOISE),
    ),
    ProblemSpec(
        "funnel_10d", "unimodal",
        "sampling target: Neal's funnel, z1 ~ N(0, 3^2), z2..10 ~ N(0, exp(z1)); dummy x, N = 1",
        prior=partial(funnel_prior, scale=3.0, dim=10), latent_dim=10, target=True,
    ),
    ProblemSpec(
        "gmm40", "multimodal",
        "sampling target: 40 unit Gaussians with means uniform in [-40, 40]^2 (seed 0); dummy x, N = 1",
        prior=partial(mixture_prior, means=GMM40_MEANS, scale=1.0, weights=None), latent_dim=2, target=True,
        # unit components: a step of 0.25 resolves them (the mode masses are exact, not from it)
        grid=partial(grids.fixed, half_width=48.0, step=0.25),
        num_modes=40, mode_of=partial(nearest, means=GMM40_MEANS),
        exact_masses=partial(exact.uniform_mixture_masses, means=GMM40_MEANS, scale=1.0),
    ),
]

PROBLEMS: dict[str, ProblemSpec] = {row.name: row for row in _ROWS}
"""The posterior test problems by name: a :class:`~pyro_diffvi.datasets.posteriors.ProblemSpec` per problem,
which :func:`make_problem` calls."""


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
    :return: a :class:`~pyro_diffvi.datasets.posteriors.PosteriorProblem`.

    Example:

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
