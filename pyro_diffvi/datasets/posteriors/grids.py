"""The quadrature grids of the posterior test problems, each sized from the observations ``x64`` (float64) so that
it covers every observation's posterior: a function ``grid(x64, **parameters) -> QuadratureGrid`` per kind of
problem, bound to a problem's parameters in :mod:`pyro_diffvi.datasets.posteriors.table`."""

from __future__ import annotations

import math

import torch

from pyro_diffvi.ops.quadrature import QuadratureGrid, make_grid

__all__ = ["banana", "fixed", "funnel", "positive", "ring", "sign_symmetric", "square"]


def fixed(x64: torch.Tensor, *, half_width: float, step: float) -> QuadratureGrid:
    """The square ``[-w, w]^2`` with cells of side at most ``step``, whatever the observations.

    :param x64: the observations (unused).
    :param half_width: :math:`w`.
    :param step: the largest cell side.
    """
    return make_grid((-half_width, -half_width), (half_width, half_width), step)


def square(x64: torch.Tensor, *, base: float, slope: float, step: float) -> QuadratureGrid:
    """The square ``[-w, w]^2`` with :math:`w` = ``base + slope * max |x|``: for a Gaussian-mixture prior and a
    Gaussian likelihood, whose posterior component means grow linearly in :math:`x`.

    :param x64: the observations.
    :param base: the half-width at :math:`x = 0`.
    :param slope: its growth with :math:`\\max |x|`.
    :param step: the largest cell side.
    """
    half = base + slope * x64.abs().max().item()
    return make_grid((-half, -half), (half, half), step)


def sign_symmetric(x64: torch.Tensor, *, noise: tuple[float, float]) -> QuadratureGrid:
    """The grid of ``sign_symmetric``: :math:`z_1^2` stays within 15 likelihood sds of :math:`x_1`; the
    :math:`z_1`-width of a mode at :math:`z_1 = \\sqrt{x_1}` is :math:`\\sigma_1 / (2\\sqrt{x_1})`; :math:`z_2`'s
    posterior is :math:`\\mathcal N(0.8 x_2, 0.45^2)`.

    :param x64: the observations.
    :param noise: the likelihood's standard deviations :math:`(\\sigma_1, \\sigma_2)`.
    """
    top = max(x64[:, 0].max().item(), 0.0)
    half1 = math.sqrt(top + 15 * noise[0]) + 0.3
    step1 = min(0.05, 0.8 * noise[0] / (2 * math.sqrt(top + 1e-3)))
    lo2, hi2 = 0.8 * x64[:, 1].min().item() - 5.0, 0.8 * x64[:, 1].max().item() + 5.0
    return make_grid((-half1, lo2), (half1, hi2), (step1, 0.2))


def ring(x64: torch.Tensor, *, noise: tuple[float, float]) -> QuadratureGrid:
    """The polar grid of ``ring``, with :math:`s = \\sqrt{\\lVert z\\rVert}` (the likelihood has a cone at
    :math:`z = 0`). The outer radius is 15 likelihood sds beyond the largest ring, which is :math:`\\sigma_1 / (2 s)`
    wide in :math:`s`; the angular factor :math:`e^{x_2 z_1 - z_1^2 / 2}` has Fourier modes up to about
    :math:`|x_2| r + r^2 / 2`.

    :param x64: the observations.
    :param noise: the likelihood's standard deviations :math:`(\\sigma_1, \\sigma_2)`.
    """
    top = max(2.0, x64[:, 0].max().item() + 1.5)
    step = min(0.01, 0.4 * noise[0] / (2 * math.sqrt(top)))
    modes = x64[:, 1].abs().max().item() * top + top**2 / 2
    num_angles = max(128, 4 * math.ceil(modes) + 64)
    return make_grid((0.0, 0.0), (math.sqrt(top), 2 * math.pi), (step, 2 * math.pi / num_angles), coordinates="polar")


def banana(x64: torch.Tensor, *, noise: tuple[float, float], curvature: float) -> QuadratureGrid:
    """The sheared grid of ``banana``, :math:`u = (z_1, z_2 + c z_1^2)`: :math:`u_2` is within 15 likelihood sds of
    :math:`x_2` and the prior keeps :math:`|z_1|` and :math:`|z_2|` below 6.5; across the ridge the posterior is
    at most :math:`\\sigma_2` wide.

    :param x64: the observations.
    :param noise: the likelihood's standard deviations :math:`(\\sigma_1, \\sigma_2)`.
    :param curvature: :math:`c`.
    """
    lo2 = x64[:, 1].min().item() - 15 * noise[1]
    hi2 = x64[:, 1].max().item() + 15 * noise[1]
    half1 = min(6.5, math.sqrt(max(hi2, 0.0) + 6.5))
    step = (0.05, 0.6 * noise[1])
    return make_grid((-half1, lo2), (half1, hi2), step, coordinates="parabolic", curvature=curvature)


def funnel(x64: torch.Tensor) -> QuadratureGrid:
    """The grid of ``funnel``: :math:`z_1`'s posterior is about :math:`\\mathcal N(0.69 x_1, 0.83^2)`, pulled up to
    :math:`2\\log|x_2|` by a large :math:`x_2`; :math:`z_2` is within 10 likelihood sds of :math:`x_2`, and a step of
    0.04 resolves its width wherever :math:`z_1` has mass.

    :param x64: the observations.
    """
    lo1 = min(x64[:, 0].min().item(), 0.0) - 7.0
    hi1 = max(x64[:, 0].max().item(), 2 * math.log1p(x64[:, 1].abs().max().item()), 0.0) + 7.0
    lo2, hi2 = x64[:, 1].min().item() - 5.0, x64[:, 1].max().item() + 5.0
    return make_grid((lo1, lo2), (hi1, hi2), (0.08, 0.04))


def positive(x64: torch.Tensor) -> QuadratureGrid:
    """The grid of ``positive``, in :math:`\\log z`, up to a little beyond the largest count.

    :param x64: the observations.
    """
    high = math.log(x64.max().item() + 10.0) + 1.0
    return make_grid((-14.0, -14.0), (high, high), 0.08, coordinates="log")
