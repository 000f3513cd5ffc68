"""HierarchicalPosterior: with the exact reverse model its density is the marginal; a wrong one costs exactly the
expected KL."""

import math

import pyro.distributions as dist
import pytest
import torch

from pyro_diffvi.distributions import HierarchicalPosterior
from pyro_diffvi.nn import HierarchicalNetworks

S2 = 0.25  # variance of q(z|a) in the closed-form hierarchy below


class LinearGaussianHierarchy(HierarchicalNetworks):
    r"""q(a) = N(0, 1), q(z|a) = N(a, S2), so q(z) = N(0, 1 + S2) and q(a|z) = N(z / (1 + S2), S2 / (1 + S2)).

    The reverse model is r(a|z) = N(c z / (1 + S2), S2 / (1 + S2)); c = 1 makes it exact.
    """

    def __init__(self, c: float) -> None:
        super().__init__(1, aux_dim=1, context_dim=1)
        self.c = c

    def q_aux(self, context):
        return dist.Normal(torch.zeros_like(context), 1.0)

    def q_latent(self, aux, context):
        return dist.Normal(aux, math.sqrt(S2))

    def r_aux(self, latent, context):
        return dist.Normal(self.c * latent / (1 + S2), math.sqrt(S2 / (1 + S2)))


def test_exact_reverse_model_gives_the_marginal_density_pointwise():
    # Closed form: with r(a|z) = q(a|z), log q(a) + log q(z|a) - log r(a|z) = log q(z) for every draw.
    q = HierarchicalPosterior(torch.zeros(500, 1), LinearGaussianHierarchy(c=1.0))
    z = q.rsample()
    exact = dist.Normal(0.0, math.sqrt(1 + S2)).log_prob(z).sum(-1)
    assert torch.allclose(q.log_prob(z), exact, atol=1e-5)


def test_wrong_reverse_model_costs_exactly_the_expected_kl():
    # E[bound term - log q(z)] = E_z KL(q(a|z) || r(a|z)); both Gaussians with equal variance v, mean gap
    # (1 - c) z / (1 + S2): KL = (1 - c)^2 E[z^2] / (1 + S2)^2 / (2 v) with E[z^2] = 1 + S2.
    c, n = 0.5, 200_000
    q = HierarchicalPosterior(torch.zeros(n, 1), LinearGaussianHierarchy(c=c))
    z = q.rsample()
    excess = q.log_prob(z) - dist.Normal(0.0, math.sqrt(1 + S2)).log_prob(z).sum(-1)
    v = S2 / (1 + S2)
    expected = (1 - c) ** 2 / (1 + S2) / (2 * v)
    stderr = excess.std().item() / math.sqrt(n)
    assert abs(excess.mean().item() - expected) < 4 * stderr, (excess.mean(), expected, stderr)


def test_log_prob_of_another_value_raises():
    q = HierarchicalPosterior(torch.zeros(3, 1), LinearGaussianHierarchy(c=1.0))
    z = q.rsample()
    with pytest.raises(ValueError, match="only defined for the sample it has just drawn"):
        q.log_prob(z.clone())


def test_shapes_expand_and_particles():
    nets = HierarchicalNetworks(2, aux_dim=3, context_dim=4)
    q = HierarchicalPosterior(torch.randn(5, 4), nets)
    assert q.batch_shape == (5,) and q.event_shape == (2,)
    qe = q.expand((7, 5))
    z = qe.rsample()
    assert z.shape == (7, 5, 2) and qe.log_prob(z).shape == (7, 5)
    z = q.rsample((6,))
    assert z.shape == (6, 5, 2) and q.log_prob(z).shape == (6, 5)
    # independent draws per particle
    assert not torch.allclose(z[0], z[1])


def test_context_width_is_checked():
    nets = HierarchicalNetworks(2, aux_dim=2, context_dim=4)
    with pytest.raises(ValueError, match="trailing size 4"):
        HierarchicalPosterior(torch.randn(3, 5), nets)
