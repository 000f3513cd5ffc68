"""The Pyro internals pyro_diffvi relies on (isolated in pyro_diffvi/_pyro_compat.py): fails loudly if a Pyro
release changes them."""

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from pyro_diffvi._pyro_compat import owns_param_name, param_store_names
from pyro_diffvi.guides import DiffusionGuide
from pyro_diffvi.infer import DDVI_ELBO


def test_param_store_names_are_the_names_pyro_registers():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    x = torch.randn(4, 2)
    guide = DiffusionGuide(model, "z", "x", num_steps=2, encoder_hidden_dims=(8,), denoiser_hidden_dims=(8,))
    with poutine.trace(param_only=True) as tracer:
        DDVI_ELBO().differentiable_loss(model, guide, x)  # the guide's call and its sleep term
    registered = {name: site["value"].unconstrained() for name, site in tracer.trace.nodes.items()}
    expected = param_store_names(guide)
    assert registered.keys() == expected.keys()
    assert all(registered[name] is param for name, param in expected.items())
    assert all(owns_param_name(guide, name) for name in registered)
    assert not owns_param_name(guide, "DiffusionGuideX.w")


def test_a_guide_s_name_is_the_prefix_pyro_registers_its_parameters_under():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    pyro.clear_param_store()
    guide = DiffusionGuide(
        model, "z", "x", num_steps=2, encoder_hidden_dims=(8,), denoiser_hidden_dims=(8,), name="q_z"
    )
    with poutine.trace(param_only=True) as tracer:
        DDVI_ELBO().differentiable_loss(model, guide, torch.randn(4, 2))
    registered = set(tracer.trace.nodes)
    assert registered == set(param_store_names(guide)) and len(registered) > 4
    assert all(name.startswith("q_z.") for name in registered)
    assert set(pyro.get_param_store().keys()) == registered


def test_adopting_a_restored_param_store_copies_into_the_module_s_parameters():
    from torch import nn

    from pyro_diffvi._pyro_compat import adopt_stored_params

    net = nn.Linear(2, 1)
    pyro.clear_param_store()
    store = pyro.get_param_store()
    store["owner.weight"] = torch.ones(1, 2)
    names = {"owner.weight": net.weight, "owner.bias": net.bias}
    adopt_stored_params(names, owner="Owner")
    assert torch.equal(net.weight.detach(), torch.ones(1, 2)) and store["owner.weight"] is net.weight
    assert "owner.bias" not in store  # nothing stored under that name: nothing adopted
    store["owner.bias"] = torch.zeros(3)
    import pytest

    with pytest.raises(ValueError, match="differently built Owner of this name"):
        adopt_stored_params(names, owner="Owner")


def test_register_child_registers_a_plain_module_under_its_attribute_path():
    from pyro.nn import PyroModule
    from torch import nn

    from pyro_diffvi._pyro_compat import register_child

    class Owner(PyroModule):
        def __init__(self):
            super().__init__("owner")
            self.net = nn.Linear(2, 1)

    pyro.clear_param_store()
    owner = Owner()
    net = register_child(owner, "net")
    assert net is owner._modules["net"]
    assert set(pyro.get_param_store()) == set(param_store_names(owner))
