"""EnergyPrior: its parameters get gradients only inside prior_gradients, and it adopts a restored param store."""

import pyro
import torch
from pyro.params.param_store import normalize_param_name
from torch import nn

from pyro_diffvi.distributions.energy import prior_gradients
from pyro_diffvi.nn.mlp import MLP
from pyro_diffvi.priors import EnergyPrior


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
