"""WakeSleepStartLoss: the sleep term by hand, the exact posterior from the sleep phase alone, the schedule."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_diffvi.guides import DiffusionGuide, FlowGuide, GaussianGuide
from pyro_diffvi.infer import WakeSleepStartLoss
from pyro_diffvi.util import set_seed

A = torch.tensor([[1.0, 0.5], [-0.3, 0.8], [0.2, -1.0]])
NOISE = 0.5


def linear_model(decoder=None):
    """z ~ N(0, I_2), x | z ~ N(A z, 0.5^2 I_3), or a learned linear decoder."""

    def model(x):
        if decoder is not None:
            pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            loc = z @ A.T if decoder is None else decoder(z)
            pyro.sample("x", dist.Normal(loc, NOISE).to_event(1), obs=x)

    return model


def exact_posterior(x):
    """N(mean, cov) of z given x for the fixed linear model, in closed form."""
    precision = torch.eye(2) + A.T @ A / NOISE**2
    cov = torch.linalg.inv(precision)
    return x @ A @ cov.T / NOISE**2, cov


def test_sleep_term_is_minus_the_guide_log_density_at_the_model_draws():
    set_seed(0)
    pyro.clear_param_store()
    model, x = linear_model(), torch.randn(6, 3)
    guide = GaussianGuide(model, "z", "x", encoder_hidden_dims=(8,))
    guide(x)
    objective = WakeSleepStartLoss()
    pyro.set_rng_seed(4)
    sleep = objective.sleep_term(model, guide, x)
    pyro.set_rng_seed(4)
    trace = pyro.poutine.trace(pyro.poutine.uncondition(model)).get_trace(x)
    x_sim, z_sim = trace.nodes["x"]["value"], trace.nodes["z"]["value"]
    loc, scale = guide.loc_scale("z", guide.context(x_sim))
    assert sleep.item() == pytest.approx(-dist.Normal(loc, scale).log_prob(z_sim).sum().item(), rel=1e-6)


def test_the_sleep_phase_alone_learns_the_exact_posterior_of_a_linear_gaussian_model():
    # the forward KL's minimizer in the Gaussian family is the exact (Gaussian) posterior: after sleep-only
    # training the guide's ELBO must be close to the exact log p(x) = log N(x; 0, A A^T + 0.25 I)
    set_seed(0)
    pyro.clear_param_store()
    model, x = linear_model(), torch.randn(256, 3)
    guide = GaussianGuide(model, "z", "x", encoder_hidden_dims=(32,))
    svi = SVI(model, guide, Adam({"lr": 1e-2}), WakeSleepStartLoss(warmup_steps=10**6))
    for _ in range(1500):
        svi.step(x)
    with torch.no_grad():
        mean, cov = exact_posterior(x)
        loc, scale = guide.loc_scale("z", guide.context(x))
    # measured over seeds 0 and 1: mean absolute errors 0.025-0.029 (means) and 0.014-0.024 (sds, exact
    # 0.43 and 0.34): the last iterate's SGD noise; an untrained guide is off by about 1 in both
    assert (loc - mean).abs().mean() < 0.05
    assert (scale - cov.diagonal().sqrt()).abs().mean() < 0.04
    log_px = dist.MultivariateNormal(torch.zeros(3), A @ A.T + NOISE**2 * torch.eye(3)).log_prob(x).sum()
    elbo = -Trace_ELBO(num_particles=64).loss(model, guide, x)
    # a bound within 0.05 nats per point of the exact log p(x) (measured -0.013 and -0.022; the exact
    # posterior's correlation is -0.035, so the diagonal family's own gap is under 0.001)
    assert log_px.item() - 0.05 * x.shape[0] < elbo < log_px.item()


def test_the_start_trains_the_decoder_at_fixed_guide_draws_then_hands_over_to_the_objective():
    set_seed(0)
    pyro.clear_param_store()
    decoder = torch.nn.Linear(2, 3)
    model, x = linear_model(decoder), torch.randn(8, 3)
    guide = FlowGuide(model, "z", "x", encoder_hidden_dims=(8,), num_transforms=1)
    objective = WakeSleepStartLoss(warmup_steps=2)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), objective)
    before = decoder.weight.detach().clone()
    svi.step(x)
    assert set(objective.last_terms) == {"sleep", "model"}
    assert not torch.equal(decoder.weight, before)  # the wake phase trains the model
    svi.evaluate_loss(x)  # no gradient: not a training step
    assert objective.state_dict() == {"steps": 1}
    svi.step(x)
    pyro.set_rng_seed(2)
    loss = objective.differentiable_loss(model, guide, x)  # step 3: the objective after the start
    pyro.set_rng_seed(2)
    assert loss.item() == pytest.approx(Trace_ELBO().differentiable_loss(model, guide, x).item(), rel=1e-6)
    assert set(objective.last_terms) == {"loss"}
    restored = WakeSleepStartLoss(warmup_steps=2)
    restored.load_state_dict(objective.state_dict())
    assert restored.steps == 3


def test_bad_arguments_and_guides_without_an_exact_density_raise():
    with pytest.raises(ValueError, match="warmup_steps"):
        WakeSleepStartLoss(warmup_steps=-1)
    with pytest.raises(TypeError, match="objective"):
        WakeSleepStartLoss(objective="Trace_ELBO")
    pyro.clear_param_store()
    model, x = linear_model(), torch.randn(4, 3)
    guide = DiffusionGuide(model, "z", "x", num_steps=3, encoder_hidden_dims=(8,), denoiser_hidden_dims=(8,))
    with pytest.raises(TypeError, match="DDVI_ELBO"):
        WakeSleepStartLoss().differentiable_loss(model, guide, x)
    assert math.isfinite(WakeSleepStartLoss(warmup_steps=0).loss(model, guide, x))  # no start: any guide
