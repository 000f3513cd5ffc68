"""EncoderGuide: a deterministic code per observation, real-valued latents only."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_diffvi.guides import EncoderGuide


def model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ torch.ones(2, 3), 0.5).to_event(1), obs=x)


def test_codes_are_deterministic_point_masses():
    guide = EncoderGuide(model, "z", "x", encoder_hidden_dims=(8,))
    x = torch.randn(4, 3)
    trace = pyro.poutine.trace(guide).get_trace(x)
    assert isinstance(trace.nodes["z"]["fn"], dist.Delta)
    assert torch.equal(guide(x)["z"], guide(x)["z"])
    assert torch.equal(guide.encode(x), guide(x)["z"])


def test_encode_needs_a_set_up_guide_and_a_real_latent():
    guide = EncoderGuide(model, "z", "x")
    with pytest.raises(RuntimeError, match="call the guide once"):
        guide.encode(torch.randn(2, 3))

    def positive(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.LogNormal(torch.zeros(1), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)

    with pytest.raises(ValueError, match="constrained"):
        EncoderGuide(positive, "z", "x", name="positive")(torch.randn(3, 1))
