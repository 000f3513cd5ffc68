"""AuxiliaryBoundDistribution: the density of its own draw is the bound term (the exact marginal when the reverse
model is exact); any other value is refused."""

import math

import pyro.distributions as dist
import pytest
import torch

from pyro_diffvi.distributions import AuxiliaryBoundDistribution


class Toy(AuxiliaryBoundDistribution):
    """y ~ N(0, 1), z = y + N(0, 1); the exact reverse model r(y|z) = N(z / 2, 1 / 2): the marginal is N(0, 2)."""

    def rsample_and_log_density(self, sample_shape=torch.Size()):
        y = torch.randn(sample_shape + (1,), dtype=torch.float64)
        z = y + torch.randn_like(y)
        log_q = (dist.Normal(0.0, 1.0).log_prob(y) + dist.Normal(y, 1.0).log_prob(z)).sum(-1)
        log_r = dist.Normal(z / 2, math.sqrt(0.5)).log_prob(y).sum(-1)
        return z, log_q - log_r


def test_density_of_its_own_draw_with_the_exact_reverse_model_is_the_marginal():
    q = Toy(event_shape=(1,))
    z = q.rsample((50,))
    torch.testing.assert_close(q.log_prob(z), dist.Normal(0.0, math.sqrt(2.0)).log_prob(z).sum(-1))


def test_another_value_is_refused_and_sample_is_detached():
    q = Toy(event_shape=(1,))
    with pytest.raises(ValueError, match="only defined for the sample it has just drawn"):
        q.log_prob(torch.zeros(1, dtype=torch.float64))
    z = q.rsample((3,))
    with pytest.raises(ValueError, match="only defined"):
        q.log_prob(z.clone())
    assert not q.sample((2,)).requires_grad


def test_subclasses_must_implement_the_draw():
    with pytest.raises(NotImplementedError):
        AuxiliaryBoundDistribution(event_shape=(1,)).rsample()
