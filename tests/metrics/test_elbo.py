import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import TorchDistribution, constraints

from pyro_diffvi.metrics import elbo, iwae
from pyro_diffvi.util import set_seed
from tests.metrics.linear_gaussian import LinearGaussian

N = 40


@pytest.mark.parametrize("num_particles", [1, 5, 64])
def test_iwae_exact_posterior_equals_log_evidence(lg, num_particles):
    x = lg.data(N)
    est = iwae(lg.model, lg.exact_guide, x, num_particles=num_particles, max_particles_per_chunk=7)
    expected = lg.log_evidence(x).cpu()
    # exact posterior: every weight equals p(x_n), so the bound is log p(x_n) for any K
    assert est.values.shape == (N,) and est.values.device == x.device
    assert torch.allclose(est.values.cpu(), expected, atol=1e-10, rtol=0)
    assert est.mean == pytest.approx(expected.mean().item(), abs=1e-10)
    assert est.stderr == pytest.approx(expected.std().item() / math.sqrt(N), rel=1e-8)
    assert est.per_point and est.num_data == N and est.num_particles == num_particles


def test_elbo_of_wrong_guide_matches_closed_form(lg):
    x = lg.data(N)
    expected = lg.wrong_guide_elbo(x).mean().item()
    est = elbo(lg.model, lg.wrong_guide, x, num_particles=200, max_particles_per_chunk=64)
    # a stochastic estimate: within 3 Monte-Carlo standard errors of the closed form
    assert abs(est.mean - expected) < 3 * est.stderr
    assert est.stderr < 0.05
    # and a strict lower bound on the mean log evidence (gap = mean KL(q || posterior))
    assert expected < lg.log_evidence(x).mean().item() - 0.1
    assert est.mean < lg.log_evidence(x).mean().item()


def test_iwae_tightens_between_elbo_and_log_evidence(lg):
    x = lg.data(N)
    log_px = lg.log_evidence(x).mean().item()
    bound = iwae(lg.model, lg.wrong_guide, x, num_particles=256).mean
    # E[IWAE_K] increases from the ELBO (K = 1) to log p(x); with K = 256 the bias and the Monte-Carlo
    # noise of the batch mean are both ~0.01 nats here (measured over seeds), far below the 0.9-nat gap
    assert bound > lg.wrong_guide_elbo(x).mean().item() + 0.8
    assert abs(bound - log_px) < 0.05


def test_elbo_stderr_matches_spread_over_seeds(lg):
    x = lg.data(N)
    means, stderrs = [], []
    for seed in range(40):
        set_seed(seed)
        est = elbo(lg.model, lg.wrong_guide, x, num_particles=8)
        means.append(est.mean)
        stderrs.append(est.stderr)
    spread = torch.tensor(means).std().item()
    reported = sum(stderrs) / len(stderrs)
    # the sd of 40 means has relative standard error ~ 1/sqrt(78) ~ 0.11: allow a factor ~1.6
    assert 0.6 < spread / reported < 1.6
    # ground truth for the mean as well
    assert abs(sum(means) / len(means) - lg.wrong_guide_elbo(x).mean().item()) < 4 * reported / math.sqrt(40)


def test_elbo_single_particle_has_nan_stderr(lg):
    est = elbo(lg.model, lg.wrong_guide, lg.data(N), num_particles=1)
    assert math.isnan(est.stderr) and math.isfinite(est.mean)


def test_global_latent_gives_total_per_data_point():
    tau, sigma = 2.0, 0.7
    x = 1.5 + sigma * torch.randn(N, dtype=torch.float64)

    def model(x):
        mu = pyro.sample("mu", dist.Normal(torch.zeros((), dtype=x.dtype), tau))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, sigma), obs=x)

    precision = 1 / tau**2 + N / sigma**2
    post_mean = (x.sum() / sigma**2) / precision

    def guide(x):
        pyro.sample("mu", dist.Normal(post_mean, precision**-0.5))

    cov = sigma**2 * torch.eye(N, dtype=x.dtype) + tau**2
    log_px = dist.MultivariateNormal(torch.zeros(N, dtype=x.dtype), covariance_matrix=cov).log_prob(x)
    est = iwae(model, guide, x, num_particles=4)
    assert not est.per_point and math.isnan(est.stderr)
    assert est.mean == pytest.approx(log_px.item() / N, abs=1e-10)
    est = elbo(model, guide, x, num_particles=4)
    assert est.mean == pytest.approx(log_px.item() / N, abs=1e-10)
    assert est.stderr == pytest.approx(0.0, abs=1e-10)


class CachedMultivariateNormal(TorchDistribution):
    """A guide distribution whose log density is available only for the value it just drew."""

    arg_constraints = {"loc": constraints.real_vector, "scale_tril": constraints.lower_cholesky}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc, scale_tril, validate_args=None):
        self.loc, self.scale_tril = loc, scale_tril
        self._cache = None
        batch_shape = torch.broadcast_shapes(loc.shape[:-1], scale_tril.shape[:-2])
        super().__init__(batch_shape, loc.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return CachedMultivariateNormal(
            self.loc.expand(batch_shape + self.event_shape),
            self.scale_tril.expand(batch_shape + self.event_shape + self.event_shape),
        )

    def rsample(self, sample_shape=torch.Size()):
        base = dist.MultivariateNormal(self.loc, scale_tril=self.scale_tril)
        value = base.rsample(sample_shape)
        self._cache = (value, base.log_prob(value))
        return value

    def log_prob(self, value):
        if self._cache is None or value is not self._cache[0]:
            raise ValueError("log_prob is only known for the value just drawn")
        return self._cache[1]


def test_guide_with_log_density_only_for_own_samples(lg):
    x = lg.data(N)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", CachedMultivariateNormal(lg.posterior_mean(x), lg.post_tril))

    est = iwae(lg.model, guide, x, num_particles=6, max_particles_per_chunk=4)
    assert torch.allclose(est.values, lg.log_evidence(x), atol=1e-10, rtol=0)


def test_float32_model(lg):
    x = lg.data(N)
    lg32 = LinearGaussian(dtype=torch.float32, device=x.device)
    est = iwae(lg32.model, lg32.exact_guide, x.float(), num_particles=8)
    assert est.values.dtype == torch.float64
    assert torch.allclose(est.values, lg.log_evidence(x), atol=1e-4, rtol=0)


