r"""Context-conditioned normalizing flows on :math:`\mathbb{R}^D`: inverse autoregressive layers (Kingma et al. 2016)
or neural-spline layers (Durkan et al. 2019) on a diagonal Gaussian.

The density of :math:`z` given a context :math:`h` is that of a flow
:math:`z = f_K \circ \dots \circ f_1(\epsilon)`, :math:`\epsilon \sim \mathcal{N}(0, I)`, exact:

.. math::

    \log q(z|h) = \log \mathcal{N}(\epsilon; 0, I)
        - \sum_{k=1}^K \log \left|\det \frac{\partial f_k}{\partial u_{k-1}}\right|.

Sampling runs every layer forward once; the log-determinant of each layer is cached by Pyro's
transforms when the sample is drawn, so scoring the sample just drawn (what ``Trace_ELBO`` does)
never inverts a layer. The guides' flow posteriors (:class:`~pyro_diffvi.guides.FlowGuide`), the flow
prior (:class:`~pyro_diffvi.priors.FlowPrior`) and the variational flow of adversarial contrastive
divergence are built on :class:`ConditionalFlow`.

References: D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling. *Improved
Variational Inference with Inverse Autoregressive Flow*. NeurIPS, 2016. C. Durkan, A. Bekasov, I. Murray,
G. Papamakarios. *Neural Spline Flows*. NeurIPS, 2019.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from pyro.distributions import Normal, TransformedDistribution
from pyro.distributions.transforms import (
    AffineAutoregressive,
    ConditionalAffineAutoregressive,
    ConditionalSplineAutoregressive,
    SplineAutoregressive,
)
from pyro.nn import AutoRegressiveNN, ConditionalAutoRegressiveNN
from torch import nn
from torch.distributions.transforms import AffineTransform, Transform

from pyro_diffvi.nn.heads import loc_scale
from pyro_diffvi.util import check_positive_int

__all__ = ["FLOW_TYPES", "ConditionalFlow"]

FLOW_TYPES = ("iaf", "spline")


def _autoregressive_order(dim: int, layer: int) -> torch.Tensor:
    """Identity order on even layers, reversed order on odd layers (the IAF paper's permutation)."""
    order = torch.arange(dim)
    return order if layer % 2 == 0 else order.flip(0)


class ConditionalFlow(nn.Module):
    r"""A context-conditioned flow density :math:`q(z | h)` on :math:`\mathbb{R}^D`.

    ``flow="iaf"`` (Kingma et al. 2016, Sec. 4 and Eq. 14): a diagonal Gaussian
    :math:`z_0 = \mu(h) + \sigma(h) \odot \epsilon` followed by ``num_transforms`` inverse autoregressive
    layers in the numerically stable (LSTM-style) form
    :math:`z_k = \sigma_k \odot z_{k-1} + (1 - \sigma_k) \odot m_k`,
    :math:`[m_k, s_k] = \mathrm{AR}_k(z_{k-1}, h)`, :math:`\sigma_k = \mathrm{sigmoid}(s_k)`, whose
    log-determinant is :math:`\sum_i \log \sigma_{k,i}`. The variable order is reversed between
    layers (the paper's permutation), built into each MADE network's ``permutation`` buffer.

    ``flow="spline"`` (Durkan et al. 2019): ``num_transforms`` conditional autoregressive rational
    linear splines on :math:`[-B, B]` (identity outside), then the affine map
    :math:`z = \mu(h) + \sigma(h) \odot u`, so the splines act on a standardized scale.

    Every mask and permutation is a registered buffer (Pyro's :class:`~pyro.nn.MaskedLinear`), so
    ``.to(device)`` moves the whole flow.

    With ``context_dim=0`` the flow is unconditional: the Gaussian's parameters are free and the
    layers read no context (``flow()`` is then a distribution with ``batch_shape ()``); the variational
    prior of :class:`~pyro_diffvi.infer.AdversarialCDLoss` is such a flow.

    Example:

    >>> import torch
    >>> from pyro_diffvi.nn import ConditionalFlow
    >>> flow = ConditionalFlow(2, context_dim=8, num_transforms=4, flow="spline")
    >>> q = flow(torch.randn(5, 8))   # q(z | h) for five contexts
    >>> z = q.rsample()
    >>> z.shape, q.log_prob(z).shape
    (torch.Size([5, 2]), torch.Size([5]))

    :param dim: latent dimension :math:`D`.
    :param context_dim: width of the context :math:`h` (0 for an unconditional flow).
    :param num_transforms: number of flow layers :math:`K` (default 4, the DDVI paper's AEVB-IAF baseline).
    :param flow: ``"iaf"`` or ``"spline"``.
    :param hidden_dims: hidden widths of each autoregressive network (each at least ``dim``);
        default ``(max(64, 4 * dim),) * 2``.
    :param count_bins: spline segments (``flow="spline"`` only).
    :param bound: spline half-width :math:`B` (``flow="spline"`` only).
    :param stable: IAF layers in the gated form above (``True``) or the plain affine form
        :math:`z_k = \\mu_k + e^{s_k} \\odot z_{k-1}` with clamped log-scales (``False``), whose layers can
        expand as well as contract (``flow="iaf"`` only).
    """

    def __init__(
        self,
        dim: int,
        *,
        context_dim: int,
        num_transforms: int = 4,
        flow: str = "iaf",
        hidden_dims: Sequence[int] | None = None,
        count_bins: int = 8,
        bound: float = 3.0,
        stable: bool = True,
    ) -> None:
        super().__init__()
        self.stable = bool(stable)
        self.dim = check_positive_int("dim", dim)
        if isinstance(context_dim, bool) or not isinstance(context_dim, int) or context_dim < 0:
            raise ValueError(f"context_dim must be a non-negative int, got {context_dim!r}")
        self.context_dim = context_dim
        self.num_transforms = check_positive_int("num_transforms", num_transforms)
        if flow not in FLOW_TYPES:
            raise ValueError(f"flow must be one of {FLOW_TYPES}, got {flow!r}")
        self.flow = flow
        hidden_dims = tuple(hidden_dims) if hidden_dims is not None else (max(64, 4 * dim),) * 2
        if not hidden_dims or any(
            isinstance(h, bool) or not isinstance(h, int) or h < dim for h in hidden_dims
        ):
            raise ValueError(
                f"hidden_dims must be a non-empty sequence of ints >= dim={dim} "
                f"(autoregressive masks need it), got {hidden_dims!r}"
            )
        if context_dim:
            self.base_head = nn.Linear(context_dim, 2 * dim)
        else:
            self.base_params = nn.Parameter(torch.zeros(2 * dim))
        if flow == "iaf":
            layers = [self._iaf_layer(k, hidden_dims) for k in range(num_transforms)]
        else:
            check_positive_int("count_bins", count_bins)
            if not bound > 0:
                raise ValueError(f"bound must be positive, got {bound!r}")
            layers = [self._spline_layer(k, hidden_dims, count_bins, bound) for k in range(num_transforms)]
        self.layers = nn.ModuleList(layers)

    def _made(self, hidden_dims: tuple[int, ...], k: int, param_dims: list[int]) -> nn.Module:
        permutation = _autoregressive_order(self.dim, k)
        with warnings.catch_warnings():  # for dim == 1 the layer is an affine map of the context
            warnings.filterwarnings("ignore", message=".*AutoRegressiveNN input_dim = 1")
            if not self.context_dim:
                return AutoRegressiveNN(self.dim, list(hidden_dims), param_dims=param_dims, permutation=permutation)
            return ConditionalAutoRegressiveNN(
                self.dim, self.context_dim, list(hidden_dims), param_dims=param_dims, permutation=permutation
            )

    def _iaf_layer(self, k: int, hidden_dims: tuple[int, ...]) -> nn.Module:
        arn = self._made(hidden_dims, k, [1, 1])
        layer = ConditionalAffineAutoregressive if self.context_dim else AffineAutoregressive
        return layer(arn, stable=self.stable)

    def _spline_layer(self, k: int, hidden_dims: tuple[int, ...], count_bins: int, bound: float) -> nn.Module:
        arn = self._made(hidden_dims, k, [count_bins, count_bins, count_bins - 1, count_bins])
        layer = ConditionalSplineAutoregressive if self.context_dim else SplineAutoregressive
        return layer(self.dim, arn, count_bins=count_bins, bound=bound, order="linear")

    def base_affine(self, context: torch.Tensor | None) -> AffineTransform:
        r"""The Gaussian part :math:`u \mapsto \mu(h) + \sigma(h) \odot u` (cached, exact log-det)."""
        params = self.base_head(context) if self.context_dim else self.base_params
        loc, scale = loc_scale(params, 1e-4)
        return AffineTransform(loc, scale, event_dim=1, cache_size=1)

    def transforms(self, context: torch.Tensor | None) -> list[Transform]:
        r"""The (conditioned) transforms :math:`f_1, \dots, f_K` plus the affine map, in sampling order."""
        layers = [layer.condition(context) for layer in self.layers] if self.context_dim else list(self.layers)
        affine = self.base_affine(context)
        return [affine, *layers] if self.flow == "iaf" else [*layers, affine]

    def clear_cache(self) -> None:
        """Drop the values the unconditional layers cache from their last call (torch's ``_cached_x_y``, Pyro's
        ``_cached_log_scale``): tensors of that call's graph, which ``copy.deepcopy`` and ``pickle`` refuse."""
        for layer in self.layers:
            if getattr(layer, "_cached_x_y", None) is not None:
                layer._cached_x_y = None, None
            for name in [k for k in vars(layer) if k.startswith("_cached_") and k != "_cached_x_y"]:
                setattr(layer, name, None)

    def forward(self, context: torch.Tensor | None = None) -> TransformedDistribution:
        """The density :math:`q(z|h)`: ``batch_shape = context.shape[:-1]`` (``()`` if unconditional),
        ``event_shape = (dim,)``."""
        if self.context_dim:
            if context is None or context.shape[-1:] != (self.context_dim,):
                got = None if context is None else tuple(context.shape)
                raise ValueError(f"context must have trailing size context_dim={self.context_dim}, got {got}")
            loc = context.new_zeros(context.shape[:-1] + (self.dim,))
        else:
            if context is not None:
                raise ValueError("this flow is unconditional (context_dim=0): call it without a context")
            loc = self.base_params.new_zeros(self.dim)
        base = Normal(loc, torch.ones_like(loc)).to_event(1)
        return TransformedDistribution(base, self.transforms(context))
