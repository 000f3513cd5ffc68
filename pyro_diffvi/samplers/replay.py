r"""Persistent (replay-buffer) and short-run Langevin chains for EBM training.

Xiao (2022), Sec. 2 and Ch. 4: *short-run* chains restart from the initial noise
distribution at every training iteration; *persistent* chains restart from states stored in a replay
buffer, each re-initialised from noise with a small probability (Du & Mordatch, 2019; VAEBM uses a
probability that rises over training). The Langevin convention is that of
:func:`~pyro_diffvi.samplers.langevin`.

References

- Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation, University
  of Chicago, 2022 ("Xiao (2022)").
- Y. Du, I. Mordatch. *Implicit Generation and Modeling with Energy-Based Models*. NeurIPS, 2019.
- Z. Xiao, K. Kreis, J. Kautz, A. Vahdat. *VAEBM: A Symbiosis between Variational Autoencoders and
  Energy-based Models*. ICLR, 2021.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pyro_diffvi.ops.types import EnergyFn
from pyro_diffvi.samplers.langevin import langevin
from pyro_diffvi.util import check_positive_int, check_probability

InitFn = Callable[[int], Tensor]


class ReplayBuffer:
    r"""A FIFO store of chain states for persistent Langevin chains.

    :param capacity: maximum number of stored states; the oldest are overwritten first.
    :param init_fn: ``init_fn(n)`` returns ``n`` fresh initial states, shape ``(n,) + event_shape``
        (e.g. ``lambda n: torch.randn(n, D)``).
    :param reinit_prob: probability that a drawn state is replaced by a fresh one from ``init_fn``.

    Example:

    >>> import torch
    >>> from pyro_diffvi.samplers import ReplayBuffer
    >>> buffer = ReplayBuffer(100, lambda n: torch.randn(n, 2), reinit_prob=0.05)
    >>> buffer.push(torch.zeros(10, 2))
    >>> len(buffer), tuple(buffer.sample(4).shape)
    (10, (4, 2))
    """

    def __init__(self, capacity: int, init_fn: InitFn, *, reinit_prob: float = 0.05) -> None:
        check_positive_int("capacity", capacity)
        if not callable(init_fn):
            raise TypeError(f"init_fn must be callable (n -> tensor of n states), got {type(init_fn).__name__}")
        self.capacity = capacity
        self.init_fn = init_fn
        self.reinit_prob = check_probability("reinit_prob", reinit_prob)
        self._states: Tensor | None = None
        self._next = 0  # position of the oldest entry once the buffer is full
        self.last_reinit_mask: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self._states is None else self._states.shape[0]

    def _fresh(self, n: int) -> Tensor:
        x = self.init_fn(n)
        if not torch.is_tensor(x) or x.dim() < 1 or x.shape[0] != n:
            raise ValueError(f"init_fn({n}) must return a tensor with leading dimension {n}")
        return x.detach()

    def sample(self, num_samples: int) -> Tensor:
        """Draw ``num_samples`` states: uniformly from the buffer, each replaced by a fresh state with
        probability ``reinit_prob`` (all fresh while the buffer is empty).

        ``self.last_reinit_mask`` records which rows were freshly initialised.

        :param num_samples: number of states to draw.
        """
        n = check_positive_int("num_samples", num_samples)
        fresh = self._fresh(n)
        if self._states is None:
            self.last_reinit_mask = torch.ones(n, dtype=torch.bool, device=fresh.device)
            return fresh
        if fresh.shape[1:] != self._states.shape[1:]:
            raise ValueError(
                f"init_fn({n}) must return states of the stored event shape {tuple(self._states.shape[1:])}, "
                f"got shape {tuple(fresh.shape)}"
            )
        idx = torch.randint(len(self), (n,), device=self._states.device)
        stored = self._states[idx].to(fresh.device)
        reinit = torch.rand(n, device=fresh.device) < self.reinit_prob
        self.last_reinit_mask = reinit
        mask = reinit.reshape((n,) + (1,) * (fresh.dim() - 1))
        return torch.where(mask, fresh, stored)

    def state_dict(self) -> dict:
        """The buffer's contents (``states``, a tensor or ``None`` while empty), its write position
        ``next`` and its ``capacity``, for checkpoints; restore with :meth:`load_state_dict`."""
        return {
            "capacity": self.capacity,
            "states": None if self._states is None else self._states.clone(),
            "next": self._next,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the contents saved by :meth:`state_dict` (the states keep their saved device).

        :param state: a dict from :meth:`state_dict` of a buffer with the same ``capacity``.
        :raises ValueError: naming ``state`` when a key is missing or the saved capacity or contents do
            not fit this buffer.
        """
        if not isinstance(state, dict) or not {"capacity", "states", "next"} <= set(state):
            raise ValueError(
                "state must be a dict with keys 'capacity', 'states', 'next' (from ReplayBuffer.state_dict()), "
                f"got {state!r:.200}"
            )
        if state["capacity"] != self.capacity:
            raise ValueError(
                f"state was saved from a buffer of capacity {state['capacity']}, this buffer has capacity "
                f"{self.capacity}"
            )
        states, nxt = state["states"], state["next"]
        if states is not None and (not torch.is_tensor(states) or states.dim() < 1 or states.shape[0] > self.capacity):
            raise ValueError(f"state['states'] must be None or a tensor of at most {self.capacity} states")
        if isinstance(nxt, bool) or not isinstance(nxt, int) or not 0 <= nxt < self.capacity:
            raise ValueError(f"state['next'] must be an int in [0, {self.capacity}), got {nxt!r}")
        self._states = None if states is None else states.detach().clone()
        self._next = nxt

    def push(self, x: Tensor) -> None:
        """Store the states ``x`` (shape ``(n,) + event_shape``), overwriting the oldest when full."""
        if not torch.is_tensor(x) or x.dim() < 1:
            raise ValueError("x must be a tensor of shape (n,) + event_shape")
        x = x.detach()
        if self._states is not None and x.shape[1:] != self._states.shape[1:]:
            raise ValueError(
                f"x must have event shape {tuple(self._states.shape[1:])}, got {tuple(x.shape[1:])}"
            )
        x = x[-self.capacity :]
        if x.shape[0] == 0:
            return
        if self._states is None:
            self._states = x.clone()
            self._next = 0
            return
        room = self.capacity - len(self)
        if room > 0:
            take = min(room, x.shape[0])
            self._states = torch.cat([self._states, x[:take]])
            x = x[take:]
        if x.shape[0] > 0:  # full: overwrite the oldest entries, cyclically
            pos = (self._next + torch.arange(x.shape[0], device=self._states.device)) % self.capacity
            self._states[pos] = x.to(self._states.device)
            self._next = int((self._next + x.shape[0]) % self.capacity)


