"""Shared behaviour of every structured prior: normalization on a grid, samples vs density,
components vs mixture, gradients, D > 2, shapes inside Pyro plates and argument validation."""

import functools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyro_diffvi.priors import GaussianGrid, GaussianRing, Pinwheel, Square, SwissRoll

# name -> (factory, grid half-extent, grid step). Extents cover the support to > 6 noise stds beyond
# the outermost structure (truncated mass < 1e-8); steps are <= 0.6 x the narrowest noise std, where
# the midpoint rule on these smooth, rapidly decaying densities is spectrally accurate (error << 1e-6).
PRIORS = {
    "pinwheel": (Pinwheel, 3.6, 0.02),  # radius <= 1 + 7 * 0.3, tangential std 0.05
    "swiss_roll": (SwissRoll, 4.3, 0.05),  # radius <= 2.83 + 7 * 0.2, std 0.2
    "square": (Square, 1.8, 0.025),  # |z|_inf <= 1 + 8 * 0.1, std 0.1
    "ring": (GaussianRing, 5.6, 0.06),  # radius 2.83 + 7.8 * 0.354, std 0.354
    "grid": (GaussianGrid, 1.6, 0.01),  # |z|_inf <= 1.414 + 9 * 0.0177, std 0.0177
}
NAMES = list(PRIORS)


def make(name, **kwargs):
    return PRIORS[name][0](dtype=torch.float64, **kwargs)


@functools.cache
def grid(name):
    """Midpoint grid, cell area, and the mixture / all-component log densities on it (computed once)."""
    _, half, step = PRIORS[name]
    xs = torch.arange(-half, half, step, dtype=torch.float64) + step / 2
    points = torch.cartesian_prod(xs, xs)
    prior = make(name)
    return points, step * step, prior.log_prob(points), prior.component_log_probs(points)


