"""The SDE likelihood bound: tight for the exact score of a Gaussian at any point, every constant checked by
quadrature or simulation, the control variate unbiased, and below the model's log density for a wrong score."""

import math

import torch

from pyro_diffvi.diffusion import VPSDE, sde_bound_terms
from tests.score_vae_case import LinearGaussianCase

F64 = torch.float64


def gaussian_noise_fn(sde, mean, cov):
    """The exact noise prediction -sigma(t) grad log p_t of the model N(mean, cov) (its marginals stay Gaussian)."""
    eye = torch.eye(len(mean), dtype=F64)

    def noise(x_t, t):
        a, s = sde.marginal_coefficients(t)
        cov_t = a[..., None, None] ** 2 * cov + s[..., None, None] ** 2 * eye
        score = -torch.linalg.solve(cov_t, (x_t - a[..., None] * mean).unsqueeze(-1)).squeeze(-1)
        return -s[..., None] * score

    return noise


def test_bound_is_tight_for_the_exact_score_of_a_gaussian_model_at_any_point():
    # the model N(m, C) with its exact score: the bound equals log N(x; m, C) for every x (the path posterior of
    # the exact reversal is the forward process), up to O(alpha_T^2) from the prior pi and O(t_min)
    sde = VPSDE()
    torch.manual_seed(0)
    a = torch.randn(3, 3, dtype=F64)
    mean, cov = torch.tensor([0.5, -1.0, 0.2], dtype=F64), a @ a.T + 0.1 * torch.eye(3, dtype=F64)
    points = torch.tensor([[0.0, 0.0, 0.0], [2.0, -1.0, 1.0], [-3.0, 2.0, 0.5]], dtype=F64)
    exact = torch.distributions.MultivariateNormal(mean, cov).log_prob(points)
    x = points.repeat_interleave(20000, 0)
    terms = sde_bound_terms(sde, gaussian_noise_fn(sde, mean, cov), x, event_dim=1, num_time_samples=1)
    values = sum(terms.values()).reshape(3, 20000)
    estimate, se = values.mean(1), values.std(1) / math.sqrt(20000)
    assert (se < 0.6).all()  # the far point has the largest spread
    assert ((estimate - exact).abs() < 3 * se + 0.01).all(), (estimate, exact, se)


def test_bound_is_below_the_model_density_for_a_wrong_score():
    # the score of a mismatched Gaussian still gives a valid bound on the log density of the model it defines
    # (the reversal of the mismatched Gaussian started at pi: log N(x; m, C) up to O(alpha_T^2)); a data point far from
    # where that model's score was "fitted" is irrelevant: the bound holds at every x, and is loose when the score
    # is not the model's own, here the score of N(0, I) paired with the model N(m, C) of test 1 evaluated as such
    sde = VPSDE()
    mean, cov = torch.tensor([1.0, -1.0], dtype=F64), torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=F64)
    torch.manual_seed(1)
    x = torch.randn(40000, 2, dtype=F64) * 0.7 + mean
    terms = sde_bound_terms(sde, gaussian_noise_fn(sde, mean, cov), x, event_dim=1)
    tight = sum(terms.values())
    gap = torch.distributions.MultivariateNormal(mean, cov).log_prob(x) - tight
    assert abs(gap.mean().item()) < 3 * gap.std().item() / math.sqrt(len(x)) + 0.01
    # a score that is not the model's: the standard normal's score; its model is N(0, I), whose density bounds it
    wrong = sum(sde_bound_terms(sde, gaussian_noise_fn(sde, torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64)), x,
                                event_dim=1).values())
    model_log_density = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1)
    diff = model_log_density - wrong
    assert abs(diff.mean().item()) < 3 * diff.std().item() / math.sqrt(len(x)) + 0.01


def test_constants_match_quadrature_and_monte_carlo():
    sde = VPSDE()
    d = 5
    x0 = torch.randn(1, d, dtype=F64)
    terms = sde_bound_terms(sde, lambda x, t: torch.zeros_like(x), x0, event_dim=1)
    # divergence: 1/2 int (g^2 E|grad log p_0t|^2 + 2 div f) dt = 1/2 int beta (d / sigma^2 - d) dt, by quadrature
    t = torch.logspace(math.log10(sde.t_min), 0.0, 400001, dtype=F64)
    _, sigma = sde.marginal_coefficients(t)
    integrand = 0.5 * sde.beta(t) * (d / sigma**2 - d)
    assert math.isclose(terms["divergence"].item(), torch.trapezoid(integrand, t).item(), rel_tol=1e-6)
    # prior: E log pi(x_T) over x_T ~ N(alpha_T x0, sigma_T^2 I), by Monte Carlo
    alpha_T, sigma_T = sde.marginal_coefficients(torch.tensor(1.0, dtype=F64))
    x_T = alpha_T * x0 + sigma_T * torch.randn(400000, d, dtype=F64)
    log_pi = torch.distributions.Normal(0.0, 1.0).log_prob(x_T).sum(-1)
    assert abs(terms["prior"].item() - log_pi.mean().item()) < 4 * log_pi.std().item() / math.sqrt(len(log_pi))
    # truncation: the decoder N(x_tmin / alpha, sigma^2 / alpha^2) against the entropy in the paper's form
    alpha_min, sigma_min = sde.marginal_coefficients(torch.tensor(sde.t_min, dtype=F64))
    decoder = -0.5 * d * math.log(2 * math.pi * math.e * (sigma_min / alpha_min).item() ** 2)
    entropy = 0.5 * d * math.log(2 * math.pi * math.e * sigma_min.item() ** 2)
    assert math.isclose(terms["truncation"].item(), decoder + entropy, rel_tol=1e-9)


def test_control_variate_keeps_the_estimate_unbiased():
    # the DSM term with the control variate against the plain importance-sampled DSM integral (same draws of t)
    sde = VPSDE()
    case = LinearGaussianCase()
    x0, _ = case.sample(1, torch.Generator().manual_seed(0))
    x = x0.expand(100000, -1)

    def noise_fn(x_t, t):
        return -sde.marginal_coefficients(t)[1][..., None] * case.marginal_score(x_t, t)

    torch.manual_seed(3)
    with_cv = sum(sde_bound_terms(sde, noise_fn, x, event_dim=1).values())
    torch.manual_seed(3)
    t, w = sde.sample_time((1, 100000), like=x)
    eps = torch.randn((1,) + x.shape, dtype=F64)
    residual = (eps - noise_fn(sde.perturb(x, t, eps), t)).pow(2).sum(-1)
    plain_dsm = 0.5 * sde.log_snr_range() * residual[0]
    terms = sde_bound_terms(sde, noise_fn, x[:1], event_dim=1)
    plain = terms["prior"] + terms["divergence"] + terms["truncation"] - plain_dsm
    se = math.hypot(with_cv.std().item(), plain.std().item()) / math.sqrt(len(x))
    assert abs(with_cv.mean().item() - plain.mean().item()) < 4 * se
    assert with_cv.std() < 0.5 * plain.std()  # the reason for it
