"""DDVI's headline claim on a four-mode posterior: the diffusion guide, trained by wake-sleep, has a
higher ELBO than any Gaussian guide and puts the right mass on every mode (exact log p(x) and mode
masses by 2-D quadrature).

Model: z ~ (1/4) sum_k N(c_k, 0.5^2 I) with c_k = (+-1.5, +-1.5), x ~ N(z, 2^2 I), one observation
x0. The posterior p(z | x0) has four well-separated, nearly equal modes, so a Gaussian q (mode
seeking) reaches about log p(x0) - log 4 at best, while a diffusion posterior can cover all four.
"""

import math

import numpy as np
import torch

import pyro
import pyro.distributions as dist
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_diffvi.guides import DiffusionGuide, GaussianGuide
from pyro_diffvi.infer import DDVI_ELBO
from pyro_diffvi.metrics import elbo as elbo_estimate
from pyro_diffvi.priors.gaussian_mixtures import IsotropicGaussianMixture

CENTERS = 1.5 * torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
PRIOR_SCALE = 0.5
NOISE = 2.0
X0 = torch.tensor([0.3, -0.2])
PRIOR = IsotropicGaussianMixture(CENTERS, PRIOR_SCALE)
BATCH = 64  # copies of x0 per step (particles of the wake term; the sleep term draws as many (x, z))


def model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", PRIOR)
        pyro.sample("x", dist.Normal(z, NOISE).to_event(1), obs=x)


def log_joint(z: torch.Tensor, x: torch.Tensor = X0) -> torch.Tensor:
    return PRIOR.log_prob(z) + dist.Normal(z, NOISE).log_prob(x).sum(-1)


def quadrant(z: torch.Tensor) -> torch.Tensor:
    """Index of the mode (quadrant) of each point, in the order of CENTERS."""
    return 2 * (z[..., 0] < 0).long() + (z[..., 1] < 0).long()


def exact_log_px_and_mode_masses(half_width: float = 7.0, n: int = 700):
    """log p(x0) and the posterior mass of each quadrant by the 2-D midpoint rule (step 0.02)."""
    h = 2 * half_width / n
    g = -half_width + h * (torch.arange(n, dtype=torch.float64) + 0.5)  # no node on the axes
    z = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    lj = log_joint(z.float()).double()
    log_px = torch.logsumexp(lj, 0) + 2 * math.log(h)
    weights = torch.softmax(lj, 0)
    masses = torch.zeros(4, dtype=torch.float64).index_add_(0, quadrant(z), weights)
    return log_px.item(), masses


