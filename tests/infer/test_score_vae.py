"""ScoreVAE_ELBO: the bound against exact log p(x) on a linear-Gaussian case (exact components, and after training
the encoder from a poor start), Trace_ELBO's value at beta = 1, the beta weighting, what learns in each stage
(the frozen score model never), DiffDecoder, and clear errors raised before any training step."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_diffvi.diffusion import ScoreModel
from pyro_diffvi.distributions import DiffusionLikelihood
from pyro_diffvi.guides import GaussianGuide, TimeDependentGaussianGuide
from pyro_diffvi.infer import ScoreVAE_ELBO
from pyro_diffvi.metrics import elbo
from pyro_diffvi.nn import GaussianTimeEncoder
from tests.score_vae_case import LinearGaussianCase


@pytest.fixture
def case():
    pyro.clear_param_store()
    return LinearGaussianCase()


def test_bound_with_the_exact_score_and_posterior_is_log_p_x(case):
    # every constant of Appendix A.1 matters here: a missing term shifts the bound by nats
    x, _ = case.sample(2000, torch.Generator().manual_seed(0))
    encoder = case.encoder()
    model = case.model(case.score_model(), encoder, num_time_samples=2)
    guide = TimeDependentGaussianGuide(model, "z", "x", encoder=encoder)
    pyro.set_rng_seed(0)
    est = elbo(model, guide, x, num_particles=16)
    exact = case.log_prob(x).mean().item()
    assert est.stderr < 0.1
    # + 0.01 for the O(t_min) and O(alpha_T^2) of the truncations
    assert abs(est.mean - exact) < 3 * est.stderr + 0.01, (est.mean, exact)


def test_bound_after_training_the_encoder_from_a_poor_start(case):
    # a narrow, randomly shifted encoder starts far below log p(x) (measured: 28 nats per point with 4 particles);
    # 400 SVI steps with the exact score model bring the bound to within the tolerance (measured: -0.15 +- 0.05;
    # it fluctuates by about 0.3 along training at this learning rate), never above log p(x) + 3 SE
    x, _ = case.sample(2000, torch.Generator().manual_seed(1))
    exact = case.log_prob(x).mean().item()
    pyro.set_rng_seed(0)
    encoder = GaussianTimeEncoder(case.dim, case.latent_dim, hidden_dims=(32, 32), init_scale=0.05).double()
    with torch.no_grad():
        encoder.net.net[-1].weight.mul_(10)
    model = case.model(case.score_model(), encoder, num_time_samples=2)
    guide = TimeDependentGaussianGuide(model, "z", "x", encoder=encoder)
    start = elbo(model, guide, x, num_particles=4).mean
    svi = SVI(model, guide, Adam({"lr": 1e-2}), ScoreVAE_ELBO())
    for _ in range(400):
        svi.step(x[torch.randint(0, len(x), (256,))])
    est = elbo(model, guide, x, num_particles=4)
    assert start < exact - 5
    assert est.mean < exact + 3 * est.stderr
    assert est.mean > exact - 0.75, (est, exact)


def test_beta_one_is_trace_elbo_and_beta_weights_the_kl(case):
    x, _ = case.sample(64, torch.Generator().manual_seed(2))
    encoder = GaussianTimeEncoder(case.dim, case.latent_dim, hidden_dims=(16,)).double()
    model = case.model(case.score_model(), encoder, num_time_samples=3)
    guide = TimeDependentGaussianGuide(model, "z", "x", encoder=encoder)
    guide(x)  # set up first: the set-up traces the model, which draws
    pyro.set_rng_seed(3)
    ours = ScoreVAE_ELBO().loss(model, guide, x)
    pyro.set_rng_seed(3)
    theirs = Trace_ELBO().loss(model, guide, x)
    assert math.isclose(ours, theirs, rel_tol=1e-9)
    objective = ScoreVAE_ELBO(kl_weight=0.01)
    pyro.set_rng_seed(3)
    loss = objective.loss(model, guide, x)
    terms = objective.last_terms
    assert math.isclose(loss, -(terms["likelihood"] - 0.01 * terms["kl"]), rel_tol=1e-9)
    parts = sum(terms[k] for k in ("prior", "divergence", "dsm", "truncation"))
    assert math.isclose(parts, terms["likelihood"], rel_tol=1e-9)
    assert math.isclose(ours, -(terms["likelihood"] - terms["kl"]), rel_tol=1e-9)  # the same draws


def scorevae(case, corrector=None):
    score_model = ScoreModel((case.dim,), network_options={"global_hidden_dims": [16]}).double()
    encoder = GaussianTimeEncoder(case.dim, case.latent_dim, hidden_dims=(16,)).double()
    model = case.model(score_model, encoder, corrector=corrector)
    return score_model, encoder, model, TimeDependentGaussianGuide(model, "z", "x", encoder=encoder)


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(module, before):
    return [not torch.equal(p, q) for p, q in zip(module.parameters(), before)]


def test_the_encoder_objective_leaves_the_score_model_untouched(case):
    score_model, encoder, model, guide = scorevae(case)
    x, _ = case.sample(32, torch.Generator().manual_seed(4))
    guide(x)
    before, enc_before = snapshot(score_model), snapshot(encoder)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), ScoreVAE_ELBO(kl_weight=0.01))
    for _ in range(3):
        svi.step(x)
    assert not any(changed(score_model, before)) and all(p.grad is None for p in score_model.parameters())
    assert all(changed(encoder, enc_before))


def test_scorevae_plus_trains_only_the_corrector_in_its_stage(case):
    corrector = ScoreModel((case.dim,), context_dim=case.latent_dim, network_options={"global_hidden_dims": [16]},
                           zero_init=True, gaussian_skip=False).double()
    score_model, encoder, model, guide = scorevae(case, corrector)
    x, _ = case.sample(32, torch.Generator().manual_seed(5))
    guide(x)
    # stage 1 (ScoreVAE): the encoder learns, the corrector is held at zero
    corr_before, enc_before = snapshot(corrector), snapshot(encoder)
    SVI(model, guide, Adam({"lr": 1e-2}), ScoreVAE_ELBO()).step(x)
    assert not any(changed(corrector, corr_before)) and all(changed(encoder, enc_before))
    # stage 2 (ScoreVAE+): the corrector learns, the encoder and the score model are frozen
    enc_before, score_before = snapshot(encoder), snapshot(score_model)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), ScoreVAE_ELBO(train_corrector=True))
    for _ in range(2):
        svi.step(x)
    assert any(changed(corrector, corr_before))
    assert not any(changed(encoder, enc_before)) and not any(changed(score_model, score_before))


def test_diffdecoder_trains_its_conditional_score_model_with_the_encoder(case):
    options = {"global_hidden_dims": [16]}
    decoder = ScoreModel((case.dim,), context_dim=case.latent_dim, network_options=options).double()

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(case.latent_dim), 1.0).to_event(1))
            pyro.sample("x", DiffusionLikelihood(decoder, z), obs=x)

    guide = GaussianGuide(model, "z", "x", encoder_hidden_dims=(16,))
    x, _ = case.sample(32, torch.Generator().manual_seed(6))
    guide(x)
    before, enc_before = snapshot(decoder), snapshot(guide.encoder)
    SVI(model, guide, Adam({"lr": 1e-2}), ScoreVAE_ELBO(kl_weight=0.0)).step(x)
    assert all(changed(decoder, before)) and all(changed(guide.encoder, enc_before))


def test_bad_input_is_refused_before_any_training_step(case):
    score_model, encoder, model, guide = scorevae(case)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), ScoreVAE_ELBO())
    before = snapshot(encoder)
    with pytest.raises(ValueError, match=r"observed x must have shape batch_shape \+ \(4,\)"):
        svi.step(torch.zeros(8, 5, dtype=torch.float64))  # a score model of another data shape
    with pytest.raises(ValueError, match="observed site 'x' contains 1 non-finite"):
        bad = torch.zeros(8, 4, dtype=torch.float64)
        bad[0, 0] = float("nan")
        svi.step(bad)
    assert not any(changed(encoder, before))
    with pytest.raises(ValueError, match="latent site 'w' is not a sample site of the model"):
        SVI(model, TimeDependentGaussianGuide(model, "w", "x", encoder=encoder), Adam({}), ScoreVAE_ELBO()).step(
            torch.zeros(8, 4, dtype=torch.float64))
    x = torch.zeros(8, 4, dtype=torch.float64)
    other = TimeDependentGaussianGuide(model, "z", "x", encoder=GaussianTimeEncoder(4, 2, hidden_dims=(8,)).double(),
                                       name="other")
    with pytest.raises(ValueError, match="different encoders"):
        ScoreVAE_ELBO().loss(model, other, x)
    with pytest.raises(ValueError, match="train_corrector=True trains a DiffusionLikelihood's corrector"):
        SVI(model, guide, Adam({"lr": 1e-2}), ScoreVAE_ELBO(train_corrector=True)).step(x)
    assert not any(changed(encoder, before))
    with pytest.raises(ValueError, match="kl_weight must be finite and >= 0"):
        ScoreVAE_ELBO(kl_weight=-1.0)
