"""Adversarial contrastive divergence improves the likelihood (by quadrature) and splits its gradients."""

import copy

import pyro
import torch

from pyro_diffvi.infer.prior_objectives import (
    AdversarialCDLoss,
)
from tests.infer.prior_objectives._shared import (
    QuadraticEnergy,
    fit,
    gaussian_samples,
    grid_log_partition,
    quadrature_log_likelihood,
)


def test_adversarial_cd_improves_likelihood_and_moves_the_flow():
    target_mean = torch.tensor([1.5, -1.0], dtype=torch.float64)
    target_std = torch.tensor([0.5, 1.2], dtype=torch.float64)
    data = target_mean + target_std * torch.randn(4000, 2, dtype=torch.float64)
    energy = QuadraticEnergy()
    # grid quadrature agrees with the closed form (checks the ground truth itself)
    assert abs(grid_log_partition(energy, -8, 8).item() - energy.exact_log_partition().item()) < 1e-6
    initial_ll = quadrature_log_likelihood(energy, data)
    objective = AdversarialCDLoss(num_samples=256, num_transforms=2, hidden_dims=(32, 32))
    objective.loss(energy, data[:8])  # builds the flow
    with torch.no_grad():
        flow_mean_before = objective.flow_sample(4000)[0].mean(0)
    fit(objective, energy, data, steps=300, lr=0.02, extra_params=objective.flow.parameters(), batch_size=256)
    final_ll = quadrature_log_likelihood(energy, data)
    exact_ll = torch.distributions.Normal(target_mean, target_std).log_prob(data).sum(-1).mean().item()
    # initial: -3.2 nats, the data's own Gaussian: -2.4; require most of the gap to close (0.5 nats).
    assert final_ll > initial_ll + 0.5, (initial_ll, final_ll, exact_ll)
    with torch.no_grad():
        flow_z = objective.flow_sample(4000)[0]
    # the flow's mean moves from ~0 to the data mean (MC SE of the 4000-sample mean <= 0.02)
    assert (flow_z.mean(0) - target_mean).norm() < 0.5 * (flow_mean_before - target_mean).norm()
    assert set(objective.last_terms) == {"cd_gap", "log_z_lower_bound"}


def test_adversarial_cd_gradients_are_split():
    energy = QuadraticEnergy()
    objective = AdversarialCDLoss(num_samples=32, num_transforms=1, hidden_dims=(8,))
    data = gaussian_samples(32)
    objective.loss(energy, data)  # build
    torch.manual_seed(1)
    loss = objective.loss(energy, data)
    flow_params = list(objective.flow.parameters())
    g_energy = torch.autograd.grad(loss, list(energy.parameters()), retain_graph=True)
    g_flow = torch.autograd.grad(loss, flow_params, allow_unused=True)
    # energy gradient: CD only, E_data[grad E] - E_q[grad E] on the same flow draws
    torch.manual_seed(1)
    z_flow = objective.flow_sample(32)[0].detach()
    expected = torch.autograd.grad(energy(data).mean() - energy(z_flow).mean(), list(energy.parameters()))
    for g, e in zip(g_energy, expected):
        assert torch.allclose(g, e, atol=1e-10)
    # flow gradient: that of E_q[E(z)] + E_q[log q(z)] (minus the Eq. 9 bound)
    torch.manual_seed(1)
    z, log_q = objective.flow_sample(32)
    expected_flow = torch.autograd.grad((energy(z) + log_q).mean(), flow_params, allow_unused=True)
    for g, e in zip(g_flow, expected_flow):
        if e is None:
            assert g is None or g.abs().max() == 0
        else:
            assert torch.allclose(g, e, atol=1e-10)


def test_adversarial_cd_deep_copies_after_a_training_step():
    # Issue 25 case 3 (deepcopy): the flow's transforms cached the last call's graph tensors, which deepcopy refused.
    energy = QuadraticEnergy()
    objective = AdversarialCDLoss(num_samples=16, num_transforms=2, hidden_dims=(8,))
    data = gaussian_samples(16)
    objective.loss(energy, data).backward()
    twin = copy.deepcopy(objective)
    assert all(torch.equal(a, b) for a, b in zip(objective.flow.state_dict().values(), twin.flow.state_dict().values()))
    pyro.set_rng_seed(3)
    expected = objective.loss(energy, data).item()
    pyro.set_rng_seed(3)
    assert twin.loss(energy, data).item() == expected  # the same flow, the same draws: the same loss
