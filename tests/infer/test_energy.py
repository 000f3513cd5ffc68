"""EnergyPriorELBO: encoder/decoder gradients equal the true ELBO's (exact log Z); prior gradients come
only from the prior objective."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from torch import nn

from pyro_diffvi._pyro_compat import in_namespace
from pyro_diffvi.infer.energy import EnergyPriorELBO
from pyro_diffvi.infer.prior_objectives import (
    AdversarialCDLoss,
    ImportanceWeightedLogZLoss,
    PriorObjective,
    SlicedScoreMatchingLoss,
)
from pyro_diffvi.priors import GRBMPrior

X_DIM, Z_DIM, BATCH = 3, 2, 5


class Vae:
    """A tiny Gaussian VAE with a GRBM prior; ``normalized=True`` uses the GRBM's exact normalized
    marginal (mixture of 2^H Gaussians) as the prior, i.e. the true ELBO."""

    def __init__(self):
        self.encoder = nn.Linear(X_DIM, 2 * Z_DIM).double()
        self.decoder = nn.Linear(Z_DIM, X_DIM).double()
        self.prior = GRBMPrior(dim=Z_DIM, num_hidden=3, init_scale=0.7).double()

    def model(self, x, normalized=False):
        pyro.module("decoder", self.decoder)
        grbm = self.prior()
        prior = grbm.exact_marginal() if normalized else grbm
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", prior)
            pyro.sample("x", dist.Normal(self.decoder(z), 0.5).to_event(1), obs=x)

    def guide(self, x, normalized=False):
        pyro.module("encoder", self.encoder)
        out = self.encoder(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(out[:, :Z_DIM], out[:, Z_DIM:].exp()).to_event(1))

    def vae_params(self):
        return list(self.encoder.parameters()) + list(self.decoder.parameters())

    def prior_params(self):
        return [self.prior.mu, self.prior.log_sigma, self.prior.W, self.prior.b]

    def zero_grad(self):
        for p in self.vae_params() + self.prior_params():
            p.grad = None


class SeededSSM(PriorObjective):
    """SSM with a fixed projection seed; records the samples it was given (to recompute its gradient)."""

    def __init__(self):
        super().__init__()
        self.inner = SlicedScoreMatchingLoss(projection="gaussian")
        self.seen = []

    def loss(self, prior, z, log_q=None):
        self.seen.append(z)
        torch.manual_seed(7)
        loss = self.inner.loss(prior, z)
        self.last_terms = self.inner.last_terms
        return loss


@pytest.mark.parametrize("num_particles,vectorize", [(1, False), (3, True)])
def test_vae_gradients_equal_true_elbo_gradients(num_particles, vectorize):
    vae = Vae()
    x = torch.randn(BATCH, X_DIM, dtype=torch.float64)
    kw = dict(num_particles=num_particles, vectorize_particles=vectorize, max_plate_nesting=1)

    torch.manual_seed(1)
    true_loss = Trace_ELBO(**kw).loss_and_grads(vae.model, vae.guide, x, normalized=True)
    true_grads = [p.grad.clone() for p in vae.vae_params()]
    vae.zero_grad()

    elbo = EnergyPriorELBO(prior_objective=None, **kw)
    torch.manual_seed(1)
    loss = elbo.loss_and_grads(vae.model, vae.guide, x)
    # same draws: -A = -ELBO - B log Z exactly (log Z from enumeration of the hidden units)
    log_z = vae.prior().exact_log_partition().item()
    assert loss == pytest.approx(true_loss - BATCH * log_z, rel=1e-10, abs=1e-9)
    assert elbo.last_terms["partition_free_bound"] == pytest.approx(-loss)
    for p, g in zip(vae.vae_params(), true_grads):
        assert torch.allclose(p.grad, g, rtol=1e-9, atol=1e-12)
    # no prior objective: the prior's parameters get no gradient at all
    for p in vae.prior_params():
        assert p.grad is None or p.grad.abs().max().item() < 1e-12


def test_prior_gradient_comes_only_from_the_objective():
    vae = Vae()
    x = torch.randn(BATCH, X_DIM, dtype=torch.float64)
    torch.manual_seed(1)
    EnergyPriorELBO().loss_and_grads(vae.model, vae.guide, x)
    vae_grads_off = [p.grad.clone() for p in vae.vae_params()]
    vae.zero_grad()

    objective = SeededSSM()
    elbo = EnergyPriorELBO(prior_objective=objective)
    torch.manual_seed(1)
    loss = elbo.loss_and_grads(vae.model, vae.guide, x)
    prior_grads = [p.grad.clone() for p in vae.prior_params()]
    vae_grads_on = [p.grad.clone() for p in vae.vae_params()]

    (z,) = objective.seen
    assert not z.requires_grad and z.shape == (BATCH, Z_DIM)
    torch.manual_seed(7)
    reference = SlicedScoreMatchingLoss(projection="gaussian").loss(vae.prior(), z)
    expected = torch.autograd.grad(reference, vae.prior_params())
    for g, e in zip(prior_grads, expected):
        assert torch.allclose(g, e, rtol=1e-9, atol=1e-12)
    for g_on, g_off in zip(vae_grads_on, vae_grads_off):
        assert torch.allclose(g_on, g_off, rtol=1e-9, atol=1e-12)
    # the returned number is -A, not including the objective's value, which is logged separately
    assert loss == pytest.approx(-elbo.last_terms["partition_free_bound"])
    assert elbo.last_terms["prior_loss"] == pytest.approx(reference.item())
    assert elbo.prior_param_names == {"GRBMPrior.mu", "GRBMPrior.log_sigma", "GRBMPrior.W", "GRBMPrior.b"}


def test_svi_trains_prior_flow_and_vae_with_separate_learning_rates():
    vae = Vae()
    x = torch.randn(16, X_DIM, dtype=torch.float64)
    objective = AdversarialCDLoss(num_transforms=1, hidden_dims=(8,))
    elbo = EnergyPriorELBO(prior_objective=objective)
    optim = pyro.optim.Adam(elbo.optim_args({"lr": 1e-2}, prior={"lr": 1e-3}))
    svi = SVI(vae.model, vae.guide, optim, loss=elbo)
    svi.step(x)
    store = pyro.get_param_store()
    before = {name: p.detach().clone() for name, p in store.named_parameters()}
    for _ in range(3):
        svi.step(x)
    flow_names = [n for n in before if n.startswith("adversarial_cd_flow")]
    assert flow_names, "the adversarial flow must be registered in the param store"
    for name, p in store.named_parameters():
        assert not torch.equal(before[name], p.detach()), f"{name} did not move"
    # Adam's first steps move each parameter by about its learning rate
    lrs = {name: optim.optim_objs[p.unconstrained()].param_groups[0]["lr"] for name, p in store.items()}
    assert {lrs[n] for n in ("GRBMPrior.mu", "GRBMPrior.W", *flow_names)} == {1e-3}
    assert {lrs[n] for n in lrs if n.startswith(("encoder", "decoder"))} == {1e-2}
    assert {"partition_free_bound", "prior_loss", "cd_gap", "log_z_lower_bound"} <= set(elbo.last_terms)


def test_importance_weighted_objective_gets_guide_log_density():
    vae = Vae()
    x = torch.randn(BATCH, X_DIM, dtype=torch.float64)
    elbo = EnergyPriorELBO(prior_objective=ImportanceWeightedLogZLoss())
    elbo.loss_and_grads(vae.model, vae.guide, x)
    assert vae.prior.W.grad is not None and vae.prior.W.grad.abs().sum() > 0
    assert {"iw_log_z", "iw_log_z_se"} <= set(elbo.last_terms)


def test_optim_args_namespace_and_bad_input():
    elbo = EnergyPriorELBO(prior_objective=AdversarialCDLoss(module_name="vae"))
    args = elbo.optim_args({"lr": 1e-3}, {"lr": 2e-4})
    # the flow's namespace covers itself and names that continue it after a separator, nothing else
    assert args("vae.b") == {"lr": 2e-4} and args("vae") == {"lr": 2e-4} and args("vae$$$b") == {"lr": 2e-4}
    for other in ("vaeb", "vae_b", "va", "encoder.0.weight"):
        assert args(other) == {"lr": 1e-3}, other
    assert [in_namespace(n, "vae") for n in ("vae", "vae.b", "vae$$$b", "vaeb", "vae_b", "va")] == [
        True, True, True, False, False, False
    ]
    with pytest.raises(TypeError, match="prior must be a dict"):
        elbo.optim_args({}, 2e-4)
    with pytest.raises(TypeError, match="vae must be a dict"):
        elbo.optim_args(1e-3, {})


def test_optim_args_match_the_flow_namespace_exactly():
    elbo = EnergyPriorELBO(prior_objective=AdversarialCDLoss(module_name="flow"))
    elbo.prior_param_names = {"vae"}
    args = elbo.optim_args({"lr": 1.0}, prior={"lr": 2.0})
    assert args("vae") == {"lr": 2.0} and args("vae.b") == {"lr": 1.0}  # only the exact classified name
    assert args("flow.layers.0.weight") == {"lr": 2.0} and args("flow") == {"lr": 2.0}
    assert args("flowers.weight") == {"lr": 1.0}


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_num_particles_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match=f"num_particles must be an integer >= 1, got {bad!r}"):
        EnergyPriorELBO(num_particles=bad)


def test_bad_input():
    with pytest.raises(TypeError, match="prior_objective"):
        EnergyPriorELBO(prior_objective="ssm")

    def normal_model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))

    def normal_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))

    with pytest.raises(ValueError, match="no latent sample site with an energy-based prior"):
        EnergyPriorELBO(prior_objective=SlicedScoreMatchingLoss()).loss(normal_model, normal_guide, torch.zeros(3, 1))


@pytest.mark.parametrize(
    "objective", [SlicedScoreMatchingLoss, lambda: AdversarialCDLoss(num_transforms=1, hidden_dims=(8,))]
)
def test_runs_on_device(device, objective):
    vae = Vae()
    for module in (vae.encoder, vae.decoder, vae.prior):
        module.to(device=device, dtype=torch.float32)
    x = torch.randn(BATCH, X_DIM, device=device)
    elbo = EnergyPriorELBO(prior_objective=objective())
    loss = elbo.loss_and_grads(vae.model, vae.guide, x)
    assert torch.isfinite(torch.tensor(loss))
    for p in vae.prior_params() + vae.vae_params():
        assert p.grad is not None and p.grad.device == p.device and torch.isfinite(p.grad).all()
    # the bound's value is the same number Trace_ELBO reports with the unnormalized prior (no log Z)
    torch.manual_seed(3)
    value = EnergyPriorELBO().loss(vae.model, vae.guide, x)
    torch.manual_seed(3)
    assert value == pytest.approx(Trace_ELBO().loss(vae.model, vae.guide, x), rel=1e-5)
