r"""A learnable neural-energy prior :math:`p_\theta(z) \propto e^{-E_\theta(z)}` (the unnormalized-priors paper, Sec.
2).

Calling the module returns an :class:`~pyro_diffvi.distributions.EnergyDistribution` whose energy carries gradients
to the network's parameters only inside :func:`~pyro_diffvi.distributions.prior_gradients` (see
:mod:`pyro_diffvi.distributions.energy` for why).

References: *Variational Inference with Unnormalized Priors*. Anonymous authors, manuscript under double-blind
review ("the unnormalized-priors paper").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from pyro.nn import PyroModule
from torch import Tensor, nn
from torch.func import functional_call

from pyro_diffvi._pyro_compat import register_child
from pyro_diffvi.distributions.energy import EnergyDistribution, prior_gradients_enabled
from pyro_diffvi.util import CheckedDevice, check_module_name

__all__ = ["EnergyPrior"]


class _DetachedParameters:
    """``z -> net(z)`` evaluated with the network's parameters detached: gradients reach ``z`` only."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def __call__(self, z: Tensor) -> Tensor:
        params = {name: p.detach() for name, p in self.net.named_parameters()}
        return functional_call(self.net, params, (z,))


class EnergyPrior(CheckedDevice, PyroModule):
    r"""Learnable neural-energy prior :math:`p_\theta(z) \propto e^{-E_\theta(z)}`.

    ``prior()`` returns an :class:`~pyro_diffvi.distributions.EnergyDistribution` (unnormalized ``log_prob``);
    ``prior.energy(z)``
    evaluates :math:`E_\theta(z)`. Tensors are created on the device and dtype of the network's parameters.

    **Gradients.** Outside :func:`~pyro_diffvi.distributions.prior_gradients` the returned distribution's energy is
    evaluated with
    the network's parameters detached (gradients reach :math:`z` only), so the partition-free bound of
    a plain ``Trace_ELBO`` cannot train (and wreck) the prior; a prior objective, alone or inside
    :class:`~pyro_diffvi.infer.EnergyPriorELBO`, trains it.

    **Param store.** The network is registered with Pyro as ``f"{name}.energy_fn"`` (e.g.
    ``EnergyPrior.energy_fn.0.weight``), or under its attribute path when this module is an attribute of
    another ``PyroModule``. Give two priors of one model different names. When the param store holds
    other tensors under these names (after ``pyro.get_param_store().set_state(...)``), the network adopts
    them, so a restored param store resumes training.

    :param energy_fn: an ``nn.Module`` mapping ``(..., *event_shape)`` to ``(...)`` (or ``(..., 1)``).
    :param event_shape: event shape of ``z``, e.g. ``(D,)``.
    :param sampler: passed to :class:`~pyro_diffvi.distributions.EnergyDistribution`.
    :param name: prefix of the parameters' names in Pyro's param store (default ``"EnergyPrior"``).

    Example:

    >>> import torch
    >>> from torch import nn
    >>> from pyro_diffvi.priors import EnergyPrior
    >>> prior = EnergyPrior(nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)), (2,))
    >>> d = prior()  # an EnergyDistribution with the unnormalized log_prob -E(z)
    >>> tuple(d.log_prob(torch.zeros(5, 2)).shape), d.normalized
    ((5,), False)
    """

    def __init__(
        self,
        energy_fn: nn.Module,
        event_shape: Sequence[int] | int,
        *,
        sampler: Callable | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(check_module_name(name, type(self).__name__))
        if not isinstance(energy_fn, nn.Module):
            raise TypeError(f"energy_fn must be an nn.Module, got {type(energy_fn).__name__}")
        self.energy_fn = energy_fn
        self.event_shape = torch.Size((event_shape,) if isinstance(event_shape, int) else event_shape)
        self.sampler = sampler

    def forward(self) -> EnergyDistribution:
        """The prior as an :class:`EnergyDistribution` (parameter gradients only inside
        :func:`~pyro_diffvi.distributions.prior_gradients`)."""
        net = register_child(self, "energy_fn")  # adopts a restored param store's tensors
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
        :func:`~pyro_diffvi.distributions.prior_gradients`)."""
        return self().energy(z)
