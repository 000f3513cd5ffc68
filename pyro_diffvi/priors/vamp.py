r"""VampPrior (Tomczak & Welling, 2018): a mixture of the variational posterior at learnable pseudo-inputs.

.. math::

    p_\lambda(z) = \frac1K \sum_{k=1}^K q_\phi(z \mid u_k), \qquad q_\phi(z \mid u) = \mathcal N(z;\, \mu_\phi(u),
    \operatorname{diag}\sigma_\phi(u)^2),

with pseudo-inputs :math:`u_1, \dots, u_K` (parameters of the prior) and the encoder :math:`\phi` shared with the
guide. The unnormalized-priors paper uses it as a baseline (Secs. 4.1-4.3, 16-128 pseudo-inputs). The
density is normalized.

References

- J. M. Tomczak, M. Welling. *VAE with a VampPrior*. AISTATS, 2018.
- *Variational Inference with Unnormalized Priors*. Anonymous authors, manuscript under double-blind
  review ("the unnormalized-priors paper").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions import Categorical, MixtureSameFamily, Normal
from pyro.nn import PyroModule
from torch import Tensor, nn

from pyro_diffvi.util import CheckedDevice, check_positive_int

__all__ = ["VampPrior"]


class VampPrior(CheckedDevice, PyroModule):
    r"""Learnable VampPrior :math:`p(z) = \frac1K \sum_k q(z \mid u_k)`.

    ``prior()`` returns a normalized ``MixtureSameFamily`` of diagonal Gaussians (batch shape ``()``,
    event shape that of ``loc`` without its leading ``K``), differentiable with respect to the
    pseudo-inputs and the encoder.

    :param encoder: ``encoder(u) -> (loc, scale)`` for a batch ``u`` of shape ``(K,) + input_shape``, each
        of shape ``(K,) + latent_shape`` (the same network as the guide's, e.g. a ``GaussianGuide`` encoder).
    :param num_pseudo_inputs: ``K >= 1``.
    :param input_shape: shape of one observation (one pseudo-input).
    :param init_pseudo_inputs: optional initial pseudo-inputs of shape ``(K,) + input_shape`` (e.g. random training
        points); default :math:`\mathcal N(0, 0.01^2)` entries.

    Example:

    >>> import torch
    >>> from torch import nn
    >>> from pyro_diffvi.priors import VampPrior
    >>> class Encoder(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.net = nn.Linear(3, 4)
    ...     def forward(self, x):
    ...         loc, log_scale = self.net(x).chunk(2, -1)
    ...         return loc, log_scale.exp()
    >>> prior = VampPrior(Encoder(), 16, (3,))
    >>> p = prior()  # a normalized mixture of 16 diagonal Gaussians
    >>> tuple(p.event_shape), tuple(p.log_prob(torch.zeros(5, 2)).shape)
    ((2,), (5,))
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_pseudo_inputs: int,
        input_shape: Sequence[int] | int,
        *,
        init_pseudo_inputs: Tensor | None = None,
    ) -> None:
        super().__init__()
        if not callable(encoder):
            raise TypeError(f"encoder must be callable (u -> (loc, scale)), got {type(encoder).__name__}")
        check_positive_int("num_pseudo_inputs", num_pseudo_inputs)
        input_shape = torch.Size((input_shape,) if isinstance(input_shape, int) else input_shape)
        shape = (num_pseudo_inputs,) + tuple(input_shape)
        if init_pseudo_inputs is None:
            ref = next(iter(encoder.parameters()), None) if isinstance(encoder, nn.Module) else None
            kwargs = {} if ref is None else {"dtype": ref.dtype, "device": ref.device}
            init_pseudo_inputs = 0.01 * torch.randn(shape, **kwargs)
        elif not torch.is_tensor(init_pseudo_inputs) or tuple(init_pseudo_inputs.shape) != shape:
            got = (
                tuple(init_pseudo_inputs.shape)
                if torch.is_tensor(init_pseudo_inputs)
                else type(init_pseudo_inputs).__name__
            )
            raise ValueError(
                f"init_pseudo_inputs must be a tensor of shape (num_pseudo_inputs,) + input_shape = {shape}, got {got}"
            )
        self.encoder = encoder
        self.input_shape = input_shape
        self.pseudo_inputs = nn.Parameter(init_pseudo_inputs.detach().clone())

    @property
    def num_pseudo_inputs(self) -> int:
        """The number :math:`K` of pseudo-inputs."""
        return self.pseudo_inputs.shape[0]

    def components(self) -> tuple[Tensor, Tensor]:
        """Encoder outputs ``(loc, scale)`` at the pseudo-inputs, each of shape ``(K,) + latent_shape``."""
        out = self.encoder(self.pseudo_inputs)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError("encoder(u) must return a pair (loc, scale)")
        loc, scale = out
        K = self.num_pseudo_inputs
        if loc.shape != scale.shape or loc.dim() < 2 or loc.shape[0] != K:
            raise ValueError(
                f"encoder(u) must return loc and scale of equal shape (K={K},) + latent_shape, "
                f"got {tuple(loc.shape)} and {tuple(scale.shape)}"
            )
        return loc, scale

    def forward(self) -> MixtureSameFamily:
        r"""The prior :math:`\frac1K \sum_k q(z \mid u_k)` as a ``MixtureSameFamily``."""
        loc, scale = self.components()
        logits = torch.zeros(self.num_pseudo_inputs, dtype=loc.dtype, device=loc.device)
        return MixtureSameFamily(Categorical(logits=logits), Normal(loc, scale).to_event(loc.dim() - 1))
