"""NoiseFreeEBMLoss (Eq. 5.1 with noise-free negatives, plus Eq. 5.14) and GradientFlowNLLLoss (Eq. 5.7) against
gradients derived by hand for E_theta(x) = theta |x|^2 / 2, whose dynamics are linear in x."""

import math

import pytest
import torch

from pyro_diffvi.infer import GradientFlowNLLLoss, NoiseFreeEBMLoss
from pyro_diffvi.samplers import NoiseFreeSampler

D64 = torch.float64


def scaled_quadratic(theta):
    return lambda x: 0.5 * theta * x.pow(2).sum(-1)


@pytest.mark.parametrize("generator_weight", [0.0, 1.0])
def test_contrastive_gradient_and_generator_loss_match_the_hand_derivation(generator_weight):
    # Euler dynamics x_K = (1 - theta h)^K x0 =: c x0. Eq. 5.1's surrogate: mean E(x) - mean E(sg[x_K]), so
    # d/dtheta = mean |x|^2/2 - mean |x_K|^2/2 (no gradient through the sampler). Eq. 5.14 adds
    # E_sg(theta)(x_K): d/dtheta = theta * mean x_K . dx_K/dtheta, dx_K/dtheta = -K h (1 - theta h)^(K-1) x0.
    theta_value, h, k = 1.3, 0.05, 6
    theta = torch.tensor(theta_value, dtype=D64, requires_grad=True)
    sampler = NoiseFreeSampler(num_steps=k, step_size=h, method="euler")
    objective = NoiseFreeEBMLoss(sampler=sampler, generator_weight=generator_weight)
    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=D64) * 0.7
    torch.manual_seed(1)
    loss = objective(scaled_quadratic(theta), data)
    loss.backward()
    torch.manual_seed(1)  # the same initial points, drawn as the objective draws them
    x0 = sampler.base(2, dtype=D64).sample((64,))
    c = (1 - theta_value * h) ** k
    xk = c * x0
    expected = 0.5 * data.pow(2).sum(-1).mean() - 0.5 * xk.pow(2).sum(-1).mean()
    value = 0.5 * theta_value * (data.pow(2).sum(-1).mean() - xk.pow(2).sum(-1).mean())
    if generator_weight:
        dc = -k * h * (1 - theta_value * h) ** (k - 1)
        expected = expected + theta_value * (xk * dc * x0).sum(-1).mean()
        value = value + 0.5 * theta_value * xk.pow(2).sum(-1).mean()
    assert theta.grad.item() == pytest.approx(expected.item(), abs=1e-12)
    assert loss.item() == pytest.approx(value.item(), abs=1e-12)
    assert objective.last_terms["cd_gap"] == pytest.approx(value.item() if not generator_weight else
                                                           0.5 * theta_value * (data.pow(2).sum(-1).mean()
                                                                                - xk.pow(2).sum(-1).mean()).item())


def test_contrastive_gradient_vanishes_in_expectation_when_the_data_are_the_flows_samples():
    # data drawn from the flow's own output distribution N(0, e^{-2 theta T} I): E[gradient] = 0; the mean of
    # 40 independent estimates is within 4 SE of 0
    theta = torch.tensor(1.0, dtype=D64, requires_grad=True)
    sampler = NoiseFreeSampler(num_steps=10, step_size=0.05, method="rk4")
    objective = NoiseFreeEBMLoss(sampler=sampler)
    torch.manual_seed(0)
    grads = []
    for _ in range(40):
        data = math.exp(-0.5) * torch.randn(256, 2, dtype=D64)
        theta.grad = None
        objective(scaled_quadratic(theta), data).backward()
        grads.append(theta.grad.item())
    grads = torch.tensor(grads)
    assert abs(grads.mean().item()) < 4 * grads.std().item() / math.sqrt(len(grads))


def test_gradient_flow_nll_value_and_gradient_match_the_closed_form():
    # E = theta |x|^2/2, p_0 = N(0, I): p_T = N(0, e^{-2 theta T} I) in D = 2, so
    # NLL = log(2 pi) - 2 theta T + e^{2 theta T} mean|x|^2 / 2, dNLL/dtheta = -2T + T e^{2 theta T} mean|x|^2
    theta_value, time = 0.8, 0.4
    theta = torch.tensor(theta_value, dtype=D64, requires_grad=True)
    objective = GradientFlowNLLLoss(sampler=NoiseFreeSampler(num_steps=40, step_size=time / 40, method="rk4"))
    x = torch.randn(100, 2, generator=torch.Generator().manual_seed(0), dtype=D64)
    loss = objective(scaled_quadratic(theta), x)
    loss.backward()
    s2 = x.pow(2).sum(-1).mean().item()
    growth = math.exp(2 * theta_value * time)
    assert loss.item() == pytest.approx(math.log(2 * math.pi) - 2 * theta_value * time + growth * s2 / 2, abs=1e-6)
    assert theta.grad.item() == pytest.approx(-2 * time + time * growth * s2, abs=1e-6)


def test_training_the_energy_moves_the_flow_towards_the_data():
    # data N(0, 0.3^2 I); the flow of theta |x|^2/2 from N(0, I) over T = 0.5 matches when e^{-theta T} = 0.3,
    # i.e. theta* = -2 log 0.3 = 2.41. Plain SGD on Eq. 5.1 from theta = 0.5 ends near theta*.
    theta = torch.tensor(0.5, dtype=D64, requires_grad=True)
    objective = NoiseFreeEBMLoss(sampler=NoiseFreeSampler(num_steps=10, step_size=0.05, method="rk4"))
    opt = torch.optim.SGD([theta], lr=0.5)
    torch.manual_seed(0)
    for _ in range(300):
        opt.zero_grad()
        objective(scaled_quadratic(theta), 0.3 * torch.randn(512, 2, dtype=D64)).backward()
        opt.step()
    assert theta.item() == pytest.approx(-2 * math.log(0.3), abs=0.15)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="sampler"):
        NoiseFreeEBMLoss(sampler="rk4")
    with pytest.raises(ValueError, match="generator_weight"):
        NoiseFreeEBMLoss(generator_weight=-1.0)
    with pytest.raises(ValueError, match="method='rk4'"):
        GradientFlowNLLLoss(sampler=NoiseFreeSampler(method="euler"))
    with pytest.raises(ValueError, match=r"z must have shape \(N, D\)"):
        NoiseFreeEBMLoss()(lambda x: x.sum((-1, -2)), torch.zeros(4, 2, 2))
    # issue 25 case 25: data of shape (N,) is told the (N, D) rule it breaks, not one it satisfies
    for objective in (NoiseFreeEBMLoss(), GradientFlowNLLLoss()):
        with pytest.raises(ValueError, match=r"z must have shape \(N, D\) \(vector events\), got \(10,\)"):
            objective(lambda x: 0.5 * x.pow(2).sum(-1), torch.zeros(10))
