"""DenoisingLosses: the reweighted sleep loss against the per-draw losses it weights (by hand), its scale, and its
gradient reaching the chain but not the draws."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_diffvi.guides import DiffusionGuide


def model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)


@pytest.fixture
def guide_and_context():
    x = torch.randn(5, 2)
    guide = DiffusionGuide(model, "z", "x", num_steps=3, encoder_hidden_dims=(16,), denoiser_hidden_dims=(16,))
    guide.setup(x)
    return guide, guide.context(x)


def test_reweighted_sleep_loss_is_the_weighted_sum_of_per_draw_losses(guide_and_context):
    guide, context = guide_and_context
    values = {"z": torch.randn(4, 5, 2, requires_grad=True)}
    weights = torch.softmax(torch.randn(4, 5), dim=0)
    pyro.set_rng_seed(0)
    found = guide.reweighted_sleep_loss(values, weights, context, scale=2.5)
    pyro.set_rng_seed(0)  # the same noise levels and noise: the per-draw losses it weighted
    per_draw = guide.site_sleep_loss("z", values["z"].detach(), context.expand(4, 5, -1), head=True)
    assert per_draw.shape == (4, 5)
    assert found.item() == pytest.approx(2.5 * (weights * per_draw).sum().item(), rel=1e-5)
    found.backward()
    assert values["z"].grad is None  # the draws are data for this loss (detached)
    grads = [p.grad for p in guide.denoisers.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)  # it trains the chain's denoiser


def test_one_hot_weights_pick_one_draw(guide_and_context):
    guide, context = guide_and_context
    values = {"z": torch.randn(3, 5, 2)}
    weights = torch.zeros(3, 5)
    weights[1] = 1.0
    pyro.set_rng_seed(1)
    found = guide.reweighted_sleep_loss(values, weights, context)
    pyro.set_rng_seed(1)
    per_draw = guide.site_sleep_loss("z", values["z"], context.expand(3, 5, -1), head=True)
    assert found.item() == pytest.approx(per_draw[1].sum().item(), rel=1e-5)
