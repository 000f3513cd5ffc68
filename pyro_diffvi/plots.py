r"""Plots for models with a 2-D latent: encoded latents over the prior's exact density, sample grids.

A latent plot a reader can trust shows (i) the prior's *exact* density, evaluated by the prior's own
``log_prob`` on a grid (no KDE of samples), with contour lines at the boundaries of its highest-density
regions holding 50%, 90% and 99% of the mass (mass by grid quadrature); (ii) the encoded latents
coloured by class with a legend; (iii) equal scales on both axes, so a circle looks like a circle.

* :func:`density_grid` evaluates the density on a grid and finds the region levels (a :class:`DensityGrid`).
* :func:`plot_latents` draws one panel into a matplotlib axis.
* :func:`plot_latent_panels` writes a figure of panels side by side (e.g. one per guide) on one grid.
* :func:`plot_image_grid` draws images (e.g. decoded prior samples) as one tiled picture.

Example:

>>> import os, tempfile, torch
>>> from pyro_diffvi.plots import plot_latent_panels
>>> from pyro_diffvi.priors import Pinwheel
>>> prior = Pinwheel()
>>> z = prior.sample((200,))
>>> labels = torch.arange(200) % 10
>>> path = os.path.join(tempfile.mkdtemp(), "latents.png")
>>> grid = plot_latent_panels({"exact prior draws": z}, labels, prior, path, resolution=60)
>>> os.path.getsize(path) > 0, grid.log_density.shape
(True, torch.Size([60, 60]))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from pyro_diffvi.util import check_event_shape

__all__ = ["DensityGrid", "density_grid", "plot_latents", "plot_latent_panels", "plot_image_grid"]

HPD_MASSES: tuple[float, ...] = (0.5, 0.9, 0.99)
"""Default masses of the highest-density regions whose boundaries are drawn as contour lines."""


@dataclass(frozen=True)
class DensityGrid:
    r"""A prior's exact log density on a regular grid, with highest-density-region levels.

    :ivar x: grid abscissae, shape ``(R,)`` (float64).
    :ivar y: grid ordinates, shape ``(R,)`` (float64).
    :ivar log_density: ``log_density[i, j] = prior.log_prob([x[j], y[i]])``, shape ``(R, R)``.
    :ivar masses: the region masses, increasing (e.g. ``(0.5, 0.9, 0.99)``).
    :ivar levels: ``levels[k]`` is the log density :math:`\ell_k` whose superlevel set
        :math:`\{z: \log p(z) \ge \ell_k\}` holds mass ``masses[k]`` (grid quadrature); decreasing.
    :ivar grid_mass: the quadrature of the density over the whole grid (close to 1 when the grid
        covers the prior).
    """

    x: torch.Tensor
    y: torch.Tensor
    log_density: torch.Tensor
    masses: tuple[float, ...]
    levels: tuple[float, ...]
    grid_mass: float

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``(xmin, xmax, ymin, ymax)`` of the grid."""
        return (self.x[0].item(), self.x[-1].item(), self.y[0].item(), self.y[-1].item())


def _square_extent(points: torch.Tensor, pad: float) -> tuple[float, float, float, float]:
    lo = torch.quantile(points, 0.002, dim=0)
    hi = torch.quantile(points, 0.998, dim=0)
    center = (lo + hi) / 2
    half = (hi - lo).max().item() / 2 * (1 + pad)
    return (center[0].item() - half, center[0].item() + half, center[1].item() - half, center[1].item() + half)


