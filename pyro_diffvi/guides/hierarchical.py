r"""Amortized hierarchical variational guides, H-AEVB (Ranganath, Tran and Blei 2016), a DDVI-paper baseline: each
latent site's posterior is a :class:`~pyro_diffvi.distributions.HierarchicalPosterior` (an auxiliary latent with a
learned reverse model, whose bound plain :class:`~pyro.infer.Trace_ELBO` optimizes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyro_diffvi.distributions.hierarchical import HierarchicalPosterior
from pyro_diffvi.guides.amortized import AmortizedGuide
from pyro_diffvi.nn.hierarchical import HierarchicalNetworks
from pyro_diffvi.nn.mlp import activation as make_activation


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
                    dim, aux_dim=self.aux_dim or dim, context_dim=self.context_dim,
                    hidden_dims=self.posterior_hidden_dims, activation=self.posterior_activation,
                ))
                for name, dim in self.latent_dims.items()
            }
        )

    def posterior(self, name: str, context: torch.Tensor) -> HierarchicalPosterior:
        return HierarchicalPosterior(context, self.networks[name])
