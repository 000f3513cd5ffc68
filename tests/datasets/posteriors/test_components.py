"""The problems' building blocks: every model traces with validation on, the funnel is a normalized density."""

import math
import pickle

import pyro
import pytest
import torch
from pyro import poutine

from tests.datasets.posteriors._shared import NAMES, normal_log_prob, problem


@pytest.mark.parametrize("name", NAMES)
def test_model_trace_with_validation(name):
    p = problem(name)
    x = p.x.double()
    with pyro.validation_enabled(True):
        trace = poutine.trace(p.model).get_trace(x)
        trace.compute_log_prob()
    z_site, x_site = trace.nodes["z"], trace.nodes["x"]
    assert not z_site["is_observed"] and x_site["is_observed"]
    assert z_site["fn"].event_shape == (p.latent_dim,) and x_site["fn"].event_shape == (x.shape[1],)
    assert [f.name for f in z_site["cond_indep_stack"]] == ["data"]
    assert z_site["cond_indep_stack"][0].dim == -1
    assert z_site["value"].dtype == torch.float64  # the model follows x's dtype
    assert not list(pyro.get_param_store().keys())  # no learnable parameters
    # the exposed log joint is the model's own density
    expected = z_site["log_prob"] + x_site["log_prob"]
    assert torch.allclose(p.log_joint(x, z_site["value"]), expected, rtol=1e-10, atol=1e-10)
    # the model pickles (guides that hold it can be saved)
    clone = pickle.loads(pickle.dumps(p.model))
    clone(x)


def test_funnel_10d_density_and_samples():
    p = problem("funnel_10d")
    x = torch.zeros(100_000, 1, dtype=torch.float64)
    z = poutine.trace(poutine.uncondition(p.model)).get_trace(x).nodes["z"]["value"]
    expected = normal_log_prob(z[:, 0], 0.0, 9.0) + normal_log_prob(
        z[:, 1:], 0.0, z[:, :1].exp()
    ).sum(-1)
    log_prior = p.log_joint(x, z) - normal_log_prob(x, 0.0, 1.0).sum(-1)
    assert torch.allclose(log_prior, expected, rtol=1e-10, atol=1e-8)
    n = z.shape[0]
    assert abs(z[:, 0].mean().item()) < 4 * 3 / math.sqrt(n)
    assert abs(z[:, 0].var().item() - 9.0) < 4 * 9 * math.sqrt(2 / n)
    standardized = z[:, 1:] * torch.exp(-z[:, :1] / 2)
    assert abs(standardized.var().item() - 1.0) < 4 * math.sqrt(2 / standardized.numel())
