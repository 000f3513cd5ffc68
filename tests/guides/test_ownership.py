"""Parameter ownership: a guide claims its parameters, adopts the values a restored param store holds, refuses
another live guide's, and copies of a guide are marked so that they warn instead."""

import copy
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_diffvi._pyro_compat import param_store_names
from pyro_diffvi.guides import GaussianGuide
from pyro_diffvi.guides.ownership import claim, claimed_by_other


def model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)


def test_claims_tell_one_guide_s_parameters_from_another_s():
    a, b = GaussianGuide(model, "z", "x", name="a"), GaussianGuide(model, "z", "x", name="b")
    p = torch.nn.Parameter(torch.zeros(2))
    claim(p, a)
    assert claimed_by_other(p, b) and not claimed_by_other(p, a)
    assert not claimed_by_other(torch.zeros(2), a)  # a tensor no guide owns (loaded from a file)


def test_a_guide_adopts_a_restored_param_store():
    x = torch.randn(3, 2)
    guide = GaussianGuide(model, "z", "x", encoder_hidden_dims=(4,))
    guide(x)
    saved = {name: param.detach() + 1.0 for name, param in param_store_names(guide).items()}
    pyro.clear_param_store()
    store = pyro.get_param_store()
    for name, value in saved.items():
        store[name] = value.clone()
    guide.setup(x)
    for name, param in param_store_names(guide).items():
        assert torch.equal(param.detach(), saved[name]) and store[name] is param


def test_another_guide_of_the_same_name_is_refused_and_a_copy_warns():
    x = torch.randn(3, 2)
    original = GaussianGuide(model, "z", "x", encoder_hidden_dims=(4,))
    original(x)
    with pytest.raises(ValueError, match="another guide of this name"):
        GaussianGuide(model, "z", "x", encoder_hidden_dims=(4,))(x)
    duplicate = copy.deepcopy(original)
    assert duplicate.model is original.model  # the model is shared, not copied
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        duplicate(x)
    assert any("shares its param-store names" in str(w.message) for w in caught)
