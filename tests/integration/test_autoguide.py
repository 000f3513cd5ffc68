"""The guides as Pyro autoguides: parts of an AutoGuideList (with AutoNormal for global sites), plates
created as autoguides create them (the model is not run on each call), and DDVI_ELBO's sleep term
through the WakeSleepGuide protocol."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoGuide, AutoGuideList, AutoNormal
from pyro.optim import Adam

from pyro_diffvi.guides import DiffusionGuide, FlowGuide, GaussianGuide, HierarchicalGuide, WakeSleepGuide
from pyro_diffvi.infer import DDVI_ELBO
from pyro_diffvi.util import set_seed

NOISE = 0.5
SMALL = {"encoder_hidden_dims": (32,)}
SMALL_CHAIN = {"num_steps": 4, "denoiser_hidden_dims": (32,), **SMALL}


def model(x, subsample_size=None):
    """x_i = mu + z_i + noise: a global mean and a local latent per data point."""
    mu = pyro.sample("mu", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
    with pyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
        z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(mu + z, NOISE).to_event(1), obs=x[idx])


def exact_log_px(x: torch.Tensor) -> float:
    """log p(x) of :func:`model`: per coordinate, x[:, d] ~ N(0, (1 + NOISE^2) I + 1 1^T) (mu is shared)."""
    n = x.shape[0]
    cov = (1 + NOISE**2) * torch.eye(n, dtype=torch.float64) + torch.ones(n, n, dtype=torch.float64)
    mvn = torch.distributions.MultivariateNormal(torch.zeros(n, dtype=torch.float64), cov)
    return mvn.log_prob(x.double().T).sum().item()


def data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 1.5 + torch.randn(n, 2, generator=g) * math.sqrt(1 + NOISE**2)


def guide_list(local_guide_cls, **kwargs):
    guide = AutoGuideList(model)
    guide.append(AutoNormal(poutine.block(model, expose=["mu"])))
    guide.append(local_guide_cls(poutine.block(model, hide=["mu"]), "z", "x", **kwargs))
    return guide


@pytest.mark.parametrize(
    "cls, kwargs",
    [(GaussianGuide, SMALL), (FlowGuide, SMALL), (HierarchicalGuide, SMALL), (DiffusionGuide, SMALL_CHAIN)],
)
def test_every_guide_is_an_autoguide_part_and_the_bound_holds(cls, kwargs):
    set_seed(0)
    pyro.clear_param_store()
    x = data()
    guide = guide_list(cls, **kwargs)
    assert isinstance(guide[1], AutoGuide) and guide[1].master is not None  # not wrapped in AutoCallable
    svi = SVI(model, guide, Adam({"lr": 1e-2}), Trace_ELBO())
    for _ in range(400):
        svi.step(x)
    num_particles = 200
    losses = torch.tensor([Trace_ELBO().loss(model, guide, x) for _ in range(num_particles)])
    elbo, stderr = -losses.mean().item(), losses.std().item() / math.sqrt(num_particles)
    log_px = exact_log_px(x)
    assert elbo < log_px + 4 * stderr  # a lower bound (the global site's KL alone is ~ 3 nats)
    assert elbo > log_px - 8.0  # and a trained one: the untrained guide is ~ 60 nats below


def test_ddvi_sleep_term_trains_a_diffusion_guide_inside_an_autoguide_list():
    set_seed(0)
    pyro.clear_param_store()
    x = data()
    guide = guide_list(DiffusionGuide, **SMALL_CHAIN)
    loss = DDVI_ELBO(warmup_steps=1)  # the first step is the sleep term alone: only it can move the denoiser
    svi = SVI(model, guide, Adam({"lr": 1e-2}), loss)
    svi.step(x)
    denoiser = {k: v.detach().clone() for k, v in guide[1].denoisers.state_dict().items()}
    assert math.isnan(loss.last_terms["elbo"]) and math.isfinite(loss.last_terms["sleep"])
    svi.step(x)
    assert guide[1].training_steps == 2
    changed = [not torch.equal(v, guide[1].denoisers.state_dict()[k]) for k, v in denoiser.items()]
    assert all(changed)
    assert math.isfinite(loss.last_terms["elbo"])


def test_the_sleep_term_refuses_a_guide_without_the_protocol_naming_it():
    x = data()
    guide = AutoNormal(model)
    with pytest.raises(TypeError, match="WakeSleepGuide"):
        DDVI_ELBO().loss(model, guide, x)


def test_diffusion_guide_follows_the_protocol_and_the_other_guides_do_not():
    guide = DiffusionGuide(model, "z", "x", **SMALL_CHAIN)
    assert isinstance(guide, WakeSleepGuide)
    assert not isinstance(GaussianGuide(model, "z", "x"), WakeSleepGuide)


def test_subsampled_plate_inside_an_autoguide_list_uses_the_list_s_indices():
    set_seed(0)
    x = data(40)
    guide = guide_list(GaussianGuide, **SMALL)
    trace = poutine.trace(guide).get_trace(x, 8)
    idx = trace.nodes["data"]["value"]
    assert idx.shape == (8,) and trace.nodes["z"]["value"].shape == (8, 2)
    assert trace.nodes["z"]["scale"] == pytest.approx(40 / 8)
    expected = guide[1].posterior("z", guide[1].context(x[idx])).mean
    assert torch.allclose(trace.nodes["z"]["fn"].mean, expected)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), DDVI_ELBO(sleep="none"))
    assert math.isfinite(svi.step(x, 8))


@pytest.mark.parametrize("subsample_size", [None, 6])
def test_the_model_runs_once_to_set_up_and_never_on_later_calls(subsample_size):
    calls = []

    def counted(x, subsample_size=None):
        calls.append(x.shape[0])
        model(x, subsample_size)

    pyro.clear_param_store()
    guide = GaussianGuide(poutine.block(counted, hide=["mu"]), "z", "x", **SMALL)
    x = data(20)
    guide(x, subsample_size)
    assert calls == [20]
    for n in (20, 13, 7):  # batches of other sizes: the data plate's size is read from the observed values
        trace = poutine.trace(guide).get_trace(x[:n], subsample_size)
        expected = n if subsample_size is None else min(n, subsample_size)
        assert trace.nodes["z"]["value"].shape == (expected, 2)
        assert trace.nodes["data"]["fn"].size == n
    assert calls == [20]
