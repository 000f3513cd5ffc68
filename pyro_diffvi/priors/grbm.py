r"""A learnable Gaussian-Bernoulli RBM prior (Eq. 12 of the unnormalized-priors paper): calling the module returns a
:class:`~pyro_diffvi.distributions.GRBM` at the current parameters.

References: *Variational Inference with Unnormalized Priors*. Anonymous authors, manuscript under double-blind
review ("the unnormalized-priors paper").
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro.nn import PyroModule, PyroParam
from torch import Tensor

from pyro_diffvi._pyro_compat import pyro_name
from pyro_diffvi.distributions.energy import prior_gradients_enabled
from pyro_diffvi.distributions.grbm import GRBM
from pyro_diffvi.errors import DivergenceError
from pyro_diffvi.util import CheckedDevice, check_module_name, check_positive_float, check_positive_int

__all__ = ["GRBMPrior"]


class GRBMPrior(CheckedDevice, PyroModule):
    r"""Learnable GRBM prior (Eq. 12 of the unnormalized-priors paper). ``prior()`` returns a
    :class:`~pyro_diffvi.distributions.GRBM` with batch shape ``()``.

    Parameters (``PyroParam`` s, unconstrained): ``mu`` (zeros), ``log_sigma`` (zeros, i.e.
    :math:`\sigma = 1`), ``W`` (normal with standard deviation ``init_scale``), ``b`` (zeros). Move with
    ``.to(device, dtype)``.

    **Gradients.** Outside :func:`~pyro_diffvi.distributions.prior_gradients` the returned GRBM
    is built from detached parameters: its energy has gradients in :math:`z` only, so a plain
    ``Trace_ELBO`` leaves the prior untouched (its partition-free bound would drive it to a degenerate
    density). A prior objective, alone or inside :class:`~pyro_diffvi.infer.EnergyPriorELBO`, trains it.

    **Divergence.** If training moved the parameters out of the range a :class:`~pyro_diffvi.distributions.GRBM` accepts
    (non-finite,
    or ``log_sigma`` beyond :func:`~pyro_diffvi.distributions.grbm.max_abs_log_sigma`; checked with validation on),
    calling the module
    raises :class:`~pyro_diffvi.errors.DivergenceError` (inside an objective's loss, before any
    parameter of that step is updated).

    **Param store.** The parameters are named ``f"{name}.mu"``, ``f"{name}.log_sigma"``, ``f"{name}.W"``,
    ``f"{name}.b"`` (e.g. ``GRBMPrior.W``), or by their attribute path when this module is an attribute of
    another ``PyroModule``. Give two priors of one model different names. When the param store holds
    other tensors under these names (after ``pyro.get_param_store().set_state(...)``), the module adopts
    them, so a restored param store resumes training.

    :param dim: number of visible units ``D`` (the latent dimension).
    :param num_hidden: number of hidden units ``H``.
    :param init_scale: standard deviation of the initial weights.
    :param sampler: passed to :class:`~pyro_diffvi.distributions.GRBM`.
    :param name: prefix of the parameters' names in Pyro's param store (default ``"GRBMPrior"``).

    Example:

    >>> import torch
    >>> from pyro_diffvi.priors import GRBMPrior
    >>> prior = GRBMPrior(2, 16, name="prior")
    >>> grbm = prior()  # a GRBM with the unnormalized log_prob -F(z)
    >>> tuple(grbm.log_prob(torch.zeros(5, 2)).shape), grbm.normalized
    ((5,), False)
    """

    def __init__(
        self,
        dim: int,
        num_hidden: int,
        *,
        init_scale: float = 0.1,
        sampler: Callable | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(check_module_name(name, type(self).__name__))
        check_positive_int("dim", dim)
        check_positive_int("num_hidden", num_hidden)
        check_positive_float("init_scale", init_scale)
        self.mu = PyroParam(torch.zeros(dim))
        self.log_sigma = PyroParam(torch.zeros(dim))
        self.W = PyroParam(init_scale * torch.randn(dim, num_hidden))
        self.b = PyroParam(torch.zeros(num_hidden))
        self.sampler = sampler

    def forward(self) -> GRBM:
        """The prior as a :class:`~pyro_diffvi.distributions.GRBM` (parameter gradients only inside
        :func:`~pyro_diffvi.distributions.prior_gradients`)."""
        params = (self.mu, self.log_sigma, self.W, self.b)
        live = prior_gradients_enabled()
        try:
            return GRBM(
                *(params if live else (p.detach() for p in params)),
                sampler=self.sampler,
                parameter_source=None if live else self,
            )
        except ValueError as error:  # the shapes are this module's own: a value check failed
            raise DivergenceError(
                f"{pyro_name(self)}: the prior's parameters left the GRBM's valid range, training diverged "
                f"({error}); no parameter of this step was updated. Lower the prior's learning rate "
                "(EnergyPriorELBO.optim_args) or clip gradients."
            ) from error

    def energy(self, z: Tensor) -> Tensor:
        """Marginal energy :math:`F(z)` of Eq. 12, shape ``z.shape[:-1]`` (parameter gradients only inside
        :func:`~pyro_diffvi.distributions.prior_gradients`)."""
        return self().energy(z)