def best_gaussian_elbo() -> float:
    r"""max over full-covariance Gaussians q = N(m, L L^T) of E_q[log p(x0, z)] + H(q).

    The expectation is a 24 x 24 Gauss-Hermite product rule (deterministic), maximized by L-BFGS from
    each mode centre and the origin. Every Gaussian guide's ELBO at x0 (amortized, diagonal) is the
    ELBO of one such q, hence at most this value (up to the optimizer finding the maximum).
    """
    nodes, weights = np.polynomial.hermite_e.hermegauss(24)
    u1, u2 = torch.meshgrid(torch.tensor(nodes), torch.tensor(nodes), indexing="ij")
    u = torch.stack([u1, u2], -1).reshape(-1, 2)
    w = (torch.tensor(weights)[:, None] * torch.tensor(weights)[None, :]).reshape(-1) / (2 * math.pi)
    entropy_const = 1 + math.log(2 * math.pi)

    def elbo(params):
        m, log_d, off = params[:2], params[2:4], params[4]
        L = torch.stack([torch.stack([log_d[0].exp(), off * 0]), torch.stack([off, log_d[1].exp()])])
        z = m + u @ L.T
        return (w * log_joint(z, X0.double())).sum() + entropy_const + log_d.sum()

    best = -math.inf
    for start in torch.cat([CENTERS, torch.zeros(1, 2)]).double():
        params = torch.cat([start, torch.full((2,), math.log(0.5)), torch.zeros(1)]).double().requires_grad_()
        opt = torch.optim.LBFGS([params], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = -elbo(params)
            loss.backward()
            return loss

        opt.step(closure)
        best = max(best, elbo(params).item())
    return best


def train_gaussian_guide(num_steps: int = 1000):
    guide = GaussianGuide(model, "z", "x", hidden_dims=(32, 32))
    svi = SVI(model, guide, Adam({"lr": 1e-2}), Trace_ELBO())
    x = X0.expand(BATCH, 2)
    for _ in range(num_steps):
        svi.step(x)
    return guide


def train_diffusion_guide(num_steps: int = 2000):
    """DDVI exactly as the README writes it: ``DiffusionGuide`` and ``DDVI_ELBO()`` with their defaults,
    in a plain SVI loop with Adam at an ordinary learning rate."""
    guide = DiffusionGuide(model, "z", "x")
    svi = SVI(model, guide, Adam({"lr": 2e-3}), DDVI_ELBO())
    x = X0.expand(BATCH, 2)
    for _ in range(num_steps):
        svi.step(x)
    return guide


def fit_and_measure(seed: int = 0, num_eval: int = 4000) -> dict:
    """Train both guides from scratch with ``seed`` and measure their ELBOs and mode masses at x0."""
    # Fresh guides need a fresh param store: with the previous seed's parameters still stored under the
    # same names, SVI would step those and leave the new guides untrained (DDVI_ELBO now raises on it).
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    gaussian = train_gaussian_guide()
    diffusion = train_diffusion_guide()
    x0 = X0.view(1, 2)
    gauss_elbo = elbo_estimate(model, gaussian, x0, num_particles=num_eval)
    ddvi_elbo = elbo_estimate(model, diffusion, x0, num_particles=num_eval)
    with torch.no_grad():
        z = diffusion(X0.expand(num_eval, 2))["z"]
        z_gauss = gaussian(X0.expand(num_eval, 2))["z"]
    masses = torch.bincount(quadrant(z), minlength=4).double() / num_eval
    gauss_masses = torch.bincount(quadrant(z_gauss), minlength=4).double() / num_eval
    return dict(gauss=gauss_elbo, ddvi=ddvi_elbo, masses=masses, gauss_masses=gauss_masses)


def test_diffusion_guide_beats_gaussian_guide_on_four_modes():
    log_px, exact_masses = exact_log_px_and_mode_masses()
    # quadrature against the closed form p(x) = (1/4) sum_k N(x; c_k, (0.5^2 + 2^2) I)
    closed = torch.logsumexp(dist.Normal(CENTERS, math.hypot(PRIOR_SCALE, NOISE)).log_prob(X0).sum(-1), 0)
    assert abs(log_px - (closed.item() - math.log(4))) < 1e-6
    best_gauss = best_gaussian_elbo()
    assert best_gauss < log_px - 1.0  # the Gaussian's gap is about log 4 = 1.39 (measured 1.37)

    r = fit_and_measure(seed=0)
    gauss, ddvi = r["gauss"], r["ddvi"]
    # both are ELBOs: below log p(x0) up to 3 Monte-Carlo standard errors
    assert gauss.mean < log_px + 3 * gauss.stderr
    assert ddvi.mean < log_px + 3 * ddvi.stderr
    # the trained Gaussian guide is one Gaussian: not above the best Gaussian's ELBO
    assert gauss.mean < best_gauss + 3 * gauss.stderr
    # headline: DDVI's ELBO exceeds the best Gaussian ELBO (hence every Gaussian guide's) by a clear
    # margin; measured margin ~0.9 nats with SE ~0.03, so 0.5 nats is > 10 SE below it
    assert ddvi.mean - 3 * ddvi.stderr > best_gauss + 0.5
    assert ddvi.mean - gauss.mean > 0.5
    # every mode gets its posterior mass: binomial SE sqrt(0.25 * 0.75 / 4000) = 0.007; the measured
    # errors over seeds 0-5 are up to 0.060, the bound 0.08 still fails a chain missing a mode
    assert (r["masses"] - exact_masses).abs().max() < 0.08, (r["masses"], exact_masses)
    assert (r["masses"] > 0.5 * exact_masses).all()
