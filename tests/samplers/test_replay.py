import math

import pytest
import torch

from pyro_diffvi.samplers import ReplayBuffer, persistent_langevin, short_run_langevin


def test_capacity_keeps_most_recent_states(device):
    buf = ReplayBuffer(10, lambda n: torch.full((n, 2), -1.0, device=device), reinit_prob=0.0)
    buf.push(torch.arange(6.0, device=device)[:, None].expand(6, 2))
    assert len(buf) == 6
    buf.push(torch.arange(6.0, 25.0, device=device)[:, None].expand(19, 2))
    assert len(buf) == 10
    drawn = buf.sample(2000)
    # only the 10 most recent states (15..24) remain, each drawn about uniformly
    assert set(drawn[:, 0].tolist()) == set(float(i) for i in range(15, 25))
    counts = torch.bincount(drawn[:, 0].long() - 15, minlength=10).double()
    se = math.sqrt(2000 * 0.1 * 0.9)  # binomial SE of each count
    assert ((counts - 200).abs() < 4 * se).all()


def test_reinit_fraction(device):
    p = 0.1
    buf = ReplayBuffer(100, lambda n: torch.zeros(n, 3, device=device), reinit_prob=p)
    buf.push(torch.ones(100, 3, device=device))
    n = 20000
    drawn = buf.sample(n)
    frac = (drawn[:, 0] == 0).double().mean().item()
    assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n)  # binomial SE
    assert torch.equal(buf.last_reinit_mask, drawn[:, 0] == 0)


def test_empty_buffer_gives_fresh_states(device):
    buf = ReplayBuffer(5, lambda n: torch.full((n, 2), 7.0, device=device), reinit_prob=0.0)
    assert torch.equal(buf.sample(3), torch.full((3, 2), 7.0, device=device))


def test_persistent_and_short_run_chains(device):
    energy = lambda z: 0.5 * z.pow(2).sum(-1)  # noqa: E731
    init = lambda n: torch.full((n, 2), 5.0, device=device)  # noqa: E731
    buf = ReplayBuffer(8, init, reinit_prob=0.0)
    a = persistent_langevin(energy, buf, 8, num_steps=1, step_size=0.1, noise_scale=1e-6)
    # one nearly noise-free step from 5: z - h z = 4.5
    torch.testing.assert_close(a, torch.full((8, 2), 4.5, device=device), atol=1e-4, rtol=0)
    b = persistent_langevin(energy, buf, 8, num_steps=1, step_size=0.1, noise_scale=1e-6)
    torch.testing.assert_close(b, torch.full((8, 2), 4.05, device=device), atol=1e-4, rtol=0)  # continues
    c = short_run_langevin(energy, init, 8, num_steps=1, step_size=0.1, noise_scale=1e-6)
    torch.testing.assert_close(c, torch.full((8, 2), 4.5, device=device), atol=1e-4, rtol=0)  # restarts


def test_replay_bad_arguments():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, lambda n: torch.zeros(n, 2))
    with pytest.raises(ValueError, match="reinit_prob"):
        ReplayBuffer(3, lambda n: torch.zeros(n, 2), reinit_prob=1.5)
    with pytest.raises(TypeError, match="init_fn"):
        ReplayBuffer(3, None)
    buf = ReplayBuffer(3, lambda n: torch.zeros(n, 2))
    buf.push(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="event shape"):
        buf.push(torch.zeros(2, 3))
