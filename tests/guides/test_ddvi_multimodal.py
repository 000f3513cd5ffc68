"""DDVI's headline claim with its defaults: on an amortized four-mode posterior, the diffusion guide exactly
as the README writes it (``DiffusionGuide(model, latent="z", observed="x")`` with ``DDVI_ELBO()`` in a plain
SVI loop, Adam at 2e-3) has a higher ELBO than the Gaussian guide and puts mass on every mode.

Problem ``four_modes`` of :mod:`pyro_diffvi.datasets.posteriors`: z ~ (1/4) sum_k N(c_k, 0.5^2 I) with
c_k = (+-1.5, +-1.5), x ~ N(z, 2^2 I), 64 observations simulated from the model; exact log p(x) in closed
form and exact mode masses (both checked against quadrature in tests/datasets/test_posteriors.py).
"""

import pyro
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_diffvi.datasets.posteriors import elbo_gap, make_problem, mode_mass_ratio
from pyro_diffvi.guides import DiffusionGuide, GaussianGuide
from pyro_diffvi.infer import DDVI_ELBO
from pyro_diffvi.util import set_seed

STEPS = 2000


def train(problem, guide, loss, seed: int = 0):
    set_seed(seed)
    svi = SVI(problem.model, guide, Adam({"lr": 2e-3}), loss)
    for _ in range(STEPS):
        svi.step(problem.x)
    return guide


def test_diffusion_guide_defaults_beat_the_gaussian_guide_on_four_modes():
    problem = make_problem("four_modes")
    gaussian = train(problem, GaussianGuide(problem.model, latent="z", observed="x"), Trace_ELBO())
    pyro.clear_param_store()
    ddvi = train(problem, DiffusionGuide(problem.model, latent="z", observed="x"), DDVI_ELBO())

    gauss_gap, gauss_se = elbo_gap(problem, gaussian, num_particles=512)
    ddvi_gap, ddvi_se = elbo_gap(problem, ddvi, num_particles=512)
    # both are bounds: not above log p(x) beyond 3 Monte-Carlo standard errors
    assert gauss_gap < 3 * gauss_se and ddvi_gap < 3 * ddvi_se
    # MEASURED (2000 steps, SE <= 0.01 each): this test's run -0.61 (DDVI) vs -0.72 (Gaussian);
    # benchmarks/posteriors.py seeds 0 and 1: -0.32 vs -0.73 and -0.32 vs -0.66. The margin varies with
    # the seed (0.11 to 0.41 nats); 0.05 nats is 6 SE below the smallest measured margin.
    assert ddvi_gap - gauss_gap > 0.05, (ddvi_gap, gauss_gap)
    # every mode with exact pooled mass >= 2% gets at least half of it (measured: 0.90 of it for DDVI,
    # 0.29 for the Gaussian guide); binomial SE of a pooled mass ~0.2 from 512 x 64 draws is ~0.002
    ddvi_ratio, _ = mode_mass_ratio(problem, ddvi, num_particles=512)
    gauss_ratio, _ = mode_mass_ratio(problem, gaussian, num_particles=512)
    assert ddvi_ratio > 0.5 > gauss_ratio, (ddvi_ratio, gauss_ratio)
