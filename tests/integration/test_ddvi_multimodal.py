"""DDVI's headline claim with its defaults: on an amortized four-mode posterior, the diffusion guide exactly
as the README writes it (``DiffusionGuide(model, latent="z", observed="x")`` with ``DDVI_ELBO()`` in a plain
SVI loop, Adam at 2e-3) puts mass on every mode, where the Gaussian guide cannot, and its ELBO does not
fall behind the Gaussian guide's.

Problem ``four_modes`` of :mod:`pyro_diffvi.datasets.posteriors`: z ~ (1/4) sum_k N(c_k, 0.5^2 I) with
c_k = (+-1.5, +-1.5), x ~ N(z, 2^2 I), 64 observations simulated from the model; exact log p(x) in closed
form and exact mode masses (both checked against quadrature in tests/datasets/posteriors/).
"""

import pyro
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_diffvi.datasets import make_problem
from pyro_diffvi.guides import DiffusionGuide, GaussianGuide
from pyro_diffvi.infer import DDVI_ELBO
from pyro_diffvi.metrics import elbo_gap, mode_mass_ratio
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
    # MEASURED (2000 steps, SE <= 0.01 each) with DDVI_ELBO's default of 8 sleep noise draws: the chain either
    # "takes off" (4 runs of 8 in benchmarks/posteriors.py-style runs: -0.13 to -0.21 against -0.66 to
    # -0.73 for the Gaussian guide, margins 0.49-0.58) or stays on a plateau near the Gaussian guide's bound
    # with every mode covered (this test's run: -0.675 vs -0.718, margin +0.04; the same seed at 3000 steps:
    # -0.712 vs -0.704). So the bound is asserted not to fall behind the Gaussian guide's by more than
    # 0.1 nats (10 SE), and the win is the mode coverage below.
    assert ddvi_gap - gauss_gap > -0.1, (ddvi_gap, gauss_gap)
    # every mode with exact pooled mass >= 2% gets at least half of it (measured: 0.73-0.93 of it for DDVI,
    # 0.29-0.41 for the Gaussian guide); binomial SE of a pooled mass ~0.2 from 512 x 64 draws is ~0.002
    ddvi_ratio, _ = mode_mass_ratio(problem, ddvi, num_particles=512)
    gauss_ratio, _ = mode_mass_ratio(problem, gaussian, num_particles=512)
    assert ddvi_ratio > 0.5 > gauss_ratio, (ddvi_ratio, gauss_ratio)
