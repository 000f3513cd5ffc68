"""The importance-weighted log Z converges to the exact one, and its objective's gradient is Eq. 7."""

import pytest
import torch

from pyro_diffvi.distributions import GRBM
from pyro_diffvi.infer.prior_objectives import (
    ImportanceWeightedLogZLoss,
    importance_weighted_log_partition,
)
from tests.infer.prior_objectives._shared import random_grbm


def test_importance_weighted_log_partition_converges_on_grbm():
    grbm = random_grbm()
    exact = grbm.exact_log_partition().item()
    proposal = torch.distributions.Normal(torch.zeros(2, dtype=torch.float64), 3.0)
    z = proposal.sample((40000,))
    log_z, se = importance_weighted_log_partition(grbm, z, proposal.log_prob(z).sum(-1))
    # Z-hat is unbiased; log Z-hat has bias ~ -se^2/2 (negligible): require |error| < 4 SE.
    assert se.item() < 0.05
    assert abs(log_z.item() - exact) < 4 * se.item(), (log_z.item(), exact, se.item())


def test_importance_weighted_objective_gradient_is_eq7():
    grbm_params = [p.clone().requires_grad_(True) for p in (random_grbm().mu, random_grbm().log_sigma,
                                                             random_grbm().W, random_grbm().b)]
    grbm = GRBM(*grbm_params)
    proposal = torch.distributions.Normal(torch.zeros(2, dtype=torch.float64), 2.0)
    z = proposal.sample((64,))
    log_q = proposal.log_prob(z).sum(-1)
    loss = ImportanceWeightedLogZLoss().loss(grbm, z, log_q)
    grads = torch.autograd.grad(loss, grbm_params)
    # Eq. 7 (negated): mean grad E - sum_i w_i grad E(z_i), with self-normalized w ∝ exp(-E - log q).
    energy = grbm.energy(z)
    w = torch.softmax((-energy - log_q).detach(), 0)
    expected = torch.autograd.grad(energy.mean() - (w * energy).sum(), grbm_params)
    for g, e in zip(grads, expected):
        assert torch.allclose(g, e, atol=1e-10)
    with pytest.raises(ValueError, match="log_q"):
        ImportanceWeightedLogZLoss().loss(grbm, z)
