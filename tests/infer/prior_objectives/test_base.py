"""The prior objectives' common part: the energy with its parameters held fixed, and the checks of the input."""


import pytest
import torch

from pyro_diffvi.infer.prior_objectives import (
    SlicedScoreMatchingLoss,
    energy_with_detached_parameters,
)
from tests.infer.prior_objectives._shared import QuadraticEnergy


def test_energy_with_detached_parameters_has_no_parameter_gradient():
    energy = QuadraticEnergy()
    with torch.no_grad():
        energy.mean.fill_(0.3)
    z = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    out = energy_with_detached_parameters(energy, z)
    assert torch.allclose(out, energy(z))
    gz, gm, gr = torch.autograd.grad(out.sum(), [z, energy.mean, energy.raw])
    assert torch.allclose(gz, torch.autograd.grad(energy(z).sum(), z)[0])
    assert gm.abs().max() == 0 and gr.abs().max() == 0


def test_objectives_reject_bad_input():
    energy = QuadraticEnergy()
    with pytest.raises(ValueError, match="num_projections"):
        SlicedScoreMatchingLoss(num_projections=0)
    with pytest.raises(ValueError, match="projection"):
        SlicedScoreMatchingLoss(projection="sphere")
    with pytest.raises(ValueError, match=r"z must have shape .* at least 1 event dimension\(s\), got \(3,\)"):
        SlicedScoreMatchingLoss().loss(energy, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-finite"):
        SlicedScoreMatchingLoss().loss(energy, torch.full((3, 2), float("nan"), dtype=torch.float64))
    with pytest.raises(TypeError, match="energy"):
        SlicedScoreMatchingLoss().loss(42, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="energy must map"):
        SlicedScoreMatchingLoss().loss(lambda z: z, torch.zeros(3, 2))
