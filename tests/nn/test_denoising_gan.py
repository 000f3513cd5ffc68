"""The denoising diffusion GAN's networks: the dissertation's 25-Gaussians architecture, shapes, conditioning and
errors."""

import pytest
import torch
from torch import nn

from pyro_diffvi.nn import DenoisingDiscriminator, DenoisingGenerator


def linear_widths(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


def test_defaults_are_the_dissertations_toy_networks():
    """Sec. 6.4.7: three fully connected hidden layers of 512 units, LeakyReLU with slope 0.2, the conditioning
    (x_t, z or x_{t-1}, and t) concatenated with the input."""
    g, d = DenoisingGenerator(2, noise_dim=16, time_dim=32), DenoisingDiscriminator(2, time_dim=32)
    # the time embedding's linear layer, then input -> 512 -> 512 -> 512 -> output
    assert linear_widths(g) == [(32, 32), (2 + 16 + 32, 512), (512, 512), (512, 512), (512, 2)]
    assert linear_widths(d) == [(32, 32), (2 + 2 + 32, 512), (512, 512), (512, 512), (512, 1)]
    for net in (g, d):
        slopes = {m.negative_slope for m in net.modules() if isinstance(m, nn.LeakyReLU)}
        assert slopes == {0.2} and sum(isinstance(m, nn.LeakyReLU) for m in net.modules()) == 3


def test_outputs_depend_on_every_input(device):
    torch.manual_seed(0)
    g = DenoisingGenerator(3, noise_dim=4, hidden_dims=(16,)).to(device)
    d = DenoisingDiscriminator(3, hidden_dims=(16,)).to(device)
    x_t, z, x_prev = (torch.randn(6, k, device=device) for k in (3, 4, 3))
    t = torch.tensor([1, 2, 3, 4, 1, 2], device=device)
    out = g(x_t, z, t)
    assert out.shape == (6, 3) and out.device.type == device.type
    assert d(x_prev, x_t, t).shape == (6,)
    for changed in (g(x_t + 1, z, t), g(x_t, z + 1, t), g(x_t, z, t % 4 + 1)):
        assert not torch.allclose(changed, out)
    logits = d(x_prev, x_t, t)
    for changed in (d(x_prev + 1, x_t, t), d(x_prev, x_t + 1, t), d(x_prev, x_t, t % 4 + 1)):
        assert not torch.allclose(changed, logits)
    # an int step is the same as that step for every row
    assert torch.allclose(g(x_t, z, 2), g(x_t, z, torch.full((6,), 2, device=device)))


def test_a_generator_without_latent_takes_an_empty_z():
    g = DenoisingGenerator(2, noise_dim=0, hidden_dims=(8,))
    assert g(torch.randn(4, 2), torch.randn(4, 0), 1).shape == (4, 2)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda g, d: g(torch.zeros(4, 3), torch.zeros(4, 5), 1), r"x_t must have shape batch \+ \(2,\), got \(4, 3\)"),
        (lambda g, d: g(torch.zeros(4, 2), torch.zeros(4, 4), 1), r"z must have shape batch \+ \(5,\), got \(4, 4\)"),
        (lambda g, d: d(torch.zeros(4, 1), torch.zeros(4, 2), 1), r"x_prev must have shape batch \+ \(2,\)"),
        (lambda g, d: DenoisingGenerator(0), "dim must be an integer >= 1"),
        (lambda g, d: DenoisingGenerator(2, noise_dim=-1), "noise_dim must be an integer >= 0"),
        (lambda g, d: DenoisingDiscriminator(2, hidden_dims=()), "hidden_dims must have at least one width"),
    ],
)
def test_bad_input_is_named(call, match):
    g, d = DenoisingGenerator(2, noise_dim=5, hidden_dims=(8,)), DenoisingDiscriminator(2, hidden_dims=(8,))
    with pytest.raises(ValueError, match=match):
        call(g, d)
