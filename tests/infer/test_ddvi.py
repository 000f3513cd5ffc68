"""DDVI_ELBO: the wake split, and sleep-only training of the reverse chain against a fixed prior."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyro_diffvi.distributions import DiffusionPosterior
from pyro_diffvi.errors import DivergenceError
from pyro_diffvi.guides import DiffusionGuide
from pyro_diffvi.infer import DDVI_ELBO
from pyro_diffvi.priors.gaussian_mixtures import IsotropicGaussianMixture

CENTERS = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])


def _model(prior):
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", prior)
            pyro.sample("x", dist.Normal(z, 2.0).to_event(1), obs=x)

    return model


def test_wake_terms_sum_to_trace_elbo():
    model = _model(dist.Normal(torch.zeros(2), 1.0).to_event(1))
    guide = DiffusionGuide(
        model, "z", "x", num_steps=3, encoder_hidden_dims=(16,), denoiser_hidden_dims=(16,), selection="chain"
    )
    x = torch.randn(7, 2)
    elbo = DDVI_ELBO(sleep="none", rws_weight=0.0, chain_elbo_weight=0.0)
    guide(x)  # set-up traces the model (a prior draw): before seeding
    pyro.set_rng_seed(1)
    loss = elbo.loss(model, guide, x)
    pyro.set_rng_seed(1)
    reference = Trace_ELBO().loss(model, guide, x)
    # same draws: the chain emitted, with sleep="none", reg_weight=1 and no reweighted or chain-bound terms, the
    # loss is exactly the Markovian ELBO of Trace_ELBO
    assert loss == pytest.approx(reference, abs=1e-4)
    assert elbo.last_terms["elbo"] == pytest.approx(-reference, abs=1e-4)
    assert elbo.last_terms["rec"] + elbo.last_terms["reg"] == pytest.approx(-reference, abs=1e-4)


def test_sleep_only_training_matches_the_prior():
    prior = IsotropicGaussianMixture(CENTERS, 0.5)
    model = _model(prior)
    x = torch.zeros(256, 2)
    guide = DiffusionGuide(
        model,
        "z",
        "x",
        num_steps=10,
        schedule="cosine",
        variance="posterior",
        conditional=False,
        standardize=False,
        encoder_hidden_dims=(8,),
        denoiser_hidden_dims=(64, 64),
    )
    elbo = DDVI_ELBO(sleep="simplified")
    guide(x)
    optim = torch.optim.Adam(guide.denoisers.parameters(), lr=3e-3)
    for _ in range(800):
        optim.zero_grad()
        (elbo.sleep_term(model, guide, x) / x.shape[0]).backward()
        optim.step()
    n = 4000
    with torch.no_grad():  # the reverse chain from y_T ~ N(0, I) (abar_T ~ 0 for the cosine schedule)
        q = DiffusionPosterior(torch.zeros(n, 2), torch.ones(n, 2), guide.denoisers[0], guide.process,
                               variance="posterior")
        z = q.sample()
        reference = prior.sample((n,))
    right = z[:, 0] > 0
    # mode weights 1/2 each: binomial SE = 0.5/sqrt(n) = 0.008, but a 10-step chain trained for 800
    # steps misweights the modes (measured 0.65 with this seed): the bound checks both modes carry mass
    assert abs(right.float().mean().item() - 0.5) < 0.2
    for side in (right, ~right):
        centre = CENTERS[0 if side is not right else 1]
        assert torch.allclose(z[side].mean(0), centre, atol=0.4)  # measured offset 0.28 (mass pulled between modes)
        assert ((z[side].std(0) - 0.5).abs() < 0.35).all()
    # the drawn points have a prior log density close to that of exact prior draws (SE ~ 0.02)
    gap = prior.log_prob(reference).mean() - prior.log_prob(z).mean()
    assert gap.item() < 0.3, gap


def _decoder_model(decoder):
    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(decoder(z), 1.0).to_event(1), obs=x)

    return model


def _small_run(warmup_steps=2, selection="measured"):
    """A linear-decoder model, a small DiffusionGuide, DDVI_ELBO with a warm-up and its SVI."""
    decoder = torch.nn.Linear(2, 2)
    model = _decoder_model(decoder)
    guide = DiffusionGuide(
        model, "z", "x", num_steps=3, encoder_hidden_dims=(16,), denoiser_hidden_dims=(16,), selection=selection
    )
    elbo = DDVI_ELBO(warmup_steps=warmup_steps)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), elbo)
    return decoder, model, guide, torch.randn(5, 2), elbo, svi


def _grads(loss, named):
    for p in named.values():
        p.grad = None
    loss.backward()
    return {k: p.grad.clone() for k, p in named.items() if p.grad is not None}


def test_warmup_trains_the_guide_by_the_sleep_term_and_the_model_by_the_wake_term():
    decoder, model, guide, x, elbo, svi = _small_run(selection="chain")  # the chain emitted: no head term
    guide(x)
    guide_params = dict(guide.named_parameters())
    decoder_params = dict(decoder.named_parameters())
    pyro.set_rng_seed(3)
    warm = _grads(elbo.differentiable_loss(model, guide, x), {**guide_params, **decoder_params})
    assert math.isnan(elbo.last_terms["elbo"])
    pyro.set_rng_seed(3)
    sleep = _grads(elbo.sleep_term(model, guide, x), guide_params)
    # the guide learns from the sleep term alone: the same draws give the same gradients
    assert sleep.keys() == {k for k in warm if k in guide_params}
    for k, g in sleep.items():
        assert torch.allclose(warm[k], g, atol=1e-6), k
    # the decoder learns from the wake term at the guide's draws, exactly Trace_ELBO's decoder gradient
    wake = _grads(Trace_ELBO().differentiable_loss(model, guide, x), decoder_params)  # the RNG is where warm left it
    assert wake.keys() == decoder_params.keys()
    for k, g in wake.items():
        assert g.abs().sum() > 0 and torch.allclose(warm[k], g, atol=1e-5), k
    guide.training_steps = 2
    svi.step(x)  # the warm-up is over: the bound is evaluated and trains everything
    assert math.isfinite(elbo.last_terms["elbo"])


def test_warmup_trains_an_emitted_head_by_its_forward_kl():
    _, model, guide, x, elbo, _ = _small_run()  # selection="measured": the Gaussian head is emitted
    guide(x)
    heads = {k: p for k, p in guide.named_parameters() if k.startswith("heads.")}
    grads = _grads(elbo.differentiable_loss(model, guide, x), heads)
    assert grads.keys() == heads.keys() and all(g.abs().sum() > 0 for g in grads.values())


def test_training_steps_count_gradient_evaluations_on_every_route():
    _, model, guide, x, elbo, svi = _small_run()
    svi.step(x)
    assert guide.training_steps == 1
    svi.evaluate_loss(x)  # no gradient: not a training step
    assert guide.training_steps == 1
    module = elbo(model, guide)  # Pyro's ELBOModule, for plain torch optimizers and Lightning
    module(x).backward()
    assert guide.training_steps == 2
    assert guide.state_dict()["_extra_state"]["training_steps"] == 2


def _train(state=None, steps=4, seed=0):
    """Build a model, guide and optimizer; optionally restore ``state``; take ``steps`` SVI steps."""
    pyro.clear_param_store()
    torch.manual_seed(seed)
    decoder = torch.nn.Linear(2, 2)
    model = _decoder_model(decoder)
    guide = DiffusionGuide(model, "z", "x", num_steps=3, encoder_hidden_dims=(16,), denoiser_hidden_dims=(16,))
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(7))
    optim = pyro.optim.Adam({"lr": 1e-2})
    svi = pyro.infer.SVI(model, guide, optim, DDVI_ELBO(warmup_steps=3))
    guide.setup(x)
    if state is not None:
        guide.load_state_dict(state["guide"])
        decoder.load_state_dict(state["decoder"])
        optim.set_state(state["optim"])  # consumed by the optimizers the next step creates
        torch.set_rng_state(state["rng"])
    for _ in range(steps):
        svi.step(x)
    return {"guide": {k: v.clone() if torch.is_tensor(v) else dict(v) for k, v in guide.state_dict().items()},
            "decoder": {k: v.clone() for k, v in decoder.state_dict().items()},
            "optim": optim.get_state(), "rng": torch.get_rng_state()}


def test_interrupted_and_resumed_run_equals_the_uninterrupted_run():
    whole = _train(steps=6)
    first = _train(steps=2)  # stops inside the warm-up (3 steps)
    resumed = _train(state=first, steps=4)
    assert resumed["guide"]["_extra_state"] == whole["guide"]["_extra_state"]  # the selector's record included
    assert whole["guide"]["_extra_state"]["training_steps"] == 6
    for part in ("guide", "decoder"):
        for name, value in whole[part].items():
            if torch.is_tensor(value):
                assert torch.allclose(resumed[part][name], value, atol=1e-6), name


def test_simplified_sleep_does_not_run_the_likelihood():
    calls = []

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            calls.append(1)
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    guide = DiffusionGuide(
        model, "z", "x", num_steps=3, standardize=False, encoder_hidden_dims=(16,), denoiser_hidden_dims=(16,)
    )
    x = torch.randn(5, 2)
    guide(x)
    calls.clear()
    DDVI_ELBO(sleep="simplified").sleep_term(model, guide, x)
    assert calls == []


@pytest.mark.parametrize(
    "kwargs, match",
    [({"warmup_steps": -1}, "warmup_steps"), ({"warmup_steps": 3, "sleep": "none"}, "warmup_steps"),
     ({"warmup_steps": 3, "sleep_weight": 0.0}, "warmup_steps"), ({"num_particles": 0}, "num_particles"),
     ({"num_particles": True}, "num_particles"), ({"reg_weight": math.inf}, "reg_weight"),
     ({"sleep_weight": math.nan}, "sleep_weight"), ({"on_nonfinite": "ignore"}, "on_nonfinite")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DDVI_ELBO(**kwargs)


# ---- divergence guards ----------------------------------------------------------------------------


def _snapshot(*modules):
    return [p.detach().clone() for m in modules for p in m.parameters()]


def _unchanged(before, *modules):
    return all(torch.equal(a, b) for a, b in zip(before, _snapshot(*modules)))


@pytest.mark.filterwarnings("ignore:Encountered")
@pytest.mark.parametrize("validation", [True, False])
def test_a_diverging_run_stops_before_any_parameter_is_touched(validation):
    decoder, model, guide, x, elbo, _ = _small_run(warmup_steps=0)
    svi = pyro.infer.SVI(model, guide, pyro.optim.SGD({"lr": 1e6}), elbo)
    with pyro.validation_enabled(validation):
        svi.step(x)  # a finite step to absurd parameter values
        before = _snapshot(guide, decoder)
        with pytest.raises(DivergenceError, match=r"DDVI_ELBO: non-finite") as error:
            for _ in range(5):
                before = _snapshot(guide, decoder)
                svi.step(x)
    assert _unchanged(before, guide, decoder)
    assert "no parameter was updated" in str(error.value)


def test_nan_data_after_the_first_batch_is_named_before_any_step():
    decoder, model, guide, x, elbo, svi = _small_run(warmup_steps=0)
    svi.step(x)
    bad = x.clone()
    bad[1, 0] = math.nan
    before = _snapshot(guide, decoder)
    with pytest.raises(ValueError, match="observed site 'x' contains 1 non-finite"):
        svi.step(bad)
    assert _unchanged(before, guide, decoder)


def test_skip_mode_leaves_the_parameters_alone_and_warns():
    decoder, model, guide, x, _, _ = _small_run(warmup_steps=0)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), DDVI_ELBO(on_nonfinite="skip"))
    svi.step(x)
    with torch.no_grad():
        decoder.bias.fill_(math.inf)  # the likelihood, and so the loss, is no longer finite
    before = _snapshot(guide, decoder)
    with pytest.warns(RuntimeWarning, match="the step was skipped"):
        loss = svi.step(x)
    assert math.isnan(loss) or math.isinf(loss)
    assert _unchanged(before, guide, decoder)


def test_a_gradient_that_overflows_is_named():
    decoder, model, guide, x, elbo, svi = _small_run(warmup_steps=0)
    svi.step(x)
    decoder.weight.register_hook(lambda g: torch.full_like(g, math.inf))
    before = _snapshot(guide, decoder)
    with pytest.raises(DivergenceError, match=r"non-finite gradient\(s\) of \['decoder\$\$\$weight'\]"):
        svi.step(x)
    assert _unchanged(before, guide, decoder)


def test_a_prior_whose_draws_overflow_is_named_in_the_sleep_term():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.LogNormal(torch.zeros(2), 60.0).to_event(1))
            pyro.sample("x", dist.Normal(z.log(), 1.0).to_event(1), obs=x)

    guide = DiffusionGuide(model, "z", "x", num_steps=3, encoder_hidden_dims=(16,), denoiser_hidden_dims=(16,))
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), DDVI_ELBO())
    x = torch.randn(64, 2)
    guide.setup(x)
    before = _snapshot(guide)
    with pytest.raises(DivergenceError, match=r"\['sleep'\].*overflow"):
        for _ in range(3):  # float32 exp(60 N(0, 1)) overflows or underflows for |N| > 1.5: 13% of draws
            svi.step(x)
            before = _snapshot(guide)
    assert _unchanged(before, guide)


def test_classification_weight_without_a_label_guide_is_refused_before_any_step():
    # Issue 25 case 9: classification_weight=5 with no ClassifierGuide was silently a classification term of 0.
    model = _model(dist.Normal(torch.zeros(2), 1.0).to_event(1))
    guide = DiffusionGuide(model, "z", "x", num_steps=2, encoder_hidden_dims=(8,), denoiser_hidden_dims=(8,))
    x = torch.randn(5, 2)
    guide(x)
    before = _snapshot(guide)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.1}), DDVI_ELBO(classification_weight=5.0))
    with pytest.raises(ValueError, match=r"classification_weight=5.0 needs a label guide .* got DiffusionGuide"):
        svi.step(x)
    assert _unchanged(before, guide)
    assert math.isfinite(DDVI_ELBO(classification_weight=0.0).loss(model, guide, x))  # the default is unaffected
