"""The terms of a DiffusionGuide's posteriors that it does not emit: the vectorized local log joint against a hand
computation (with subsampling), its gradients, the head's bound against its closed form, the chain's bound against
Trace_ELBO on the same chain, and clear errors."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from pyro_diffvi.guides import DiffusionGuide
from pyro_diffvi.infer.alternatives import MODEL_GRADIENT_SHARE, alternative_terms, local_log_joint, plate_nesting

A = torch.tensor([[1.0, 0.5], [-0.3, 0.8], [0.6, -1.0]])
B = torch.tensor([0.2, -0.1, 0.5])
S = 0.5
SMALL = dict(encoder_hidden_dims=(16,), denoiser_hidden_dims=(16,), num_steps=3)


def linear_model(x, decoder=None):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
        loc = z @ A.T + B if decoder is None else decoder(z)
        pyro.sample("x", dist.Normal(loc, S).to_event(1), obs=x)


def hand_log_joint(z, x):
    return dist.Normal(0.0, 1.0).log_prob(z).sum(-1) + dist.Normal(z @ A.T + B, S).log_prob(x).sum(-1)


def test_local_log_joint_by_hand_with_subsampling():
    x = torch.randn(10, 3)

    def model(x):
        with pyro.plate("data", 10, subsample_size=4) as idx:
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ A.T + B, S).to_event(1), obs=x[idx])

    def guide(x):
        with pyro.plate("data", 10, subsample_size=4):
            pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))

    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    indices = guide_trace.nodes["data"]["value"]
    values = torch.randn(5, 4, 2)
    found = local_log_joint(
        model, guide_trace, {"z": values}, (x,), {}, max_plate_nesting=plate_nesting(model_trace),
        batch_shape=torch.Size([4]),
    )
    # per particle and datum, unscaled (the plate's scale 10/4 is the caller's), at the guide's subsample
    assert torch.allclose(found, hand_log_joint(values, x[indices]), atol=1e-5)


def test_model_parameters_get_their_share_of_the_gradient():
    decoder = torch.nn.Linear(2, 3)
    x = torch.randn(6, 3)
    guide_trace = poutine.trace(lambda x, d: linear_model(x, d)).get_trace(x, decoder)
    values = torch.randn(3, 6, 2, requires_grad=True)
    found = local_log_joint(
        linear_model, guide_trace, {"z": values}, (x, decoder), {}, max_plate_nesting=1, batch_shape=torch.Size([6])
    )
    found.sum().backward()
    exact_values_grad = values.grad.clone()
    share_grad = decoder.weight.grad.clone()
    values.grad, decoder.weight.grad = None, None
    direct = dist.Normal(0.0, 1.0).log_prob(values).sum(-1) + dist.Normal(decoder(values), S).log_prob(x).sum(-1)
    direct.sum().backward()
    assert torch.allclose(exact_values_grad, values.grad, atol=1e-5)
    assert torch.allclose(share_grad, MODEL_GRADIENT_SHARE * decoder.weight.grad, rtol=1e-4, atol=1e-12)


def test_a_dependent_site_outside_the_plates_is_refused():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ A.T + B, S).to_event(1), obs=x)
        # a global site that reads every datum's z (written to broadcast over particles, as Pyro's vectorized
        # particles need): its log density depends on the alternative values but lies outside their plate
        pyro.sample("total", dist.Normal(z.sum(-1).sum(-1, keepdim=True), 1.0), obs=torch.zeros(1))

    x = torch.randn(4, 3)
    guide_trace = poutine.trace(model).get_trace(x)
    with pytest.raises(ValueError, match="outside the plates"):
        local_log_joint(
            model, guide_trace, {"z": torch.randn(3, 4, 2)}, (x,), {}, max_plate_nesting=1,
            batch_shape=torch.Size([4]),
        )


def _terms(guide, x, num_particles=8):
    guide.request_alternatives(num_particles)
    guide_trace = poutine.trace(guide).get_trace(x)
    return alternative_terms(linear_model, guide_trace, guide, guide.take_alternatives(), (x,), {},
                             max_plate_nesting=1)


def test_head_bound_against_its_closed_form_and_chain_bound_against_trace_elbo():
    pyro.set_rng_seed(0)
    x = torch.randn(32, 3) + B
    guide = DiffusionGuide(linear_model, "z", "x", selection="measured", **SMALL)
    guide.setup(x)
    with torch.no_grad():
        head, chain, ess = [], [], []
        for _ in range(200):
            found = _terms(guide, x)
            head.append(found.head_elbo.item())
            chain.append(found.chain_elbo.item())
            ess.append(found.effective_sample_size)
        loc, scale = guide.loc_scale("z", guide.context(x))
        # ELBO of N(m, diag s^2) in the linear-Gaussian model: E log p(z) + E log p(x|z) + entropy
        prior = (-0.5 * math.log(2 * math.pi) - 0.5 * (loc**2 + scale**2)).sum()
        resid = x - loc @ A.T - B
        likelihood = (-0.5 * math.log(2 * math.pi * S**2) - 0.5 / S**2 * (resid**2 + scale**2 @ (A**2).T)).sum()
        entropy = (0.5 * torch.log(2 * math.pi * math.e * scale**2)).sum()
        exact_head = (prior + likelihood + entropy).item()
        head = torch.tensor(head)
        assert head.mean().item() == pytest.approx(exact_head, abs=5 * head.std().item() / math.sqrt(200))
        guide.selector.choice = "chain"  # emit the (averaged) chain, equal to the trained one before any step
        reference = torch.tensor([-Trace_ELBO().loss(linear_model, guide, x) for _ in range(400)])
    chain = torch.tensor(chain)
    se = math.sqrt(chain.var().item() / 200 + reference.var().item() / 400)
    assert chain.mean().item() == pytest.approx(reference.mean().item(), abs=5 * se)
    assert all(1.0 <= e <= 8.0 + 1e-6 for e in ess)
