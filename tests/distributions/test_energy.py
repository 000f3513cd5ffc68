import math

import pyro
import pytest
import torch
from pyro.params.param_store import normalize_param_name
from torch import nn

from pyro_diffvi.distributions import EnergyDistribution
from pyro_diffvi.distributions.energy import prior_gradients
from pyro_diffvi.nn.mlp import MLP
from pyro_diffvi.priors import EnergyPrior
from pyro_diffvi.samplers import LangevinSampler


def quadratic(z):
    return 0.5 * ((z - 1.0) / 0.5).pow(2).sum(-1)


def test_log_prob_is_unnormalized_minus_energy(device):
    d = EnergyDistribution(quadratic, (2,))
    assert d.normalized is False and d.batch_shape == () and d.event_shape == (2,)
    z = torch.tensor([[1.0, 1.0], [0.0, 2.0]], device=device)
    # hand-computed: 0 and 0.5 * (4 + 4)
    torch.testing.assert_close(d.log_prob(z), torch.tensor([0.0, -4.0], device=device))
    torch.testing.assert_close(d.energy(z), torch.tensor([0.0, 4.0], device=device))


def test_energy_output_with_trailing_singleton_is_squeezed(device):
    net = nn.Linear(3, 1).to(device)
    d = EnergyDistribution(net, (3,))
    z = torch.randn(4, 5, 3, device=device)
    torch.testing.assert_close(d.energy(z), net(z).squeeze(-1))


def test_langevin_sampler_mala_recovers_gaussian_mean(device):
    # exact target N(1, 0.25 I); MALA is unbiased, tolerance 4 SE of independent chains
    sampler = LangevinSampler(num_steps=200, step_size=0.05, metropolis=True)
    d = EnergyDistribution(quadratic, (2,), sampler=sampler, dtype=torch.float64, device=device)
    z = d.expand((2000,)).sample()
    assert z.shape == (2000, 2) and z.dtype == torch.float64 and z.device.type == device.type
    assert ((z.mean(0) - 1.0).abs() < 4 * 0.5 / math.sqrt(2000)).all()
    se_var = (z - z.mean(0)).pow(2).std(0) / math.sqrt(2000)
    assert ((z.var(0) - 0.25).abs() < 4 * se_var).all()


def test_expand_and_sample_shapes(device):
    d = EnergyDistribution(quadratic, (2,), sampler=LangevinSampler(num_steps=2), device=device)
    e = d.expand((3, 4))
    assert e.batch_shape == (3, 4) and e.sample((5,)).shape == (5, 3, 4, 2)
    assert e.log_prob(torch.zeros(5, 3, 4, 2, device=device)).shape == (5, 3, 4)
    assert d.sample().shape == (2,)


def test_energy_prior_gradients_reach_network_only_inside_prior_gradients(device):
    net = MLP(2, 1, hidden_dims=(8,)).to(device)
    prior = EnergyPrior(net, (2,))
    z = torch.randn(6, 2, device=device, requires_grad=True)

    def model():
        with pyro.plate("data", 6):
            pyro.sample("z", prior(), obs=z)

    tr = pyro.poutine.trace(model).get_trace()
    tr.compute_log_prob()
    torch.testing.assert_close(tr.nodes["z"]["log_prob"], -net(z).squeeze(-1))
    torch.testing.assert_close(prior.energy(z), net(z).squeeze(-1))
    params = {normalize_param_name(n) for n, s in tr.nodes.items() if s["type"] == "param"}
    assert params == {f"EnergyPrior.energy_fn.{n}" for n, _ in net.named_parameters()}
    # outside a prior objective: gradients reach z (for the encoder) but not the network
    tr.log_prob_sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())
    with prior_gradients():
        tr = pyro.poutine.trace(model).get_trace()
    tr.log_prob_sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    live = prior().with_parameter_gradients()
    assert live.energy_fn is net and live.parameter_source is None
    assert prior().sample((3,)).shape == (3, 2)


def test_energy_prior_adopts_a_restored_param_store(device):
    net = nn.Linear(2, 1).to(device)
    prior = EnergyPrior(net, (2,), name="ebm")
    prior()
    saved = {k: v.detach().clone() + 1.0 for k, v in pyro.get_param_store().items()}
    assert {normalize_param_name(k) for k in saved} == {"ebm.energy_fn.weight", "ebm.energy_fn.bias"}
    pyro.clear_param_store()
    for k, v in saved.items():
        pyro.param(k, v)
    prior()  # the module now computes with (and is trained through) the store's tensors
    store = pyro.get_param_store()
    assert net.weight is store["ebm.energy_fn$$$weight"]
    assert torch.equal(net.bias.detach(), saved["ebm.energy_fn$$$bias"])


def test_bad_arguments(device):
    with pytest.raises(TypeError, match="energy_fn"):
        EnergyDistribution(3.0, (2,))
    with pytest.raises(ValueError, match="event_shape"):
        EnergyDistribution(quadratic, ())
    d = EnergyDistribution(quadratic, (2,))
    with pytest.raises(ValueError, match="trailing shape|event_shape"):
        d.energy(torch.zeros(4, 3, device=device))
    with pytest.raises(ValueError, match="energy_fn returned"):
        EnergyDistribution(lambda z: z, (2,)).energy(torch.zeros(4, 2, device=device))
    with pytest.raises(ValueError, match="step_size"):
        LangevinSampler(step_size=-1.0)
    with pytest.raises(ValueError, match="noise_scale"):
        LangevinSampler(metropolis=True, noise_scale=0.5)
    with pytest.raises(TypeError, match="energy_fn"):
        EnergyPrior(quadratic, (2,))
    with pytest.raises(ValueError, match="name must be a non-empty str"):
        EnergyPrior(nn.Linear(2, 1), (2,), name="")
