"""Pinwheel: unit-Jacobian map and exact component density by change of variables."""

import math

import torch

from pyro_diffvi.priors import Pinwheel
from pyro_diffvi.priors.base import rotate


def forward_map(prior, v, label):
    """z = R(theta_l + rate * exp(|v|)) v, written out independently of the prior's code."""
    angle = 2 * math.pi * label / prior.num_components + prior.rate * torch.exp(v.norm())
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def test_forward_map_has_unit_jacobian_and_density_is_change_of_variables():
    prior = Pinwheel(num_components=5, rate=0.7, dtype=torch.float64)
    gauss = torch.distributions.Normal(
        torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.3, 0.05], dtype=torch.float64)
    )
    for label, v in [(0, [1.2, 0.03]), (3, [0.4, -0.08]), (4, [2.1, 0.1]), (1, [-0.2, 0.02])]:
        v = torch.tensor(v, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(lambda u: forward_map(prior, u, label), v)
        assert abs(torch.linalg.det(jac).item() - 1.0) < 1e-12
        z = forward_map(prior, v, label)
        expected = gauss.log_prob(v).sum()  # log p(z|l) = log N(v) - log|det J| with det J = 1
        assert torch.allclose(prior.component_log_prob(z, torch.tensor(label)), expected, rtol=1e-12)


def test_straight_arms_without_swirl():
    # rate = 0: arm l is the Gaussian N((cos, sin) * 1, rotated diag(0.3^2, 0.05^2)) in closed form
    prior = Pinwheel(num_components=4, rate=0.0, dtype=torch.float64)
    z = torch.tensor([[0.0, 1.1], [0.02, 0.7]], dtype=torch.float64)  # near arm 1 (angle pi/2)
    expected = torch.distributions.MultivariateNormal(
        torch.tensor([0.0, 1.0], dtype=torch.float64),
        torch.diag(torch.tensor([0.05**2, 0.3**2], dtype=torch.float64)),
    ).log_prob(z)
    assert torch.allclose(prior.component_log_prob(z, torch.tensor(1)), expected, rtol=1e-12)


def test_sampler_uses_the_same_map():
    # samples of arm l, mapped back by v = R(-phi_l(|z|)) z, have the blob's moments (4 std errors)
    prior = Pinwheel(dtype=torch.float64)
    n = 20000
    z = prior.component(torch.tensor(7)).sample((n,))
    v = rotate(z, -(2 * math.pi * 7 / 10 + 0.25 * torch.exp(z.norm(dim=-1))))
    assert abs(v[:, 0].mean().item() - 1.0) < 4 * 0.3 / math.sqrt(n)
    assert abs(v[:, 1].mean().item()) < 4 * 0.05 / math.sqrt(n)
    assert abs(v[:, 0].std().item() / 0.3 - 1.0) < 4 / math.sqrt(2 * n)
    assert abs(v[:, 1].std().item() / 0.05 - 1.0) < 4 / math.sqrt(2 * n)


def test_scaling_radius_and_spreads_scales_the_density():
    """Change of variables: z ~ 10 * Pinwheel() has log density log p(z / 10) - 2 log 10."""
    big = Pinwheel(radius=10.0, radial_scale=3.0, tangential_scale=0.5)
    z = big.sample((200,))
    expected = Pinwheel().log_prob(z / 10) - 2 * math.log(10.0)
    assert torch.allclose(big.log_prob(z), expected, atol=1e-4)


def test_far_away_points_have_finite_tiny_density():
    lp = Pinwheel().log_prob(torch.tensor([[100.0, 0.0], [1e4, 3.0]]))
    assert torch.isfinite(lp).all() and (lp < -1e4).all()
