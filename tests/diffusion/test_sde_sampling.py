"""The reverse SDE and the probability-flow ODE draw a Gaussian model's own distribution from its exact score."""

import math

import pytest
import torch

from pyro_diffvi.diffusion import VPSDE, probability_flow_sample, reverse_sde_sample

F64 = torch.float64


def gaussian(sde):
    mean = torch.tensor([1.0, -0.5], dtype=F64)
    cov = torch.tensor([[0.3, 0.1], [0.1, 0.2]], dtype=F64)
    eye = torch.eye(2, dtype=F64)

    def noise(x_t, t):  # -sigma(t) * grad log N(x_t; alpha m, alpha^2 C + sigma^2 I)
        a, s = sde.marginal_coefficients(t)
        cov_t = a[..., None, None] ** 2 * cov + s[..., None, None] ** 2 * eye
        return s[..., None] * torch.linalg.solve(cov_t, (x_t - a[..., None] * mean).unsqueeze(-1)).squeeze(-1)

    return mean, cov, noise


@pytest.mark.parametrize("sampler", ["sde", "ode"])
def test_samplers_draw_the_gaussian_of_the_score(sampler):
    sde = VPSDE()
    mean, cov, noise = gaussian(sde)
    torch.manual_seed(0)
    n = 20000
    init = torch.randn(n, 2, dtype=F64)
    if sampler == "sde":
        x = reverse_sde_sample(sde, noise, init, event_dim=1, num_steps=500)
    else:
        x = probability_flow_sample(sde, noise, init, event_dim=1, num_steps=200, method="rk4")
    se_mean = torch.sqrt(torch.diagonal(cov) / n)
    assert ((x.mean(0) - mean).abs() < 4 * se_mean + 0.01).all()  # + the discretization's bias
    assert torch.allclose(torch.cov(x.T), cov, atol=4 * math.sqrt(2 / n) * 0.3 + 0.01)


def test_reverse_sde_from_an_intermediate_time_draws_the_gaussian():
    # init = the exact marginal at t_start = 0.15 (alpha m + N(0, alpha^2 C + sigma^2 I)): the draws are the data's
    sde = VPSDE()
    mean, cov, noise = gaussian(sde)
    torch.manual_seed(1)
    n, t0 = 20000, torch.tensor(0.15, dtype=F64)
    a, s = sde.marginal_coefficients(t0)
    x0 = mean + torch.randn(n, 2, dtype=F64) @ torch.linalg.cholesky(cov).T
    x = reverse_sde_sample(sde, noise, a * x0 + s * torch.randn(n, 2, dtype=F64), event_dim=1, num_steps=200,
                           t_start=0.15)
    se_mean = torch.sqrt(torch.diagonal(cov) / n)
    assert ((x.mean(0) - mean).abs() < 4 * se_mean + 0.01).all()
    assert torch.allclose(torch.cov(x.T), cov, atol=4 * math.sqrt(2 / n) * 0.3 + 0.01)
    # each draw is a draw of p(x0 | x_t0), independent of x0 given x_t0: E|x - x0|^2 = 2 tr of the posterior
    # covariance (C^-1 + alpha^2 / sigma^2 I)^-1, here 0.49 against 2 tr C = 1.0 for an unrelated draw
    posterior = torch.linalg.inv(torch.linalg.inv(cov) + (a / s) ** 2 * torch.eye(2, dtype=F64))
    d2 = (x - x0).pow(2).sum(-1)
    assert abs(d2.mean() - 2 * torch.trace(posterior)) < 4 * d2.std() / math.sqrt(n) + 0.01


def test_ode_is_deterministic_and_euler_converges_to_rk4():
    sde = VPSDE()
    _, _, noise = gaussian(sde)
    init = torch.randn(50, 2, dtype=F64)
    rk4 = probability_flow_sample(sde, noise, init, event_dim=1, num_steps=200, method="rk4")
    assert torch.equal(rk4, probability_flow_sample(sde, noise, init, event_dim=1, num_steps=200, method="rk4"))
    errors = [(probability_flow_sample(sde, noise, init, event_dim=1, num_steps=n) - rk4).abs().max().item()
              for n in (100, 400)]
    assert errors[1] < errors[0] / 2 and errors[1] < 0.05  # first order


def test_samplers_keep_batch_and_event_shapes_and_check_arguments():
    sde = VPSDE()
    out = reverse_sde_sample(sde, lambda x, t: torch.zeros_like(x), torch.randn(3, 2, 1, 4), event_dim=2, num_steps=3)
    assert out.shape == (3, 2, 1, 4)
    with pytest.raises(ValueError, match="method must be one of"):
        probability_flow_sample(sde, lambda x, t: x, torch.zeros(2, 2), event_dim=1, method="midpoint")
    with pytest.raises(ValueError, match="num_steps"):
        reverse_sde_sample(sde, lambda x, t: x, torch.zeros(2, 2), event_dim=1, num_steps=0)
    with pytest.raises(ValueError, match="t_start must be in"):
        reverse_sde_sample(sde, lambda x, t: x, torch.zeros(2, 2), event_dim=1, t_start=1.5)
