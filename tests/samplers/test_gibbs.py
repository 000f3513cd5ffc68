"""The GRBM's samplers: block Gibbs and Gibbs-Langevin draws have the requested shape, and bad settings are named."""

import pytest
import torch

from pyro_diffvi.distributions import GRBM
from pyro_diffvi.samplers import GibbsLangevinSampler, GibbsSampler


def grbm(sampler):
    return GRBM(torch.zeros(3), torch.zeros(3), 0.5 * torch.ones(3, 2), torch.zeros(2), sampler=sampler)


@pytest.mark.parametrize("sampler", [GibbsSampler(num_steps=3), GibbsLangevinSampler(num_steps=2, step_size=0.05)])
def test_draws_have_the_requested_shape(sampler):
    draws = grbm(sampler).sample((5, 4))
    assert draws.shape == (5, 4, 3) and bool(torch.isfinite(draws).all())


def test_zero_gibbs_sweeps_return_the_initial_draws():
    torch.manual_seed(0)
    g = grbm(GibbsSampler(num_steps=0))
    draws = g.sample((20000,))
    torch.testing.assert_close(draws.mean(0), g.mu, atol=0.03, rtol=0)  # v_0 ~ N(mu, sigma^2)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: GibbsSampler(num_steps=-1), "num_steps"),
        (lambda: GibbsLangevinSampler(step_size=0.0), "step_size"),
        (lambda: GibbsLangevinSampler(langevin_steps=0), "langevin_steps"),
        (lambda: GibbsLangevinSampler(noise_scale=-1.0), "noise_scale"),
    ],
)
def test_bad_settings_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        GibbsSampler(5)
