"""GaussianRing / GaussianGrid against Pyro's MixtureSameFamily and their known means."""

import math

import pyro.distributions as dist
import torch

from pyro_diffvi.priors import GaussianGrid, GaussianRing


def reference(centers, scale):
    k = centers.shape[0]
    mix = dist.Categorical(logits=torch.zeros(k, dtype=centers.dtype))
    comp = dist.Normal(centers, scale).to_event(1)
    return dist.MixtureSameFamily(mix, comp)


def test_ring_matches_mixture_same_family_and_hand_centers():
    prior = GaussianRing(num_components=8, radius=2.0, scale=0.3, dtype=torch.float64)
    assert torch.allclose(prior.centers[2], torch.tensor([0.0, 2.0], dtype=torch.float64), atol=1e-15)
    assert torch.allclose(prior.centers[1], torch.tensor([math.sqrt(2), math.sqrt(2)], dtype=torch.float64))
    z = torch.randn(100, 2, dtype=torch.float64) * 2
    assert torch.allclose(prior.log_prob(z), reference(prior.centers, 0.3).log_prob(z), rtol=1e-12)


def test_grid_matches_mixture_same_family_and_hand_centers():
    prior = GaussianGrid(num_per_side=3, spacing=2.0, scale=0.5, dtype=torch.float64)
    expected = torch.tensor([[x, y] for x in (-2.0, 0.0, 2.0) for y in (-2.0, 0.0, 2.0)], dtype=torch.float64)
    assert torch.equal(prior.centers, expected)
    z = torch.randn(100, 2, dtype=torch.float64) * 2
    assert torch.allclose(prior.log_prob(z), reference(expected, 0.5).log_prob(z), rtol=1e-12)
    # a single point mass at the origin: log N(0; 0, 0.5^2 I) = -log(2 pi 0.25)
    single = GaussianGrid(num_per_side=1, scale=0.5)
    assert abs(single.log_prob(torch.zeros(2)).item() + math.log(2 * math.pi * 0.25)) < 1e-6


def test_default_parameters_are_the_toy_datasets():
    ring, grid = GaussianRing(), GaussianGrid()
    assert ring.num_components == 8 and abs(ring.radius - 4 / math.sqrt(2)) < 1e-12
    assert grid.num_components == 25 and abs(grid.centers.max().item() - 4 / (2 * math.sqrt(2))) < 1e-6
