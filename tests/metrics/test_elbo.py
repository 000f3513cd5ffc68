import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import TorchDistribution, constraints

from pyro_diffvi.metrics import combine_estimates, elbo, iwae, log_weights
from pyro_diffvi.util import set_seed
from tests.metrics.linear_gaussian import LinearGaussian

N = 40


@pytest.fixture
def lg(device):
    return LinearGaussian(device=device)


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


def test_log_weights_shape_and_chunking(lg):
    x = lg.data(N)
    lw = log_weights(lg.model, lg.wrong_guide, x, num_particles=10, max_particles_per_chunk=3)
    assert lw.values.shape == (10, N) and lw.per_point and lw.data_plate == "data"
    # draws differ between particles and across chunks
    assert lw.values.std(0).min() > 0


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


def test_nested_plates_need_data_plate_name(lg):
    x = lg.data(N)

    def model(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            loc = x.new_zeros(x.shape[0], 1, lg.dz)
            z = pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))
            with pyro.plate("features", lg.dx, dim=-1):
                pyro.sample("x", dist.Normal((z @ lg.A.T).squeeze(-2) + lg.b, lg.s), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            loc = lg.posterior_mean(x).unsqueeze(-2)
            pyro.sample("z", dist.MultivariateNormal(loc, scale_tril=lg.post_tril))

    with pytest.raises(ValueError, match="ambiguous data plate"):
        iwae(model, guide, x, num_particles=3)
    est = iwae(model, guide, x, num_particles=3, data_plate="data")
    assert torch.allclose(est.values, lg.log_evidence(x), atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="does not contain every observed site"):
        iwae(model, guide, x, num_particles=3, data_plate="nope")


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


def test_refuses_subsampled_plate(lg):
    x = lg.data(N)

    def model(x):
        with pyro.plate("data", x.shape[0], subsample_size=10) as idx:
            z = pyro.sample("z", dist.Normal(x.new_zeros(10, lg.dz), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ lg.A.T + lg.b, lg.s).to_event(1), obs=x[idx])

    def guide(x):
        with pyro.plate("data", x.shape[0], subsample_size=10):
            pyro.sample("z", dist.Normal(x.new_zeros(10, lg.dz), 1.0).to_event(1))

    with pytest.raises(ValueError, match="subsampled"):
        elbo(model, guide, x, num_particles=2)


def test_structure_errors(lg):
    x = lg.data(N)

    def empty_guide(x):
        pass

    with pytest.raises(ValueError, match="not sampled by the guide"):
        elbo(lg.model, empty_guide, x)

    def extra_guide(x):
        lg.exact_guide(x)
        pyro.sample("w", dist.Normal(torch.zeros((), dtype=x.dtype), 1.0))

    with pytest.raises(ValueError, match="do not appear in the model"):
        elbo(lg.model, extra_guide, x)

    def unplated_model(x):
        pyro.sample("x", dist.Normal(torch.zeros_like(x), 1.0).to_event(2), obs=x)

    with pytest.raises(ValueError, match="no vectorized pyro.plate"):
        elbo(unplated_model, empty_guide, x)

    def latent_only(x):
        pyro.sample("z", dist.Normal(torch.zeros((), dtype=x.dtype), 1.0))

    with pytest.raises(ValueError, match="no observed sample site"):
        elbo(latent_only, latent_only, x)

    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="num_particles"):
            iwae(lg.model, lg.exact_guide, x, num_particles=bad)
    with pytest.raises(ValueError, match="max_particles_per_chunk"):
        iwae(lg.model, lg.exact_guide, x, num_particles=4, max_particles_per_chunk=0)


def test_auxiliary_guide_site_enters_weights(lg):
    # q(z, u | x) = N(u; 0, 1) q_exact(z | x) with auxiliary u: log w = log p(x) - log N(u; 0, 1)
    x = lg.data(N)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            u_dist = dist.Normal(x.new_zeros(x.shape[0]), 1.0)
            pyro.sample("u", u_dist, infer={"is_auxiliary": True})
            loc = lg.posterior_mean(x)
            pyro.sample("z", dist.MultivariateNormal(loc, scale_tril=lg.post_tril))

    lw = log_weights(lg.model, guide, x, num_particles=500)
    # E[-log N(u; 0, 1)] = entropy of N(0, 1); sd of -log N(u;0,1) is 1/sqrt(2), 500*N draws
    gap = (lw.values - lg.log_evidence(x)).mean().item()
    assert gap == pytest.approx(0.5 * math.log(2 * math.pi * math.e), abs=4 * 0.7071 / math.sqrt(500 * N))


def test_combine_estimates_over_batches(lg):
    x = lg.data(N)
    halves = [x[:15], x[15:]]
    full = iwae(lg.model, lg.exact_guide, x, num_particles=4)
    combined = combine_estimates([iwae(lg.model, lg.exact_guide, h, num_particles=4) for h in halves])
    # across-data standard errors are recomputed from the concatenated per-point bounds
    assert combined.num_data == N and combined.stderr_kind == "data"
    assert combined.mean == pytest.approx(full.mean, abs=1e-10)
    assert combined.stderr == pytest.approx(full.stderr, rel=1e-8)
    parts = [elbo(lg.model, lg.wrong_guide, h, num_particles=100) for h in halves]
    combined = combine_estimates(parts)
    assert combined.stderr == pytest.approx(math.hypot(15 * parts[0].stderr, 25 * parts[1].stderr) / N)
    # Monte-Carlo estimate vs closed form, within 3 standard errors
    assert abs(combined.mean - lg.wrong_guide_elbo(x).mean().item()) < 3 * combined.stderr
    with pytest.raises(ValueError, match="share stderr_kind"):
        combine_estimates([parts[0], full])
    with pytest.raises(TypeError, match="non-empty"):
        combine_estimates([])


def test_factor_sites(lg):
    x = lg.data(N)

    def model_with_local_factor(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], lg.dz), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ lg.A.T + lg.b, lg.s).to_event(1), obs=x)
            pyro.factor("bonus", x.new_full((x.shape[0],), 0.25))

    est = iwae(model_with_local_factor, lg.exact_guide, x, num_particles=3)
    assert est.per_point
    assert torch.allclose(est.values, lg.log_evidence(x) + 0.25, atol=1e-10, rtol=0)

    def model_with_global_factor(x):
        lg.model(x)
        pyro.factor("penalty", x.new_tensor(-2.0))

    # a factor outside the data plate is a global term: only the total per data point is defined
    est = iwae(model_with_global_factor, lg.exact_guide, x, num_particles=3)
    assert not est.per_point
    assert est.mean == pytest.approx((lg.log_evidence(x).sum().item() - 2.0) / N, abs=1e-10)
