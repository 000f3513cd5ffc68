r"""Adversarial contrastive divergence with a variational flow (the unnormalized-priors paper, Sec. 2.2, Eqs. 9-10,
Algorithm 2).

References: *Variational Inference with Unnormalized Priors*. Anonymous authors, manuscript under double-blind review
("the unnormalized-priors paper"). D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling.
*Improved Variational Inference with Inverse Autoregressive Flow*. NeurIPS, 2016.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import torch
from torch import Tensor, nn

from pyro_diffvi.infer.prior_objectives.base import (
    PriorObjective,
    batched_energy,
    check_samples,
    check_state_keys,
    energy_function,
    energy_with_detached_parameters,
)
from pyro_diffvi.nn.flows import ConditionalFlow
from pyro_diffvi.util import check_positive_int, check_widths

__all__ = ["AdversarialCDLoss"]


class AdversarialCDLoss(PriorObjective):
    r"""Adversarial contrastive divergence with a variational flow prior :math:`q_\zeta` (the
    unnormalized-priors paper, Sec. 2.2, Eqs. 9-10, Algorithm 2).

    The flow maximizes the variational lower bound on the log partition function (Eq. 9),
    :math:`\log Z \ge \mathbb E_{q_\zeta}[-E_\beta(z)] + H(q_\zeta)` (Alg. 2, step 3), and the energy
    performs contrastive divergence against the flow's samples,
    :math:`\mathbb E_{\text{data}}[E_\beta] - \mathbb E_{q_\zeta}[E_\beta]` (Alg. 2, step 4). The surrogate
    returned combines both: its gradient in :math:`\beta` is the CD gradient only (the flow term uses
    :func:`energy_with_detached_parameters`), and its gradient in :math:`\zeta` is the flow objective
    only (the CD term uses detached flow samples). Its **value** is
    ``cd_gap - log_z_lower_bound``; ``last_terms`` reports ``cd_gap`` and ``log_z_lower_bound``
    (the Eq. 9 bound, a stochastic lower bound on :math:`\log Z`) separately.

    Parameters: the flow is registered with ``pyro.module(module_name, flow)`` at every call, so an
    ``SVI`` optimizer sees and updates it; outside SVI, optimize ``objective.flow.parameters()``.

    :param flow: an unconditional flow module, ``flow()`` returning a distribution over the flattened
        latent whose ``log_prob`` is exact for its own ``rsample``; default: built on the first call as
        :class:`~pyro_diffvi.nn.ConditionalFlow` ``(features, context_dim=0)``, a stable IAF, on the
        samples' feature size, device and dtype.
    :param num_samples: flow samples per call (default: as many as samples ``z``).
    :param num_transforms: transforms of the default flow (the paper uses a 4-layer IAF).
    :param hidden_dims: hidden widths of the default flow's networks.
    :param module_name: the ``pyro.module`` name of the flow.

    References: the unnormalized-priors paper; D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen,
    I. Sutskever, M. Welling. *Improved Variational Inference with Inverse Autoregressive Flow*.
    NeurIPS, 2016.

    Example:

    >>> import pyro, torch
    >>> from pyro_diffvi.infer import AdversarialCDLoss
    >>> pyro.clear_param_store(); pyro.set_rng_seed(0)
    >>> objective = AdversarialCDLoss(num_transforms=1, hidden_dims=(8,))
    >>> loss = objective(lambda z: 0.5 * z.pow(2).sum(-1), torch.randn(16, 2))
    >>> sorted(objective.last_terms)
    ['cd_gap', 'log_z_lower_bound']
    >>> z, log_q = objective.flow_sample(5)
    >>> tuple(z.shape), tuple(log_q.shape)
    ((5, 2), (5,))
    """

    def __init__(
        self,
        *,
        flow: nn.Module | None = None,
        num_samples: int | None = None,
        num_transforms: int = 4,
        hidden_dims: Sequence[int] = (64, 64),
        module_name: str = "adversarial_cd_flow",
    ) -> None:
        super().__init__()
        if flow is not None and not isinstance(flow, nn.Module):
            raise TypeError(f"flow must be a torch.nn.Module, got {type(flow).__name__}")
        if not isinstance(module_name, str) or not module_name:
            raise ValueError(f"module_name must be a non-empty str, got {module_name!r}")
        self.flow = flow
        self.num_samples = None if num_samples is None else check_positive_int("num_samples", num_samples)
        self.num_transforms = check_positive_int("num_transforms", num_transforms)
        self.hidden_dims = check_widths("hidden_dims", hidden_dims)
        self.module_name = module_name
        self.event_shape: torch.Size | None = None

    @property
    def flow(self) -> nn.Module | None:
        """The variational flow (``None`` until the first call builds the default one)."""
        return self.auxiliary_modules["flow"] if "flow" in self.auxiliary_modules else None

    @flow.setter
    def flow(self, module: nn.Module | None) -> None:
        if module is None:
            if "flow" in self.auxiliary_modules:
                del self.auxiliary_modules["flow"]
        else:
            self.auxiliary_modules["flow"] = module

    def auxiliary_module_names(self) -> tuple[str, ...]:
        return (self.module_name,)

    def state_dict(self) -> dict:
        """The samples' event shape (``None`` before the first call) and the flow's ``state_dict()``
        (parameters and buffers; ``None`` before the first call built the default flow)."""
        return {
            "event_shape": None if self.event_shape is None else tuple(self.event_shape),
            "flow": None if self.flow is None else self.flow.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the flow saved by :meth:`state_dict`, building the default flow first if needed (on
        the device and dtype of the saved tensors), so that the next call draws no initialization.

        :param state: a dict from :meth:`state_dict` of an objective built with the same arguments.
        """
        check_state_keys(type(self).__name__, state, {"event_shape", "flow"})
        flow_state = state["flow"]
        if state["event_shape"] is not None:
            reference = next((t for t in (flow_state or {}).values() if t.is_floating_point()), None)
            if reference is None:
                raise ValueError("state['flow'] must hold the flow's floating-point tensors (its dtype and device)")
            like = torch.empty((1,) + tuple(state["event_shape"]), dtype=reference.dtype, device=reference.device)
            self._setup(like)
        if flow_state is not None:
            if self.flow is None:
                raise ValueError("state holds a flow's state_dict but this AdversarialCDLoss has no flow")
            self.flow.load_state_dict(flow_state)

    def _setup(self, z: Tensor) -> None:
        if self.event_shape is None:
            self.event_shape = z.shape[1:]
        elif z.shape[1:] != self.event_shape:
            raise ValueError(f"z must have event shape {tuple(self.event_shape)}, got {tuple(z.shape[1:])}")
        if self.flow is None:
            features = int(math.prod(self.event_shape))
            hidden = tuple(max(h, features) for h in self.hidden_dims)  # autoregressive masks need >= features
            self.flow = ConditionalFlow(
                features,
                context_dim=0,
                num_transforms=self.num_transforms,
                flow="iaf",
                hidden_dims=hidden,
                stable=False,
            )
            self.flow.to(device=z.device, dtype=z.dtype)

    def flow_sample(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` reparameterized flow samples, shape ``(n,) + event_shape``, and their log densities."""
        if self.flow is None or self.event_shape is None:
            raise RuntimeError("AdversarialCDLoss.flow_sample: the flow is built on the first call to loss()")
        q = self.flow()
        flat = q.rsample((n,))
        log_q = q.log_prob(flat)  # exact and cheap for its own sample (transform caches)
        self.flow.clear_cache()  # the caches hold this graph's tensors, which deepcopy and pickle refuse
        return flat.reshape((n,) + tuple(self.event_shape)), log_q

    def loss(self, prior, z: Tensor, log_q: Tensor | None = None) -> Tensor:
        energy_fn = energy_function(prior)
        z = check_samples("z", z).detach()
        self._setup(z)
        # update_module_params: after ParamStore.set_state the flow adopts the store's tensors (resume)
        pyro.module(self.module_name, self.flow, update_module_params=True)
        z_flow, log_q_flow = self.flow_sample(self.num_samples or z.shape[0])
        # Alg. 2, step 3: the flow maximizes E_q[-E] + H(q) (energy parameters held fixed)
        log_z_bound = (-energy_with_detached_parameters(energy_fn, z_flow) - log_q_flow).mean()
        # Alg. 2, step 4: the energy minimizes E_data[E] - E_q[E] (flow samples held fixed)
        cd_gap = batched_energy(energy_fn, z).mean() - batched_energy(energy_fn, z_flow.detach()).mean()
        self.last_terms = {"cd_gap": cd_gap.item(), "log_z_lower_bound": log_z_bound.item()}
        return cd_gap - log_z_bound

    def __repr__(self) -> str:
        return f"AdversarialCDLoss(num_transforms={self.num_transforms}, module_name={self.module_name!r})"
