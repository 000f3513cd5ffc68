r"""The networks of a hierarchical variational posterior (H-AEVB; Ranganath, Tran and Blei 2016): :math:`q(a|h)`,
:math:`q(z|a, h)` and the reverse model :math:`r(a|z, h)`, each a diagonal Gaussian of an encoder context :math:`h`.

References: R. Ranganath, D. Tran, D. M. Blei. *Hierarchical Variational Models*. ICML, 2016.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions import Normal
from torch import nn

from pyro_diffvi.nn.heads import loc_scale
from pyro_diffvi.nn.mlp import ConditionalMLP

__all__ = ["HierarchicalNetworks"]

_MIN_SCALE = 1e-4


def _gaussian(params: torch.Tensor) -> Normal:
    return Normal(*loc_scale(params, _MIN_SCALE))


class HierarchicalNetworks(nn.Module):
    r"""The three networks of a hierarchical posterior: :math:`q(a|h)`, :math:`q(z|a, h)`, :math:`r(a|z, h)`.

    Each outputs the mean and (softplus) standard deviation of a diagonal Gaussian.

    :param dim: dimension :math:`D` of :math:`z`.
    :param aux_dim: dimension of the auxiliary latent :math:`a`.
    :param context_dim: width of the encoder context :math:`h`.
    :param hidden_dims: hidden widths of :math:`q(z|a, h)` and :math:`r(a|z, h)`.
    :param activation: their hidden activation.
    """

    def __init__(
        self,
        dim: int,
        *,
        aux_dim: int,
        context_dim: int,
        hidden_dims: Sequence[int] = (64, 64),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.dim, self.aux_dim, self.context_dim = dim, aux_dim, context_dim
        self.aux_head = nn.Linear(context_dim, 2 * aux_dim)
        options = dict(context_dim=context_dim, hidden_dims=hidden_dims, activation=activation)
        self.conditional = ConditionalMLP(aux_dim, 2 * dim, **options)
        self.reverse = ConditionalMLP(dim, 2 * aux_dim, **options)

    def q_aux(self, context: torch.Tensor) -> Normal:
        """:math:`q(a|x)`, batch shape ``context.shape[:-1] + (aux_dim,)``."""
        return _gaussian(self.aux_head(context))

    def q_latent(self, aux: torch.Tensor, context: torch.Tensor) -> Normal:
        """:math:`q(z|a, x)`."""
        return _gaussian(self.conditional(aux, None, context))

    def r_aux(self, latent: torch.Tensor, context: torch.Tensor) -> Normal:
        """The reverse model :math:`r(a|z, x)`."""
        return _gaussian(self.reverse(latent, None, context))
