"""The Gaussian output head: a mean and a positive standard deviation with a floor."""

import torch

from pyro_diffvi.nn import loc_scale


def test_loc_scale_splits_the_output_and_floors_the_scale():
    params = torch.tensor([[1.0, -2.0, -50.0, 0.0]])
    loc, scale = loc_scale(params, 1e-3)
    assert torch.equal(loc, torch.tensor([[1.0, -2.0]]))
    assert scale.shape == (1, 2) and bool((scale >= 1e-3).all())
    torch.testing.assert_close(scale[0, 1], torch.nn.functional.softplus(torch.tensor(0.0)) + 1e-3)
