r"""Exact Gaussian masses of convex polygons and of the cells of a Voronoi diagram (Owen's :math:`T` function).

References: D. B. Owen. *Tables for computing bivariate normal probabilities*. The Annals of Mathematical
Statistics 27(4):1075-1090, 1956.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import owens_t

__all__ = ["clip_polygon", "gaussian_polygon_mass", "voronoi_cells", "voronoi_masses"]


def clip_polygon(polygon: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """The part of a convex polygon ``(V, 2)`` (counter-clockwise) where ``normal . z <= offset``."""
    kept = []
    for i in range(len(polygon)):
        p, q = polygon[i], polygon[(i + 1) % len(polygon)]
        fp, fq = normal @ p - offset, normal @ q - offset
        if fp <= 0:
            kept.append(p)
        if fp * fq < 0:
            kept.append(p + fp / (fp - fq) * (q - p))
    return np.array(kept, dtype=np.float64).reshape(-1, 2)


def voronoi_cells(sites: np.ndarray, half_width: float) -> list[np.ndarray]:
    """Counter-clockwise polygons of the nearest-site cells, clipped to ``[-w, w]^2``."""
    w = half_width
    box = np.array([[-w, -w], [w, -w], [w, w], [-w, w]], dtype=np.float64)
    cells = []
    for k, site in enumerate(sites):
        cell = box
        for j, other in enumerate(sites):
            if j != k:
                cell = clip_polygon(cell, other - site, 0.5 * (other @ other - site @ site))
        cells.append(cell)
    return cells


def gaussian_polygon_mass(centers: np.ndarray, scale: float, polygon: np.ndarray) -> np.ndarray:
    """:math:`P(z \\in \\text{polygon})` for :math:`z \\sim \\mathcal N(c, s^2 I)`, each center ``c``.

    The polygon is a signed sum of triangles with a vertex at ``c``; the mass of the triangle from
    ``c`` to an edge on a line at distance :math:`\\rho` between the positions :math:`x_a < x_b`
    along it is :math:`\\frac{1}{2\\pi}[\\arctan\\frac{x}{\\rho}]_{x_a}^{x_b} - [T(\\rho,
    \\tfrac{x}{\\rho})]_{x_a}^{x_b}` with Owen's :math:`T` (exact to rounding).
    """
    a = (polygon[None, :, :] - centers[:, None, :]) / scale  # (C, V, 2), standardized vertices
    b = np.roll(a, -1, axis=1)
    length = np.linalg.norm(b - a, axis=-1)
    e = (b - a) / np.maximum(length, 1e-300)[..., None]
    x_a, x_b = (a * e).sum(-1), (b * e).sum(-1)
    signed = a[..., 0] * e[..., 1] - a[..., 1] * e[..., 0]  # > 0 for counter-clockwise edges
    rho = np.abs(signed)
    ok = (length > 1e-12) & (rho > 1e-12)
    rho = np.where(ok, rho, 1.0)
    t_a, t_b = x_a / rho, x_b / rho
    mass = (np.arctan(t_b) - np.arctan(t_a)) / (2 * math.pi) - (owens_t(rho, t_b) - owens_t(rho, t_a))
    return np.where(ok, np.sign(signed) * mass, 0.0).sum(-1)


def voronoi_masses(
    sites: list, centers: torch.Tensor, scale: float, log_weights: torch.Tensor
) -> torch.Tensor:
    """Mass of each nearest-site cell under the mixture :math:`\\sum_c w_c \\mathcal N(m_c, s^2 I)`.

    :param sites: ``K`` points defining the cells.
    :param centers: ``(N, C, 2)`` component means; ``log_weights``: ``(N, C)`` normalized.
    :return: ``(N, K)`` float64 on ``centers``' device.
    """
    site_array = np.asarray(sites, dtype=np.float64)
    flat = centers.detach().to("cpu", torch.float64).reshape(-1, 2).numpy()
    reach = max(np.abs(site_array).max(), np.abs(flat).max()) + 40.0 * scale
    cells = voronoi_cells(site_array, reach)
    per_component = np.stack([gaussian_polygon_mass(flat, scale, cell) for cell in cells], -1)
    per_component = torch.as_tensor(per_component, device=centers.device).reshape(
        centers.shape[:-1] + (len(cells),)
    )
    return (log_weights.exp().unsqueeze(-1) * per_component).sum(-2)
