"""GRBMPrior in a Pyro model: a plain Trace_ELBO leaves it bit-identical, names keep two priors apart."""

import pyro
import pytest
import torch

from pyro_diffvi.distributions import GRBM
from pyro_diffvi.distributions.energy import prior_gradients
from pyro_diffvi.priors import GRBMPrior


def vae_with_grbm_prior(prior, user_W):
    """A tiny VAE whose decoder weight is a user parameter named "W" (the name the prior used to take)."""
    encoder = torch.nn.Linear(4, 4)

    def model(x):
        W = pyro.param("W", user_W)
        grbm = prior()
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", grbm)
            pyro.sample("x", pyro.distributions.Normal(z @ W, 1.0).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", encoder)
        out = encoder(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", pyro.distributions.Normal(out[:, :2], out[:, 2:].exp()).to_event(1))

    return model, guide, encoder


def test_grbm_prior_module_in_pyro_model(device):
    prior = GRBMPrior(3, 4).to(device)
    grbm = prior()
    assert isinstance(grbm, GRBM) and grbm.batch_shape == () and grbm.event_shape == (3,)
    z = torch.randn(6, 3, device=device)
    torch.testing.assert_close(prior.energy(z), grbm.free_energy(z))

    def model():
        with pyro.plate("data", 6):
            pyro.sample("z", prior(), obs=z)

    tr = pyro.poutine.trace(model).get_trace()
    tr.compute_log_prob()
    torch.testing.assert_close(tr.nodes["z"]["log_prob"], -grbm.free_energy(z))
    # the parameters are namespaced by the module's name ...
    assert {n for n, s in tr.nodes.items() if s["type"] == "param"} == {
        "GRBMPrior.mu", "GRBMPrior.log_sigma", "GRBMPrior.W", "GRBMPrior.b"
    }
    # ... and get no gradient outside a prior objective (design rule 4) ...
    assert not tr.log_prob_sum().requires_grad
    # ... only inside prior_gradients(), which the prior objectives open for their own term
    with prior_gradients():
        tr = pyro.poutine.trace(model).get_trace()
    tr.log_prob_sum().backward()
    for name, p in prior.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    live = grbm.with_parameter_gradients()
    assert live.W is prior.W and grbm.W is not prior.W and not grbm.W.requires_grad
    torch.testing.assert_close(live.energy(z), grbm.energy(z))
    with pytest.raises(ValueError, match="hidden"):
        GRBMPrior(3, 0)


def test_trace_elbo_leaves_a_learnable_prior_bit_identical():
    # A user who forgot EnergyPriorELBO: the partition-free bound used to train the prior to a
    # degenerate density (log_sigma -> -16.7, "ELBO" +5.5e18); now its parameters cannot move at all.
    prior = GRBMPrior(dim=2, num_hidden=3, init_scale=0.5)
    before = {n: p.detach().clone() for n, p in prior.named_parameters()}
    user_W = torch.randn(2, 4)
    model, guide, encoder = vae_with_grbm_prior(prior, user_W.clone())
    enc_before = encoder.weight.detach().clone()
    x = torch.randn(16, 4)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), loss=pyro.infer.Trace_ELBO())
    losses = [svi.step(x) for _ in range(60)]
    for name, p in prior.named_parameters():
        assert torch.equal(p.detach(), before[name]), name
    store = pyro.get_param_store()
    for name in ("mu", "log_sigma", "W", "b"):
        assert torch.equal(store[f"GRBMPrior.{name}"].detach(), before[f"{name}_unconstrained"]), name
    # the user's "W" is a separate parameter of its own shape, trained as usual; so is the encoder
    assert store["W"].shape == (2, 4) and not torch.equal(store["W"].detach(), user_W)
    assert not torch.equal(encoder.weight.detach(), enc_before)
    assert sum(losses[-10:]) < sum(losses[:10])


def test_prior_names_keep_two_priors_apart():
    a, b = GRBMPrior(2, 3, name="prior_a"), GRBMPrior(2, 5, name="prior_b")

    def model():
        pyro.sample("za", a())
        pyro.sample("zb", b())

    tr = pyro.poutine.trace(model).get_trace()
    params = sorted(n for n, s in tr.nodes.items() if s["type"] == "param")
    assert params == sorted(f"prior_{k}.{p}" for k in "ab" for p in ("mu", "log_sigma", "W", "b"))
    assert pyro.get_param_store()["prior_b.W"].shape == (2, 5)
    for bad in ("", 3):
        with pytest.raises(ValueError, match="name must be a non-empty str"):
            GRBMPrior(2, 3, name=bad)


def test_moving_to_cuda_without_cuda_is_the_librarys_clear_error():
    # Issue 25, smaller: GRBMPrior(...).to("cuda") without CUDA was torch's "Torch not compiled with CUDA enabled".
    prior = GRBMPrior(2, 3)
    if torch.cuda.is_available():
        assert next(prior.to("cuda").parameters()).is_cuda
    else:
        for move in (lambda: prior.to("cuda"), lambda: prior.to(device="cuda:0"), prior.cuda):
            with pytest.raises(ValueError, match="device='cuda.*' requested but CUDA is not available"):
                move()
    assert next(prior.to("cpu").parameters()).device.type == "cpu"
    assert next(prior.to(torch.float64).parameters()).dtype == torch.float64  # a dtype alone still moves nothing
