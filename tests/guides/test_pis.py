"""PathIntegralGuide / PathIntegralPosterior: the PIS bound against exact log p(x), its tightening with the
number of steps, the density of a draw by hand, Pyro integration and clear errors."""

import io
import math
import pickle

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.optim import Adam
from torch.distributions import Normal

from pyro_diffvi.datasets import make_problem
from pyro_diffvi.guides import PathIntegralGuide
from pyro_diffvi.metrics import elbo_gap
from tests.guides._targets import elbo_estimate, linear_gaussian, train

SMALL = dict(encoder_hidden_dims=(32,), drift_hidden_dims=(32, 32))


@pytest.fixture(autouse=True)
def _fresh_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


# ---- the bound against exact log p(x) ------------------------------------------------------------
def test_linear_gaussian_bound_is_valid_before_and_after_training_and_the_gap_closes():
    # z ~ N(0, I_2), x ~ N(A z + b, 0.5^2 I_3), 16 observations: log p(x) = sum_n log N(x_n; b, A A^T + s^2 I)
    pyro.set_rng_seed(0)
    problem = linear_gaussian("cpu", num_data=16)
    exact = problem.log_px.sum().item()
    guide = PathIntegralGuide(problem.model, "z", "x", num_steps=10, **SMALL)
    before, se_before = elbo_estimate(problem.model, guide, problem.x, num_particles=256)
    # measured: -215.9 (SE 2.7) against the exact -61.0: valid, and far from tight (an untrained head)
    assert before < exact + 3 * se_before
    train(problem.model, guide, problem.x, 200, lr=1e-2, final_lr=1e-3, num_particles=16)
    after, se_after = elbo_estimate(problem.model, guide, problem.x, num_particles=256)
    # measured: -61.39 (SE 0.056), a gap of 0.41 nats over the 16 points
    assert after < exact + 3 * se_after
    assert after > exact - 1.0  # within 1 nat in total (0.06 per observation): 10 SE


@pytest.fixture(scope="module")
def four_modes_runs():
    """four_modes (a 4-component prior, x ~ N(z, 2^2 I); exact log p(x)), 16 observations, the same
    training (300 steps, seed 0) at K = 2 and K = 20: the ELBO gap per observation and its SE."""
    runs = {}
    for K in (2, 20):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        problem = make_problem("four_modes", num_data=16, seed=0)
        guide = PathIntegralGuide(problem.model, "z", "x", num_steps=K, **SMALL)
        before = elbo_gap(problem, guide, num_particles=256)
        train(problem.model, guide, problem.x, 300, lr=1e-2, final_lr=1e-3, num_particles=16)
        runs[K] = before, elbo_gap(problem, guide, num_particles=256)
    return runs


def test_bound_is_valid_on_a_multimodal_problem_by_quadrature(four_modes_runs):
    # measured (gap per observation, SE): K=2 before -2.73 (0.036), after -0.55 (0.013);
    # K=20 before -2.81 (0.037), after -0.34 (0.011)
    for K, runs in four_modes_runs.items():
        for gap, se in runs:
            assert gap < 3 * se, (K, gap, se)


def test_more_steps_give_a_tighter_bound_after_the_same_training(four_modes_runs):
    (gap2, se2), (gap20, se20) = four_modes_runs[2][1], four_modes_runs[20][1]
    assert gap20 - gap2 > 5 * math.hypot(se2, se20)  # measured: 0.22 nats, 12.7 combined SE


# ---- the density of a draw -----------------------------------------------------------------------
def test_a_new_guide_is_its_gaussian_head():
    pyro.set_rng_seed(0)
    problem = make_problem("four_modes", num_data=8, seed=0)
    guide = PathIntegralGuide(problem.model, "z", "x", **SMALL)
    guide(problem.x)
    context = guide.context(problem.x)
    q = guide.posterior("z", context)
    z = q.rsample((3,))
    loc, scale = guide.loc_scale("z", context)
    assert torch.allclose(q.log_prob(z), Normal(loc, scale).log_prob(z).sum(-1), atol=1e-5)


# ---- Pyro integration -----------------------------------------------------------------------------
def test_trains_with_trace_elbo_predicts_and_pickles():
    pyro.set_rng_seed(0)
    problem = make_problem("four_modes", num_data=8, seed=0)
    guide = PathIntegralGuide(problem.model, "z", "x", num_steps=5, **SMALL)
    svi = SVI(problem.model, guide, Adam({"lr": 1e-2}), Trace_ELBO())
    guide.setup(problem.x)
    before = {k: v.detach().clone() for k, v in guide.named_parameters()}
    for _ in range(3):
        svi.step(problem.x)
    unchanged = [k for k, v in guide.named_parameters() if torch.equal(before[k], v)]
    assert not unchanged, unchanged  # every network (encoder, head, drift) gets gradients
    samples = Predictive(problem.model, guide=guide, num_samples=4)(problem.x)
    assert samples["z"].shape == (4, 8, 2) and torch.isfinite(samples["z"]).all()
    buffer = io.BytesIO()
    torch.save(guide, buffer)
    buffer.seek(0)
    for other in (pickle.loads(pickle.dumps(guide)), torch.load(buffer, weights_only=False)):
        torch.manual_seed(0)
        expected = guide(problem.x)["z"]
        torch.manual_seed(0)
        with pytest.warns(RuntimeWarning, match="shares its param-store names"):
            assert torch.equal(other(problem.x)["z"], expected)


def test_unstandardized_guide_and_constrained_latents():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            rate = pyro.sample("rate", dist.LogNormal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Poisson(rate).to_event(1), obs=x)

    x = torch.tensor([[1.0, 3.0], [0.0, 2.0]])
    guide = PathIntegralGuide(model, "rate", "x", num_steps=4, standardize=False, sigma=0.7, **SMALL)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), Trace_ELBO(num_particles=4, vectorize_particles=True))
    assert math.isfinite(svi.step(x))
    assert (guide(x)["rate"] > 0).all()
    with pytest.raises(ValueError, match="no Gaussian head"):
        guide.loc_scale("rate", guide.context(x))


# ---- clear errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_steps=0), "num_steps"),
        (dict(num_steps=2.5), "num_steps"),
        (dict(sigma=0.0), "sigma"),
        (dict(sigma=float("nan")), "sigma"),
        (dict(drift_hidden_dims=()), "drift_hidden_dims"),
        (dict(time_dim=7), "time_dim must be even"),
        (dict(drift_activation="gelu?"), "activation"),
    ],
)


def test_bad_arguments_raise_clear_errors(kwargs, match):
    problem = make_problem("four_modes", num_data=4)
    with pytest.raises(ValueError, match=match):
        PathIntegralGuide(problem.model, "z", "x", **kwargs)


