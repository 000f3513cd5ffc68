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


def test_state_dict_round_trip_continues_identically(device):
    init = lambda n: torch.randn(n, 2, device=device)  # noqa: E731
    buf = ReplayBuffer(6, init, reinit_prob=0.3)
    buf.push(torch.arange(8.0, device=device).reshape(4, 2))
    buf.push(torch.arange(8.0, 16.0, device=device).reshape(4, 2))  # fills 2, overwrites 2: next = 2
    state = buf.state_dict()
    assert state["next"] == 2 and state["capacity"] == 6 and state["states"].shape == (6, 2)
    buf.push(torch.zeros(1, 2, device=device))  # the saved copy does not follow later pushes
    assert state["next"] == 2 and state["states"].abs().sum() > 0
    restored = ReplayBuffer(6, init, reinit_prob=0.3)
    restored.load_state_dict(state)
    original = ReplayBuffer(6, init, reinit_prob=0.3)
    original.load_state_dict(buf.state_dict())
    original.load_state_dict(state)
    for b in (original, restored):
        torch.manual_seed(5)
        b.push(torch.full((3, 2), -1.0, device=device))
    torch.manual_seed(6)
    a = original.sample(50)
    torch.manual_seed(6)
    assert torch.equal(a, restored.sample(50))
    assert torch.equal(original.state_dict()["states"], restored.state_dict()["states"])
    empty = ReplayBuffer(6, init).state_dict()
    assert empty["states"] is None
    with pytest.raises(ValueError, match="capacity 6, this buffer has capacity 5"):
        ReplayBuffer(5, init).load_state_dict(state)
    with pytest.raises(ValueError, match="state must be a dict"):
        ReplayBuffer(6, init).load_state_dict({"states": None})


def test_persistent_chains_do_not_push_divergent_states(device):
    curvature = torch.tensor([0.01, 100.0, 0.01, 100.0], dtype=torch.float64, device=device)
    energy = lambda z: 0.5 * (curvature[:, None] * z.pow(2)).sum(-1)  # noqa: E731
    buf = ReplayBuffer(10, lambda n: torch.ones(n, 2, dtype=torch.float64, device=device), reinit_prob=0.0)
    with pytest.warns(RuntimeWarning, match="2 of 4 chain"):
        out = persistent_langevin(energy, buf, 4, num_steps=200, step_size=1.0)
    assert out.shape == (4, 2) and len(buf) == 2
    assert torch.isfinite(buf.state_dict()["states"]).all()


def test_init_fn_of_another_width_than_the_stored_states_is_named():
    # Issue 25 case 20: fresh states of width 3 against stored states of width 2 were a torch size mismatch.
    buf = ReplayBuffer(5, lambda n: torch.zeros(n, 3))
    assert buf.sample(4).shape == (4, 3)  # empty: all fresh, no stored width to compare with
    buf.push(torch.ones(4, 2))
    with pytest.raises(ValueError, match=r"init_fn\(4\) must return states of the stored event shape \(2,\)"):
        buf.sample(4)
