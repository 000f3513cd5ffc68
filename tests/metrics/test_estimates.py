"""Estimates of disjoint batches combine into the estimate of their union."""

import math

import pytest

from pyro_diffvi.metrics import combine_estimates, elbo, iwae

N = 40


def test_combine_estimates_over_batches(lg):
    x = lg.data(N)
    halves = [x[:15], x[15:]]
    full = iwae(lg.model, lg.exact_guide, x, num_particles=4)
    combined = combine_estimates([iwae(lg.model, lg.exact_guide, h, num_particles=4) for h in halves])
    # across-data standard errors are recomputed from the concatenated per-point bounds
    assert combined.num_data == N and combined.stderr_kind == "data"
    assert combined.mean == pytest.approx(full.mean, abs=1e-10)
    assert combined.stderr == pytest.approx(full.stderr, rel=1e-8)
    parts = [elbo(lg.model, lg.wrong_guide, h, num_particles=100) for h in halves]
    combined = combine_estimates(parts)
    assert combined.stderr == pytest.approx(math.hypot(15 * parts[0].stderr, 25 * parts[1].stderr) / N)
    # Monte-Carlo estimate vs closed form, within 3 standard errors
    assert abs(combined.mean - lg.wrong_guide_elbo(x).mean().item()) < 3 * combined.stderr
    with pytest.raises(ValueError, match="share stderr_kind"):
        combine_estimates([parts[0], full])
    with pytest.raises(TypeError, match="non-empty"):
        combine_estimates([])
