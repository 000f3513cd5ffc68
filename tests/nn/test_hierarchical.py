"""The networks of a hierarchical posterior: each factor is a diagonal Gaussian of the right shape."""

import pytest
import torch

from pyro_diffvi.nn import HierarchicalNetworks


def test_factors_have_the_right_shapes():
    nets = HierarchicalNetworks(2, aux_dim=3, context_dim=4, hidden_dims=(8,))
    context = torch.randn(5, 4)
    q_aux = nets.q_aux(context)
    aux = q_aux.rsample()
    assert aux.shape == (5, 3)
    latent = nets.q_latent(aux, context).rsample()
    assert latent.shape == (5, 2)
    assert nets.r_aux(latent, context).log_prob(aux).shape == (5, 3)
    assert (nets.dim, nets.aux_dim, nets.context_dim) == (2, 3, 4)


def test_sizes_are_keyword_only_after_dim():
    with pytest.raises(TypeError):
        HierarchicalNetworks(2, 3, 4)
