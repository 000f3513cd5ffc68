r"""MCMC contrastive divergence (Eq. 8 of the unnormalized-priors paper): an energy fitted to samples against negatives
from short-run or persistent Langevin chains.

References: Y. Du, I. Mordatch. *Implicit Generation and Modeling with Energy-Based Models*. NeurIPS, 2019 (replay
buffer). Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation, University of
Chicago, 2022 (Sec. 2, short-run and persistent chains).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pyro_diffvi.infer.prior_objectives.base import (
    PriorObjective,
    batched_energy,
    check_samples,
    check_state_keys,
    energy_function,
)
from pyro_diffvi.ops.types import EnergyFn
from pyro_diffvi.samplers.replay import ReplayBuffer, persistent_langevin, short_run_langevin
from pyro_diffvi.util import check_positive_float, check_positive_int, check_probability

__all__ = ["ContrastiveDivergenceLoss"]


def _unset_init_fn(n: int) -> Tensor:
    raise RuntimeError("the replay buffer's init function is set at the objective's next loss() call")


class ContrastiveDivergenceLoss(PriorObjective):
    r"""MCMC contrastive divergence: loss :math:`\frac1N\sum_i E(z_i) - \frac1M\sum_j E(\tilde z_j)` with
    negatives :math:`\tilde z_j` from Langevin chains on :math:`e^{-E}` (detached), i.e. the standard
    maximum-likelihood gradient estimate of Eq. 8 of the unnormalized-priors paper.

    * short-run (``persistent=False``): chains start from ``init_fn`` at every call;
    * persistent (``persistent=True``): chains restart from a
      :class:`~pyro_diffvi.samplers.ReplayBuffer` (re-initialized with probability ``reinit_prob``).

    The value is the energy gap (positive minus negative phase), plus the optional regularizer
    ``energy_reg_weight * mean(E_pos^2 + E_neg^2)``.

    :param num_steps: Langevin (ULA) steps per call.
    :param step_size: Langevin step :math:`h` (see :func:`~pyro_diffvi.samplers.langevin`).
    :param num_samples: negatives per call (default: as many as samples ``z``).
    :param persistent: use a replay buffer.
    :param buffer_size: replay buffer capacity.
    :param reinit_prob: replay buffer re-initialization probability.
    :param init_scale: fresh chains start at ``init_scale * N(0, I)``.
    :param noise_scale: Langevin noise scale (1 = exact Langevin dynamics).
    :param energy_reg_weight: weight of the energy-magnitude regularizer (0 = none).

    References: Y. Du, I. Mordatch. *Implicit Generation and Modeling with Energy-Based Models*.
    NeurIPS, 2019 (replay buffer); Xiao (2022): Z. Xiao. *Designing Deep Generative Models with Symbiotic
    Composition*. PhD dissertation, University of Chicago, 2022 (Sec. 2, short-run and persistent chains).

    Example:

    >>> import torch
    >>> from pyro_diffvi.infer import ContrastiveDivergenceLoss
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> cd = ContrastiveDivergenceLoss(num_steps=5, step_size=0.1, persistent=True, buffer_size=100)
    >>> loss = cd(lambda z: 0.5 * z.pow(2).sum(-1), torch.randn(32, 2))
    >>> sorted(cd.last_terms), len(cd.buffer)
    (['cd_gap', 'energy_neg', 'energy_pos'], 32)
    """

    def __init__(
        self,
        *,
        num_steps: int = 20,
        step_size: float = 0.01,
        num_samples: int | None = None,
        persistent: bool = False,
        buffer_size: int = 10000,
        reinit_prob: float = 0.05,
        init_scale: float = 1.0,
        noise_scale: float = 1.0,
        energy_reg_weight: float = 0.0,
    ):
        super().__init__()
        self.num_steps = check_positive_int("num_steps", num_steps)
        self.step_size = check_positive_float("step_size", step_size)
        self.num_samples = None if num_samples is None else check_positive_int("num_samples", num_samples)
        self.persistent = bool(persistent)
        self.buffer_size = check_positive_int("buffer_size", buffer_size)
        self.reinit_prob = check_probability("reinit_prob", reinit_prob)
        self.init_scale = check_positive_float("init_scale", init_scale)
        self.noise_scale = check_positive_float("noise_scale", noise_scale)
        self.energy_reg_weight = check_positive_float("energy_reg_weight", energy_reg_weight, allow_zero=True)
        self.buffer = None

    def state_dict(self) -> dict:
        """The persistent chains' replay buffer (``ReplayBuffer.state_dict()``, or ``None`` before the
        first call and for short-run chains)."""
        return {"buffer": None if self.buffer is None else self.buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore the replay buffer saved by :meth:`state_dict`.

        :param state: a dict from :meth:`state_dict` of an objective with the same ``buffer_size``.
        """
        check_state_keys(type(self).__name__, state, {"buffer"})
        if state["buffer"] is None:
            self.buffer = None
            return
        if not self.persistent:
            raise ValueError("state holds a replay buffer but this ContrastiveDivergenceLoss has persistent=False")
        buffer = ReplayBuffer(self.buffer_size, _unset_init_fn, reinit_prob=self.reinit_prob)
        buffer.load_state_dict(state["buffer"])  # the init function follows the data at the next call
        self.buffer = buffer

    def _init_fn(self, like: Tensor) -> Callable[[int], Tensor]:
        event_shape, scale = like.shape[1:], self.init_scale

        def init(n: int) -> Tensor:
            return scale * torch.randn((n,) + event_shape, dtype=like.dtype, device=like.device)

        return init

    def negative_samples(self, energy_fn: EnergyFn, like: Tensor) -> Tensor:
        """Draw the (detached) negative samples by short-run or persistent Langevin chains."""
        n = self.num_samples or like.shape[0]
        init_fn = self._init_fn(like)
        if not self.persistent:
            return short_run_langevin(
                energy_fn, init_fn, n, num_steps=self.num_steps, step_size=self.step_size, noise_scale=self.noise_scale
            )
        if self.buffer is None:
            self.buffer = ReplayBuffer(self.buffer_size, init_fn, reinit_prob=self.reinit_prob)
        self.buffer.init_fn = init_fn  # follow the data's device and dtype
        return persistent_langevin(
            energy_fn, self.buffer, n, num_steps=self.num_steps, step_size=self.step_size, noise_scale=self.noise_scale
        )

    def loss(self, prior, z: Tensor, log_q: Tensor | None = None) -> Tensor:
        energy_fn = energy_function(prior)
        z = check_samples("z", z).detach()
        negatives = self.negative_samples(energy_fn, z).detach()
        e_pos = batched_energy(energy_fn, z)
        e_neg = batched_energy(energy_fn, negatives)
        gap = e_pos.mean() - e_neg.mean()
        loss = gap
        if self.energy_reg_weight > 0:
            loss = loss + self.energy_reg_weight * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
        self.last_terms = {"cd_gap": gap.item(), "energy_pos": e_pos.mean().item(), "energy_neg": e_neg.mean().item()}
        return loss

    def __repr__(self) -> str:
        kind = "persistent" if self.persistent else "short-run"
        return f"ContrastiveDivergenceLoss({kind}, num_steps={self.num_steps}, step_size={self.step_size})"
