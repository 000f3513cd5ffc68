"""TimeDependentGaussianGuide: at t = 0 a GaussianGuide of the same encoder; q_t at other times; errors."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyro_diffvi.diffusion import ScoreModel
from pyro_diffvi.distributions import DiffusionLikelihood
from pyro_diffvi.guides import GaussianGuide, TimeDependentGaussianGuide
from pyro_diffvi.nn import GaussianTimeEncoder


def make(latent="z"):
    score_model = ScoreModel((6,), network_options={"global_hidden_dims": [8]})
    encoder = GaussianTimeEncoder(6, 2, hidden_dims=(8,))

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", DiffusionLikelihood(score_model, z, encoder=encoder), obs=x)

    return model, encoder, TimeDependentGaussianGuide(model, latent, "x", encoder=encoder)


def test_at_time_zero_it_is_the_gaussian_guide_of_its_encoder():
    pyro.clear_param_store()
    model, encoder, guide = make()
    x = torch.randn(5, 6)
    pyro.set_rng_seed(0)
    z = guide(x)["z"]
    pyro.set_rng_seed(0)
    plain = GaussianGuide(model, "z", "x", encoder=encoder, name="plain")
    assert torch.equal(plain(x)["z"], z)
    loc, scale = encoder(x)
    q = guide.time_posterior(x, torch.zeros(5))
    assert torch.allclose(q.mean, loc) and torch.allclose(q.stddev, scale)
    assert not torch.allclose(guide.time_posterior(x, torch.full((5,), 0.5)).mean, loc)
    assert torch.isfinite(torch.tensor(Trace_ELBO().loss(model, guide, x)))  # the likelihood's bound
    assert {n for n in pyro.get_param_store().keys() if n.startswith("TimeDependentGaussianGuide")}


def test_errors():
    pyro.clear_param_store()
    model, encoder, guide = make(latent="w")
    with pytest.raises(ValueError, match="latent site 'w' is not a sample site of the model"):
        guide(torch.randn(3, 6))
    with pytest.raises(TypeError, match="time-dependent encoder module"):
        TimeDependentGaussianGuide(model, "z", "x", encoder=None)
    with pytest.raises(TypeError, match="belongs to the encoder"):
        TimeDependentGaussianGuide(model, "z", "x", encoder=encoder, encoder_hidden_dims=(4,))
    with pytest.raises(ValueError, match="one latent site"):
        TimeDependentGaussianGuide(model, ("z", "w"), "x", encoder=encoder)
    pyro.clear_param_store()
    _, _, fresh = make()
    with pytest.raises(RuntimeError, match="call the guide once"):
        fresh.time_posterior(torch.randn(3, 6), torch.zeros(3))
