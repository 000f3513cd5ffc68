"""The DDPM U-Net: shapes at odd resolutions, the zero output layer, time and context conditioning, gradients."""

import pytest
import torch

from pyro_diffvi.nn import UNet


def small(**kwargs):
    return UNet((1, 28, 28), base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=1, attention_resolutions=(14,),
                dropout=0.0, **kwargs)


def test_shapes_zero_start_and_conditioning():
    torch.manual_seed(0)
    net = small(context_dim=4)
    x, t, z = torch.randn(3, 1, 28, 28), torch.tensor([1.0, 500.0, 999.0]), torch.randn(3, 4)
    out = net(x, t, z)
    assert out.shape == (3, 1, 28, 28) and torch.equal(out, torch.zeros_like(out))
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)
    base = net(x, t, z)
    assert not torch.allclose(base, net(x, t.flip(0), z))  # the time enters
    assert not torch.allclose(base, net(x, t, z.flip(0)))  # the context enters
    assert not torch.allclose(base[:1], net(x[1:2], t[:1], z[:1]))  # each output depends on its own image
    base.pow(2).mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_scalar_time_and_errors():
    net = UNet((1, 8, 8), base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=())
    assert net(torch.randn(2, 1, 8, 8), torch.tensor(3.0)).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"x must have shape \(N,\)"):
        net(torch.randn(2, 8, 8), torch.tensor(3.0))
    with pytest.raises(ValueError, match="context is required"):
        UNet((1, 8, 8), context_dim=2, base_channels=8, channel_mults=(1,))(torch.randn(1, 1, 8, 8), torch.tensor(1.0))
    with pytest.raises(ValueError, match="image_shape"):
        UNet((8, 8))
