import math

import pyro
import pytest
import torch
from torch import nn

from pyro_diffvi.priors import VampPrior


class GaussianEncoder(nn.Module):
    def __init__(self, in_features: int, latent: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, 16), nn.Tanh(), nn.Linear(16, 2 * latent))

    def forward(self, x):
        loc, raw = self.net(x).chunk(2, -1)
        return loc, nn.functional.softplus(raw) + 0.3


def make_prior(device, K=5):
    enc = GaussianEncoder(3, 2).to(device=device, dtype=torch.float64)
    init = torch.randn(K, 3, dtype=torch.float64, device=device)
    return VampPrior(enc, K, (3,), init_pseudo_inputs=init), enc


def test_log_prob_matches_hand_computed_mixture(device):
    prior, enc = make_prior(device)
    z = torch.randn(10, 2, dtype=torch.float64, device=device)
    loc, scale = enc(prior.pseudo_inputs)  # (K, 2)
    comp = (
        -0.5 * ((z[:, None, :] - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)
    ).sum(-1)  # (10, K)
    expected = torch.logsumexp(comp, -1) - math.log(5)
    d = prior()
    assert d.batch_shape == () and d.event_shape == (2,)
    torch.testing.assert_close(d.log_prob(z), expected)


def test_density_integrates_to_one(device):
    prior, _ = make_prior(device)
    xs = torch.linspace(-10, 10, 801, dtype=torch.float64, device=device)
    X, Y = torch.meshgrid(xs, xs, indexing="ij")
    with torch.no_grad():
        lp = prior().log_prob(torch.stack([X, Y], -1))
    cell = (xs[1] - xs[0]) ** 2
    total = (lp.exp().sum() * cell).item()
    assert abs(total - 1.0) < 1e-6


def test_gradients_reach_pseudo_inputs_and_encoder(device):
    prior, enc = make_prior(device)
    z = torch.randn(7, 2, dtype=torch.float64, device=device)

    def model():
        with pyro.plate("data", 7):
            pyro.sample("z", prior(), obs=z)

    tr = pyro.poutine.trace(model).get_trace()
    tr.log_prob_sum().backward()
    assert prior.pseudo_inputs.grad is not None and prior.pseudo_inputs.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    assert prior().sample((4,)).shape == (4, 2)


def test_default_init_and_bad_arguments(device):
    enc = GaussianEncoder(3, 2).to(device)
    prior = VampPrior(enc, 4, 3)
    assert prior.pseudo_inputs.shape == (4, 3) and prior.pseudo_inputs.device.type == device.type
    with pytest.raises(ValueError, match="num_pseudo_inputs"):
        VampPrior(enc, 0, (3,))
    with pytest.raises(ValueError, match="init_pseudo_inputs"):
        VampPrior(enc, 4, (3,), init_pseudo_inputs=torch.zeros(5, 3))
    with pytest.raises(TypeError, match="loc, scale"):
        VampPrior(nn.Linear(3, 2), 4, (3,))()
