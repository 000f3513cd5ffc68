r"""Unnormalized energy-based distributions :math:`p(z) \propto e^{-E(z)}` and a learnable neural-energy prior.

In the unnormalized-priors paper (Sec. 2) the prior :math:`p_\beta(z) = e^{-E_\beta(z)} / Z_\beta` enters
the partition-free ELBO only through :math:`-E_\beta(z)`. :class:`EnergyDistribution` therefore returns
the **unnormalized** ``log_prob(z) = -E(z)`` (``normalized = False``); use
:func:`~pyro_diffvi.samplers.ais_log_partition` for an estimate of :math:`\log Z`.

**Where a learnable prior's parameters get gradients.** The partition-free bound has no
:math:`\log Z`, so its gradient in :math:`\beta` is wrong: maximizing it drives the prior to a degenerate
density. A learnable prior module (:class:`EnergyPrior`, :class:`~pyro_diffvi.priors.GRBMPrior`)
therefore returns a distribution whose energy carries **no** gradient to its parameters (only to
:math:`z`), unless called inside :func:`prior_gradients`; the prior objectives
(:mod:`pyro_diffvi.infer.prior_objectives`, also through
:class:`~pyro_diffvi.infer.EnergyPriorELBO`) open that block for their own term only, via
:meth:`EnergyDistribution.with_parameter_gradients`. A model run with a plain ``Trace_ELBO`` thus leaves
the prior unchanged instead of destroying it.

References: *Variational Inference with Unnormalized Priors*. Anonymous authors, manuscript under
double-blind review ("the unnormalized-priors paper").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from pyro.distributions import TorchDistribution, constraints
from torch import Tensor

from pyro_diffvi.ops.types import EnergyFn
from pyro_diffvi.samplers.langevin import LangevinSampler
from pyro_diffvi.util import check_event_shape


class _PriorGradients(threading.local):
    depth = 0


_PRIOR_GRADIENTS = _PriorGradients()


@contextmanager
def prior_gradients() -> Iterator[None]:
    """Within this block, learnable prior modules (:class:`EnergyPrior`,
    :class:`~pyro_diffvi.priors.GRBMPrior`) return distributions whose energy carries gradients
    to their parameters; outside it they carry none (see the module docstring). Prior objectives open it
    for their own term; open it yourself only to write a new prior objective. Nestable, per thread.

    Example:

    >>> import torch
    >>> from pyro_diffvi.distributions import prior_gradients
    >>> from pyro_diffvi.priors import GRBMPrior
    >>> prior, z = GRBMPrior(2, 3), torch.zeros(4, 2)
    >>> prior.energy(z).requires_grad
    False
    >>> with prior_gradients():
    ...     prior.energy(z).requires_grad
    True
    """
    _PRIOR_GRADIENTS.depth += 1
    try:
        yield
    finally:
        _PRIOR_GRADIENTS.depth -= 1


def prior_gradients_enabled() -> bool:
    """Whether the caller is inside :func:`prior_gradients`.

    Example:

    >>> from pyro_diffvi.distributions.energy import prior_gradients, prior_gradients_enabled
    >>> with prior_gradients():
    ...     prior_gradients_enabled()
    True
    """
    return _PRIOR_GRADIENTS.depth > 0


class EnergyDistribution(TorchDistribution):
    r"""Unnormalized distribution :math:`p(z) \propto e^{-E(z)}`.

    ``log_prob(z) = -E(z)`` **without** the log partition function (``normalized = False``).
    ``sample()`` runs an MCMC sampler and is only **approximate** (finite chains).

    :param energy_fn: maps ``z`` of shape ``(...,) + event_shape`` to energies of shape ``(...,)``
        (an output with an extra trailing dimension of size 1, as from ``nn.Linear(., 1)``, is squeezed);
        differentiable with respect to ``z`` and its parameters.
    :param event_shape: event shape of ``z``.
    :param batch_shape: batch shape (the energy broadcasts over it; set by ``expand``).
    :param sampler: ``sampler(distribution, shape) -> samples`` (default
        :class:`~pyro_diffvi.samplers.LangevinSampler`).
    :param dtype: dtype of samples (default ``torch.get_default_dtype()``).
    :param device: device of samples (default CPU).
    :param parameter_source: for a distribution built with detached parameters by a learnable prior
        module, a callable (the module) returning the same distribution with parameter gradients when
        called inside :func:`prior_gradients`; see :meth:`with_parameter_gradients`.

    Example (an unnormalized standard Gaussian):

    >>> import torch
    >>> from pyro_diffvi.distributions import EnergyDistribution
    >>> d = EnergyDistribution(lambda z: 0.5 * z.pow(2).sum(-1), (2,))
    >>> d.log_prob(torch.ones(3, 2))  # -E(z), without log Z
    tensor([-1., -1., -1.])
    >>> tuple(d.sample((5,)).shape)  # approximate draws by Langevin chains
    (5, 2)
    """

    arg_constraints: dict = {}
    has_rsample = False
    normalized = False

    def __init__(
        self,
        energy_fn: EnergyFn,
        event_shape: Sequence[int],
        *,
        batch_shape: Sequence[int] = (),
        sampler: Callable | None = None,
        validate_args: bool | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        parameter_source: Callable[[], EnergyDistribution] | None = None,
    ) -> None:
        if parameter_source is not None and not callable(parameter_source):
            raise TypeError(
                f"parameter_source must be callable (-> EnergyDistribution), got {type(parameter_source).__name__}"
            )
        self.parameter_source = parameter_source
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

    def with_parameter_gradients(self) -> EnergyDistribution:
        """This distribution with an energy that carries gradients to the learnable prior's parameters.

        For a distribution from a prior module (built with detached parameters, see the module
        docstring), the module is called again inside :func:`prior_gradients`; any other distribution
        is returned as it is. Prior objectives call this for their term.
        """
        if self.parameter_source is None:
            return self
        with prior_gradients():
            live = self.parameter_source()
        return live.expand(self.batch_shape) if live.batch_shape != self.batch_shape else live

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
            raise ValueError(
                f"energy_fn returned shape {tuple(e.shape)} for z of shape {tuple(z.shape)}; expected {tuple(expected)}"
            )
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

    def expand(self, batch_shape, _instance=None) -> EnergyDistribution:
        batch_shape = torch.Size(batch_shape)
        new = self._get_checked_instance(type(self), _instance)
        new.__dict__.update(self.__dict__)
        TorchDistribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new


def find_energy_distribution(fn):
    """The unnormalized energy distribution inside ``fn`` (unwrapping ``Independent``, ``Expanded``,
    ``Masked`` wrappers through ``base_dist``), or ``None`` if ``fn`` is not energy-based.

    A distribution counts as energy-based when it has ``normalized = False`` and an ``energy`` method
    (:class:`~pyro_diffvi.distributions.EnergyDistribution` and its subclasses such as ``GRBM``).

    :param fn: a distribution (a sample site's ``fn``).

    Example:

    >>> import torch
    >>> import pyro.distributions as dist
    >>> from pyro_diffvi.distributions import find_energy_distribution
    >>> from pyro_diffvi.priors import GRBMPrior
    >>> grbm = GRBMPrior(2, 3)()
    >>> find_energy_distribution(grbm.expand([5])) is not None
    True
    >>> find_energy_distribution(dist.Normal(torch.zeros(2), 1.0).to_event(1)) is None
    True
    """
    while fn is not None:
        if getattr(fn, "normalized", True) is False and callable(getattr(fn, "energy", None)):
            return fn
        fn = getattr(fn, "base_dist", None)
    return None
