"""Helpers shared by the tests of the posterior test problems: the problems (built once per session), 1-D quadrature,
the posterior on a problem's grid."""

import functools
import math

import pyro
import torch

from pyro_diffvi.datasets.posteriors import (
    PROBLEMS,
    PosteriorProblem,
    make_problem,
)

NAMES = list(PROBLEMS)

TARGETS = ["funnel_10d", "gmm40"]

GRID_NAMES = [n for n in NAMES if n not in ("linear_gaussian_5d", "funnel_10d")]

AMORTIZED_GRID_NAMES = [n for n in GRID_NAMES if n not in TARGETS]

KINDS = {"multimodal", "unimodal", "curved"}

LOG_2PI = math.log(2 * math.pi)


@functools.cache
def problem(name: str) -> PosteriorProblem:
    """The default problem (N = 64, seed 0, CPU, float32), built once per session."""
    return make_problem(name)


def normal_log_prob(x, loc, var):
    log_var = torch.log(torch.as_tensor(var, dtype=torch.float64))
    return -0.5 * (x - loc) ** 2 / var - 0.5 * log_var - 0.5 * LOG_2PI


def midpoint_1d(log_f, low, high, step):
    """log of the integral of exp(log_f(t)) over [low, high]; log_f maps (T,) to (N, T)."""
    num = math.ceil((high - low) / step)
    h = (high - low) / num
    t = low + h * (torch.arange(num, dtype=torch.float64) + 0.5)
    return (log_f(t) + math.log(h)).logsumexp(-1)


def posterior_on_grid(p, num_obs=32):
    """Log posterior density and log cell mass on the problem's grid for the first ``num_obs``
    observations, shaped (num_obs, n1, n2)."""
    nodes, log_weight, _ = p.grid.nodes()
    x = p.x[:num_obs].double()
    with pyro.validation_enabled(False):
        log_post = p.log_joint(x.unsqueeze(-2), nodes) - p.log_px[:num_obs, None]
    shape = (-1,) + p.grid.num_points
    return (
        log_post.reshape(shape),
        (log_post + log_weight).reshape(shape),
        nodes.reshape(p.grid.num_points + (2,)),
    )


def count_local_maxima(log_density, floor=math.log(1e-3)):
    """Strict local maxima over the 8 neighbours, above ``floor`` relative to the peak."""
    n1, n2 = log_density.shape[-2:]
    padded = torch.nn.functional.pad(log_density, (1, 1, 1, 1), value=-math.inf)
    center = padded[:, 1:-1, 1:-1]
    is_max = center > log_density.amax((-2, -1), keepdim=True) + floor
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                is_max &= center > padded[:, 1 + di : 1 + di + n1, 1 + dj : 1 + dj + n2]
    return is_max.sum((-2, -1))
