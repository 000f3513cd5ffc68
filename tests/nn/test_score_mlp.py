"""ScoreMLP: the per-pixel branch is local and shared across pixels; the global MLP reads the context."""

import torch

from pyro_diffvi.diffusion import ScoreModel
from pyro_diffvi.nn import ScoreMLP


def test_pixel_branch_is_local_and_shared():
    torch.manual_seed(0)
    net = ScoreMLP(6, global_hidden_dims=(8,), pixel_hidden_dims=(5, 5))
    for p in net.mlp.parameters():
        torch.nn.init.zeros_(p)  # the global MLP off: the output is the pixel branch's
    x, t = torch.randn(4, 6), torch.full((4,), 300.0)
    out = net(x, t)
    moved = x.clone()
    moved[:, 2] += 1.0
    changed = (net(moved, t) - out).abs() > 1e-7
    assert changed[:, 2].all() and not changed[:, [0, 1, 3, 4, 5]].any()  # local
    same = x.clone()
    same[:, 4] = same[:, 1]
    assert torch.allclose(net(same, t)[:, 4], net(same, t)[:, 1])  # shared weights: one map for every pixel


def test_zero_init_zeroes_both_branches_and_context_enters():
    model = ScoreModel((6,), context_dim=3, network_options={"global_hidden_dims": [8], "pixel_hidden_dims": [4]},
                       zero_init=True, gaussian_skip=False)
    x, t = torch.randn(2, 6), torch.rand(2)
    assert torch.equal(model.noise(x, t, torch.randn(2, 3)), torch.zeros(2, 6))
    net = ScoreMLP(6, context_dim=3, global_hidden_dims=(8,), pixel_hidden_dims=())
    assert not net.pixel_layers and len(net.output_layers) == 1
    c = torch.randn(2, 3)
    assert not torch.allclose(net(x, t, c), net(x, t, c.flip(0)))
