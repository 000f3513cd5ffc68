"""The exponential moving average of a network's parameters (pyro_diffvi.nn.ema)."""

import pytest
import torch
from torch import nn

from pyro_diffvi.nn import GeneratorEMA


def test_the_ema_warm_up_state_and_device():
    net = nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.zero_()
    ema = GeneratorEMA(net, decay=0.99)
    values = []
    for n in range(30):
        with torch.no_grad():
            net.weight.fill_(float(n + 1))
        ema.update(net)
        values.append(n + 1)
    expected = 0.0
    for n, v in enumerate(values):
        decay = min(0.99, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * v
    assert ema.network.weight[0, 0].item() == pytest.approx(expected, rel=1e-6) and ema.num_updates == 30
    assert not ema.network.weight.requires_grad
    restored = GeneratorEMA(net, decay=0.99)
    restored.load_state_dict(ema.state_dict())
    assert torch.equal(restored.network.weight, ema.network.weight) and restored.num_updates == 30
    with pytest.raises(ValueError, match=r"keys \['network', 'num_updates'\]"):
        restored.load_state_dict({"network": {}})
    with pytest.raises(ValueError, match=r"decay must be a number in \[0, 1\), got 1.0"):
        GeneratorEMA(net, decay=1.0)
    # the trained network moved after the copy (here to float64): the average follows it
    ema.update(net.double())
    assert ema.network.weight.dtype == torch.float64 and ema.network.weight.device == net.weight.device


def test_buffers_are_copied_and_a_mismatched_network_is_refused():
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = GeneratorEMA(net, decay=0.9)
    net.train()(torch.randn(16, 3))  # moves the running statistics
    ema.update(net)
    assert torch.equal(ema.network[1].running_mean, net[1].running_mean)
    assert int(ema.network[1].num_batches_tracked) == 1
    with pytest.raises(ValueError, match="network must have the parameters and buffers"):
        ema.update(nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(TypeError, match="network must be a torch.nn.Module"):
        GeneratorEMA(lambda x: x, decay=0.5)
    with pytest.raises(TypeError):
        GeneratorEMA(net, 0.5)  # decay is keyword-only


def test_average_of_a_ramp_lags_by_the_closed_form():
    # theta_n = n: once the warm-up is over the average obeys m_n = d m_{n-1} + (1 - d) n, whose fixed lag is
    # n - m_n -> d / (1 - d) (a geometric series); 2,000 updates leave d^(2000 - 300) ~ 2e-4 of the transient
    decay = 0.99
    net = nn.Linear(1, 1, bias=False)
    ema = GeneratorEMA(net, decay=decay)
    for n in range(1, 2001):
        with torch.no_grad():
            net.weight.fill_(float(n))
        ema.update(net)
    assert 2000.0 - ema.network.weight.item() == pytest.approx(decay / (1.0 - decay), rel=1e-3)
