"""FlowPrior: a normalized density (2-D quadrature), its draws follow its density, and it trains inside a
Pyro model under Trace_ELBO with the amortized guides (the bound checked against log p(x) by quadrature)."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_diffvi.guides import DiffusionGuide, GaussianGuide
from pyro_diffvi.priors import FlowPrior


def _grid(lim: float, num: int):
    h = 2 * lim / num
    axis = (-lim + h * (torch.arange(num, dtype=torch.float64) + 0.5)).float()
    return torch.cartesian_prod(axis, axis), h


def _mass(prior, lim: float, num: int) -> float:
    """Midpoint rule of exp(log_prob) over [-lim, lim]^2 (summed in float64)."""
    points, h = _grid(lim, num)
    with torch.no_grad():
        log_p = torch.cat([prior.log_prob(c) for c in points.split(100_000)]).double()
    return (log_p.exp().sum() * h * h).item()


def _perturbed_prior(flow: str, scale: float) -> FlowPrior:
    pyro.clear_param_store()
    torch.manual_seed(0)
    prior = FlowPrior(2, num_transforms=3, flow=flow, hidden_dims=(16, 16))
    with torch.no_grad():  # move away from the near-Gaussian initialization
        for p in prior.parameters():
            p.add_(scale * torch.randn_like(p))
    return prior


@pytest.mark.parametrize("flow,scale,num", [("iaf", 0.5, 400), ("spline", 0.1, 200)])
def test_log_prob_integrates_to_one(flow, scale, num):
    prior = _perturbed_prior(flow, scale)
    with torch.no_grad():
        draws = prior().sample((20_000,))
    lim = 6.0
    assert draws.abs().max() < lim - 2  # the box holds the mass: the tail beyond it is negligible
    coarse, fine = _mass(prior, lim, num), _mass(prior, lim, 2 * num)
    # The midpoint rule's error falls as h^2, so |fine - 1| ~ |fine - coarse| / 3 (Richardson): the
    # grid's own refinement difference bounds the error (plus float32 log_prob rounding, < 1e-5).
    assert abs(fine - coarse) < 5e-3  # the grid resolves the density
    assert abs(fine - 1.0) <= abs(fine - coarse) + 1e-5, (coarse, fine)


@pytest.mark.parametrize("flow,scale", [("iaf", 0.5), ("spline", 0.1)])
def test_draws_follow_the_density(flow, scale):
    """P(z in box) by quadrature of exp(log_prob) equals the fraction of rsample draws in the box
    (binomial standard error)."""
    prior = _perturbed_prior(flow, scale)
    torch.manual_seed(1)
    n = 100_000
    with torch.no_grad():
        draws = prior().rsample((n,))
    centre = draws.median(0).values
    inside = ((draws - centre).abs() < 0.5).all(-1).double()
    frac, se = inside.mean().item(), inside.std().item() / math.sqrt(n)
    points, h = _grid(0.5, 200)
    with torch.no_grad():
        quad = (prior.log_prob(points + centre).double().exp().sum() * h * h).item()
    assert 0.05 < frac < 0.95
    assert abs(quad - frac) < 4 * se + 1e-3, (quad, frac, se)  # 1e-3: the 200x200 grid's error


def test_rsample_is_reparameterized_and_scored():
    prior = FlowPrior(3, num_transforms=2, hidden_dims=(12,), name="p")
    d = prior()
    z = d.rsample((4,))
    z.sum().backward()
    assert all(p.grad is not None for p in prior.parameters() if p.requires_grad)
    assert d.batch_shape == () and d.event_shape == (3,)
    # scoring a new point inverts the layers: log_prob(z) at the cached draw equals a fresh evaluation
    assert torch.allclose(d.log_prob(z), prior.log_prob(z.detach().clone()), atol=1e-4)


def test_errors_name_the_bad_argument():
    with pytest.raises(ValueError, match="flow"):
        FlowPrior(2, flow="maf")
    with pytest.raises(ValueError, match="num_transforms"):
        FlowPrior(2, num_transforms=0)
    with pytest.raises(ValueError, match="name"):
        FlowPrior(2, name="")
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        FlowPrior(2).log_prob(torch.zeros(3))
    pyro.clear_param_store()
    FlowPrior(2, hidden_dims=(8,), name="same")()
    with pytest.raises(ValueError, match="another name"):
        FlowPrior(2, hidden_dims=(16,), name="same")()


SIGMA = 0.5


def _model_and_data():
    pyro.clear_param_store()
    torch.manual_seed(0)
    prior = FlowPrior(2, num_transforms=2, hidden_dims=(16, 16), name="prior")

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", prior())
            pyro.sample("x", dist.Normal(z, SIGMA).to_event(1), obs=x)

    x = torch.randn(16, 2) * torch.tensor([1.5, 0.5]) + torch.tensor([1.0, -1.0])
    return prior, model, x


def _exact_log_px(prior, x) -> float:
    """sum_n log of the integral of p(z) N(x_n; z, sigma^2 I) dz by the midpoint rule on [-8, 8]^2."""
    points, h = _grid(8.0, 400)
    with torch.no_grad():
        log_pz = prior.log_prob(points).double()
        lik = dist.Normal(points.double()[:, None, :], SIGMA).log_prob(x.double()).sum(-1)  # (grid, n)
        return (torch.logsumexp(log_pz[:, None] + lik, 0) + 2 * math.log(h)).sum().item()


@pytest.mark.parametrize("guide_cls,kwargs", [(GaussianGuide, {}), (DiffusionGuide, {"num_steps": 4})])
def test_trains_with_trace_elbo_and_bounds_log_px(guide_cls, kwargs):
    prior, model, x = _model_and_data()
    guide = guide_cls(model, "z", "x", encoder_hidden_dims=(32, 32), **kwargs)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), Trace_ELBO())
    before = {k: v.detach().clone() for k, v in prior.named_parameters()}
    for _ in range(150):
        svi.step(x)
    store = dict(pyro.get_param_store().named_parameters())
    assert sum(k.startswith("prior.flow") for k in store) == len(before)  # every flow parameter registered
    assert all(not torch.equal(before[k], v) for k, v in prior.named_parameters())  # ... and trained
    torch.manual_seed(1)
    num = 400
    with torch.no_grad():
        elbos = torch.tensor([-Trace_ELBO().loss(model, guide, x) for _ in range(num)])
    elbo, se = elbos.mean().item(), elbos.std().item() / math.sqrt(num)
    log_px = _exact_log_px(prior, x)
    # a lower bound on log p(x) (quadrature error << SE), and not a vacuous one after training
    assert elbo < log_px + 4 * se, (elbo, log_px, se)
    assert elbo > log_px - 0.5 * x.shape[0], (elbo, log_px)
