"""Posterior test problems: exact log p(x) against independent ground truth.

Independent checks: closed forms against 2-D quadrature, grid refinement and edge mass,
1-D reductions with the inner integral done analytically (sign_symmetric, banana, funnel), a polar
quadrature (ring), the Gaussian identity at the posterior mean (linear_gaussian_5d), per-quadrant
normal CDF products (four_modes), and importance sampling from the Pyro model itself (every
problem).
"""

import functools
import math
import pickle

import pyro
import pytest
import torch
from pyro import poutine

from pyro_diffvi.datasets.posteriors import (
    GMM40_MEANS,
    PROBLEMS,
    PosteriorProblem,
    make_problem,
    posterior_quadrature,
)
from pyro_diffvi.ops import QuadratureGrid

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


# ---------------------------------------------------------------------------------------------
# Structure


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


@pytest.mark.parametrize("name", NAMES)
def test_model_trace_with_validation(name):
    p = problem(name)
    x = p.x.double()
    with pyro.validation_enabled(True):
        trace = poutine.trace(p.model).get_trace(x)
        trace.compute_log_prob()
    z_site, x_site = trace.nodes["z"], trace.nodes["x"]
    assert not z_site["is_observed"] and x_site["is_observed"]
    assert z_site["fn"].event_shape == (p.latent_dim,) and x_site["fn"].event_shape == (x.shape[1],)
    assert [f.name for f in z_site["cond_indep_stack"]] == ["data"]
    assert z_site["cond_indep_stack"][0].dim == -1
    assert z_site["value"].dtype == torch.float64  # the model follows x's dtype
    assert not list(pyro.get_param_store().keys())  # no learnable parameters
    # the exposed log joint is the model's own density
    expected = z_site["log_prob"] + x_site["log_prob"]
    assert torch.allclose(p.log_joint(x, z_site["value"]), expected, rtol=1e-10, atol=1e-10)
    # the model pickles (guides that hold it can be saved)
    clone = pickle.loads(pickle.dumps(p.model))
    clone(x)


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


def test_funnel_10d_density_and_samples():
    p = problem("funnel_10d")
    x = torch.zeros(100_000, 1, dtype=torch.float64)
    z = poutine.trace(poutine.uncondition(p.model)).get_trace(x).nodes["z"]["value"]
    expected = normal_log_prob(z[:, 0], 0.0, 9.0) + normal_log_prob(
        z[:, 1:], 0.0, z[:, :1].exp()
    ).sum(-1)
    log_prior = p.log_joint(x, z) - normal_log_prob(x, 0.0, 1.0).sum(-1)
    assert torch.allclose(log_prior, expected, rtol=1e-10, atol=1e-8)
    n = z.shape[0]
    assert abs(z[:, 0].mean().item()) < 4 * 3 / math.sqrt(n)
    assert abs(z[:, 0].var().item() - 9.0) < 4 * 9 * math.sqrt(2 / n)
    standardized = z[:, 1:] * torch.exp(-z[:, :1] / 2)
    assert abs(standardized.var().item() - 1.0) < 4 * math.sqrt(2 / standardized.numel())