def short_run_langevin(
    energy_fn: EnergyFn,
    init_fn: InitFn,
    num_samples: int,
    *,
    num_steps: int,
    step_size: float,
    noise_scale: float = 1.0,
) -> Tensor:
    """Short-run chains: ``num_samples`` fresh states from ``init_fn``, then ``num_steps`` ULA steps.

    :param energy_fn: the energy ``z -> E(z)``, one energy per chain.
    :param init_fn: ``init_fn(n)`` returns ``n`` fresh initial states.
    :param num_samples: number of chains (samples returned).
    :param num_steps: ULA steps per chain.
    :param step_size: Langevin step size :math:`h`.
    :param noise_scale: Langevin noise scale (1 = Langevin dynamics).

    Example:

    >>> import torch
    >>> from pyro_diffvi.samplers import short_run_langevin
    >>> z = short_run_langevin(lambda z: 0.5 * z.pow(2).sum(-1), lambda n: torch.randn(n, 2), 8,
    ...                        num_steps=10, step_size=0.1)
    >>> tuple(z.shape)
    (8, 2)
    """
    init = init_fn(check_positive_int("num_samples", num_samples))
    samples, _ = langevin(energy_fn, init, num_steps=num_steps, step_size=step_size, noise_scale=noise_scale)
    return samples


def persistent_langevin(
    energy_fn: EnergyFn,
    buffer: ReplayBuffer,
    num_samples: int,
    *,
    num_steps: int,
    step_size: float,
    noise_scale: float = 1.0,
) -> Tensor:
    """Persistent chains: draw ``num_samples`` states from ``buffer``, run ``num_steps`` ULA steps, push
    them back.

    Chains that diverged to NaN or infinite states (:func:`~pyro_diffvi.samplers.langevin` warns about
    them) are returned but not pushed, so one divergent step does not poison the buffer.

    The arguments are those of :func:`short_run_langevin`, with ``buffer``, the :class:`ReplayBuffer`
    the chains restart from, in place of ``init_fn``.

    Example:

    >>> import torch
    >>> from pyro_diffvi.samplers import ReplayBuffer, persistent_langevin
    >>> buffer = ReplayBuffer(100, lambda n: torch.randn(n, 2))
    >>> z = persistent_langevin(lambda z: 0.5 * z.pow(2).sum(-1), buffer, 8, num_steps=10, step_size=0.1)
    >>> tuple(z.shape), len(buffer)
    ((8, 2), 8)
    """
    samples, _ = langevin(
        energy_fn, buffer.sample(num_samples), num_steps=num_steps, step_size=step_size, noise_scale=noise_scale
    )
    finite = torch.isfinite(samples.reshape(num_samples, -1)).all(-1)
    buffer.push(samples if bool(finite.all()) else samples[finite])
    return samples
