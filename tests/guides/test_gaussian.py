"""GaussianGuide: a diagonal Gaussian head that starts at init_scale, its exact density, a tuple encoder used as
(loc, scale), and its arguments checked."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_diffvi.guides import GaussianGuide


def model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)


def test_head_starts_at_init_scale_and_density_is_exact():
    guide = GaussianGuide(model, "z", "x", encoder_hidden_dims=(8,), init_scale=0.3)
    x = torch.randn(5, 2)
    guide(x)
    loc, scale = guide.loc_scale("z", guide.context(x))
    assert loc.shape == (5, 2)
    # the head's bias sets the initial scale (its weights start small)
    torch.testing.assert_close(scale, torch.full_like(scale, 0.3), atol=0.05, rtol=0)
    assert guide.exact_density
    z = torch.randn(5, 2)
    torch.testing.assert_close(
        guide.posterior("z", guide.context(x)).log_prob(z), dist.Normal(loc, scale).log_prob(z).sum(-1)
    )


class LocScale(nn.Module):
    def forward(self, x):
        return x, torch.full_like(x, 0.1)


def test_a_tuple_encoder_gives_loc_and_scale_directly():
    guide = GaussianGuide(model, "z", "x", encoder=LocScale())
    x = torch.randn(4, 2)
    guide(x)
    loc, scale = guide.loc_scale("z", guide.context(x))
    assert torch.equal(loc, x) and torch.equal(scale, torch.full_like(x, 0.1))


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="min_scale"):
        GaussianGuide(model, "z", "x", min_scale=-1.0)
    with pytest.raises(ValueError, match="init_scale"):
        GaussianGuide(model, "z", "x", min_scale=0.5, init_scale=0.1)
    with pytest.raises(TypeError):
        GaussianGuide(model, "z", "x", None)  # options are keyword-only
