"""The pieces the diffusion-generator trainers share: the process in the network's dtype, the batch checks and the
guarded update."""

import warnings

import pytest
import torch
from torch import nn

from pyro_diffvi.errors import DivergenceError
from pyro_diffvi.infer.generator_training import check_batch, guarded_update


def test_check_batch_names_what_is_wrong():
    like = torch.zeros(1)
    assert check_batch("x", torch.ones(3, 2), 2, like).shape == (3, 2)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\) \(the generator's dim\), got \(3, 4\)"):
        check_batch("x", torch.ones(3, 4), 2, like)
    with pytest.raises(ValueError, match=r"got \(0, 2\)"):
        check_batch("x", torch.ones(0, 2), 2, like)
    with pytest.raises(TypeError, match="floating-point torch.Tensor"):
        check_batch("x", torch.ones(3, 2, dtype=torch.long), 2, like)
    with pytest.raises(ValueError, match="torch.float64 tensor on cpu but the networks' parameters are torch.float32"):
        check_batch("x", torch.ones(3, 2, dtype=torch.float64), 2, like)
    with pytest.raises(ValueError, match=r"x contains 1 non-finite value"):
        check_batch("x", torch.tensor([[0.0, float("inf")]]), 2, like)


def quadratic(weight: torch.Tensor, target: float) -> tuple[torch.Tensor, dict]:
    loss = (weight - target).pow(2).sum()
    return loss, {"quadratic": loss}


def test_guarded_update_applies_a_finite_step_and_refuses_a_nonfinite_one():
    net = nn.Linear(1, 1, bias=False)
    nn.init.ones_(net.weight)
    opt = torch.optim.SGD(net.parameters(), lr=0.25)
    params = dict(net.named_parameters())
    assert guarded_update("Objective", *quadratic(net.weight, 3.0), opt, params, "raise")
    assert net.weight.item() == pytest.approx(2.0)  # 1 - 0.25 * 2 * (1 - 3)
    before = net.weight.detach().clone()
    with pytest.raises(DivergenceError, match=r"Objective: non-finite loss term\(s\) \['quadratic'\]"):
        guarded_update("Objective", *quadratic(net.weight, float("nan")), opt, params, "raise")
    # a finite loss with an infinite gradient: caught after the backward pass, before the step
    with torch.no_grad():
        net.weight.zero_()
    loss = net.weight.abs().sqrt().sum()  # d sqrt|w| / dw = inf at w = 0, value 0
    with pytest.raises(DivergenceError, match="non-finite gradient"):
        guarded_update("Objective", loss, {"sqrt": loss}, opt, params, "raise")
    with torch.no_grad():
        net.weight.copy_(before)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        applied = guarded_update("Objective", *quadratic(net.weight, float("nan")), opt, params, "skip")
    assert not applied and torch.equal(net.weight.detach(), before) and net.weight.grad is None
    assert "the step was skipped" in str(caught[0].message)


def test_the_process_follows_the_networks_dtype():
    from pyro_diffvi.diffusion import vp_beta_schedule
    from pyro_diffvi.infer.generator_training import first_parameter, process_like

    net = nn.Linear(2, 2).double()
    process = process_like(net, 4, "vp")
    assert first_parameter(net) is net.weight and process.betas.dtype == torch.float64
    assert torch.equal(process.betas, vp_beta_schedule(4, dtype=torch.float64))
    assert first_parameter(nn.Identity()) is None
    assert process_like(nn.Identity(), 4, "vp").betas.dtype == torch.get_default_dtype()
    with pytest.raises(ValueError, match="num_steps must be an integer >= 1, got 0"):
        process_like(net, 0, "vp")
