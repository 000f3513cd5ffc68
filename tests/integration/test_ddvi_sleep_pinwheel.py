"""Sleep-only DDVI training against a fixed Pinwheel prior: the reverse chain learns to sample the prior.

The sleep term of DDVI_ELBO (Eq. 9, simplified wake-sleep: z ~ p(z), unconditional denoiser) is a
denoising loss whose minimizer makes the reverse chain, started from y_T ~ N(0, I), sample p(z).
Ground truth: exact prior samples and the Pinwheel's exact log density.
"""


import pyro
import pyro.distributions as dist
import torch

from pyro_diffvi.diffusion import cosine_beta_schedule
from pyro_diffvi.distributions import DiffusionPosterior
from pyro_diffvi.guides import DiffusionGuide
from pyro_diffvi.infer import DDVI_ELBO
from pyro_diffvi.metrics import mmd2
from pyro_diffvi.priors import Pinwheel

# Five arms of tangential width 0.1 at unit radius. The default ten arms of width 0.05 need far more
# training than a unit test has: after 3000 steps the chain still draws a featureless disc (measured
# MMD^2 0.017 vs 0.056 for a moment-matched Gaussian, 39% of draws in the prior's 95% region).
PRIOR = Pinwheel(num_components=5, tangential_scale=0.1)
NUM_STEPS = 50  # sleep training costs one denoiser call per datum whatever T; only sampling runs T steps
# kernel bandwidths for a unit-radius prior with arms 0.1 wide (the DDVI defaults 2..80 are for a
# latent scale where the whole pinwheel is a single point)
SIGMAS = (0.05, 0.1, 0.2, 0.5, 1.0)


def model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", PRIOR)
        pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)


def reverse_chain_samples(guide: DiffusionGuide, n: int) -> torch.Tensor:
    """z = y_0 of the reverse chain started at y_T ~ N(0, I) (abar_T = 0.001, so r(y_T) ~ N(0, I))."""
    with torch.no_grad():
        q = DiffusionPosterior(torch.zeros(n, 2), torch.ones(n, 2), guide.denoisers[0], guide.process,
                               variance="posterior")
        return q.sample()


def train_sleep_only(guide: DiffusionGuide, x: torch.Tensor, num_steps: int = 3000) -> None:
    elbo = DDVI_ELBO(sleep="simplified")
    optim = torch.optim.Adam(guide.denoisers.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optim, num_steps)
    for _ in range(num_steps):
        optim.zero_grad()
        (elbo.sleep_term(model, guide, x) / x.shape[0]).backward()
        optim.step()
        schedule.step()


def measure(n: int = 2000) -> dict:
    """Train the chain by the sleep term alone; return its sample-quality figures and the baselines'."""
    # cosine betas clipped at 0.5: the default clip 0.999 makes the first reverse step multiply y_T by
    # 1/sqrt(1 - 0.999) = 32, amplifying the noise predictor's error at t = T
    schedule = cosine_beta_schedule(NUM_STEPS, max_beta=0.5)
    guide = DiffusionGuide(
        model,
        "z",
        "x",
        num_steps=NUM_STEPS,
        schedule=schedule,
        variance="posterior",
        conditional=False,
        standardize=False,
        encoder_hidden_dims=(8,),
        denoiser_hidden_dims=(128, 128, 128),
    )
    x = torch.zeros(512, 2)  # observations are unused by the simplified sleep term
    guide(x)
    untrained = reverse_chain_samples(guide, n)
    train_sleep_only(guide, x)
    z = reverse_chain_samples(guide, n)
    reference, reference2 = PRIOR.sample((n,)), PRIOR.sample((n,))
    blob = dist.MultivariateNormal(reference.mean(0), torch.cov(reference.T)).sample((n,))
    log_p = PRIOR.log_prob
    threshold = log_p(reference).quantile(0.05)  # boundary of the prior's 95% highest-density region
    return {
        "mmd2": {name: mmd2(s, reference, sigmas=SIGMAS).item()
                 for name, s in (("chain", z), ("exact", reference2), ("gaussian", blob), ("untrained", untrained))},
        "in_hdr95": {name: (log_p(s) > threshold).float().mean().item()
                     for name, s in (("chain", z), ("exact", reference2), ("gaussian", blob))},
        "log_density_gap": log_p(reference).mean().item() - log_p(z).mean().item(),
    }


def test_sleep_only_chain_samples_the_pinwheel_prior():
    r = measure()
    mmd, hdr = r["mmd2"], r["in_hdr95"]
    # MMD^2 (unbiased): two exact sample sets ~0.001 (its null spread), moment-matched Gaussian ~0.1,
    # untrained chain ~0.7; trained chain measured 0.005 (seed 0)
    assert abs(mmd["exact"]) < 0.005
    assert mmd["chain"] < 0.02
    assert mmd["chain"] < 0.25 * mmd["gaussian"]
    assert mmd["chain"] < 0.05 * mmd["untrained"]
    # density test: share of draws inside the prior's 95% highest-density region. Exact draws: 0.95;
    # Gaussian: ~0.36; trained chain measured 0.83 (binomial SE 0.008). The last reverse step adds
    # noise of std sqrt(clipped tilde-beta_1) = 0.034, a third of the arms' width.
    assert abs(hdr["exact"] - 0.95) < 0.02
    assert hdr["chain"] > 0.7
    assert hdr["gaussian"] < hdr["chain"] - 0.2
    # mean prior log density of chain draws vs exact draws (SE of each mean ~0.03); measured gap 0.9
    assert r["log_density_gap"] < 1.5, r["log_density_gap"]
