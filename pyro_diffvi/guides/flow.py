r"""Amortized normalizing-flow posteriors: AEVB-IAF (Kingma et al. 2016) and neural-spline flows.

The posterior of a latent :math:`z \in \mathbb{R}^D` given an encoder context :math:`h = h(x)` is a
conditional flow :math:`z = f_K \circ \dots \circ f_1(\epsilon)`, :math:`\epsilon \sim \mathcal{N}(0, I)`,
with the exact density

.. math::

    \log q(z|x) = \log \mathcal{N}(\epsilon; 0, I) - \sum_{k=1}^K \log \left|\det \frac{\partial f_k}{\partial
    u_{k-1}}\right|.

Sampling runs every layer forward once; the log-determinant of each layer is cached by Pyro's
transforms when the sample is drawn, so scoring the sample just drawn (what ``Trace_ELBO`` does)
never inverts a layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions import TransformedDistribution
from torch import nn

from pyro_diffvi.guides.amortized import AmortizedGuide
from pyro_diffvi.nn.flows import FLOW_TYPES, ConditionalFlow
from pyro_diffvi.util import check_positive_int, check_widths


class FlowGuide(AmortizedGuide):
    r"""Amortized normalizing-flow guide: AEVB-IAF (Kingma et al. 2016), a baseline of the DDVI paper.

    Each latent site gets a :class:`~pyro_diffvi.nn.ConditionalFlow` on the encoder's context: a diagonal Gaussian
    from the encoder followed by ``num_transforms`` conditional inverse autoregressive layers (default 4,
    as in the DDVI paper's AEVB-IAF baseline), or conditional neural-spline layers
    (``flow="spline"``). The density is exact, so ``Trace_ELBO`` gives the standard ELBO.

    Example (a one-line change from :class:`~pyro_diffvi.guides.GaussianGuide`):

    >>> import torch
    >>> from pyro_diffvi.datasets import make_problem
    >>> problem = make_problem("linear_gaussian_5d")   # a Pyro model (sites "z", "x") with exact log p(x)
    >>> model, x = problem.model, problem.x
    >>> from pyro.infer import SVI, Trace_ELBO
    >>> from pyro.optim import Adam
    >>> from pyro_diffvi.guides import FlowGuide
    >>> guide = FlowGuide(model, latent="z", observed="x", num_transforms=4, flow="iaf")
    >>> svi = SVI(model, guide, Adam({"lr": 1e-3}), Trace_ELBO())
    >>> loss = svi.step(x)
    >>> guide(x)["z"].shape
    torch.Size([64, 5])

    :param num_transforms: number of flow layers per latent site (positive int).
    :param flow: ``"iaf"`` (affine, stable IAF) or ``"spline"`` (rational linear splines).
    :param flow_hidden_dims: hidden widths of each autoregressive network (default
        ``(max(64, 4 D),) * 2``). (``encoder_hidden_dims`` is the default encoder's, as in every guide.)
    :param count_bins: spline segments (``flow="spline"``).
    :param bound: spline half-width (``flow="spline"``).

    The other parameters are those of :class:`~pyro_diffvi.guides.amortized.AmortizedGuide`.
    """

    def __init__(
        self,
        model,
        latent,
        observed,
        *,
        num_transforms: int = 4,
        flow: str = "iaf",
        flow_hidden_dims: Sequence[int] | None = None,
        count_bins: int = 8,
        bound: float = 3.0,
        **kwargs,
    ) -> None:
        check_positive_int("num_transforms", num_transforms)
        if flow not in FLOW_TYPES:
            raise ValueError(f"flow must be one of {FLOW_TYPES}, got {flow!r}")
        check_positive_int("count_bins", count_bins)
        if flow_hidden_dims is not None:
            check_widths("flow_hidden_dims", flow_hidden_dims)
        if not bound > 0:
            raise ValueError(f"bound must be positive, got {bound!r}")
        super().__init__(model, latent, observed, **kwargs)
        self.num_transforms = num_transforms
        self.flow = flow
        self.flow_hidden_dims = None if flow_hidden_dims is None else tuple(flow_hidden_dims)
        self.count_bins = count_bins
        self.bound = bound

    def _build_posteriors(self) -> None:
        self._require_context_tensor()
        for name in self.latent_names:
            width = self.latent_dims[name]
            if self.flow_hidden_dims is not None and min(self.flow_hidden_dims) < width:
                raise ValueError(
                    f"flow_hidden_dims must be widths >= the dimension {width} of latent site {name!r} "
                    f"(autoregressive masks need it), got {self.flow_hidden_dims!r}"
                )
        self.flows = nn.ModuleList(
            self._like_encoder(ConditionalFlow(
                self.latent_dims[name],
                context_dim=self.context_dim,
                num_transforms=self.num_transforms,
                flow=self.flow,
                hidden_dims=self.flow_hidden_dims,
                count_bins=self.count_bins,
                bound=self.bound,
            ))
            for name in self.latent_names
        )

    exact_density = True

    def posterior(self, name: str, context: torch.Tensor) -> TransformedDistribution:
        return self.flows[self.latent_names.index(name)](context)
