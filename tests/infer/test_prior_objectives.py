"""Prior objectives fitted to samples of known densities, checked against closed forms / quadrature."""

import math

import pytest
import torch
from torch import nn

from pyro_diffvi.distributions import GRBM
from pyro_diffvi.infer.prior_objectives import (
    AdversarialCDLoss,
    ContrastiveDivergenceLoss,
    ImportanceWeightedLogZLoss,
    SlicedScoreMatchingLoss,
    energy_with_detached_parameters,
    importance_weighted_log_partition,
)
from pyro_diffvi.priors import GRBMPrior

TRUE_MEAN = torch.tensor([1.0, -0.5], dtype=torch.float64)
TRUE_COV = torch.tensor([[1.0, 0.6], [0.6, 2.0]], dtype=torch.float64)


class QuadraticEnergy(nn.Module):
    """E(z) = 0.5 (z - m)^T L L^T (z - m), L lower triangular with a positive diagonal (a Gaussian)."""

    def __init__(self, dim: int = 2, dtype=torch.float64):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(dim, dtype=dtype))
        self.raw = nn.Parameter(torch.zeros(dim, dim, dtype=dtype))

    def chol(self) -> torch.Tensor:
        return torch.tril(self.raw, -1) + torch.diag(self.raw.diagonal().exp())

    def precision(self) -> torch.Tensor:
        L = self.chol()
        return L @ L.T

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((z - self.mean) @ self.chol()).pow(2).sum(-1)

    def energy(self, z: torch.Tensor) -> torch.Tensor:
        return self(z)

    def exact_log_partition(self) -> torch.Tensor:
        d = self.mean.shape[0]
        return 0.5 * d * math.log(2 * math.pi) - self.chol().diagonal().log().sum()


def gaussian_samples(n: int) -> torch.Tensor:
    return TRUE_MEAN + torch.randn(n, 2, dtype=torch.float64) @ torch.linalg.cholesky(TRUE_COV).T


def grid_log_partition(energy, lo: float, hi: float, num: int = 400) -> torch.Tensor:
    """log Z = log ∫ e^{-E} by the midpoint rule on a square grid (independent of any closed form)."""
    h = (hi - lo) / num
    axis = lo + h * (torch.arange(num, dtype=torch.float64) + 0.5)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        return torch.logsumexp(-energy(grid), 0) + 2 * math.log(h)


def fit(objective, energy, data, steps, lr, extra_params=(), batch_size=None):
    params = list(energy.parameters()) + list(extra_params)
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        batch = data if batch_size is None else data[torch.randint(len(data), (batch_size,))]
        opt.zero_grad()
        objective.loss(energy, batch).backward()
        opt.step()
        sched.step()


def test_ssm_loss_matches_closed_form_for_a_gaussian():
    # For E = 0.5 (z-m)^T P (z-m): J = E_z[-tr(P) + 0.5 (z-m)^T P^2 (z-m)] (expectation over v, Rademacher).
    energy = QuadraticEnergy()
    with torch.no_grad():
        energy.mean.copy_(torch.tensor([0.3, 0.1]))
        energy.raw.copy_(torch.tensor([[0.2, 0.0], [0.5, -0.3]]))
    z = gaussian_samples(500)
    P = energy.precision().detach()
    d = z - energy.mean.detach()
    exact = (-P.trace() + 0.5 * ((d @ P) * (d @ P)).sum(-1)).mean()
    vr = SlicedScoreMatchingLoss(num_projections=1, projection="rademacher").loss(energy, z)
    # Rademacher v: v^T P v = tr P + 2 v1 v2 P12; the VR loss is then exact up to the P12 term, whose
    # average over 500 signs has sd 2|P12|/sqrt(500).
    assert abs(vr.item() - exact.item()) < 5 * 2 * abs(P[0, 1].item()) / math.sqrt(500)
    plain = SlicedScoreMatchingLoss(num_projections=200, projection="gaussian", variance_reduction=False).loss(energy, z)
    assert abs(plain.item() - exact.item()) < 0.05 * abs(exact.item()) + 0.05


