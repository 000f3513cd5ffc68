r"""The hierarchical variational posterior of H-AEVB (Ranganath, Tran and Blei 2016), a DDVI-paper baseline.

The posterior has an auxiliary latent :math:`a`:
:math:`q(z|x) = \int q(a|x)\, q(z|a, x)\, da`, with both factors diagonal Gaussians whose parameters are
networks of the encoder context. Its marginal density is intractable; with a learned reverse model
:math:`r(a|z, x)` (Ranganath et al. 2016, Eq. 5; Maaløe et al. 2016)

.. math::

    \log p(x) \ge \mathbb{E}_{q(a, z|x)}\big[\log p(x, z) + \log r(a|z, x) - \log q(a|x) - \log q(z|a, x)\big],

and the gap to the ordinary ELBO of :math:`q(z|x)` is
:math:`\mathbb{E}_q\, \mathrm{KL}\big(q(a|z, x)\,\|\, r(a|z, x)\big) \ge 0`. The emitted site therefore
carries :math:`\log q(a|x) + \log q(z|a, x) - \log r(a|z, x)` as its log density (an
:class:`~pyro_diffvi.distributions.AuxiliaryBoundDistribution`), and plain
:class:`~pyro.infer.Trace_ELBO` optimizes this bound over encoder, both posterior networks and
:math:`r` at once.

References: R. Ranganath, D. Tran, D. M. Blei. *Hierarchical Variational Models*. ICML, 2016.
"""

from __future__ import annotations

import torch

from pyro_diffvi.distributions.auxiliary import AuxiliaryBoundDistribution
from pyro_diffvi.nn.hierarchical import HierarchicalNetworks

__all__ = ["HierarchicalPosterior"]


class HierarchicalPosterior(AuxiliaryBoundDistribution):
    r"""The H-AEVB posterior :math:`q(z|x)` with auxiliary :math:`a`; ``log_prob`` of its own draw is
    :math:`\log q(a|x) + \log q(z|a, x) - \log r(a|z, x)` (see the module docstring).

    Example (a guide builds these from its encoder's context):

    >>> import torch
    >>> from pyro_diffvi.distributions import HierarchicalPosterior
    >>> from pyro_diffvi.nn import HierarchicalNetworks
    >>> q = HierarchicalPosterior(torch.randn(5, 8), HierarchicalNetworks(2, aux_dim=3, context_dim=8))
    >>> z = q.rsample()
    >>> z.shape, q.log_prob(z).shape   # the auxiliary bound term of its own draw
    (torch.Size([5, 2]), torch.Size([5]))

    :param context: encoder context, shape ``batch_shape + (C,)``.
    :param networks: the :class:`~pyro_diffvi.nn.HierarchicalNetworks`.
    """

    def __init__(
        self, context: torch.Tensor, networks: HierarchicalNetworks, *, validate_args: bool | None = None
    ) -> None:
        if context.dim() < 1 or context.shape[-1] != networks.context_dim:
            raise ValueError(
                f"context must have trailing size {networks.context_dim}, got shape {tuple(context.shape)}"
            )
        self.context = context
        self.networks = networks
        super().__init__(context.shape[:-1], torch.Size((networks.dim,)), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> HierarchicalPosterior:
        batch_shape = torch.Size(batch_shape)
        context = self.context.expand(batch_shape + self.context.shape[-1:])
        return type(self)(context, self.networks, validate_args=False)

    def rsample_and_log_density(
        self, sample_shape: torch.Size = torch.Size()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        context = self.context.expand(torch.Size(sample_shape) + self.context.shape)
        q_aux = self.networks.q_aux(context)
        aux = q_aux.rsample()
        q_latent = self.networks.q_latent(aux, context)
        latent = q_latent.rsample()
        r_aux = self.networks.r_aux(latent, context)
        log_density = (
            q_aux.log_prob(aux).sum(-1) + q_latent.log_prob(latent).sum(-1) - r_aux.log_prob(aux).sum(-1)
        )
        return latent, log_density
