r"""Normalizing-flow priors: a learnable latent density with an exact ``log_prob`` (Ch. 3 of Xiao 2022).

A flow prior (dissertation Eq. 3.3) is the density of :math:`z = f_\eta^{-1}(u)`, :math:`u \sim p_0 = \mathcal N(0, I)`:

.. math::

    p_\eta(z) = p_0(f_\eta(z)) \left|\det \frac{\partial f_\eta(z)}{\partial z}\right| .

It is normalized, so unlike the energy-based priors of this package it can sit in any Pyro model and
be trained by the plain ELBO with the encoder and decoder: for a VAE with a flow prior and a
reconstruction weight :math:`\beta` the objective is (Eq. 3.4)

.. math::

    \mathcal L(x) = \mathbb E_{q_\phi(z|x)}\Big[\beta \log p_\theta(x|z) + \log p_0(f_\eta(z))
        + \log\Big|\det \frac{\partial f_\eta(z)}{\partial z}\Big| - \log q_\phi(z|x)\Big],

which is :class:`~pyro.infer.Trace_ELBO` on a model whose likelihood is scaled by :math:`\beta`
(``poutine.scale``). The deterministic-encoder limit, the Generative Latent Flow, is
:class:`~pyro_diffvi.infer.GLFLoss`.

References

- Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation, University
  of Chicago, 2022 (Ch. 3, Eqs. 3.3-3.4).
- Z. Xiao, Q. Yan, Y. Amit. *Generative Latent Flow*. arXiv:1905.10485, 2019.
- D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling. *Improved Variational
  Inference with Inverse Autoregressive Flow*. NeurIPS, 2016.
- C. Durkan, A. Bekasov, I. Murray, G. Papamakarios. *Neural Spline Flows*. NeurIPS, 2019.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyro.distributions import TransformedDistribution
from pyro.nn import PyroModule
from torch import Tensor

from pyro_diffvi._pyro_compat import register_child
from pyro_diffvi.nn.flows import ConditionalFlow
from pyro_diffvi.util import CheckedDevice, check_module_name

__all__ = ["FlowPrior"]


class FlowPrior(CheckedDevice, PyroModule):
    r"""Learnable normalizing-flow prior :math:`p_\eta(z)` on :math:`\mathbb R^D` (dissertation Eq. 3.3);
    ``prior()`` returns the distribution (``batch_shape ()``, ``event_shape (D,)``) with the exact
    ``log_prob`` and ``rsample``.

    The flow is an unconditional :class:`~pyro_diffvi.nn.ConditionalFlow` (``context_dim=0``): draws
    are :math:`z = g_K \circ \dots \circ g_1(u)`, :math:`u \sim \mathcal N(0, I)` (a free diagonal affine
    map plus ``num_transforms`` autoregressive layers, ``"iaf"`` affine or ``"spline"`` rational-linear),
    and :math:`f_\eta = g^{-1}` is the map of Eq. 3.3. ``rsample`` runs each layer once; ``log_prob``
    of a new point inverts the autoregressive layers (:math:`D` network passes per layer, exact); the
    draw just made is scored from the layers' cache.

    **Gradients.** The density is normalized, so its parameters carry gradients everywhere: a plain
    :class:`~pyro.infer.Trace_ELBO` (any guide of :mod:`pyro_diffvi.guides`) trains the prior with the
    encoder and decoder (Eq. 3.4), and :class:`~pyro_diffvi.infer.GLFLoss` trains it by maximum
    likelihood of the detached codes (Eq. 3.7).

    **Param store.** The flow is registered with Pyro as ``f"{name}.flow"`` (e.g.
    ``FlowPrior.flow$$$base_params``), or under its attribute path when this module is an attribute of
    another ``PyroModule``; when the param store already holds tensors under these names (a restored
    param store), the flow adopts them. Give two priors of one model different names.

    :param dim: latent dimension :math:`D`.
    :param num_transforms: number of autoregressive layers :math:`K`.
    :param flow: ``"iaf"`` (gated affine autoregressive layers) or ``"spline"``.
    :param hidden_dims: hidden widths of each autoregressive network (each ``>= dim``); default
        ``(max(64, 4 D),) * 2``.
    :param count_bins: spline segments (``flow="spline"`` only).
    :param bound: spline half-width (``flow="spline"`` only; identity outside :math:`[-B, B]`).
    :param name: prefix of the parameters' names in Pyro's param store (default ``"FlowPrior"``).

    Example (a 2-D flow prior in a Pyro model, trained by the ELBO):

    >>> import pyro, pyro.distributions as dist, torch
    >>> from pyro.infer import SVI, Trace_ELBO
    >>> from pyro.optim import Adam
    >>> from pyro_diffvi.priors import FlowPrior
    >>> from pyro_diffvi.guides import GaussianGuide
    >>> pyro.clear_param_store()
    >>> prior = FlowPrior(2, num_transforms=2, hidden_dims=(16, 16), name="prior")
    >>> def model(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", prior())
    ...         pyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)
    >>> guide = GaussianGuide(model, "z", "x", encoder_hidden_dims=(16,))
    >>> loss = SVI(model, guide, Adam({"lr": 1e-2}), Trace_ELBO()).step(torch.randn(8, 2))
    >>> any(n.startswith("prior.flow") for n in pyro.get_param_store())  # the prior trains too
    True
    >>> p = prior()
    >>> z = p.rsample((5,))
    >>> tuple(z.shape), tuple(p.log_prob(z).shape)
    ((5, 2), (5,))
    """

    def __init__(
        self,
        dim: int,
        *,
        num_transforms: int = 4,
        flow: str = "iaf",
        hidden_dims: Sequence[int] | None = None,
        count_bins: int = 8,
        bound: float = 3.0,
        name: str | None = None,
    ) -> None:
        super().__init__(check_module_name(name, type(self).__name__))
        # ConditionalFlow validates dim, num_transforms, flow, hidden_dims, count_bins and bound by name
        self.flow = ConditionalFlow(
            dim,
            context_dim=0,
            num_transforms=num_transforms,
            flow=flow,
            hidden_dims=hidden_dims,
            count_bins=count_bins,
            bound=bound,
        )
        self.dim = dim

    def forward(self) -> TransformedDistribution:
        r"""The prior :math:`p_\eta(z)` (Eq. 3.3): ``batch_shape ()``, ``event_shape (D,)``, exact
        ``log_prob``, reparameterized ``rsample``."""
        return register_child(self, "flow")()  # adopts a restored param store's tensors

    def log_prob(self, z: Tensor) -> Tensor:
        r""":math:`\log p_\eta(z) = \log p_0(f_\eta(z)) + \log|\det \partial f_\eta/\partial z|` (Eq. 3.3),
        shape ``z.shape[:-1]``; ``-log_prob`` is :math:`\mathcal L_{\mathrm{NLL}}` of Eq. 3.6.

        :param z: points of shape ``(..., D)``.
        """
        if z.dim() < 1 or z.shape[-1] != self.dim:
            raise ValueError(f"z must have shape (..., {self.dim}), got {tuple(z.shape)}")
        return self().log_prob(z)