@pytest.mark.parametrize("projection,variance_reduction", [("rademacher", True), ("gaussian", False)])
def test_ssm_recovers_gaussian_parameters(projection, variance_reduction):
    n = 2000
    z = gaussian_samples(n)
    energy = QuadraticEnergy()
    ssm = SlicedScoreMatchingLoss(num_projections=1, projection=projection, variance_reduction=variance_reduction)
    fit(ssm, energy, z, steps=250, lr=0.05)
    # The exact SM optimum on a sample is (sample mean, inverse sample covariance): the fit must reach it
    # up to the optimizer's residual noise...
    sample_precision = torch.linalg.inv(torch.cov(z.T, correction=0))
    assert torch.allclose(energy.mean.detach(), z.mean(0), atol=0.05)
    assert torch.allclose(energy.precision().detach(), sample_precision, atol=0.06)
    # ...and the true parameters up to sampling error: SE sqrt(C_ii / n) <= 0.032 for the mean and about
    # |P_ij| sqrt(2 / n) <= 0.04 for the precision; tolerances are ~4 SE plus the residual above.
    assert torch.allclose(energy.mean.detach(), TRUE_MEAN, atol=0.15)
    assert torch.allclose(energy.precision().detach(), torch.linalg.inv(TRUE_COV), atol=0.2)


def eight_gaussians(n: int, radius: float = 2.0, std: float = 0.5) -> torch.Tensor:
    angles = torch.randint(8, (n,)).to(torch.float64) * (2 * math.pi / 8)
    centers = radius * torch.stack([angles.cos(), angles.sin()], -1)
    return centers + std * torch.randn(n, 2, dtype=torch.float64)


def test_grbm_ssm_beats_single_gaussian_on_eight_gaussians():
    train, test = eight_gaussians(4000), eight_gaussians(4000)
    prior = GRBMPrior(dim=2, num_hidden=6, init_scale=0.5).double()
    fit(SlicedScoreMatchingLoss(num_projections=2), prior, train, steps=400, lr=0.03, batch_size=512)
    grbm = prior()
    with torch.no_grad():
        grbm_ll = (-grbm.energy(test) - grbm.exact_log_partition()).mean().item()
    mean, cov = train.mean(0), torch.cov(train.T)  # closed-form Gaussian MLE (ddof difference negligible)
    gauss_ll = torch.distributions.MultivariateNormal(mean, cov).log_prob(test).mean().item()
    # The test-set means have SE ~ sd(log p)/sqrt(4000) ~ 0.015 nats; require a 0.05-nat gain.
    assert grbm_ll > gauss_ll + 0.05, (grbm_ll, gauss_ll)


def random_grbm(visible=2, hidden=3, dtype=torch.float64) -> GRBM:
    g = torch.Generator().manual_seed(3)
    return GRBM(
        torch.randn(visible, generator=g, dtype=dtype) * 0.5,
        torch.randn(visible, generator=g, dtype=dtype) * 0.2,
        torch.randn(visible, hidden, generator=g, dtype=dtype),
        torch.randn(hidden, generator=g, dtype=dtype) * 0.5,
    )


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


def test_energy_with_detached_parameters_has_no_parameter_gradient():
    energy = QuadraticEnergy()
    with torch.no_grad():
        energy.mean.fill_(0.3)
    z = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    out = energy_with_detached_parameters(energy, z)
    assert torch.allclose(out, energy(z))
    gz, gm, gr = torch.autograd.grad(out.sum(), [z, energy.mean, energy.raw])
    assert torch.allclose(gz, torch.autograd.grad(energy(z).sum(), z)[0])
    assert gm.abs().max() == 0 and gr.abs().max() == 0


def quadrature_log_likelihood(energy, data) -> float:
    with torch.no_grad():
        return (-energy(data).mean() - grid_log_partition(energy, -8.0, 8.0)).item()


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


def test_objectives_reject_bad_input():
    energy = QuadraticEnergy()
    with pytest.raises(ValueError, match="num_projections"):
        SlicedScoreMatchingLoss(num_projections=0)
    with pytest.raises(ValueError, match="projection"):
        SlicedScoreMatchingLoss(projection="sphere")
    with pytest.raises(ValueError, match="z must have shape"):
        SlicedScoreMatchingLoss().loss(energy, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-finite"):
        SlicedScoreMatchingLoss().loss(energy, torch.full((3, 2), float("nan"), dtype=torch.float64))
    with pytest.raises(TypeError, match="energy"):
        SlicedScoreMatchingLoss().loss(42, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="energy must map"):
        SlicedScoreMatchingLoss().loss(lambda z: z, torch.zeros(3, 2))