def density_grid(
    prior,
    *,
    extent: Sequence[float] | None = None,
    resolution: int = 200,
    masses: Sequence[float] = HPD_MASSES,
    points: torch.Tensor | None = None,
    num_prior_samples: int = 4000,
    pad: float = 0.15,
) -> DensityGrid:
    r"""Evaluate ``prior.log_prob`` on a square grid and find its highest-density-region levels.

    The density is the prior's exact one (its ``log_prob``, evaluated in float64 when the prior
    allows). A level :math:`\ell_k` is the largest log density whose superlevel set holds at least
    ``masses[k]`` of the grid's mass (cells sorted by density, masses summed by the midpoint rule and
    normalized by the grid's total).

    :param prior: a distribution over 2-D points with ``log_prob`` and ``sample`` (e.g. a
        :class:`~pyro_diffvi.priors.Pinwheel`).
    :param extent: ``(xmin, xmax, ymin, ymax)``; default: a square covering 99.6% of
        ``num_prior_samples`` prior draws and the given ``points``, padded by ``pad``.
    :param resolution: grid points per axis.
    :param masses: region masses in (0, 1).
    :param points: extra points (e.g. encoded latents) that the default extent should cover.
    :param num_prior_samples: prior draws used for the default extent.
    :param pad: relative padding of the default extent.
    :return: a :class:`DensityGrid`.

    Example (the grid holds the prior's own log density, and half its mass lies above the first level):

    >>> import torch
    >>> from pyro_diffvi.plots import density_grid
    >>> from pyro_diffvi.priors import Square
    >>> prior = Square()
    >>> grid = density_grid(prior, resolution=80)
    >>> xx, yy = torch.meshgrid(grid.x, grid.y, indexing="xy")
    >>> exact = prior.log_prob(torch.stack([xx, yy], -1).to(torch.get_default_dtype())).double()
    >>> torch.allclose(grid.log_density, exact), len(grid.levels), round(grid.grid_mass, 2)
    (True, 3, 1.0)
    """
    if resolution < 2:
        raise ValueError(f"resolution must be at least 2, got {resolution}")
    masses = tuple(float(m) for m in masses)
    if any(not 0.0 < m < 1.0 for m in masses) or list(masses) != sorted(masses):
        raise ValueError(f"masses must be increasing and in (0, 1), got {masses}")
    if extent is None:
        with torch.no_grad():
            cover = prior.sample((num_prior_samples,)).detach().double().cpu().reshape(-1, 2)
        if points is not None:
            cover = torch.cat([cover, points.detach().double().cpu().reshape(-1, 2)])
        cover = cover[torch.isfinite(cover).all(-1)]
        extent = _square_extent(cover, pad)
    xmin, xmax, ymin, ymax = (float(e) for e in extent)
    x = torch.linspace(xmin, xmax, resolution, dtype=torch.float64)
    y = torch.linspace(ymin, ymax, resolution, dtype=torch.float64)
    xx, yy = torch.meshgrid(x, y, indexing="xy")
    grid_points = torch.stack([xx, yy], -1)
    dtype = getattr(prior, "_dtype", torch.get_default_dtype())
    device = getattr(prior, "_device", torch.device("cpu"))
    with torch.no_grad():
        log_density = prior.log_prob(grid_points.to(device=device, dtype=dtype)).detach().double().cpu()
    cell = (x[1] - x[0]).item() * (y[1] - y[0]).item()
    density = log_density.exp().flatten()
    order = density.argsort(descending=True)
    cumulative = density[order].cumsum(0)
    total = cumulative[-1].item()
    if not total > 0:
        raise ValueError("the prior's density is zero on the whole grid: widen the extent")
    levels = []
    for m in masses:
        k = int(torch.searchsorted(cumulative, torch.tensor(m * total, dtype=torch.float64)).clamp(max=len(order) - 1))
        levels.append(log_density.flatten()[order[k]].item())
    return DensityGrid(x, y, log_density, masses, tuple(levels), total * cell)


