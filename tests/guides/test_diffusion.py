"""DiffusionGuide: bounds against exact log-likelihoods, Pyro integration, clear errors."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Predictive, RenyiELBO, Trace_ELBO
from pyro.optim import Adam

from pyro_diffvi.guides import DiffusionGuide
from pyro_diffvi.infer import DDVI_ELBO

SMALL = dict(encoder_hidden_dims=(32, 32), denoiser_hidden_dims=(32, 32))

# ---- linear-Gaussian model: z ~ N(0, I_2), x ~ N(A z + b, s^2 I_3), log p(x) exact -------------
A = torch.tensor([[1.0, 0.5], [-0.3, 0.8], [0.6, -1.0]])
B = torch.tensor([0.2, -0.1, 0.5])
S = 0.5


def linear_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ A.T + B, S).to_event(1), obs=x)


def linear_log_px(x):
    cov = A @ A.T + S**2 * torch.eye(3)
    return dist.MultivariateNormal(B, cov).log_prob(x)


def per_datum_bounds(model, guide, x):
    """log p(x_i, z_i) - [log q(y, z_i|x_i) - log r(y|z_i)] for one draw per datum (unscaled)."""
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    w = 0.0
    for name, site in model_trace.nodes.items():
        if site["type"] == "sample" and not site["name"].startswith("data"):
            w = w + site["fn"].log_prob(site["value"])
    for name, site in guide_trace.nodes.items():
        if site["type"] == "sample" and not site["name"].startswith("data"):
            w = w - site["fn"].log_prob(site["value"])
    return w.detach(), guide_trace.nodes["z"]["value"].detach()


def test_linear_gaussian_bound_holds_and_gap_closes():
    x0 = torch.tensor([0.8, -0.4, 1.1])
    log_px = linear_log_px(x0).item()
    n = 4000
    guide = DiffusionGuide(linear_model, "z", "x", num_steps=5, **SMALL)
    with torch.no_grad():
        w, _ = per_datum_bounds(linear_model, guide, x0.expand(n, 3))
    # untrained: the ELBO estimate must not exceed log p(x) beyond 3 standard errors
    assert w.mean().item() <= log_px + 3 * w.std().item() / math.sqrt(n)

    data = dist.MultivariateNormal(B, A @ A.T + S**2 * torch.eye(3)).sample((64,))
    svi = SVI(linear_model, guide, Adam({"lr": 3e-3}), DDVI_ELBO(sleep="wake-sleep"))
    for _ in range(200):
        svi.step(data)
    with torch.no_grad():
        w, _ = per_datum_bounds(linear_model, guide, x0.expand(n, 3))
    mean, se = w.mean().item(), w.std().item() / math.sqrt(n)
    assert mean <= log_px + 3 * se
    assert log_px - mean < GAP_AFTER_TRAINING, (log_px, mean, se)


# measured: 0.045 nats (SE 0.005) after 200 steps; the bound allows for seed and platform noise
GAP_AFTER_TRAINING = 0.15


# ---- Pyro integration ------------------------------------------------------------------------


def two_latent_model(x):
    with pyro.plate("data", x.shape[0], subsample_size=4):
        xs = pyro.subsample(x, event_dim=1)
        z = pyro.sample("z", dist.Normal(xs.new_zeros(2), 1.0).to_event(1))
        s = pyro.sample("s", dist.LogNormal(xs.new_zeros(1), 0.5).to_event(1))
        pyro.sample("x", dist.Normal(z @ A.T + B, s).to_event(1), obs=xs)


@pytest.mark.parametrize("vectorize", [False, True])
def test_subsampling_particles_renyi_predictive_two_latents(vectorize):
    # the default chain, then a measuring guide (its alternatives drawn outside a vectorized particle plate)
    x = torch.randn(10, 3)
    guide = DiffusionGuide(two_latent_model, ["z", "s"], "x", num_steps=3, **SMALL)
    elbo = DDVI_ELBO(sleep="wake-sleep", num_particles=3, vectorize_particles=vectorize, max_plate_nesting=1)
    svi = SVI(two_latent_model, guide, Adam({"lr": 1e-3}), elbo)
    loss = svi.step(x)
    assert math.isfinite(loss) and set(elbo.last_terms) == {"elbo", "rec", "reg", "sleep", "classification", "loss"}
    assert all(math.isfinite(value) for value in elbo.last_terms.values())
    # minibatch scale 10/4 reaches the sleep term too: it is a sum over the (virtual) full data
    assert elbo.last_terms["sleep"] > 0
    assert math.isfinite(RenyiELBO(alpha=0, num_particles=3, max_plate_nesting=1).loss(two_latent_model, guide, x))
    measuring = DiffusionGuide(two_latent_model, ["z", "s"], "x", num_steps=3, selection="measured", name="m", **SMALL)
    loss = SVI(two_latent_model, measuring, Adam({"lr": 1e-3}), elbo).step(x)
    assert math.isfinite(loss) and {"head", "chain", "rws", "lead", "ess"} <= set(elbo.last_terms)
    assert all(math.isfinite(value) for value in elbo.last_terms.values())
    samples = Predictive(two_latent_model, guide=guide, num_samples=5)(x)
    assert samples["z"].shape == (5, 4, 2) and (samples["s"] > 0).all()
    trace = poutine.trace(guide).get_trace(x)
    assert trace.nodes["z"]["value"].shape == (4, 2)


def test_user_encoder_and_unconditional_denoiser():
    encoder = torch.nn.Sequential(torch.nn.Linear(3, 7), torch.nn.Tanh())
    guide = DiffusionGuide(linear_model, "z", "x", num_steps=2, encoder=encoder, conditional=False, **SMALL)
    x = torch.randn(5, 3)
    assert math.isfinite(Trace_ELBO().loss(linear_model, guide, x))
    assert guide.context_dim == 7 and guide.denoisers[0].context_dim == 0


def test_clear_errors():
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="'w' is not a sample site"):
        DiffusionGuide(linear_model, "w", "x")(x)

    def discrete_model(x):
        with pyro.plate("data", x.shape[0]):
            k = pyro.sample("k", dist.Categorical(logits=x.new_zeros(3)))
            pyro.sample("x", dist.Normal(k.float().unsqueeze(-1).expand(x.shape), 1.0).to_event(1), obs=x)

    with pytest.raises(ValueError, match="discrete"):
        DiffusionGuide(discrete_model, "k", "x")(x)
    guide = DiffusionGuide(linear_model, "z", "x", num_steps=2, **SMALL)
    guide(x)
    with pytest.raises(ValueError, match="context must have trailing dimension"):
        guide.denoisers[0].context_dim += 1  # a denoiser expecting a wider context than the encoder gives
        guide.chain_posterior("z", torch.zeros(5, guide.context_dim))
    with pytest.raises(ValueError, match="variance must be one of"):
        DiffusionGuide(linear_model, "z", "x", variance="fixed")
    with pytest.raises(ValueError, match="num_steps"):
        DiffusionGuide(linear_model, "z", "x", num_steps=0)
    # issue 25 case 19: the guide's own argument is named, at construction (no call of the guide here)
    with pytest.raises(ValueError, match="denoiser_activation must be one of"):
        DiffusionGuide(linear_model, "z", "x", denoiser_activation="rellu")
    with pytest.raises(ValueError, match="encoder_activation must be one of"):
        DiffusionGuide(linear_model, "z", "x", encoder_activation="rellu")
    with pytest.raises(ValueError, match="sleep must be one of"):
        DDVI_ELBO(sleep="dream")
    with pytest.raises(ValueError, match="num_sleep_particles"):
        DDVI_ELBO(num_sleep_particles=0)


def test_sleep_variance_loss_is_the_step_forward_kl():
    # T * KL(r(u_{t-1}|u_t, u_0) || q(u_{t-1}|u_t)) for t >= 2 and -T log q(u_0|u_1) at t = 1, each
    # checked against an explicit per-datum torch.distributions computation
    guide = DiffusionGuide(linear_model, "z", "x", num_steps=5, **SMALL)
    guide(torch.randn(3, 3))
    process = guide.process.double()
    u0, eps = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    t = torch.tensor([1, 2, 3, 4, 5, 1])
    u_t = process.q_sample(u0, t, eps)
    eps_hat, v = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    loss = guide._variance_loss(u0, u_t, t, eps_hat, v)
    for i, ti in enumerate(t.tolist()):
        q = dist.Normal(process.mean_from_eps(u_t[i], ti, eps_hat[i]),
                        (0.5 * process.learned_log_variance(ti, v[i])).exp())
        if ti == 1:
            expected = -q.log_prob(u0[i]).sum()
        else:
            r = process.posterior(u_t[i], u0[i], ti)
            expected = torch.distributions.kl_divergence(torch.distributions.Normal(r.loc, r.scale), q).sum()
        assert loss[i].item() == pytest.approx(5 * expected.item(), abs=1e-10)


def test_sleep_loss_particles_average_noise_draws_with_the_closed_form_mean():
    # A new standardized chain predicts eps_hat = sqrt(1 - abar_t) u_t exactly (skip, zero output layer), so
    # its denoising loss at u_0 has the closed-form mean (1/T) sum_t [abar_t^2 d + abar_t (1 - abar_t) |u_0|^2]
    # over t ~ U{1..T}, eps ~ N(0, I). Checked for one and for 8 draws of (t, eps) per model draw, with the
    # 8-draw loss's spread over data ~1/sqrt(8) of the one-draw loss's (the draws are independent).
    torch.manual_seed(0)
    guide = DiffusionGuide(linear_model, "z", "x", num_steps=5, variance="beta", **SMALL)
    x = torch.randn(4000, 3)
    guide(x[:3])
    context = guide.context(x)
    loc, scale = (v.detach() for v in guide.loc_scale("z", context))
    u0 = torch.randn(4000, 2)
    z = loc + scale * u0
    abar = guide.process.alphas_cumprod.double()
    expected = (abar**2 * 2 + abar * (1 - abar) * u0.double().pow(2).sum(-1, keepdim=True)).mean(-1)
    spreads = []
    for particles in (1, 8):
        with torch.no_grad():
            loss = guide.site_sleep_loss("z", z, context, head=False, num_particles=particles).double()
        residual = loss - expected
        stderr = residual.std() / math.sqrt(len(residual))
        assert abs(residual.mean().item()) < 4 * stderr.item(), (particles, residual.mean().item(), stderr.item())
        spreads.append(residual.std().item())
    assert spreads[1] < 0.5 * spreads[0], spreads  # 1/sqrt(8) = 0.35 of it in expectation
    with pytest.raises(ValueError, match="num_particles"):
        guide.site_sleep_loss("z", z, context, num_particles=0)


# ---- the head, the chain and the choice between them -----------------------------------------


def test_a_new_guide_is_the_gaussian_guide_it_contains():
    from pyro_diffvi.guides import GaussianGuide

    x = torch.randn(6, 3)
    pyro.set_rng_seed(4)
    gaussian = GaussianGuide(linear_model, "z", "x", encoder_hidden_dims=(32, 32))
    gaussian.setup(x)
    pyro.set_rng_seed(4)
    guide = DiffusionGuide(linear_model, "z", "x", num_steps=3, selection="measured", **SMALL)
    guide.setup(x)
    assert guide.choice == "head" and guide.exact_density
    z = torch.randn(6, 2)
    with torch.no_grad():
        ours = guide.posterior("z", guide.context(x)).log_prob(z)
        theirs = gaussian.posterior("z", gaussian.context(x)).log_prob(z)
        chain_loc, chain_scale = guide.chain_loc_scale("z", guide.context(x))
        loc, scale = guide.loc_scale("z", guide.context(x))
    assert torch.allclose(ours, theirs)  # same initialization: the same posterior
    assert torch.equal(chain_loc, loc) and torch.equal(chain_scale, scale)  # the chain starts at the head


def test_the_chosen_chain_is_emitted_averaged_and_restored_from_the_state_dict():
    x = dist.MultivariateNormal(B, A @ A.T + S**2 * torch.eye(3)).sample((32,))
    guide = DiffusionGuide(linear_model, "z", "x", num_steps=3, selection="measured", averaging_decay=0.9, **SMALL)
    svi = SVI(linear_model, guide, Adam({"lr": 1e-2}), DDVI_ELBO())
    for _ in range(5):
        svi.step(x)
    assert int(guide.averaged.num_updates) == 5  # one average step per training step
    guide.selector.choice = "chain"
    context = guide.context(x)
    emitted, trained = guide.posterior("z", context), guide.chain_posterior("z", context)
    averaged = guide.chain_posterior("z", context, averaged=True)
    pyro.set_rng_seed(0)
    z = emitted.sample()
    pyro.set_rng_seed(0)
    assert torch.equal(z, averaged.sample())
    pyro.set_rng_seed(0)
    assert not torch.equal(z, trained.sample())  # five steps moved the trained chain off its average
    # the number Trace_ELBO reports is the bound of the emitted chain: below exact log p(x) within 3 SE
    with torch.no_grad():
        w = torch.stack([per_datum_bounds(linear_model, guide, x)[0] for _ in range(200)])
    assert w.mean(0).sum() <= linear_log_px(x).sum() + 3 * (w.var(0).sum() / 200).sqrt()
    state = guide.state_dict()
    pyro.clear_param_store()
    restored = DiffusionGuide(linear_model, "z", "x", num_steps=3, selection="measured", averaging_decay=0.9, **SMALL)
    restored.setup(x)
    restored.load_state_dict(state)
    assert restored.choice == "chain" and restored.selector.count == guide.selector.count
    pyro.set_rng_seed(0)
    assert torch.equal(restored.posterior("z", restored.context(x)).sample(), z)


def test_bad_selection_options():
    with pytest.raises(ValueError, match="selection must be one of"):
        DiffusionGuide(linear_model, "z", "x", selection="best")
    with pytest.raises(ValueError, match="averaging_decay"):
        DiffusionGuide(linear_model, "z", "x", averaging_decay=1.0)
    with pytest.raises(ValueError, match="decay must be a number"):
        DiffusionGuide(linear_model, "z", "x", selection_decay=0.0)


def test_while_the_head_is_emitted_the_chain_does_not_train_the_encoder():
    x = torch.randn(8, 3)
    guide = DiffusionGuide(linear_model, "z", "x", num_steps=3, selection="measured", **SMALL)
    guide.setup(x)
    elbo = DDVI_ELBO()

    def encoder_grads_of_the_chain_terms():
        for p in guide.parameters():
            p.grad = None
        (elbo.sleep_term(linear_model, guide, x) + 0.0).backward()
        return [p.grad for p in guide.encoder.parameters()]

    # the head emitted: the encoder learns from the head's bound alone, as a GaussianGuide's does
    assert all(g is None or g.abs().sum() == 0 for g in encoder_grads_of_the_chain_terms())
    guide.selector.choice = "chain"  # once the chain is emitted its terms train the encoder too
    assert any(g is not None and g.abs().sum() > 0 for g in encoder_grads_of_the_chain_terms())
