r"""Unnormalized energy-based distributions :math:`p(z) \propto e^{-E(z)}` and a learnable neural-energy prior.

In the unnormalized-priors paper (Sec. 2) the prior :math:`p_\beta(z) = e^{-E_\beta(z)} / Z_\beta` enters
the partition-free ELBO only through :math:`-E_\beta(z)`. :class:`EnergyDistribution` therefore returns
the **unnormalized** ``log_prob(z) = -E(z)`` (``normalized = False``); use
:func:`~pyro_diffvi.samplers.ais_log_partition` for an estimate of :math:`\log Z`.

**Where a learnable prior's parameters get gradients.** The partition-free bound has no
:math:`\log Z`, so its gradient in :math:`\beta` is wrong: maximizing it drives the prior to a degenerate
density. A learnable prior module (:class:`EnergyPrior`, :class:`~pyro_diffvi.distributions.GRBMPrior`)
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

import pyro
import torch
from pyro.distributions import TorchDistribution, constraints
from pyro.nn import PyroModule
from torch import Tensor, nn
from torch.func import functional_call

from pyro_diffvi._pyro_compat import pyro_name
from pyro_diffvi.ops.types import EnergyFn
from pyro_diffvi.samplers.langevin import LangevinSampler
from pyro_diffvi.util import check_event_shape


class _PriorGradients(threading.local):
    depth = 0


_PRIOR_GRADIENTS = _PriorGradients()


@contextmanager
def prior_gradients() -> Iterator[None]:
    """Within this block, learnable prior modules (:class:`EnergyPrior`,
    :class:`~pyro_diffvi.distributions.GRBMPrior`) return distributions whose energy carries gradients
    to their parameters; outside it they carry none (see the module docstring). Prior objectives open it
    for their own term; open it yourself only to write a new prior objective. Nestable, per thread.

    Example::

        >>> import torch
        >>> from pyro_diffvi.distributions import GRBMPrior, prior_gradients
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

    Example::

        >>> from pyro_diffvi.distributions.energy import prior_gradients, prior_gradients_enabled
        >>> with prior_gradients():
        ...     prior_gradients_enabled()
        True
    """
    return _PRIOR_GRADIENTS.depth > 0


def check_module_name(name: str | None, default: str) -> str:
    """The ``name`` argument of a learnable prior module: ``default`` (the class name) for ``None``,
    otherwise a non-empty ``str`` (the prefix of its parameters' names in Pyro's param store).

    :param name: the name given, or ``None``.
    :param default: the name for ``None``.

    Example::

        >>> from pyro_diffvi.distributions.energy import check_module_name
        >>> check_module_name(None, "GRBMPrior"), check_module_name("prior", "GRBMPrior")
        ('GRBMPrior', 'prior')
    """
    if name is None:
        return default
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"name must be a non-empty str (the param-store prefix of the prior's parameters), got {name!r}"
        )
    return name


class _DetachedParameters:
    """``z -> net(z)`` evaluated with the network's parameters detached: gradients reach ``z`` only."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def __call__(self, z: Tensor) -> Tensor:
        params = {name: p.detach() for name, p in self.net.named_parameters()}
        return functional_call(self.net, params, (z,))


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

    Example (an unnormalized standard Gaussian)::

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

    def expand(self, batch_shape, _instance=None) -> EnergyDistribution:
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

    **Gradients.** Outside :func:`prior_gradients` the returned distribution's energy is evaluated with
    the network's parameters detached (gradients reach :math:`z` only), so the partition-free bound of
    a plain ``Trace_ELBO`` cannot train (and wreck) the prior; a prior objective, alone or inside
    :class:`~pyro_diffvi.infer.EnergyPriorELBO`, trains it.

    **Param store.** The network is registered with Pyro as ``f"{name}.energy_net"`` (e.g.
    ``EnergyPrior.energy_net.0.weight``), or under its attribute path when this module is an attribute of
    another ``PyroModule``. Give two priors of one model different names. When the param store holds
    other tensors under these names (after ``pyro.get_param_store().set_state(...)``), the network adopts
    them, so a restored param store resumes training.

    :param energy_net: an ``nn.Module`` mapping ``(..., *event_shape)`` to ``(...)`` (or ``(..., 1)``).
    :param event_shape: event shape of ``z``, e.g. ``(D,)``.
    :param sampler: passed to :class:`EnergyDistribution`.
    :param name: prefix of the parameters' names in Pyro's param store (default ``"EnergyPrior"``).

    Example::

        >>> import torch
        >>> from torch import nn
        >>> from pyro_diffvi.distributions import EnergyPrior
        >>> prior = EnergyPrior(nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)), (2,))
        >>> d = prior()  # an EnergyDistribution with the unnormalized log_prob -E(z)
        >>> tuple(d.log_prob(torch.zeros(5, 2)).shape), d.normalized
        ((5,), False)
    """

    def __init__(
        self,
        energy_net: nn.Module,
        event_shape: Sequence[int] | int,
        *,
        sampler: Callable | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(check_module_name(name, type(self).__name__))
        if not isinstance(energy_net, nn.Module):
            raise TypeError(f"energy_net must be an nn.Module, got {type(energy_net).__name__}")
        self.energy_net = energy_net
        self.event_shape = torch.Size((event_shape,) if isinstance(event_shape, int) else event_shape)
        self.sampler = sampler

    def _registered_net(self) -> nn.Module:
        net = self._modules["energy_net"]
        if not pyro.settings.get("module_local_params"):
            # like PyroModule's own registration of an nn.Module attribute, but adopting the param
            # store's tensors if they differ (a restored param store resumes training)
            pyro.module(f"{pyro_name(self)}.energy_net", net, update_module_params=True)
        return net

    def forward(self) -> EnergyDistribution:
        """The prior as an :class:`EnergyDistribution` (parameter gradients only inside
        :func:`prior_gradients`)."""
        net = self._registered_net()
        ref = next(iter(net.parameters()), None)
        live = prior_gradients_enabled()
        return EnergyDistribution(
            net if live else _DetachedParameters(net),
            self.event_shape,
            sampler=self.sampler,
            dtype=None if ref is None else ref.dtype,
            device=None if ref is None else ref.device,
            parameter_source=None if live else self,
        )

    def energy(self, z: Tensor) -> Tensor:
        """:math:`E_\theta(z)`, shape ``z.shape[:-len(event_shape)]`` (parameter gradients only inside
        :func:`prior_gradients`)."""
        return self().energy(z)
