"""pyro_diffvi.plots: the drawn density is the prior's exact one, the region levels hold their masses,
and the figures are written."""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pyro_diffvi.plots import density_grid, plot_image_grid, plot_latent_panels, plot_latents  # noqa: E402
from pyro_diffvi.priors import Pinwheel, Square, SwissRoll  # noqa: E402


@pytest.mark.parametrize(
    "prior",
    [Pinwheel(radius=10.0, radial_scale=3.0, tangential_scale=0.5), SwissRoll(), Square()],
    ids=["pinwheel", "swiss_roll", "square"],
)
def test_grid_is_the_exact_log_density_and_levels_hold_their_mass(prior):
    grid = density_grid(prior, resolution=120)
    xx, yy = torch.meshgrid(grid.x, grid.y, indexing="xy")
    exact = prior.log_prob(torch.stack([xx, yy], -1).float()).double()
    assert torch.allclose(grid.log_density, exact)
    assert grid.log_density[3, 7] == pytest.approx(prior.log_prob(torch.tensor([grid.x[7], grid.y[3]]).float()).item())
    assert abs(grid.grid_mass - 1.0) < 0.02  # the default extent covers the prior
    cell = (grid.x[1] - grid.x[0]) * (grid.y[1] - grid.y[0])
    density = grid.log_density.exp()
    for mass, level in zip(grid.masses, grid.levels):
        inside = (density * (grid.log_density >= level)).sum() * cell / grid.grid_mass
        assert inside.item() == pytest.approx(mass, abs=0.01)
    assert list(grid.levels) == sorted(grid.levels, reverse=True)


def test_contours_drawn_are_the_grid_levels(tmp_path):
    prior = Square()
    fig, ax = plt.subplots()
    z = prior.sample((100,))
    grid = plot_latents(ax, z, torch.arange(100) % 10, prior=prior, resolution=60)
    contour = next(c for c in ax.collections if hasattr(c, "levels"))
    assert sorted(contour.levels.tolist()) == pytest.approx(sorted(grid.levels))
    assert ax.get_aspect() == 1.0
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [str(d) for d in range(10)]
    plt.close(fig)


def test_figures_are_written(tmp_path):
    prior = Pinwheel()
    z = prior.sample((50,))
    path = tmp_path / "panels.png"
    grid = plot_latent_panels({"a": z, "b": 0.5 * z}, torch.arange(50) % 10, prior, str(path), resolution=40)
    assert path.stat().st_size > 1000 and grid.log_density.shape == (40, 40)
    fig, ax = plt.subplots()
    canvas = plot_image_grid(ax, torch.rand(7, 784), nrow=3)
    assert canvas.shape == (3 * 28, 3 * 28)
    plt.close(fig)


def test_plot_latents_refuses_mismatched_labels():
    # Issue 25 case 5: 10 latents and 7 labels is a clear error naming both, not an IndexError inside the library.
    fig, ax = plt.subplots()
    try:
        with pytest.raises(ValueError, match="7 labels for 10 latents"):
            plot_latents(ax, torch.randn(10, 2), torch.arange(7))
        with pytest.raises(ValueError, match=r"latents must have trailing shape \(2,\)"):
            plot_latents(ax, torch.randn(10, 3))
        plot_latents(ax, torch.randn(10, 2), torch.arange(10) % 3)  # matched counts still draw, one colour a label
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2"]
    finally:
        plt.close(fig)
