"""Scoring a guide against a problem's exact answers: the exact posterior has no ELBO gap, a narrow guide a negative
one; a guide splitting its mass as the posterior does has mode ratio one, one that misses a mode zero."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_diffvi.datasets import PosteriorProblem, make_problem
from pyro_diffvi.metrics import elbo_gap, mode_mass_ratio


def conjugate_problem(num_data=6):
    """z ~ N(0, 1), x | z ~ N(z, 1): log p(x) = log N(x; 0, 2), posterior N(x / 2, 1 / 2)."""

    def model(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(x.new_zeros(1), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    x = torch.linspace(-2.0, 2.0, num_data, dtype=torch.float64).unsqueeze(-1)
    log_px = dist.Normal(0.0, math.sqrt(2.0)).log_prob(x).sum(-1)
    return PosteriorProblem("conjugate", model, x, log_px, 1, "unimodal", 1, None, None, "z ~ N(0, 1), x ~ N(z, 1)")


def test_the_exact_posterior_has_no_gap_and_a_narrow_guide_a_negative_one():
    problem = conjugate_problem()

    def guide(x, scale=math.sqrt(0.5)):
        with pyro.plate("data", x.shape[0], dim=-1):
            return {"z": pyro.sample("z", dist.Normal(x / 2, scale).to_event(1))}

    gap, stderr = elbo_gap(problem, guide, num_particles=32)
    assert abs(gap) < 1e-6 and stderr < 1e-6  # every importance weight is exactly log p(x)
    narrow_gap, narrow_stderr = elbo_gap(problem, lambda x: guide(x, scale=0.1), num_particles=64)
    assert narrow_gap < -5 * narrow_stderr < 0


def test_mode_mass_ratio():
    problem = make_problem("sign_symmetric", num_data=16)  # two mirror modes of mass exactly 1/2

    def split(x):  # proposes each sign of z1 half the time
        with pyro.plate("data", x.shape[0], dim=-1):
            sign = 2.0 * torch.bernoulli(torch.full(x.shape[:1], 0.5)) - 1.0
            loc = torch.stack([sign * x[:, 0].clamp(min=0).sqrt(), 0.8 * x[:, 1]], dim=-1)
            return {"z": pyro.sample("z", dist.Normal(loc, 0.05).to_event(1))}

    def one_sided(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            loc = torch.stack([x[:, 0].clamp(min=0).sqrt() + 0.1, 0.8 * x[:, 1]], dim=-1)
            return {"z": pyro.sample("z", dist.Normal(loc, 0.01).to_event(1))}

    pyro.set_rng_seed(0)
    ratio, masses = mode_mass_ratio(problem, split, num_particles=256)
    assert ratio > 0.9 and sum(masses) == pytest.approx(1.0)
    ratio, masses = mode_mass_ratio(problem, one_sided, num_particles=16)
    assert ratio == 0.0 and masses == [0.0, 1.0]
    with pytest.raises(ValueError, match="no mode regions"):
        mode_mass_ratio(conjugate_problem(), one_sided)
