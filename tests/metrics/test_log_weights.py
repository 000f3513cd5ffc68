"""Log importance weights: shapes and chunking, the data plate found or named, auxiliary and factor sites,
structure errors."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_diffvi.metrics import elbo, iwae, log_weights

N = 40


def test_log_weights_shape_and_chunking(lg):
    x = lg.data(N)
    lw = log_weights(lg.model, lg.wrong_guide, x, num_particles=10, max_particles_per_chunk=3)
    assert lw.values.shape == (10, N) and lw.per_point and lw.data_plate == "data"
    # draws differ between particles and across chunks
    assert lw.values.std(0).min() > 0


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
