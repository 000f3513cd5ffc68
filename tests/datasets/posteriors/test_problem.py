"""A problem's exact answers by posterior_quadrature agree with independent reductions (1-D integrals with the inner
integral analytic) and with importance sampling from the Pyro model itself."""

import math

import pytest
import torch
from pyro import poutine

from tests.datasets.posteriors._shared import NAMES, midpoint_1d, normal_log_prob, problem


def test_sign_symmetric_reduces_to_one_dimension():
    p = problem("sign_symmetric")
    x = p.x.double()

    def log_f(t):  # N(z1; 0, 1.5^2) N(x1; z1^2, 0.1^2)
        return normal_log_prob(t, 0.0, 2.25) + normal_log_prob(x[:, :1], t**2, 0.01)

    expected = midpoint_1d(log_f, -8.0, 8.0, 2e-4) + normal_log_prob(x[:, 1], 0.0, 1.25)
    assert (expected - p.log_px).abs().max() < 1e-6
    assert torch.equal(p.mode_masses, torch.full((64, 2), 0.5, dtype=torch.float64))


def test_banana_reduces_to_one_dimension():
    p = problem("banana")
    x = p.x.double()

    def log_f(t):  # z2 integrated out: x2 | z1 ~ N(z1^2, 1 + 0.1^2)
        return (
            normal_log_prob(t, 0.0, 1.0)
            + normal_log_prob(x[:, :1], t, 1.0)
            + normal_log_prob(x[:, 1:], t**2, 1.01)
        )

    expected = midpoint_1d(log_f, -10.0, 10.0, 1e-3)
    assert (expected - p.log_px).abs().max() < 1e-6


def test_funnel_reduces_to_one_dimension():
    p = problem("funnel")
    x = p.x.double()

    def log_f(t):  # z2 integrated out: x2 | z1 ~ N(0, exp(z1) + 0.5^2)
        return (
            normal_log_prob(t, 0.0, 2.25)
            + normal_log_prob(x[:, :1], t, 1.0)
            + normal_log_prob(x[:, 1:], 0.0, t.exp() + 0.25)
        )

    expected = midpoint_1d(log_f, -15.0, 15.0, 1e-3)
    assert (expected - p.log_px).abs().max() < 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_importance_sampling_from_the_model_agrees(name):
    """log-mean-exp of p(x | z) over 200k prior draws, run through the Pyro model itself."""
    p = problem(name)
    num_samples = 200_000
    obs = min(3, p.x.shape[0])
    x = p.x[:obs].double().repeat_interleave(num_samples, 0)
    with torch.no_grad():
        trace = poutine.trace(p.model).get_trace(x)
        log_w = trace.nodes["x"]["fn"].log_prob(x).reshape(obs, num_samples)
    estimate = log_w.logsumexp(-1) - math.log(num_samples)
    w = (log_w - log_w.max(-1, keepdim=True).values).exp()
    ess = w.sum(-1) ** 2 / (w**2).sum(-1)
    se = w.std(-1) / (w.mean(-1) * math.sqrt(num_samples))  # delta-method s.e. of the log
    assert (ess > 100).all()
    assert ((estimate - p.log_px[:obs]).abs() < 4 * se + 1e-6).all()
