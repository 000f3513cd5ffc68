r"""Unnormalized energy-based distributions :math:`p(z) \propto e^{-E(z)}` and a learnable neural-energy prior.

Paper 001 (energy-prior VAEs), Sec. 2: the prior :math:`p_\beta(z) = e^{-E_\beta(z)} / Z_\beta` enters
the partition-free ELBO only through :math:`-E_\beta(z)`. :class:`EnergyDistribution` therefore returns
the **unnormalized** ``log_prob(z) = -E(z)`` (``normalized = False``); use
:func:`~pyro_diffvi.samplers.ais_log_partition` for an estimate of :math:`\log Z`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from pyro.distributions import TorchDistribution, constraints
from pyro.nn import PyroModule
from torch import Tensor, nn

from pyro_diffvi.samplers.langevin import check_num_steps, check_positive, langevin
from pyro_diffvi.util import check_event_shape

EnergyFn = Callable[[Tensor], Tensor]


@dataclass
class LangevinSampler:
    r"""Approximate sampler for :class:`EnergyDistribution`: Langevin chains started from
    :math:`\mathcal N(0, \text{init\_scale}^2 I)` (see :func:`~pyro_diffvi.samplers.langevin`).

    Defaults follow paper 001 (100 steps of unadjusted Langevin dynamics, Sec. 4.2).

    :param num_steps: Langevin steps per draw.
    :param step_size: step size :math:`h`.
    :param noise_scale: noise scale :math:`s` (1 = Langevin dynamics).
    :param metropolis: MALA instead of ULA.
    :param init_scale: standard deviation of the initial states.
    """

    num_steps: int = 100
    step_size: float = 1e-2
    noise_scale: float = 1.0
    metropolis: bool = False
    init_scale: float = 1.0

    def __post_init__(self) -> None:
        check_num_steps("num_steps", self.num_steps)
        check_positive("step_size", self.step_size)
        check_positive("noise_scale", self.noise_scale)
        check_positive("init_scale", self.init_scale)
        if self.metropolis and self.noise_scale != 1.0:
            raise ValueError("metropolis=True (MALA) requires noise_scale=1")

    def __call__(self, distribution: "EnergyDistribution", shape: torch.Size) -> Tensor:
        init = self.init_scale * torch.randn(shape, dtype=distribution.dtype, device=distribution.device)
        samples, _ = langevin(
            distribution.energy, init, self.num_steps, self.step_size, self.noise_scale, self.metropolis
        )
        return samples


class EnergyDistribution(TorchDistribution):
    r"""Unnormalized distribution :math:`p(z) \propto e^{-E(z)}`.

    ``log_prob(z) = -E(z)`` **without** the log partition function (``normalized = False``).
    ``sample()`` runs an MCMC sampler and is only **approximate** (finite chains).

    :param energy_fn: maps ``z`` of shape ``(...,) + event_shape`` to energies of shape ``(...,)``
        (an output with an extra trailing dimension of size 1, as from ``nn.Linear(., 1)``, is squeezed);
        differentiable with respect to ``z`` and its parameters.
    :param event_shape: event shape of ``z``.
    :param batch_shape: batch shape (the energy broadcasts over it; set by ``expand``).
    :param sampler: ``sampler(distribution, shape) -> samples`` (default :class:`LangevinSampler`).
    :param dtype: dtype of samples (default ``torch.get_default_dtype()``).
    :param device: device of samples (default CPU).
    """

    arg_constraints: dict = {}
    has_rsample = False
    normalized = False

    def __init__(
        self,
        energy_fn: EnergyFn,
        event_shape: Sequence[int],
        batch_shape: Sequence[int] = (),
        sampler: Callable | None = None,
        validate_args: bool | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not callable(energy_fn):
            raise TypeError(f"energy_fn must be callable (z -> energies), got {type(energy_fn).__name__}")
        event_shape = torch.Size(event_shape)
        if len(event_shape) == 0:
            raise ValueError("event_shape must have at least one dimension, got ()")
        if sampler is not None and not callable(sampler):
            raise TypeError(f"sampler must be callable (distribution, shape) -> samples, got {type(sampler).__name__}")
        self.energy_fn = energy_fn
        self.sampler = sampler if sampler is not None else LangevinSampler()
        self._dtype = dtype
        self._device = device
        super().__init__(torch.Size(batch_shape), event_shape, validate_args=validate_args)

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype if self._dtype is not None else torch.get_default_dtype()

    @property
    def device(self) -> torch.device:
        return torch.device(self._device) if self._device is not None else torch.device("cpu")

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, len(self.event_shape))

    def energy(self, z: Tensor) -> Tensor:
        """:math:`E(z)`, shape ``z.shape[:-len(event_shape)]``."""
        check_event_shape("z", z, self.event_shape)
        e = self.energy_fn(z)
        expected = z.shape[: z.dim() - len(self.event_shape)]
        if e.shape == expected + (1,):
            e = e.squeeze(-1)
        if e.shape != expected:
            raise ValueError(f"energy_fn returned shape {tuple(e.shape)} for z of shape {tuple(z.shape)}; expected {tuple(expected)}")
        return e

    def log_prob(self, value: Tensor) -> Tensor:
        """Unnormalized log density :math:`-E(z)` (no :math:`\\log Z`)."""
        if self._validate_args:
            self._validate_sample(value)
        return -self.energy(value)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        """Approximate draws by the configured MCMC sampler, shape ``sample_shape + batch_shape + event_shape``."""
        shape = self._extended_shape(sample_shape)
        return self.sampler(self, shape).detach()

    def expand(self, batch_shape, _instance=None) -> "EnergyDistribution":
        batch_shape = torch.Size(batch_shape)
        new = self._get_checked_instance(type(self), _instance)
        new.__dict__.update(self.__dict__)
        TorchDistribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new


class EnergyPrior(PyroModule):
    r"""Learnable neural-energy prior :math:`p_\theta(z) \propto e^{-E_\theta(z)}`.

    ``prior()`` returns an :class:`EnergyDistribution` (unnormalized ``log_prob``); ``prior.energy(z)``
    evaluates :math:`E_\theta(z)`. Tensors are created on the device and dtype of the network's parameters.

    :param energy_net: an ``nn.Module`` mapping ``(..., *event_shape)`` to ``(...)`` (or ``(..., 1)``).
    :param event_shape: event shape of ``z``, e.g. ``(D,)``.
    :param sampler: passed to :class:`EnergyDistribution`.
    """

    def __init__(self, energy_net: nn.Module, event_shape: Sequence[int] | int, sampler: Callable | None = None) -> None:
        super().__init__()
        if not isinstance(energy_net, nn.Module):
            raise TypeError(f"energy_net must be an nn.Module, got {type(energy_net).__name__}")
        self.energy_net = energy_net
        self.event_shape = torch.Size((event_shape,) if isinstance(event_shape, int) else event_shape)
        self.sampler = sampler

    def _reference(self) -> Tensor | None:
        return next(iter(self.energy_net.parameters()), None)

    def forward(self) -> EnergyDistribution:
        ref = self._reference()
        return EnergyDistribution(
            self.energy_net,
            self.event_shape,
            sampler=self.sampler,
            dtype=None if ref is None else ref.dtype,
            device=None if ref is None else ref.device,
        )

    def energy(self, z: Tensor) -> Tensor:
        """:math:`E_\\theta(z)`, shape ``z.shape[:-len(event_shape)]``."""
        return self().energy(z)