@pytest.mark.parametrize("name", NAMES)
def test_density_integrates_to_one(name):
    _, cell, log_p, _ = grid(name)
    total = log_p.exp().sum().item() * cell
    assert abs(total - 1.0) < 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_components_integrate_to_one_and_mix_to_density(name):
    prior = make(name)
    points, cell, log_p, comps = grid(name)
    k = prior.num_components
    masses = comps.exp().sum(0) * cell
    assert torch.allclose(masses, torch.ones(k, dtype=torch.float64), atol=1e-4)
    weights = prior.mixture_logits.exp()
    assert abs(weights.sum().item() - 1.0) < 1e-12
    mixed = (comps.exp() * weights).sum(-1)
    assert torch.allclose(mixed, log_p.exp(), rtol=1e-9, atol=1e-300)
    # Bayes' rule: p(l|z) = pi_l p(z|l) / p(z), normalized over l
    post = prior.label_log_posterior(points[:1000]).exp()
    assert torch.allclose(post.sum(-1), torch.ones(1000, dtype=torch.float64), rtol=1e-12)
    assert torch.allclose(post, comps[:1000].exp() * weights / log_p[:1000].exp().unsqueeze(-1), rtol=1e-9)
    # the label-gathering path (broadcast label tensor) picks the right column
    idx = torch.randint(points.shape[0], (500,))
    labels = torch.randint(k, (500,))
    gathered = prior.component_log_prob(points[idx], labels)
    assert torch.allclose(gathered, comps[idx, labels], rtol=1e-12)
    both = prior.component_log_prob(points[idx[:5]].unsqueeze(-2), torch.arange(k))  # (5, K)
    assert torch.allclose(both, comps[idx[:5]], rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_samples_agree_with_log_prob(name):
    # E_p[log p] from 20,000 samples vs the grid integral of p log p; the tolerance is 4 standard
    # errors of the Monte Carlo mean. The same for the labelled sampler and the component densities.
    prior = make(name)
    _, cell, log_p, comps = grid(name)
    n = 20000
    z, labels = prior.sample_with_labels((n,))
    assert z.shape == (n, 2) and labels.shape == (n,)
    lp = prior.log_prob(z)
    exact = (log_p.exp() * log_p.clamp_min(-700)).sum().item() * cell
    assert abs(lp.mean().item() - exact) < 4 * lp.std().item() / math.sqrt(n)

    weights = prior.mixture_logits.exp()
    exact_c = ((comps.exp() * comps.clamp_min(-700)).sum(0) * cell * weights).sum().item()
    lpc = prior.component_log_prob(z, labels)
    assert abs(lpc.mean().item() - exact_c) < 4 * lpc.std().item() / math.sqrt(n)
    counts = torch.bincount(labels, minlength=prior.num_components).double()
    # label frequencies: each within 4 binomial standard errors of its weight
    se = (weights * (1 - weights) / n).sqrt()
    assert ((counts / n - weights).abs() < 4 * se).all()


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_finite_differences(name):
    prior = make(name)
    z = torch.cat([prior.sample((4,)), torch.zeros(1, 2, dtype=torch.float64)])
    z.requires_grad_(True)
    (grad,) = torch.autograd.grad(prior.log_prob(z).sum(), z)
    assert torch.isfinite(grad).all()
    eps = 1e-6
    for i in range(2):
        step = torch.zeros_like(z)
        step[:, i] = eps
        with torch.no_grad():
            fd = (prior.log_prob(z + step) - prior.log_prob(z - step)) / (2 * eps)
        assert torch.allclose(grad[:, i], fd, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_extra_dimensions_are_standard_normal(name):
    prior2, prior4 = make(name), make(name, dim=4)
    z = torch.randn(50, 4, dtype=torch.float64) + torch.tensor([1.0, -0.5, 0.3, 2.0], dtype=torch.float64)
    normal = dist.Normal(torch.zeros((), dtype=torch.float64), 1.0).log_prob(z[:, 2:]).sum(-1)
    assert torch.allclose(prior4.log_prob(z), prior2.log_prob(z[:, :2]) + normal, rtol=1e-12)
    labels = torch.randint(prior2.num_components, (50,))
    assert torch.allclose(
        prior4.component_log_prob(z, labels), prior2.component_log_prob(z[:, :2], labels) + normal, rtol=1e-12
    )
    n = 20000
    sample = prior4.sample((n,))
    assert sample.shape == (n, 4) and prior4.event_shape == (4,)
    # mean 0 and variance 1 of the extra coordinates, within 4 standard errors
    extra = sample[:, 2:]
    assert (extra.mean(0).abs() < 4 / math.sqrt(n)).all()
    assert ((extra.var(0) - 1).abs() < 4 * math.sqrt(2 / n)).all()


@pytest.mark.parametrize("name", NAMES)
def test_shapes_expand_and_plates(name):
    prior = PRIORS[name][0]()
    assert prior.batch_shape == () and prior.event_shape == (2,)
    expanded = prior.expand((3, 5))
    assert expanded.batch_shape == (3, 5)
    assert expanded.sample((2,)).shape == (2, 3, 5, 2)
    z = torch.randn(5, 2)
    assert expanded.log_prob(z).shape == (3, 5)
    assert torch.allclose(expanded.log_prob(z)[1], prior.log_prob(z))
    assert prior.log_prob(z).dtype == torch.float32
    assert prior.sample_with_labels((4, 2))[1].shape == (4, 2)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", PRIORS[name][0]())
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x, 0.1).to_event(1))

    x = torch.randn(7, 2)
    trace = pyro.poutine.trace(model).get_trace(x)
    trace.compute_log_prob()
    assert trace.nodes["z"]["value"].shape == (7, 2)
    assert trace.nodes["z"]["log_prob"].shape == (7,)
    # vectorized particles: an extra plate of size 3 on the left
    elbo = Trace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1)
    assert math.isfinite(elbo.loss(model, guide, x))

    def labelled_model(y):
        with pyro.plate("data", y.shape[0]):
            return pyro.sample("z", PRIORS[name][0]().component(y))

    y = torch.randint(prior.num_components, (6,))
    trace = pyro.poutine.trace(labelled_model).get_trace(y)
    trace.compute_log_prob()
    assert trace.nodes["z"]["value"].shape == (6, 2)
    assert torch.allclose(trace.nodes["z"]["log_prob"], prior.component_log_prob(trace.nodes["z"]["value"], y))


