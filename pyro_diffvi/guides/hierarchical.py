r"""Hierarchical variational posteriors, H-AEVB (Ranganath, Tran and Blei 2016), a DDVI-paper baseline.

The posterior has an auxiliary latent :math:`a`:
:math:`q(z|x) = \int q(a|x)\, q(z|a, x)\, da`, with both factors diagonal Gaussians whose parameters are
networks of the encoder context. Its marginal density is intractable; with a learned reverse model
:math:`r(a|z, x)` (Ranganath et al. 2016, Eq. 5; Maaløe et al. 2016)

.. math::

    \log p(x) \ge \mathbb{E}_{q(a, z|x)}\big[\log p(x, z) + \log r(a|z, x) - \log q(a|x) - \log q(z|a, x)\big],

and the gap to the ordinary ELBO of :math:`q(z|x)` is
:math:`\mathbb{E}_q\, \mathrm{KL}\big(q(a|z, x)\,\|\, r(a|z, x)\big) \ge 0`. The emitted site therefore
carries :math:`\log q(a|x) + \log q(z|a, x) - \log r(a|z, x)` as its log density (an
:class:`~pyro_diffvi.distributions.auxiliary.AuxiliaryBoundDistribution`), and plain
:class:`~pyro.infer.Trace_ELBO` optimizes this bound over encoder, both posterior networks and
:math:`r` at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions import Normal
from torch import nn

from pyro_diffvi.distributions.auxiliary import AuxiliaryBoundDistribution
from pyro_diffvi.guides.amortized import AmortizedGuide
from pyro_diffvi.nn import ConditionalMLP
from pyro_diffvi.nn.heads import loc_scale
from pyro_diffvi.nn.mlp import activation as make_activation

_MIN_SCALE = 1e-4


def _gaussian(params: torch.Tensor) -> Normal:
    return Normal(*loc_scale(params, _MIN_SCALE))


class HierarchicalNetworks(nn.Module):
    r"""The three networks of a hierarchical posterior: :math:`q(a|h)`, :math:`q(z|a, h)`, :math:`r(a|z, h)`.

    Each outputs the mean and (softplus) standard deviation of a diagonal Gaussian.

    :param latent_dim: dimension :math:`D` of :math:`z`.
    :param aux_dim: dimension of the auxiliary latent :math:`a`.
    :param context_dim: width of the encoder context :math:`h`.
    :param hidden_dims: hidden widths of :math:`q(z|a, h)` and :math:`r(a|z, h)`.
    :param activation: their hidden activation.
    """

    def __init__(
        self,
        latent_dim: int,
        aux_dim: int,
        context_dim: int,
        hidden_dims: Sequence[int] = (64, 64),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.latent_dim, self.aux_dim, self.context_dim = latent_dim, aux_dim, context_dim
        self.aux_head = nn.Linear(context_dim, 2 * aux_dim)
        self.conditional = ConditionalMLP(aux_dim, 2 * latent_dim, context_dim, 0, hidden_dims, activation)
        self.reverse = ConditionalMLP(latent_dim, 2 * aux_dim, context_dim, 0, hidden_dims, activation)

    def q_aux(self, context: torch.Tensor) -> Normal:
        """:math:`q(a|x)`, batch shape ``context.shape[:-1] + (aux_dim,)``."""
        return _gaussian(self.aux_head(context))

    def q_latent(self, aux: torch.Tensor, context: torch.Tensor) -> Normal:
        """:math:`q(z|a, x)`."""
        return _gaussian(self.conditional(aux, None, context))

    def r_aux(self, latent: torch.Tensor, context: torch.Tensor) -> Normal:
        """The reverse model :math:`r(a|z, x)`."""
        return _gaussian(self.reverse(latent, None, context))


class HierarchicalPosterior(AuxiliaryBoundDistribution):
    r"""The H-AEVB posterior :math:`q(z|x)` with auxiliary :math:`a`; ``log_prob`` of its own draw is
    :math:`\log q(a|x) + \log q(z|a, x) - \log r(a|z, x)` (see the module docstring).

    Example (a guide builds these from its encoder's context):

    >>> import torch
    >>> from pyro_diffvi.guides import HierarchicalPosterior
    >>> from pyro_diffvi.guides.hierarchical import HierarchicalNetworks
    >>> q = HierarchicalPosterior(torch.randn(5, 8), HierarchicalNetworks(2, 3, 8))
    >>> z = q.rsample()
    >>> z.shape, q.log_prob(z).shape   # the auxiliary bound term of its own draw
    (torch.Size([5, 2]), torch.Size([5]))

    :param context: encoder context, shape ``batch_shape + (C,)``.
    :param networks: the :class:`HierarchicalNetworks`.
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
        super().__init__(context.shape[:-1], torch.Size((networks.latent_dim,)), validate_args=validate_args)

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


class HierarchicalGuide(AmortizedGuide):
    r"""Amortized hierarchical variational guide (H-AEVB; Ranganath, Tran and Blei 2016).

    Per latent site: :math:`a \sim q(a|x)`, :math:`z \sim q(z|a, x)`, and a learned reverse model
    :math:`r(a|z, x)`; the site's log density is the auxiliary bound term, so
    ``Trace_ELBO`` (and ``RenyiELBO``) compute a valid lower bound on :math:`\log p(x)` and train
    :math:`r` together with the posterior. :math:`r` is a submodule of the guide, hence registered
    with Pyro.

    Example (a one-line change from :class:`~pyro_diffvi.guides.GaussianGuide`):

    >>> import torch
    >>> from pyro_diffvi.datasets import make_problem
    >>> problem = make_problem("linear_gaussian_5d")   # a Pyro model (sites "z", "x") with exact log p(x)
    >>> model, x = problem.model, problem.x
    >>> from pyro.infer import Trace_ELBO
    >>> from pyro_diffvi.guides import HierarchicalGuide
    >>> guide = HierarchicalGuide(model, latent="z", observed="x", aux_dim=4)
    >>> bound = -Trace_ELBO(num_particles=4).loss(model, guide, x)   # the auxiliary-variable bound
    >>> bound < problem.log_px.sum().item()
    True

    :param aux_dim: dimension of :math:`a` (default: the latent's flattened dimension).
    :param posterior_hidden_dims: hidden widths of the :math:`q(z|a, x)` and :math:`r(a|z, x)` networks.
    :param posterior_activation: their activation.

    The other parameters are those of :class:`~pyro_diffvi.guides.amortized.AmortizedGuide`.
    """

    def __init__(
        self,
        model,
        latent,
        observed,
        *,
        aux_dim: int | None = None,
        posterior_hidden_dims: Sequence[int] = (64, 64),
        posterior_activation: str = "relu",
        **kwargs,
    ) -> None:
        if aux_dim is not None and (isinstance(aux_dim, bool) or not isinstance(aux_dim, int) or aux_dim < 1):
            raise ValueError(f"aux_dim must be a positive int or None, got {aux_dim!r}")
        if not posterior_hidden_dims or any(int(h) <= 0 for h in posterior_hidden_dims):
            raise ValueError(f"posterior_hidden_dims must be non-empty positive widths, got {posterior_hidden_dims!r}")
        make_activation(posterior_activation)  # validates the name now rather than at the first call
        super().__init__(model, latent, observed, **kwargs)
        self.aux_dim = aux_dim
        self.posterior_hidden_dims = tuple(int(h) for h in posterior_hidden_dims)
        self.posterior_activation = posterior_activation

    def _build_posteriors(self) -> None:
        self._require_context_tensor()
        self.networks = nn.ModuleDict(
            {
                name: self._like_encoder(HierarchicalNetworks(
                    dim, self.aux_dim or dim, self.context_dim,
                    self.posterior_hidden_dims, self.posterior_activation,
                ))
                for name, dim in self.latent_dims.items()
            }
        )

    def posterior(self, name: str, context: torch.Tensor) -> HierarchicalPosterior:
        return HierarchicalPosterior(context, self.networks[name])
