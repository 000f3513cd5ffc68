"""SwissRoll: the default quadrature against a much finer rule and a brute-force integral."""

import math

import torch

from pyro_diffvi.priors import SwissRoll


def test_default_quadrature_within_1e4_nats_of_a_much_finer_rule():
    default = SwissRoll(dtype=torch.float64)
    fine = SwissRoll(num_panels=240, quadrature_order=16, dtype=torch.float64)  # 12x the nodes
    z, labels = default.sample_with_labels((3000,))
    xs = torch.linspace(-4.0, 4.0, 81, dtype=torch.float64)
    g = torch.cartesian_prod(xs, xs)
    ref_g = fine.log_prob(g)
    bulk = ref_g > ref_g.max() - 20  # everywhere the density is within 20 nats of its maximum
    assert (default.log_prob(z) - fine.log_prob(z)).abs().max() < 1e-4
    assert (default.log_prob(g) - ref_g)[bulk].abs().max() < 1e-4
    assert (default.component_log_prob(z, labels) - fine.component_log_prob(z, labels)).abs().max() < 1e-4


def test_component_density_matches_brute_force_trapezoid():
    prior = SwissRoll(num_components=3, dtype=torch.float64)
    z = torch.tensor([[0.0, -1.0], [1.5, 0.4], [-2.0, 1.0], [2.6, -0.3]], dtype=torch.float64)
    width = (prior.t_max - prior.t_min) / 3
    for label in range(3):
        t = torch.linspace(prior.t_min + label * width, prior.t_min + (label + 1) * width, 100001, dtype=torch.float64)
        sq = ((z.unsqueeze(-2) - prior.curve(t)) ** 2).sum(-1)
        dens = torch.exp(-0.5 * sq / prior.scale**2) / (2 * math.pi * prior.scale**2)
        brute = (torch.trapezoid(dens, t, dim=-1) / width).log()
        got = prior.component_log_prob(z, torch.tensor(label))
        near = brute > -20  # where the component has mass: 1e-6 nats; far away: relative accuracy
        assert near.any() and (got - brute)[near].abs().max() < 1e-6
        assert ((got - brute) / brute).abs().max() < 1e-3


def test_float32_log_prob_close_to_float64():
    p32, p64 = SwissRoll(), SwissRoll(dtype=torch.float64)
    z = p64.sample((1000,))
    assert (p32.log_prob(z.float()).double() - p64.log_prob(z)).abs().max() < 1e-3
