"""Square: the erf closed form against brute-force integration along the perimeter."""

import math

import torch

from pyro_diffvi.priors import Square
from pyro_diffvi.priors.base import log_ndtr_diff


def brute_force_component_density(prior, z, label, n=200001):
    """(1/arc) int over arc `label` of N(z; c(s), sigma^2 I) ds by the trapezoid rule in float64."""
    s = torch.linspace(label * prior.arc_length, (label + 1) * prior.arc_length, n, dtype=torch.float64)
    pts = prior.perimeter_point(s.clamp_max(prior.perimeter * (1 - 1e-15)))
    sq = ((z.unsqueeze(-2) - pts) ** 2).sum(-1)
    dens = torch.exp(-0.5 * sq / prior.scale**2) / (2 * math.pi * prior.scale**2)
    return torch.trapezoid(dens, s, dim=-1) / prior.arc_length


def test_component_density_matches_brute_force_integral():
    prior = Square(num_components=7, half_width=1.3, scale=0.15, dtype=torch.float64)
    z = torch.tensor([[-1.3, -1.2], [1.25, -1.4], [1.4, 1.0], [0.0, 1.3], [0.3, 0.2], [-1.6, 1.6]], dtype=torch.float64)
    for label in range(prior.num_components):  # K = 7: several arcs turn a corner
        exact = prior.component_log_prob(z, torch.tensor(label))
        brute = brute_force_component_density(prior, z, label).log()
        assert torch.allclose(exact, brute, atol=1e-7, rtol=0)


def test_log_ndtr_diff_is_stable_in_both_tails():
    hi = torch.tensor([40.0, 1.0, -30.0, 0.5], dtype=torch.float64)
    lo = torch.tensor([39.0, -1.0, -31.0, 0.4], dtype=torch.float64)
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)
    got = log_ndtr_diff(hi, lo)
    # right tail: Phi(40) - Phi(39) = Phi(-39) - Phi(-40) ~ phi(39)/39 (Mills ratio, rel. error < 1e-3)
    assert abs(got[0].item() - (normal.log_prob(torch.tensor(39.0)).item() - math.log(39.0))) < 1e-3
    assert abs(got[1].item() - math.log(math.erf(1 / math.sqrt(2)))) < 1e-12
    assert abs(got[2].item() - (normal.log_prob(torch.tensor(30.0)).item() - math.log(30.0))) < 2e-3
    direct = math.log(0.5 * (math.erf(0.5 / math.sqrt(2)) - math.erf(0.4 / math.sqrt(2))))
    assert abs(got[3].item() - direct) < 1e-12
    assert torch.isfinite(got).all()
