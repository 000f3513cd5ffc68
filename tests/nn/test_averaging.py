"""AveragedCopy: the averaging recursion against closed forms, buffers not parameters, state and devices."""

import pytest
import torch

from pyro_diffvi.nn import AveragedCopy


def _scalar_net(value: float) -> torch.nn.Linear:
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(value)
    return net


def test_average_of_a_ramp_lags_by_the_closed_form():
    # theta_k = k: once the warm-up is over the average obeys m_k = d m_{k-1} + (1 - d) k, whose fixed lag is
    # k - m_k -> d / (1 - d) (geometric series); 2,000 updates leave (d)^(2000 - 300) ~ 2e-4 of the transient
    decay = 0.99
    net = _scalar_net(0.0)
    average = AveragedCopy(net, decay=decay)
    for k in range(1, 2001):
        with torch.no_grad():
            net.weight.fill_(float(k))
        average.update(net)
    lag = 2000.0 - average.module.weight.item()
    assert lag == pytest.approx(decay / (1.0 - decay), rel=1e-3)
    assert int(average.num_updates) == 2000


def test_warm_up_of_the_decay_by_hand():
    net = _scalar_net(0.0)
    average = AveragedCopy(net, decay=0.9)
    expected = 0.0
    for k, value in enumerate([1.0, 3.0, -2.0], start=1):
        with torch.no_grad():
            net.weight.fill_(value)
        average.update(net)
        delta = min(0.9, (1 + k) / (10 + k))  # 2/11, 3/12, 4/13
        expected = delta * expected + (1 - delta) * value
        assert average.module.weight.item() == pytest.approx(expected, abs=1e-6)
    average.reset(net)
    assert average.module.weight.item() == -2.0 and int(average.num_updates) == 0


def test_decay_zero_copies_and_the_copy_runs_the_averaged_network():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    average = AveragedCopy(net, decay=0.0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    average.update(net)
    x = torch.randn(5, 3)
    assert torch.equal(average(x), net(x))


def test_buffers_not_parameters_saved_and_moved():
    net = torch.nn.Linear(2, 2)
    average = AveragedCopy(net, decay=0.5)
    assert list(average.parameters()) == []
    assert {"module.weight", "module.bias", "num_updates"} <= set(average.state_dict())
    with torch.no_grad():
        net.weight.add_(1.0)
    average.update(net)
    restored = AveragedCopy(torch.nn.Linear(2, 2), decay=0.5)
    restored.load_state_dict(average.state_dict())
    assert torch.equal(restored.module.weight, average.module.weight)
    double = average.to(torch.float64)
    assert double.module.weight.dtype == torch.float64
    double.update(net)  # a float32 source averaged into float64 buffers
    assert double.module.weight.dtype == torch.float64


@pytest.mark.parametrize("decay", [-0.1, 1.0, "0.9"])
def test_bad_decay(decay):
    with pytest.raises(ValueError, match="decay must be a number in"):
        AveragedCopy(torch.nn.Linear(1, 1), decay=decay)
