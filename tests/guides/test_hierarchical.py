
import pytest
from torch import nn

from pyro_diffvi.guides import HierarchicalGuide
from tests.guides._targets import linear_gaussian


def test_guide_site_carries_the_bound_and_r_is_registered():
    problem = linear_gaussian("cpu")
    guide = HierarchicalGuide(problem.model, latent="z", observed="x", aux_dim=3, encoder_hidden_dims=(16,))
    guide(problem.x)
    names = {n for n, _ in guide.named_parameters()}
    assert any(".reverse." in n for n in names) and any(".conditional." in n for n in names)
    assert guide.networks["z"].aux_dim == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"aux_dim": 0}, "aux_dim"),
        ({"aux_dim": 1.5}, "aux_dim"),
        ({"posterior_hidden_dims": ()}, "posterior_hidden_dims"),
        ({"posterior_activation": "bogus"}, "activation"),
    ],
)


def test_bad_arguments_raise(kwargs, match):
    problem = linear_gaussian("cpu")
    with pytest.raises(ValueError, match=match):
        HierarchicalGuide(problem.model, latent="z", observed="x", **kwargs)


def test_tuple_encoder_is_rejected():
    class LocScale(nn.Module):
        def forward(self, x):
            return x[..., :2], x[..., :2].exp()

    problem = linear_gaussian("cpu")
    guide = HierarchicalGuide(problem.model, latent="z", observed="x", encoder=LocScale())
    with pytest.raises(ValueError, match="HierarchicalGuide needs an encoder"):
        guide(problem.x)