def plot_latents(
    ax,
    latents: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    prior=None,
    grid: DensityGrid | None = None,
    title: str | None = None,
    legend: bool = True,
    point_size: float = 4.0,
    resolution: int = 200,
) -> DensityGrid | None:
    """Draw encoded latents, coloured by label, over the prior's exact density, with equal axis scales.

    The density is shaded (grey, darker = denser) and the boundaries of its 50/90/99% highest-density
    regions are drawn as labelled contour lines (see :func:`density_grid`). Points are drawn per label
    (``tab10`` colours) so the legend, right of the axis, names each class.

    :param ax: a matplotlib axis.
    :param latents: points, shape ``(n, 2)``.
    :param labels: integer labels, shape ``(n,)`` (``None``: one colour, no legend).
    :param prior: the prior whose density to draw (``None``: latents only, unless ``grid`` is given).
    :param grid: a precomputed :class:`DensityGrid` (e.g. shared by several panels).
    :param title: the panel's title.
    :param legend: draw the legend of the labels.
    :param point_size: marker size.
    :param resolution: grid points per axis when the grid is computed here.
    :return: the density grid drawn (``None`` without a prior or grid).

    Example:

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt, torch
    >>> from pyro_diffvi.plots import plot_latents
    >>> from pyro_diffvi.priors import SwissRoll
    >>> fig, ax = plt.subplots()
    >>> grid = plot_latents(ax, torch.randn(50, 2), torch.arange(50) % 10, prior=SwissRoll(), resolution=50)
    >>> ax.get_aspect(), len(ax.get_legend().get_texts())
    (1.0, 10)
    >>> plt.close(fig)
    """
    latents = torch.as_tensor(latents)
    check_event_shape("latents", latents, (2,))
    latents = latents.detach().double().cpu().reshape(-1, 2)
    if labels is not None:
        labels = torch.as_tensor(labels).cpu().reshape(-1)
        if labels.numel() != latents.shape[0]:
            raise ValueError(
                f"labels must hold one label per latent: got {labels.numel()} labels for {latents.shape[0]} latents"
            )
    if grid is None and prior is not None:
        grid = density_grid(prior, resolution=resolution, points=latents)
    if grid is not None:
        density = grid.log_density.exp().numpy()
        ax.imshow(density, origin="lower", extent=grid.extent, cmap="Greys", alpha=0.45, aspect="equal",
                  interpolation="bilinear")
        levels = sorted(grid.levels)  # increasing, as contour wants
        contours = ax.contour(grid.x.numpy(), grid.y.numpy(), grid.log_density.numpy(), levels=levels,
                              colors="k", linewidths=0.7, linestyles="solid")
        names = {lvl: f"{m:.0%}" for lvl, m in zip(grid.levels, grid.masses)}
        ax.clabel(contours, fmt=lambda lvl: names.get(lvl, ""), fontsize=6)
        ax.set_xlim(grid.extent[0], grid.extent[1])
        ax.set_ylim(grid.extent[2], grid.extent[3])
    if labels is None:
        ax.scatter(latents[:, 0], latents[:, 1], s=point_size, c="tab:blue", linewidths=0)
    else:
        cmap = _tab10()
        for value in labels.unique().tolist():
            mask = labels == value
            ax.scatter(latents[mask, 0], latents[mask, 1], s=point_size, color=cmap(int(value) % 10),
                       label=str(value), linewidths=0)
        if legend:
            ax.legend(title="digit", markerscale=3, fontsize=6, title_fontsize=7, loc="upper left",
                      bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # outside: it hides no point
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=9)
    return grid


def _tab10():
    import matplotlib

    return matplotlib.colormaps["tab10"]


def plot_latent_panels(
    panels: Mapping[str, torch.Tensor],
    labels: torch.Tensor | None,
    prior,
    path: str,
    *,
    ncols: int | None = None,
    panel_size: float = 4.0,
    resolution: int = 200,
    suptitle: str | None = None,
) -> DensityGrid | None:
    """Write a figure of latent panels side by side, all on one density grid and one extent.

    :param panels: ``{title: latents of shape (n, 2)}``, one panel each, in order.
    :param labels: labels of the latents (shared by the panels), or ``None``.
    :param prior: the prior whose exact density every panel shows (or ``None``).
    :param path: the image file to write (format from its extension).
    :param ncols: panels per row (default: all in one row).
    :param panel_size: inches per panel.
    :param resolution: grid points per axis.
    :param suptitle: a title over the figure.
    :return: the shared :class:`DensityGrid` (``None`` without a prior).

    Example: see the module docstring.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError("panels is empty")
    grid = None
    if prior is not None:
        everything = torch.cat([z.detach().double().cpu().reshape(-1, 2) for z in panels.values()])
        grid = density_grid(prior, resolution=resolution, points=everything)
    ncols = ncols or len(panels)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows), squeeze=False)
    for i, (ax, (title, z)) in enumerate(zip(axes.flat, panels.items())):
        plot_latents(ax, z, labels, grid=grid, title=title, legend=i == len(panels) - 1)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return grid


def plot_image_grid(ax, images: torch.Tensor, *, nrow: int | None = None, image_shape: Sequence[int] = (28, 28),
                    title: str | None = None) -> torch.Tensor:
    """Draw images as one tiled grey-scale picture (white = 1), without axes.

    :param ax: a matplotlib axis.
    :param images: shape ``(n, prod(image_shape))`` or ``(n, *image_shape)``, values in [0, 1]
        (e.g. Bernoulli means of decoded prior samples).
    :param nrow: images per row (default: the ceiling of the square root of ``n``).
    :param image_shape: height and width of one image.
    :param title: the axis title.
    :return: the tiled picture, shape ``(rows * h, nrow * w)``.

    Example:

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt, torch
    >>> from pyro_diffvi.plots import plot_image_grid
    >>> fig, ax = plt.subplots()
    >>> plot_image_grid(ax, torch.rand(10, 784), nrow=5).shape
    torch.Size([56, 140])
    >>> plt.close(fig)
    """
    h, w = (int(s) for s in image_shape)
    images = images.detach().float().cpu().reshape(-1, h, w)
    n = images.shape[0]
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    canvas = torch.zeros(rows * h, nrow * w)
    for k in range(n):
        r, c = divmod(k, nrow)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = images[k]
    ax.imshow(canvas.numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return canvas
