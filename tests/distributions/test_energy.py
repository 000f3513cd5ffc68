import math

import pytest
import torch
from torch import nn

from pyro_diffvi.distributions import EnergyDistribution
from pyro_diffvi.priors import EnergyPrior
from pyro_diffvi.samplers import LangevinSampler


def quadratic(z):
    return 0.5 * ((z - 1.0) / 0.5).pow(2).sum(-1)


def test_log_prob_is_unnormalized_minus_energy(device):
    d = EnergyDistribution(quadratic, (2,))
    assert d.normalized is False and d.batch_shape == () and d.event_shape == (2,)
    z = torch.tensor([[1.0, 1.0], [0.0, 2.0]], device=device)
    # hand-computed: 0 and 0.5 * (4 + 4)
    torch.testing.assert_close(d.log_prob(z), torch.tensor([0.0, -4.0], device=device))
    torch.testing.assert_close(d.energy(z), torch.tensor([0.0, 4.0], device=device))


def test_energy_output_with_trailing_singleton_is_squeezed(device):
    net = nn.Linear(3, 1).to(device)
    d = EnergyDistribution(net, (3,))
    z = torch.randn(4, 5, 3, device=device)
    torch.testing.assert_close(d.energy(z), net(z).squeeze(-1))


def test_langevin_sampler_mala_recovers_gaussian_mean(device):
    # exact target N(1, 0.25 I); MALA is unbiased, tolerance 4 SE of independent chains
    sampler = LangevinSampler(num_steps=200, step_size=0.05, metropolis=True)
    d = EnergyDistribution(quadratic, (2,), sampler=sampler, dtype=torch.float64, device=device)
    z = d.expand((2000,)).sample()
    assert z.shape == (2000, 2) and z.dtype == torch.float64 and z.device.type == device.type
    assert ((z.mean(0) - 1.0).abs() < 4 * 0.5 / math.sqrt(2000)).all()
    se_var = (z - z.mean(0)).pow(2).std(0) / math.sqrt(2000)
    assert ((z.var(0) - 0.25).abs() < 4 * se_var).all()


def test_expand_and_sample_shapes(device):
    d = EnergyDistribution(quadratic, (2,), sampler=LangevinSampler(num_steps=2), device=device)
    e = d.expand((3, 4))
    assert e.batch_shape == (3, 4) and e.sample((5,)).shape == (5, 3, 4, 2)
    assert e.log_prob(torch.zeros(5, 3, 4, 2, device=device)).shape == (5, 3, 4)
    assert d.sample().shape == (2,)


def test_bad_arguments(device):
    with pytest.raises(TypeError, match="energy_fn"):
        EnergyDistribution(3.0, (2,))
    with pytest.raises(ValueError, match="event_shape"):
        EnergyDistribution(quadratic, ())
    d = EnergyDistribution(quadratic, (2,))
    with pytest.raises(ValueError, match="trailing shape|event_shape"):
        d.energy(torch.zeros(4, 3, device=device))
    with pytest.raises(ValueError, match="energy_fn returned"):
        EnergyDistribution(lambda z: z, (2,)).energy(torch.zeros(4, 2, device=device))
    with pytest.raises(ValueError, match="step_size"):
        LangevinSampler(step_size=-1.0)
    with pytest.raises(ValueError, match="noise_scale"):
        LangevinSampler(metropolis=True, noise_scale=0.5)
    with pytest.raises(TypeError, match="energy_fn"):
        EnergyPrior(quadratic, (2,))
    with pytest.raises(ValueError, match="name must be a non-empty str"):
        EnergyPrior(nn.Linear(2, 1), (2,), name="")
