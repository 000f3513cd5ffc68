import math

import pytest
import torch

from pyro_diffvi.distributions import GRBM
from pyro_diffvi.samplers import GibbsLangevinSampler


def random_grbm(visible: int, hidden: int, device, dtype=torch.float64, seed: int = 0) -> GRBM:
    g = torch.Generator().manual_seed(seed)
    mu = 0.5 * torch.randn(visible, generator=g, dtype=dtype)
    log_sigma = -0.3 + 0.2 * torch.randn(visible, generator=g, dtype=dtype)
    W = torch.randn(visible, hidden, generator=g, dtype=dtype)
    b = torch.randn(hidden, generator=g, dtype=dtype)
    return GRBM(*(x.to(device) for x in (mu, log_sigma, W, b)))


def all_hidden_states(hidden: int, dtype, device) -> torch.Tensor:
    # independent enumeration: itertools-style product over {0,1}^H
    import itertools

    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=hidden)), dtype=dtype, device=device)


def mixture_moments(g: GRBM) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and covariance of v: p(v) = sum_h p(h) N(mu + W h, sigma^2), with p(h) from the
    Gaussian integral of exp(-E(v, h)) over v computed here by hand."""
    h = all_hidden_states(g.num_hidden, g.W.dtype, g.W.device)
    m = h @ g.W.T
    s2 = g.sigma**2
    log_w = h @ g.b + ((g.mu * m + 0.5 * m**2) / s2).sum(-1)
    w = torch.softmax(log_w, 0)
    means = g.mu + m
    mean = (w[:, None] * means).sum(0)
    second = torch.einsum("k,ki,kj->ij", w, means, means) + torch.diag(s2)
    return mean, second - torch.outer(mean, mean)


def test_free_energy_equals_log_sum_over_hidden_states(device):
    g = random_grbm(4, 7, device)
    v = 2.0 * torch.randn(50, 4, dtype=torch.float64, device=device)
    h = all_hidden_states(7, torch.float64, device)  # (128, 7)
    joint = g.joint_energy(v[:, None, :], h)  # (50, 128)
    expected = -torch.logsumexp(-joint, dim=1)
    torch.testing.assert_close(g.free_energy(v), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g.log_prob(v), -expected, rtol=1e-10, atol=1e-10)


def test_joint_energy_hand_computed(device):
    g = random_grbm(2, 3, device)
    v = torch.tensor([0.3, -1.2], dtype=torch.float64, device=device)
    h = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64, device=device)
    s2 = g.sigma**2
    expected = (
        0.5 * (((v - g.mu) ** 2) / s2).sum()
        - sum(v[i] / s2[i] * g.W[i, j] * h[j] for i in range(2) for j in range(3))
        - (g.b * h).sum()
    )
    torch.testing.assert_close(g.joint_energy(v, h), expected)


def test_exact_log_partition_matches_quadrature(device):
    g = random_grbm(2, 3, device)
    # the mixture means are mu + W h; a box of +-10 sigma around all of them covers the mass
    h = all_hidden_states(3, torch.float64, device)
    means = g.mu + h @ g.W.T
    lo = (means.min(0).values - 10 * g.sigma).cpu()
    hi = (means.max(0).values + 10 * g.sigma).cpu()
    n = 1201
    xs = [torch.linspace(lo[i].item(), hi[i].item(), n, dtype=torch.float64) for i in range(2)]
    X, Y = torch.meshgrid(*xs, indexing="ij")
    grid = torch.stack([X, Y], -1).to(device)
    cell = (xs[0][1] - xs[0][0]) * (xs[1][1] - xs[1][0])
    quad = torch.logsumexp(-g.energy(grid).flatten(), 0) + math.log(cell)  # Riemann sum (integrand ~0 at edges)
    torch.testing.assert_close(g.exact_log_partition(), quad, rtol=0, atol=1e-6)


def test_exact_marginal_is_normalized_free_energy(device):
    g = random_grbm(3, 5, device)
    v = torch.randn(20, 3, dtype=torch.float64, device=device)
    expected = -g.free_energy(v) - g.exact_log_partition()
    torch.testing.assert_close(g.exact_marginal().log_prob(v), expected)


def test_exact_log_partition_gradient(device):
    g = random_grbm(2, 3, device)
    params = [x.clone().requires_grad_(True) for x in (g.mu, g.log_sigma, g.W, g.b)]
    assert torch.autograd.gradcheck(lambda *p: GRBM(*p).exact_log_partition(), params)
    # d log Z / d b = E_p[h], with p(h) from the hand-computed Gaussian integrals (see mixture_moments)
    logz = GRBM(*params).exact_log_partition()
    (grad_b,) = torch.autograd.grad(logz, params[3])
    h = all_hidden_states(3, torch.float64, device)
    m = h @ g.W.T
    w = torch.softmax(h @ g.b + ((g.mu * m + 0.5 * m**2) / g.sigma**2).sum(-1), 0)
    torch.testing.assert_close(grad_b, (w[:, None] * h).sum(0))


def test_block_gibbs_matches_exact_moments(device):
    g = random_grbm(2, 4, device, seed=1)
    mean, cov = mixture_moments(g)
    v = g.gibbs(g.initial_visible(torch.Size([4000, 2])), num_steps=60)
    assert v.shape == (4000, 2)
    n = v.shape[0]
    # independent chains: sample-mean SE = sd / sqrt(n); 4 SE tolerance
    se_mean = v.std(0) / math.sqrt(n)
    assert ((v.mean(0) - mean).abs() < 4 * se_mean).all(), (v.mean(0), mean, se_mean)
    c = v - v.mean(0)
    prods = c[:, :, None] * c[:, None, :]
    se_cov = prods.std(0) / math.sqrt(n)
    assert ((prods.mean(0) - cov).abs() < 4 * se_cov + 1e-3).all(), (prods.mean(0), cov, se_cov)


def test_gibbs_langevin_with_metropolis_matches_exact_moments(device):
    g = random_grbm(2, 3, device, seed=2)
    mean, cov = mixture_moments(g)
    v = g.gibbs_langevin(
        g.initial_visible(torch.Size([2000, 2])), num_steps=25, step_size=0.1, langevin_steps=2, metropolis=True
    )
    se = v.std(0) / math.sqrt(v.shape[0])
    assert ((v.mean(0) - mean).abs() < 4 * se).all(), (v.mean(0), mean, se)
    se_var = (v - v.mean(0)).pow(2).std(0) / math.sqrt(v.shape[0])
    assert ((v.var(0) - cov.diagonal()).abs() < 4 * se_var).all()


def test_sample_expand_and_sampler_option(device):
    g = random_grbm(3, 2, device)
    assert g.sample().shape == (3,)
    e = g.expand((4,))
    assert e.batch_shape == (4,) and e.event_shape == (3,)
    s = e.sample((5,))
    assert s.shape == (5, 4, 3) and s.device.type == device.type
    assert e.log_prob(s).shape == (5, 4)
    g2 = GRBM(g.mu, g.log_sigma, g.W, g.b, sampler=GibbsLangevinSampler(num_steps=3))
    assert g2.sample((7,)).shape == (7, 3)


def test_bad_parameters_raise(device):
    D, H = 3, 2
    mu, ls, W, b = torch.zeros(D), torch.zeros(D), torch.zeros(D, H), torch.zeros(H)
    with pytest.raises(ValueError, match="mu"):
        GRBM(torch.zeros(D + 1), ls, W, b)
    with pytest.raises(ValueError, match="log_sigma"):
        GRBM(mu, torch.zeros(2, D), W, b)
    with pytest.raises(ValueError, match="W"):
        GRBM(mu, ls, torch.zeros(D), b)
    with pytest.raises(ValueError, match="b"):
        GRBM(mu, ls, W, torch.zeros(H + 1))
    with pytest.raises(ValueError, match="num_hidden=21"):
        GRBM(torch.zeros(1), torch.zeros(1), torch.zeros(1, 21), torch.zeros(21)).exact_log_partition()
    with pytest.raises(ValueError, match="event_shape|trailing shape"):
        GRBM(mu, ls, W, b).log_prob(torch.zeros(5, D + 1))


def test_degenerate_sizes_and_scales_raise(device):
    with pytest.raises(ValueError, match=r"W must have at least one visible unit .* got \(0, 3\)"):
        GRBM(torch.zeros(0), torch.zeros(0), torch.zeros(0, 3), torch.zeros(3))
    # float32: sigma^2 = e^-100 is subnormal and 1/sigma^2 overflows to inf; the bound is 43.67
    with pytest.raises(ValueError, match=r"log_sigma must satisfy \|log_sigma\| < 43.67 for torch.float32.*50"):
        GRBM(torch.zeros(2), torch.full((2,), -50.0), torch.zeros(2, 1), torch.zeros(1))
    with pytest.raises(ValueError, match=r"log_sigma must satisfy \|log_sigma\| < 43.67"):
        GRBM(torch.zeros(2), torch.tensor([0.0, 45.0]), torch.zeros(2, 1), torch.zeros(1))
    with pytest.raises(ValueError, match=r"log_sigma must satisfy \|log_sigma\| < 354.2 for torch.float64"):
        GRBM(*(torch.zeros(n, dtype=torch.float64) for n in (2,)), torch.full((2,), -400.0, dtype=torch.float64),
             torch.zeros(2, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    with pytest.raises(ValueError, match="mu must be finite; it has 1 NaN or infinite entries"):
        GRBM(torch.tensor([0.0, float("inf")]), torch.zeros(2), torch.zeros(2, 1), torch.zeros(1))
    # in float64 log_sigma = -50 is representable: the energy is finite (and huge)
    g = GRBM(torch.zeros(2, dtype=torch.float64), torch.full((2,), -50.0, dtype=torch.float64),
             torch.zeros(2, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    e = g.energy(torch.ones(1, 2, dtype=torch.float64))
    assert torch.isfinite(e).all() and e.item() == pytest.approx(math.exp(100) - math.log(2))


def test_weight_annealed_ais_matches_exact_log_partition(device):
    g = random_grbm(3, 8, device, seed=4)
    exact = g.exact_log_partition()
    log_z, se = g.ais_log_partition(num_chains=200, num_steps=300)
    # unbiased Z estimate, delta-method SE; 3 SE tolerance
    assert se < 0.1
    assert (log_z - exact).abs() < 3 * se, (log_z, exact, se)
    with pytest.raises(ValueError, match="num_chains"):
        g.ais_log_partition(num_chains=1)