@pytest.mark.parametrize("name", NAMES)
def test_component_rsample_is_differentiable(name):
    prior = PRIORS[name][0]()
    component = prior.component(torch.tensor([0, 1]))
    assert component.has_rsample and component.batch_shape == (2,)
    assert component.rsample((3,)).shape == (3, 2, 2)
    assert component.expand((4, 2)).sample().shape == (4, 2, 2)
    assert PRIORS[name][0](dim=5).component(torch.tensor(1)).rsample((6,)).shape == (6, 5)


def test_device_and_dtype_follow_value(device):
    prior = Pinwheel(device=device)
    z = prior.sample((10,))
    assert z.device.type == device.type
    lp = prior.log_prob(z.double())
    assert lp.device.type == device.type and lp.dtype == torch.float64
    cpu_prior = Square()
    assert cpu_prior.log_prob(z).device.type == device.type


@pytest.mark.parametrize(
    "factory, kwargs, match",
    [
        (Pinwheel, {"num_components": 0}, "num_components"),
        (Pinwheel, {"radial_scale": -1.0}, "radial_scale"),
        (Pinwheel, {"rate": float("nan")}, "rate"),
        (Pinwheel, {"dim": 1}, "dim"),
        (SwissRoll, {"t_min": 5.0, "t_max": 4.0}, "t_max"),
        (SwissRoll, {"quadrature_order": 0}, "quadrature_order"),
        (Square, {"scale": 0.0}, "scale"),
        (Square, {"half_width": "1"}, "half_width"),
        (GaussianGrid, {"num_per_side": 2.5}, "num_per_side"),
        (GaussianRing, {"radius": -2.0}, "radius"),
        (GaussianRing, {"dtype": torch.long}, "dtype"),
    ],
)
def test_bad_constructor_arguments_raise(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(**kwargs)


def test_bad_values_and_labels_raise():
    prior = Pinwheel()
    with pytest.raises(ValueError, match="trailing dimension 2"):
        prior.log_prob(torch.zeros(5, 3))
    with pytest.raises(TypeError, match="floating-point"):
        prior.log_prob(torch.zeros(5, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"label must lie in \[0, 9\]"):
        prior.component_log_prob(torch.zeros(5, 2), torch.tensor([10]))
    with pytest.raises(TypeError, match="integer"):
        prior.component(torch.tensor([0.5]))


@pytest.mark.parametrize("name", ["pinwheel", "ring"])
def test_sample_with_labels_accepts_an_int(name):
    # Issue 25 case 4: ``sample_with_labels(5)``, as docs/guide.md writes it, means ``(5,)``: the same draws
    # as the tuple form under the same generator.
    prior = {"pinwheel": Pinwheel(), "ring": GaussianRing()}[name]
    z_int, labels_int = prior.sample_with_labels(5, generator=torch.Generator().manual_seed(0))
    z_tup, labels_tup = prior.sample_with_labels((5,), generator=torch.Generator().manual_seed(0))
    assert z_int.shape == (5, 2) and labels_int.shape == (5,)
    assert torch.equal(z_int, z_tup) and torch.equal(labels_int, labels_tup)
    assert prior.sample(3).shape == (3, 2)
    with pytest.raises(TypeError, match="sample_shape"):
        prior.sample_with_labels("5")
    with pytest.raises(ValueError, match="sample_shape"):
        prior.sample_with_labels(-1)


def test_cuda_without_cuda_is_the_librarys_clear_error():
    # Issue 25, smaller: Pinwheel(device="cuda") without CUDA was torch's "Torch not compiled with CUDA enabled".
    if torch.cuda.is_available():
        assert Pinwheel(device="cuda").sample((3,)).is_cuda
    else:
        with pytest.raises(ValueError, match="device='cuda' requested but CUDA is not available"):
            Pinwheel(device="cuda")
    assert Pinwheel(device=None).sample((3,)).device == torch.empty(0).device
