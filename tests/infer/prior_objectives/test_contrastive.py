"""MCMC contrastive divergence, short-run and persistent, fits a Gaussian."""


import pytest
import torch

from pyro_diffvi.infer.prior_objectives import (
    ContrastiveDivergenceLoss,
)
from tests.infer.prior_objectives._shared import QuadraticEnergy, fit, quadrature_log_likelihood


@pytest.mark.parametrize("persistent", [False, True])
def test_contrastive_divergence_fits_a_gaussian(persistent):
    target_mean = torch.tensor([1.0, -1.0], dtype=torch.float64)
    data = target_mean + 0.7 * torch.randn(2000, 2, dtype=torch.float64)
    energy = QuadraticEnergy()
    initial_ll = quadrature_log_likelihood(energy, data)
    objective = ContrastiveDivergenceLoss(num_steps=20, step_size=0.05, persistent=persistent, buffer_size=2000)
    fit(objective, energy, data, steps=150, lr=0.05, batch_size=128)
    final_ll = quadrature_log_likelihood(energy, data)
    exact_ll = torch.distributions.Normal(target_mean, 0.7).log_prob(data).sum(-1).mean().item()
    # initial ~ -3.0 nats, best Gaussian ~ -2.0: require at least 0.6 of the 1-nat gap to close
    assert final_ll > initial_ll + 0.6 * (exact_ll - initial_ll), (initial_ll, final_ll, exact_ll)
    assert torch.allclose(energy.mean.detach(), target_mean, atol=0.25)
    if persistent:
        assert len(objective.buffer) > 0


@pytest.mark.parametrize("reinit_prob", [2.0, -0.5, "0.1"])
def test_reinit_prob_is_checked_at_construction(reinit_prob):
    # Issue 25, smaller: reinit_prob=2.0 was accepted and only refused by the replay buffer at the first step.
    with pytest.raises(ValueError, match=r"reinit_prob must be a probability in \[0, 1\]"):
        ContrastiveDivergenceLoss(persistent=True, reinit_prob=reinit_prob)
