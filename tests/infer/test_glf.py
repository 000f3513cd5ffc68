"""GLFLoss (Eq. 3.7) and EncoderGuide: the value equals the hand-computed formula, and the stop-gradient
routes the NLL term's gradient to the flow only (the encoder gets none from it; Eq. 3.5 without it)."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam
from torch import nn

from pyro_diffvi.guides import EncoderGuide, GaussianGuide
from pyro_diffvi.infer import GLFLoss
from pyro_diffvi.priors import FlowPrior

SIGMA, N_TOTAL = 0.3, 40


def _setup(beta_scale=None):
    pyro.clear_param_store()
    torch.manual_seed(0)
    prior = FlowPrior(2, num_transforms=2, hidden_dims=(16, 16), name="prior")
    decoder = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 5))

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", N_TOTAL, subsample_size=x.shape[0]):  # a minibatch scaled to N_TOTAL
            z = pyro.sample("z", prior())
            pyro.sample("x", dist.Normal(decoder(z), SIGMA).to_event(1), obs=x)

    guide = EncoderGuide(model, "z", "x", encoder_hidden_dims=(16,))
    x = torch.randn(8, 5)
    guide(x)  # build the encoder
    return prior, decoder, model, guide, x


def _by_hand(prior, decoder, guide, x, beta, detach):
    z = guide.encode(x)
    scale = N_TOTAL / x.shape[0]
    recon = -scale * dist.Normal(decoder(z), SIGMA).log_prob(x).sum()
    nll = -scale * prior.log_prob(z.detach() if detach else z).sum()
    return recon, nll


def _grads(loss, modules):
    params = [p for m in modules for p in m.parameters()]
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@pytest.mark.parametrize("beta", [1.0, 7.5])
def test_value_equals_the_formula(beta):
    prior, decoder, model, guide, x = _setup()
    objective = GLFLoss(reconstruction_weight=beta)
    loss = objective.differentiable_loss(model, guide, x)
    recon, nll = _by_hand(prior, decoder, guide, x, beta, detach=True)
    assert torch.allclose(loss, beta * recon + nll, rtol=1e-5)
    assert objective.loss(model, guide, x) == pytest.approx((beta * recon + nll).item(), rel=1e-5)
    assert objective.last_terms == pytest.approx({"reconstruction": recon.item(), "nll": nll.item()}, rel=1e-5)


def test_stop_gradient_routes_the_nll_to_the_flow_only():
    prior, decoder, model, guide, x = _setup()
    beta = 3.0
    loss = GLFLoss(reconstruction_weight=beta).differentiable_loss(model, guide, x)
    recon, nll = _by_hand(prior, decoder, guide, x, beta, detach=False)  # NLL at the live code
    # the flow: gradient of the NLL term alone (the reconstruction does not involve it), at the code's value
    flow_grads = _grads(loss, [prior])
    for g, ref in zip(flow_grads, _grads(nll, [prior])):
        assert torch.allclose(g, ref, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in flow_grads)
    # the encoder and decoder: gradient of beta * reconstruction alone; the NLL gives them none
    loss = GLFLoss(reconstruction_weight=beta).differentiable_loss(model, guide, x)
    for g, ref in zip(_grads(loss, [guide, decoder]), _grads(beta * recon, [guide, decoder])):
        assert torch.allclose(g, ref, atol=1e-5)
    # ... whereas the NLL at the live code does reach the encoder: the stop-gradient is what removes it
    assert any(g.abs().sum() > 1e-3 for g in _grads(nll, [guide]))


def test_without_stop_gradient_is_eq_3_5_and_the_map_objective():
    prior, decoder, model, guide, x = _setup()
    beta = 2.0
    loss = GLFLoss(reconstruction_weight=beta, stop_gradient=False).differentiable_loss(model, guide, x)
    recon, nll = _by_hand(prior, decoder, guide, x, beta, detach=False)
    for g, ref in zip(_grads(loss, [guide]), _grads(beta * recon + nll, [guide])):
        assert torch.allclose(g, ref, atol=1e-5)
    # beta = 1: the negative of Trace_ELBO's value with the point-mass guide (log q = 0)
    value = GLFLoss(stop_gradient=False).loss(model, guide, x)
    assert value == pytest.approx(Trace_ELBO().loss(model, guide, x), rel=1e-5)


def test_svi_trains_each_part_on_its_term():
    prior, decoder, model, guide, x = _setup()
    objective = GLFLoss(reconstruction_weight=1.0)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), objective)
    first = [svi.step(x) for _ in range(3)]
    for _ in range(200):
        svi.step(x)
    assert svi.step(x) < first[0]
    names = set(pyro.get_param_store().keys())
    assert any(n.startswith("prior.flow") for n in names) and any(n.startswith("decoder") for n in names)


def test_errors():
    prior, decoder, model, guide, x = _setup()
    gauss = GaussianGuide(model, "z", "x", encoder_hidden_dims=(8,), name="gauss")
    with pytest.raises(ValueError, match="point mass"):
        GLFLoss().loss(model, gauss, x)
    with pytest.raises(ValueError, match="reconstruction_weight"):
        GLFLoss(reconstruction_weight=0.0)
    with pytest.raises(TypeError, match="stop_gradient"):
        GLFLoss(stop_gradient="yes")
    with pytest.raises(ValueError, match="on_nonfinite"):
        GLFLoss(on_nonfinite="ignore")

    def positive_model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.LogNormal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)

    with pytest.raises(ValueError, match="constrained"):
        EncoderGuide(positive_model, "z", "x", name="pos")(torch.randn(3, 1))


def test_non_finite_codes_are_a_divergence_named_before_any_update():
    from pyro_diffvi.errors import DivergenceError

    prior, decoder, model, guide, x = _setup()
    with torch.no_grad():
        next(guide.encoder.parameters()).fill_(float("nan"))  # the encoder (hence the code) has gone NaN
    before = {k: v.clone() for k, v in decoder.state_dict().items()}
    svi = SVI(model, guide, Adam({"lr": 1e-2}), GLFLoss())
    with pytest.raises(DivergenceError, match=r"GLFLoss: non-finite loss term\(s\) \['nll'\]"):
        svi.step(x)
    assert all(torch.equal(v, decoder.state_dict()[k]) for k, v in before.items())
    skipping = SVI(model, guide, Adam({"lr": 1e-2}), GLFLoss(on_nonfinite="skip"))
    with pytest.warns(RuntimeWarning):
        skipping.step(x)
    assert all(torch.equal(v, decoder.state_dict()[k]) for k, v in before.items())
