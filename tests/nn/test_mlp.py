"""MLPs: the layer widths, activations by name, the conditional MLP's time and context inputs."""

import pytest
import torch
from torch import nn

from pyro_diffvi.nn import MLP, ConditionalMLP, SinusoidalTimeEmbedding, activation


def test_mlp_widths_and_attributes():
    net = MLP(3, 2, hidden_dims=(5, 7), activation="elu")
    widths = [(m.in_features, m.out_features) for m in net if isinstance(m, nn.Linear)]
    assert widths == [(3, 5), (5, 7), (7, 2)]
    assert sum(isinstance(m, nn.ELU) for m in net) == 2
    assert (net.dim, net.out_dim) == (3, 2)
    assert net(torch.zeros(4, 3)).shape == (4, 2)


def test_activation_names():
    assert isinstance(activation("silu"), nn.SiLU)
    with pytest.raises(ValueError, match="activation must be one of"):
        activation("gelu2")


def test_conditional_mlp_needs_its_time_and_context():
    net = ConditionalMLP(2, 3, context_dim=4, time_dim=6, hidden_dims=(8,))
    y, context = torch.zeros(5, 2), torch.zeros(5, 4)
    assert net(y, torch.tensor(2.0), context).shape == (5, 3)
    with pytest.raises(ValueError, match="t is required"):
        net(y, None, context)
    with pytest.raises(ValueError, match="context is required"):
        net(y, torch.tensor(2.0), None)


def test_time_embedding_is_sines_then_cosines():
    embed = SinusoidalTimeEmbedding(4)
    out = embed(torch.tensor([0.0]))
    assert torch.equal(out, torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="positive even"):
        SinusoidalTimeEmbedding(3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(hidden_dims=(0,)), "each width of hidden_dims must be an integer >= 1, got 0"),
        (dict(hidden_dims=(8, -1)), "each width of hidden_dims"),
        (dict(hidden_dims=8), "hidden_dims must be a sequence"),
        (dict(activation="rellu"), "activation must be one of"),
    ],
)
def test_mlp_refuses_bad_widths_at_construction(kwargs, match):
    # Issue 25 case 12: a zero-width hidden layer made a network whose output is the constant bias.
    with pytest.raises(ValueError, match=match):
        MLP(2, 1, **kwargs)
    with pytest.raises(ValueError, match="out_dim must be an integer >= 1"):
        MLP(2, 0)


def test_mlp_without_hidden_layers_is_one_affine_map():
    net = MLP(3, 2, hidden_dims=())
    (linear,) = net
    x = torch.randn(4, 3)
    assert torch.allclose(net(x), x @ linear.weight.T + linear.bias)
