import math

import pyro.distributions as dist
import pytest
import torch

from pyro_diffvi.distributions import GRBM
from pyro_diffvi.nn.mlp import MLP
from pyro_diffvi.samplers import ais_log_partition, sigmoid_schedule
from pyro_diffvi.samplers.ais import check_betas


def std_normal_base(dim, device, scale=1.0):
    return dist.Normal(torch.zeros(dim, dtype=torch.float64, device=device), scale).to_event(1)


def grid_log_partition(energy, lo, hi, n=801, device=None):
    xs = torch.linspace(lo, hi, n, dtype=torch.float64, device=device)
    X, Y = torch.meshgrid(xs, xs, indexing="ij")
    with torch.no_grad():
        e = energy(torch.stack([X, Y], -1).reshape(-1, 2))
    return torch.logsumexp(-e, 0) + 2 * math.log((hi - lo) / (n - 1))


def test_ais_exact_when_base_equals_target(device):
    # E(z) = |z|^2 / 2 and base N(0, I): every weight equals Z = 2 pi (D = 2), so the SE is 0
    log_z, se = ais_log_partition(
        lambda z: 0.5 * z.pow(2).sum(-1), std_normal_base(2, device), num_chains=16, num_steps=5
    )
    torch.testing.assert_close(log_z, torch.tensor(math.log(2 * math.pi), dtype=torch.float64, device=device))
    assert se.abs() < 1e-12


def test_ais_matches_exact_grbm_log_partition(device):
    g = torch.Generator().manual_seed(3)
    D, H = 2, 4
    grbm = GRBM(
        (0.5 * torch.randn(D, generator=g, dtype=torch.float64)).to(device),
        (-0.2 + 0.1 * torch.randn(D, generator=g, dtype=torch.float64)).to(device),
        torch.randn(D, H, generator=g, dtype=torch.float64).to(device),
        torch.randn(H, generator=g, dtype=torch.float64).to(device),
    )
    exact = grbm.exact_log_partition()
    log_z, se = ais_log_partition(grbm.energy, std_normal_base(D, device, 4.0), num_chains=256, num_steps=200)
    assert se < 0.1
    assert (log_z - exact).abs() < 3 * se, (log_z, exact, se)


def test_ais_matches_quadrature_for_neural_energy(device):
    net = MLP(2, 1, hidden_dims=(16, 16), activation="tanh").to(device=device, dtype=torch.float64)

    def energy(z):  # random MLP energy with a quadratic confinement term, so exp(-E) is integrable
        return 2.0 * net(z).squeeze(-1) + 0.25 * z.pow(2).sum(-1)

    exact = grid_log_partition(energy, -12.0, 12.0, device=device)
    log_z, se = ais_log_partition(energy, std_normal_base(2, device, 2.0), num_chains=256, num_steps=200)
    assert se < 0.1
    assert (log_z - exact).abs() < 3 * se, (log_z, exact, se)
    assert all(p.grad is None for p in net.parameters())


def test_ais_ula_transition_and_custom_betas(device):
    # ULA transitions are biased by the discretisation; with a small step the estimate is still close
    energy = lambda z: 0.5 * ((z - 1.0) / 0.5).pow(2).sum(-1)  # noqa: E731  log Z = log(2 pi 0.25)
    betas = torch.linspace(0, 1, 101)
    log_z, se, log_w = ais_log_partition(
        energy, std_normal_base(2, device, 2.0), num_chains=256, transition="ula", step_size=0.01,
        betas=betas, return_log_weights=True,
    )
    assert log_w.shape == (256,)
    assert (log_z - math.log(2 * math.pi * 0.25)).abs() < 3 * se + 0.05


def test_sigmoid_schedule():
    b = sigmoid_schedule(10)
    assert b.shape == (11,) and b[0] == 0 and b[-1] == 1 and (b[1:] > b[:-1]).all()


def test_ais_bad_arguments(device):
    energy = lambda z: 0.5 * z.pow(2).sum(-1)  # noqa: E731
    base = std_normal_base(2, device)
    with pytest.raises(ValueError, match="num_chains"):
        ais_log_partition(energy, base, num_chains=1)
    with pytest.raises(ValueError, match="transition"):
        ais_log_partition(energy, base, transition="hmc")
    with pytest.raises(ValueError, match="step_size"):
        ais_log_partition(energy, base, step_size=0)
    with pytest.raises(ValueError, match="betas"):
        ais_log_partition(energy, base, num_chains=4, betas=torch.tensor([0.0, 0.7, 0.5, 1.0]))
    with pytest.raises(ValueError, match="energy"):
        ais_log_partition(lambda z: z, base, num_chains=4, num_steps=2)


def test_check_betas_rejects_nan_and_bad_ends(device):
    ok = torch.tensor([0.0, 0.5, 0.5, 1.0], device=device)
    assert check_betas(ok) is ok
    with pytest.raises(ValueError, match=r"betas must be finite; entries \[1\] are NaN or infinite"):
        check_betas(torch.tensor([0.0, float("nan"), 1.0], device=device))
    with pytest.raises(ValueError, match=r"betas must be finite; entries \[1, 2\]"):
        check_betas(torch.tensor([0.0, float("inf"), float("nan"), 1.0], device=device))
    with pytest.raises(ValueError, match="betas must increase monotonically.*first entry 0.1"):
        check_betas(torch.tensor([0.1, 1.0], device=device))
    with pytest.raises(ValueError, match=r"decreases after entries \[1\]"):
        check_betas(torch.tensor([0.0, 0.7, 0.5, 1.0], device=device))
    with pytest.raises(ValueError, match="at least 2 entries"):
        check_betas(torch.tensor([0.0], device=device))
    with pytest.raises(ValueError, match="betas must be a floating-point"):
        check_betas(torch.tensor([0, 1], device=device))
    # both AIS estimators use it: a NaN inside an otherwise valid schedule is refused
    nan_betas = torch.tensor([0.0, 0.5, float("nan"), 1.0], dtype=torch.float64)
    energy = lambda z: 0.5 * z.pow(2).sum(-1)  # noqa: E731
    with pytest.raises(ValueError, match=r"betas must be finite; entries \[2\]"):
        ais_log_partition(energy, std_normal_base(2, device), num_chains=4, betas=nan_betas)
    grbm = GRBM(torch.zeros(2), torch.zeros(2), torch.ones(2, 3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"betas must be finite; entries \[2\]"):
        grbm.ais_log_partition(num_chains=4, betas=nan_betas)
