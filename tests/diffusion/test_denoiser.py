"""The fast per-chain denoiser path against the plain network."""

import pytest
import torch

from pyro_diffvi.diffusion import Denoiser


@pytest.mark.parametrize("context_dim", [0, 5])
def test_stepper_equals_forward(context_dim):
    net = Denoiser(3, context_dim=context_dim, time_dim=8, hidden_dims=(16, 16)).double()
    y = torch.randn(4, 7, 3, dtype=torch.float64)
    c = torch.randn(7, context_dim, dtype=torch.float64) if context_dim else None
    step = net.stepper(c, 10, y)
    for t in (1, 4, 10):
        assert torch.allclose(step(y, t), net(y, t, c), atol=1e-12)
    t = torch.full((4, 7), 4)
    assert torch.allclose(net(y, t, c), net(y, 4, c), atol=1e-12)


def test_learned_variance_width_and_bad_time_dim():
    assert Denoiser(3, learn_variance=True)(torch.zeros(2, 3), 1).shape == (2, 6)
    with pytest.raises(ValueError, match="time_dim"):
        Denoiser(3, time_dim=0)
