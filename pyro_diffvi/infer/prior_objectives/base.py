"""The interface every prior objective follows (:class:`PriorObjective`), and its helpers: the energy of a prior with
gradients to its parameters (:func:`energy_function`), the energy with its parameters held fixed
(:func:`energy_with_detached_parameters`), and checks of the samples and of saved states."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pyro_diffvi.distributions.energy import prior_gradients
from pyro_diffvi.ops.types import EnergyFn
from pyro_diffvi.util import check_finite

__all__ = [
    "PriorObjective",
    "batched_energy",
    "check_samples",
    "check_state_keys",
    "energy_function",
    "energy_with_detached_parameters",
]


def energy_function(prior) -> EnergyFn:
    """Return the energy function ``z -> E(z)`` of ``prior`` (an object with ``.energy`` or a callable),
    with gradients to a learnable prior's parameters: a distribution from a prior module is replaced by
    its :meth:`~pyro_diffvi.distributions.EnergyDistribution.with_parameter_gradients` version, and a
    prior module's energy is evaluated inside
    :func:`~pyro_diffvi.distributions.prior_gradients` (a prior objective is the one place where
    the prior's parameters get gradients).

    :param prior: an object with an ``energy(z)`` method, or a callable ``z -> E(z)``.

    Example:

    >>> import torch
    >>> from pyro_diffvi.priors import GRBMPrior
    >>> from pyro_diffvi.infer.prior_objectives import energy_function
    >>> prior = GRBMPrior(2, 3)
    >>> energy_function(prior)(torch.zeros(4, 2)).requires_grad  # gradients to the prior's parameters
    True
    >>> prior.energy(torch.zeros(4, 2)).requires_grad  # outside a prior objective: none
    False
    """
    with_gradients = getattr(prior, "with_parameter_gradients", None)
    if callable(with_gradients):
        prior = with_gradients()
    energy = getattr(prior, "energy", None)
    if not callable(energy):
        energy = prior if callable(prior) else None
    if energy is None:
        raise TypeError(
            "prior must have an energy(z) method (EnergyDistribution, GRBM, EnergyPrior) or be a callable "
            f"z -> E(z); got {type(prior).__name__}"
        )
    if not isinstance(prior, nn.Module):
        return energy

    def module_energy(z: Tensor) -> Tensor:
        with prior_gradients():
            return energy(z)

    return module_energy


def energy_with_detached_parameters(energy_fn: EnergyFn, z: Tensor) -> Tensor:
    r""":math:`E(z)` with its value and its gradient in :math:`z` (and in whatever ``z`` depends on),
    but **zero** gradient for the energy's own parameters :math:`\beta`.

    Computed as :math:`E_\beta(z) - E_\beta(\bar z) + \overline{E_\beta(\bar z)}` with :math:`\bar\cdot`
    a stop-gradient: the two :math:`\beta`-gradients cancel exactly, the value is :math:`E_\beta(z)`.
    Works for any energy (modules, GRBM tensors, closures) without knowing where its parameters live.

    :param energy_fn: the energy ``z -> E(z)``.
    :param z: the states.

    Example:

    >>> import torch
    >>> from pyro_diffvi.infer.prior_objectives import energy_with_detached_parameters
    >>> scale = torch.tensor(2.0, requires_grad=True)
    >>> z = torch.ones(3, requires_grad=True)
    >>> e = energy_with_detached_parameters(lambda z: scale * z.pow(2).sum(-1), z)
    >>> torch.autograd.grad(e, [scale, z])  # no gradient to the energy's parameter scale
    (tensor(0.), tensor([4., 4., 4.]))
    """
    e_const = energy_fn(z.detach())
    return energy_fn(z) - e_const + e_const.detach()


def check_samples(name: str, z: Tensor, *, min_dim: int = 2) -> Tensor:
    """Return ``z``, raising naming ``name`` unless it is a finite floating-point tensor of shape ``(N,) +
    event_shape`` with ``N >= 1`` (and at least ``min_dim`` dimensions).

    :param name: the argument's name, for the error message.
    :param z: the samples.
    :param min_dim: the fewest dimensions allowed.
    """
    if not torch.is_tensor(z):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N,) + event_shape, got {type(z).__name__}")
    if z.dim() < min_dim or z.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape (N,) + event_shape with N >= 1 and at least {min_dim - 1} event dimension(s), "
            f"got {tuple(z.shape)}"
        )
    if not z.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {z.dtype}")
    return check_finite(name, z)


def batched_energy(energy_fn: EnergyFn, z: Tensor) -> Tensor:
    """``energy_fn(z)``, raising unless it is one energy per sample, shape ``(N,)``.

    :param energy_fn: the energy.
    :param z: samples ``(N,) + event_shape``.
    """
    energy = energy_fn(z)
    if energy.shape != z.shape[:1]:
        raise ValueError(
            f"the prior's energy must map z of shape {tuple(z.shape)} to shape {tuple(z.shape[:1])}, "
            f"got {tuple(energy.shape)}"
        )
    return energy


def check_state_keys(owner: str, state, keys: set[str]) -> None:
    """Raise naming ``owner.state_dict()`` unless ``state`` is a dict with exactly ``keys``.

    :param owner: the class whose ``state_dict`` made ``state``.
    :param state: the state to restore.
    :param keys: the keys it must have.
    """
    if not isinstance(state, dict) or set(state) != keys:
        raise ValueError(
            f"state must be a dict with keys {sorted(keys)} (from {owner}.state_dict()), got "
            f"{sorted(state) if isinstance(state, dict) else type(state).__name__}"
        )


class PriorObjective:
    """Base class: an objective that fits an energy to samples ``z`` (see the module docstring).

    Subclasses implement :meth:`loss` and fill ``self.last_terms``. ``needs_log_q`` tells the ELBO to
    pass the proposal log density of the samples. Objectives with modules of their own keep them in
    ``auxiliary_modules`` (an ``nn.ModuleDict``, so that an ``ELBOModule`` hands them to a torch
    optimizer); objectives with training state (a flow, a replay buffer) override :meth:`state_dict`
    and :meth:`load_state_dict`.

    Example (a new objective: the energy's mean on the samples plus a quadratic penalty):

    >>> import torch
    >>> from pyro_diffvi.infer import PriorObjective
    >>> from pyro_diffvi.infer.prior_objectives import energy_function
    >>> class MeanEnergy(PriorObjective):
    ...     def loss(self, prior, z, log_q=None):
    ...         energy = energy_function(prior)(z)
    ...         loss = energy.mean() + 0.1 * energy.pow(2).mean()
    ...         self.last_terms = {"mean_energy": energy.mean().item()}
    ...         return loss
    >>> MeanEnergy()(lambda z: z.pow(2).sum(-1), torch.ones(5, 2))
    tensor(2.4000)
    """

    needs_log_q: bool = False

    def __init__(self) -> None:
        self.last_terms: dict[str, float] = {}
        self.auxiliary_modules = nn.ModuleDict()

    def state_dict(self) -> dict:
        """Everything besides the constructor's arguments that affects the next call (none here)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore the state saved by :meth:`state_dict` of an objective built with the same arguments.

        :param state: a dict from :meth:`state_dict`.
        """
        check_state_keys(type(self).__name__, state, set())

    def loss(self, prior, z: Tensor, log_q: Tensor | None = None) -> Tensor:
        """The objective's surrogate loss, to be minimized.

        :param prior: an object with an ``energy(z)`` method, or a callable ``z -> E(z)``.
        :param z: samples, shape ``(N,) + event_shape`` (treated as data).
        :param log_q: their proposal log densities, shape ``(N,)`` (for objectives with ``needs_log_q``).
        """
        raise NotImplementedError

    def __call__(self, prior, z: Tensor, log_q: Tensor | None = None) -> Tensor:
        return self.loss(prior, z, log_q)

    def auxiliary_module_names(self) -> tuple[str, ...]:
        """Names under which the objective registers its own modules with ``pyro.module`` (if any)."""
        return ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