def test_gmm40_means_and_mode_masses():
    means = torch.tensor(GMM40_MEANS, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    assert torch.allclose(means, ((torch.rand(40, 2, generator=gen) - 0.5) * 80).double())
    p = problem("gmm40")
    assert torch.allclose(p.mode_masses.sum(), torch.tensor(1.0, dtype=torch.float64))
    # A mean 15 away from all others owns exactly 1/40 (up to Phi(-7.5) ~ 3e-14).
    gap = (torch.cdist(means, means) + 1e9 * torch.eye(40, dtype=torch.float64)).min(-1).values
    isolated = gap > 15
    assert isolated.any()
    assert (p.mode_masses[0, isolated] - 1 / 40).abs().max() < 1e-12
    # Near other means, cells hold visibly more or less than 1/40. Check the 2 farthest from 1/40
    # by the midpoint rule on a box of half-width 10 around each mean (the target density in a cell
    # farther than 10 from its mean is below exp(-50)); cells cut the grid's cells obliquely, so
    # the rule's error is O(h): at most 3.2e-5 here (2e-6 with twice the resolution).
    farthest = (p.mode_masses[0] - 1 / 40).abs().argsort(descending=True)[:2]
    for k in farthest.tolist():
        center = means[k].tolist()
        grid = QuadratureGrid(
            (center[0] - 10, center[1] - 10), (center[0] + 10, center[1] + 10), (400, 400)
        )
        quad = posterior_quadrature(p, grid=grid)
        mass = quad.mode_masses[0, k] * (quad.log_px[0] - p.log_px[0]).exp()
        assert abs(mass - p.mode_masses[0, k]) < 5e-5
        assert abs(p.mode_masses[0, k] - 1 / 40) > 2e-4


# ---------------------------------------------------------------------------------------------
# Exact log p(x) against independent computations


@pytest.mark.parametrize("name", AMORTIZED_GRID_NAMES)
def test_quadrature_converges_and_grid_is_wide_enough(name):
    p = problem(name)
    x = p.x[:16]
    coarse = posterior_quadrature(p, x=x)
    fine = posterior_quadrature(p, x=x, grid=p.grid.refined(factor=2))
    assert coarse.edge_mass.max() < 1e-8 and fine.edge_mass.max() < 1e-8
    assert (coarse.log_px - fine.log_px).abs().max() < 1e-4
    # the stored values agree with the quadrature (identical when they come from it)
    assert (coarse.log_px - p.log_px[:16]).abs().max() < 1e-6
    if p.mode_masses is not None:
        assert (coarse.mode_masses - fine.mode_masses).abs().max() < 1e-4
        assert (coarse.mode_masses - p.mode_masses[:16]).abs().max() < 1e-4


@pytest.mark.parametrize(
    "name", ["four_modes", "mixture_overlapping", "mixture_separated", "positive", "gmm40"]
)
def test_closed_form_equals_quadrature(name):
    p = problem(name)
    quad = posterior_quadrature(p)
    assert quad.edge_mass.max() < 1e-8
    assert (quad.log_px - p.log_px).abs().max() < 1e-6


def test_four_modes_masses_are_normal_cdf_products():
    p = problem("four_modes")
    x = p.x.double()
    mu = torch.tensor([[-1.5, -1.5], [1.5, -1.5], [-1.5, 1.5], [1.5, 1.5]], dtype=torch.float64)
    var = 0.25 + 4.0
    centers = (4.0 * mu + 0.25 * x[:, None, :]) / var  # posterior component means (N, 4, 2)
    sd = math.sqrt(0.25 * 4.0 / var)
    log_w = -0.5 * ((x[:, None, :] - mu) ** 2).sum(-1) / var
    w = torch.softmax(log_w, -1)
    right = torch.special.ndtr(centers / sd)  # P(z_i > 0) per component and axis
    quadrant = torch.stack(
        [
            (1 - right[..., 0]) * (1 - right[..., 1]),
            right[..., 0] * (1 - right[..., 1]),
            (1 - right[..., 0]) * right[..., 1],
            right[..., 0] * right[..., 1],
        ],
        -1,
    )
    expected = (w[..., None] * quadrant).sum(-2)
    assert (expected - p.mode_masses).abs().max() < 1e-12
    # every mode matters: the smallest quadrant holds 5.7% of the mass on average
    assert p.mode_masses.min(-1).values.mean() > 0.03


def test_sign_symmetric_reduces_to_one_dimension():
    p = problem("sign_symmetric")
    x = p.x.double()

    def log_f(t):  # N(z1; 0, 1.5^2) N(x1; z1^2, 0.1^2)
        return normal_log_prob(t, 0.0, 2.25) + normal_log_prob(x[:, :1], t**2, 0.01)

    expected = midpoint_1d(log_f, -8.0, 8.0, 2e-4) + normal_log_prob(x[:, 1], 0.0, 1.25)
    assert (expected - p.log_px).abs().max() < 1e-6
    assert torch.equal(p.mode_masses, torch.full((64, 2), 0.5, dtype=torch.float64))


def test_banana_reduces_to_one_dimension():
    p = problem("banana")
    x = p.x.double()

    def log_f(t):  # z2 integrated out: x2 | z1 ~ N(z1^2, 1 + 0.1^2)
        return (
            normal_log_prob(t, 0.0, 1.0)
            + normal_log_prob(x[:, :1], t, 1.0)
            + normal_log_prob(x[:, 1:], t**2, 1.01)
        )

    expected = midpoint_1d(log_f, -10.0, 10.0, 1e-3)
    assert (expected - p.log_px).abs().max() < 1e-6


def test_funnel_reduces_to_one_dimension():
    p = problem("funnel")
    x = p.x.double()

    def log_f(t):  # z2 integrated out: x2 | z1 ~ N(0, exp(z1) + 0.5^2)
        return (
            normal_log_prob(t, 0.0, 2.25)
            + normal_log_prob(x[:, :1], t, 1.0)
            + normal_log_prob(x[:, 1:], 0.0, t.exp() + 0.25)
        )

    expected = midpoint_1d(log_f, -15.0, 15.0, 1e-3)
    assert (expected - p.log_px).abs().max() < 1e-6


def test_ring_polar_quadrature():
    # p(x) in polar coordinates r = s^2 (smooth at the origin, where |z| has a cone), theta periodic
    p = problem("ring")
    x = p.x.double()
    top = math.sqrt(x[:, 0].max().item() + 1.5)
    num_s, num_t = 1500, 192
    s = top / num_s * (torch.arange(num_s, dtype=torch.float64) + 0.5)
    r = s**2
    theta = 2 * math.pi / num_t * torch.arange(num_t, dtype=torch.float64)
    z1 = r[:, None] * theta.cos()  # (R, T)
    expected = []
    for xs in x.split(16):
        # N(z; 0, I) dz = r exp(-r^2 / 2) / (2 pi) dr dtheta, dr = 2 s ds
        log_radial = (2 * s * r).log() - 0.5 * r**2 - LOG_2PI + normal_log_prob(xs[:, :1], r, 0.01)
        log_angular = normal_log_prob(xs[:, 1:2, None], z1, 1.0)  # (n, R, T)
        inner = (log_angular + math.log(2 * math.pi / num_t)).logsumexp(-1)
        expected.append((log_radial + inner + math.log(top / num_s)).logsumexp(-1))
    expected = torch.cat(expected)
    assert (expected - p.log_px).abs().max() < 1e-7


def test_linear_gaussian_matches_exact_posterior_identity():
    # log p(x) = log p(x, m) + d/2 log 2 pi - 1/2 log det(H), H = -grad^2_z log p(x, z), m = mode,
    # exact for a Gaussian joint; H and m come from autograd on the model's log joint.
    p = problem("linear_gaussian_5d")
    x = p.x.double()[:8]
    d = p.latent_dim
    for n in range(x.shape[0]):

        def log_joint(z, xn=x[n]):
            return p.log_joint(xn, z)

        z0 = torch.zeros(d, dtype=torch.float64)
        hess = -torch.autograd.functional.hessian(log_joint, z0)
        grad = torch.autograd.functional.jacobian(log_joint, z0)
        mode = z0 + torch.linalg.solve(hess, grad)
        expected = log_joint(mode) + 0.5 * d * LOG_2PI - 0.5 * torch.linalg.slogdet(hess)[1]
        assert abs(expected.item() - p.log_px[n].item()) < 1e-9
    eig = torch.linalg.eigvalsh(hess)
    assert eig.max() / eig.min() > 20  # anisotropic posterior


@pytest.mark.parametrize("name", NAMES)
def test_importance_sampling_from_the_model_agrees(name):
    """log-mean-exp of p(x | z) over 200k prior draws, run through the Pyro model itself."""
    p = problem(name)
    num_samples = 200_000
    obs = min(3, p.x.shape[0])
    x = p.x[:obs].double().repeat_interleave(num_samples, 0)
    with torch.no_grad():
        trace = poutine.trace(p.model).get_trace(x)
        log_w = trace.nodes["x"]["fn"].log_prob(x).reshape(obs, num_samples)
    estimate = log_w.logsumexp(-1) - math.log(num_samples)
    w = (log_w - log_w.max(-1, keepdim=True).values).exp()
    ess = w.sum(-1) ** 2 / (w**2).sum(-1)
    se = w.std(-1) / (w.mean(-1) * math.sqrt(num_samples))  # delta-method s.e. of the log
    assert (ess > 100).all()
    assert ((estimate - p.log_px[:obs]).abs() < 4 * se + 1e-6).all()


# ---------------------------------------------------------------------------------------------
# The posterior shapes the names promise


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


# ---------------------------------------------------------------------------------------------
# Bad input


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
