"""The table of posterior test problems: every row builds a problem with the promised metadata, kind and seeding; bad
input is named."""

import math

import pytest
import torch
from pyro import poutine

from pyro_diffvi.datasets.posteriors import (
    make_problem,
    posterior_quadrature,
)
from tests.datasets.posteriors._shared import (
    AMORTIZED_GRID_NAMES,
    KINDS,
    LOG_2PI,
    NAMES,
    TARGETS,
    count_local_maxima,
    posterior_on_grid,
    problem,
)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_metadata(name, device):
    p = problem(name) if device.type == "cpu" else make_problem(name, device=device)
    n = 1 if name in TARGETS else 64
    assert p.name == name and isinstance(p.description, str) and p.description
    assert p.x.shape[0] == n and p.x.dim() == 2
    assert p.x.dtype == torch.float32 and p.x.device.type == device.type
    assert p.log_px.shape == (n,) and p.log_px.dtype == torch.float64
    assert torch.isfinite(p.log_px).all() and torch.isfinite(p.x).all()
    assert p.kind in KINDS
    if p.kind == "multimodal":
        assert p.num_modes > 1 and p.mode_of is not None
        assert p.mode_masses.shape == (n, p.num_modes) and p.mode_masses.dtype == torch.float64
        assert (p.mode_masses >= 0).all()
        assert torch.allclose(p.mode_masses.sum(-1), torch.ones(n, dtype=torch.float64), atol=1e-9)
    else:
        assert p.num_modes == 1 and p.mode_of is None and p.mode_masses is None
    trace = poutine.trace(poutine.uncondition(p.model)).get_trace(p.x)
    z = trace.nodes["z"]["value"]
    assert z.shape == (n, p.latent_dim) and z.device.type == device.type
    if p.mode_of is not None:
        modes = p.mode_of(z)
        assert modes.dtype == torch.long and modes.shape == (n,)
        assert ((modes >= 0) & (modes < p.num_modes)).all()


def test_seeded_and_global_rng_untouched():
    state = torch.get_rng_state()
    a = make_problem("four_modes", num_data=16, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    b = make_problem("four_modes", num_data=16, seed=3)
    c = make_problem("four_modes", num_data=16, seed=4)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    d = make_problem("four_modes", num_data=16, seed=3, dtype=torch.float64)
    assert d.x.dtype == torch.float64 and torch.allclose(d.x.float(), a.x)


@pytest.mark.parametrize("name", TARGETS)
def test_targets_have_one_observation_and_standard_normal_evidence(name):
    p = make_problem(name, num_data=100)
    assert p.x.shape == (1, 1)
    expected = -0.5 * p.x.double() ** 2 - 0.5 * LOG_2PI
    assert torch.allclose(p.log_px, expected.sum(-1), atol=1e-12)


@pytest.mark.parametrize("name", AMORTIZED_GRID_NAMES)
def test_kind_matches_the_posterior_shape(name):
    p = problem(name)
    if p.kind == "unimodal":
        log_post, _, _ = posterior_on_grid(p)
        assert (count_local_maxima(log_post) == 1).double().mean() > 0.9
    elif name == "sign_symmetric":
        # marginal of z1 at 0 is below 10% of its peak for most observations: two separate modes
        _, log_mass, _ = posterior_on_grid(p)
        marginal = log_mass.logsumexp(-1)
        middle = marginal.shape[-1] // 2
        dip = torch.maximum(marginal[:, middle - 1], marginal[:, middle]) - marginal.amax(-1)
        assert (dip < math.log(0.1)).double().mean() > 0.7
    elif p.kind == "multimodal":  # several modes with non-negligible mass
        assert (p.mode_masses > 0.05).sum(-1).double().mean() >= 2.0
    elif name == "ring":
        _, log_mass, z = posterior_on_grid(p)
        radius = z.norm(dim=-1)
        x1 = p.x[: log_mass.shape[0], 0].double()
        near = (radius - x1[:, None, None]).abs() < 0.4
        mass_near = log_mass.masked_fill(~near, -math.inf).logsumexp((-2, -1)).exp()
        angle_spread = (log_mass.exp() * z[..., 1].abs()).sum((-2, -1))
        big = x1 > 0.8
        assert (mass_near[big] > 0.999).all()
        assert (angle_spread[big] > 0.3).all()  # mass spreads around the ring, not a blob
    elif name == "banana":
        # z2 + z1^2 is pinned far tighter than the best linear function of z1 can pin z2: the
        # posterior is curved, not a tilted ellipse
        _, log_mass, z = posterior_on_grid(p)
        w = log_mass.exp()

        def mean(f):
            return (w * f).sum((-2, -1))

        z1, z2 = z[..., 0], z[..., 1]
        along = z2 + z1**2
        var_along = mean(along**2) - mean(along) ** 2
        cov = mean(z1 * z2) - mean(z1) * mean(z2)
        var1, var2 = mean(z1**2) - mean(z1) ** 2, mean(z2**2) - mean(z2) ** 2
        linear_residual = var2 - cov**2 / var1
        assert (linear_residual > 4 * var_along).double().mean() > 0.9


def test_bad_input_raises_value_error_naming_the_argument():
    with pytest.raises(ValueError, match="four_modes"):
        make_problem("nope")
    for bad in (0, -1, 2.5, True, None):
        with pytest.raises(ValueError, match="num_data"):
            make_problem("ring", num_data=bad)
    with pytest.raises(ValueError, match="num_data"):
        make_problem("gmm40", num_data=0)
    with pytest.raises(ValueError, match="seed"):
        make_problem("ring", seed=-1)
    with pytest.raises(ValueError, match="dtype"):
        make_problem("ring", dtype=torch.int64)
    p = problem("four_modes")
    with pytest.raises(ValueError, match="x must have shape"):
        p.model(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="no quadrature grid"):
        posterior_quadrature(problem("linear_gaussian_5d"))
    with pytest.raises(ValueError, match="factor"):
        p.grid.refined(factor=0)
