r"""Time-dependent Gaussian encoders
:math:`q_{t,\phi}(z|x_t) = \mathcal N(\mu_\phi(x_t, t), \mathrm{diag}\,\sigma_\phi(x_t, t)^2)` and the score of their
density in :math:`x_t` (ScoreVAE paper, Sec. 3.4, Eq. 12).

An encoder here is any module called as ``encoder(x, t)`` on data ``x`` of shape ``batch_shape + (D,)`` and
times ``t`` in :math:`[0, T]` (broadcast against ``batch_shape``; ``t = None`` means :math:`t = 0`) that returns
``(loc, scale)`` of shape ``batch_shape + (K,)``. :func:`encoder_score` turns one into the latent posterior
score :math:`\nabla_{x_t}\log q_{t,\phi}(z|x_t)` of Bayes' rule for scores (Sec. 3.3) by automatic
differentiation in :math:`x_t`.

The networks embed the time as :math:`1000\,t` (:data:`TIME_SCALE`, the scale of DDPM's step index), so that
the sinusoidal embedding's frequencies resolve :math:`t \in [0, 1]`.

References: G. Batzolis, J. Stanczuk, C.-B. Schönlieb. *Variational Diffusion Auto-encoder: Latent Space
Extraction from Pre-trained Diffusion Models*. arXiv:2304.12141, 2023 (Secs. 3.4-3.5, Appendix B.1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from pyro_diffvi.nn.heads import loc_scale
from pyro_diffvi.nn.mlp import ConditionalMLP, SinusoidalTimeEmbedding
from pyro_diffvi.ops import LOG_2PI
from pyro_diffvi.util import check_image_shape, check_positive_float, check_positive_int, check_widths

TIME_SCALE = 1000.0
"""The factor between a diffusion time :math:`t \\in [0, 1]` and the time a network's sinusoidal embedding reads."""

Encoder = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def _times(t: Tensor | float | None, x: Tensor, event_dim: int) -> Tensor:
    batch_shape = x.shape[: x.dim() - event_dim]
    t = 0.0 if t is None else t
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.expand(batch_shape)


def _init_head(layer: nn.Linear, out_dim: int, min_scale: float, init_scale: float) -> None:
    """A Gaussian head near :math:`\\mathcal N(0, \\text{init_scale}^2)` at initialization (as GaussianGuide's)."""
    with torch.no_grad():
        layer.weight.mul_(0.1)
        layer.bias.zero_()
        layer.bias[out_dim:] = torch.tensor(init_scale - min_scale).expm1().log()  # softplus^-1


def _check_scales(min_scale: float, init_scale: float) -> None:
    check_positive_float("min_scale", min_scale, allow_zero=True)
    if not init_scale > min_scale:
        raise ValueError(f"init_scale must exceed min_scale={min_scale}, got {init_scale}")


class GaussianTimeEncoder(nn.Module):
    r"""An MLP time-dependent Gaussian encoder:
    :math:`(\mu, \sigma)(x_t, t) = \mathrm{head}(\mathrm{MLP}([x_t, e(1000 t)]))`,
    :math:`\sigma = \mathrm{softplus}(\cdot) + \sigma_{\min}` (:func:`~pyro_diffvi.nn.heads.loc_scale`).

    :param dim: width :math:`D` of the (flattened) data.
    :param out_dim: latent width :math:`K`.
    :param hidden_dims: hidden widths of the MLP.
    :param time_dim: width of the time embedding.
    :param activation: hidden activation (smooth by default: the encoder's input gradient is trained).
    :param min_scale: floor :math:`\sigma_{\min}` of the standard deviation.
    :param init_scale: standard deviation at initialization.

    Example:

    >>> import torch
    >>> from pyro_diffvi.nn import GaussianTimeEncoder
    >>> encoder = GaussianTimeEncoder(784, 16, hidden_dims=(64,))
    >>> x = torch.rand(5, 784)
    >>> loc, scale = encoder(x, torch.full((5,), 0.3))
    >>> loc.shape, scale.shape
    (torch.Size([5, 16]), torch.Size([5, 16]))
    >>> torch.equal(encoder(x)[0], encoder(x, torch.zeros(5))[0])   # t = None is t = 0
    True
    """

    def __init__(
        self,
        dim: int,
        out_dim: int,
        *,
        hidden_dims: Sequence[int] = (256, 256),
        time_dim: int = 32,
        activation: str = "silu",
        min_scale: float = 1e-4,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.out_dim = check_positive_int("out_dim", out_dim)
        _check_scales(min_scale, init_scale)
        self.min_scale = min_scale
        self.net = ConditionalMLP(
            dim, 2 * out_dim, time_dim=check_positive_int("time_dim", time_dim),
            hidden_dims=check_widths("hidden_dims", hidden_dims), activation=activation,
        )
        _init_head(self.net.net[-1], out_dim, min_scale, init_scale)

    def forward(self, x: Tensor, t: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
        """``(loc, scale)`` of :math:`q_t(z|x_t)` for ``x`` of shape ``batch_shape + (dim,)``.

        :param x: the (noisy) data :math:`x_t`.
        :param t: the time(s) in :math:`[0, T]`, broadcast against ``batch_shape``; ``None`` for :math:`t = 0`.
        """
        if x.shape[-1:] != (self.dim,):
            raise ValueError(f"x must have shape batch_shape + ({self.dim},), got {tuple(x.shape)}")
        return loc_scale(self.net(x, TIME_SCALE * _times(t, x, 1)), self.min_scale)


class ConvGaussianTimeEncoder(nn.Module):
    r"""The convolutional time-dependent encoder of the ScoreVAE paper's CIFAR-10 experiment (Appendix B.1):
    blocks of a stride-2 3x3 convolution followed by GELU, the last activation flattened and concatenated
    with the time embedding, and a linear map to :math:`(\mu, \sigma)`.

    It reads flattened images, ``batch_shape + (C * H * W,)``, like the package's MNIST loader's.

    :param image_shape: ``(channels, height, width)``.
    :param out_dim: latent width :math:`K`.
    :param channels: output channels of the convolution blocks.
    :param time_dim: width of the time embedding.
    :param min_scale: floor of the standard deviation.
    :param init_scale: standard deviation at initialization.

    Example:

    >>> import torch
    >>> from pyro_diffvi.nn import ConvGaussianTimeEncoder
    >>> encoder = ConvGaussianTimeEncoder((1, 28, 28), 16, channels=(8, 16))
    >>> loc, scale = encoder(torch.rand(3, 2, 784), torch.rand(3, 2))
    >>> loc.shape
    torch.Size([3, 2, 16])
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        out_dim: int,
        *,
        channels: Sequence[int] = (32, 64, 128),
        time_dim: int = 32,
        min_scale: float = 1e-4,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.image_shape = check_image_shape("image_shape", image_shape)
        self.dim = math.prod(self.image_shape)
        self.out_dim = check_positive_int("out_dim", out_dim)
        _check_scales(min_scale, init_scale)
        self.min_scale = min_scale
        layers: list[nn.Module] = []
        width, size = self.image_shape[0], list(self.image_shape[1:])
        for c in check_widths("channels", channels):
            layers += [nn.Conv2d(width, c, 3, stride=2, padding=1), nn.GELU()]
            width, size = c, [(s + 1) // 2 for s in size]
        self.conv = nn.Sequential(*layers, nn.Flatten())
        self.time_embedding = nn.Sequential(SinusoidalTimeEmbedding(time_dim), nn.Linear(time_dim, time_dim))
        self.head = nn.Linear(width * math.prod(size) + time_dim, 2 * out_dim)
        _init_head(self.head, out_dim, min_scale, init_scale)

    def forward(self, x: Tensor, t: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
        """``(loc, scale)`` of :math:`q_t(z|x_t)` for flattened images ``x``.

        :param x: shape ``batch_shape + (C * H * W,)``.
        :param t: the time(s), broadcast against ``batch_shape``; ``None`` for :math:`t = 0`.
        """
        if x.shape[-1:] != (self.dim,):
            raise ValueError(f"x must have shape batch_shape + ({self.dim},), got {tuple(x.shape)}")
        batch_shape = x.shape[:-1]
        t = _times(t, x, 1).reshape(-1)
        h = self.conv(x.reshape((-1,) + self.image_shape))
        params = self.head(torch.cat([h, self.time_embedding(TIME_SCALE * t)], dim=-1))
        return loc_scale(params.reshape(batch_shape + (2 * self.out_dim,)), self.min_scale)


def gaussian_log_prob(z: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    r""":math:`\log \mathcal N(z; \mu, \mathrm{diag}\,\sigma^2)`, summed over the last dimension.

    :param z: values.
    :param loc: means.
    :param scale: standard deviations.

    Example:

    >>> import torch
    >>> from pyro_diffvi.nn.time_encoder import gaussian_log_prob
    >>> z, loc, scale = torch.randn(4, 3), torch.randn(4, 3), torch.rand(4, 3) + 0.5
    >>> expected = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    >>> torch.allclose(gaussian_log_prob(z, loc, scale), expected)
    True
    """
    return (-0.5 * ((z - loc) / scale).pow(2) - scale.log() - 0.5 * LOG_2PI).sum(-1)


def encoder_score(encoder: Encoder, z: Tensor, x_t: Tensor, t: Tensor, *, create_graph: bool = False) -> Tensor:
    r"""The latent posterior score :math:`\nabla_{x_t}\log q_{t,\phi}(z|x_t)` (Sec. 3.4) by automatic differentiation.

    Each batch element's density depends on its own :math:`x_t` only, so the gradient of the summed log
    density is the batch of per-element gradients.

    :param encoder: ``encoder(x_t, t) -> (loc, scale)``.
    :param z: latents, ``batch_shape + (K,)`` (broadcast against the encoder's output).
    :param x_t: noisy data, ``batch_shape + (D,)``.
    :param t: times, ``batch_shape``.
    :param create_graph: keep the graph, so that a loss of the score can be differentiated in the encoder's
        parameters (and in ``z``); otherwise the result is detached.
    :return: shape of ``x_t``.

    Example (a linear encoder :math:`\mu = a x`, :math:`\sigma = 1`: the score is :math:`a(z - a x)`):

    >>> import torch
    >>> from pyro_diffvi.nn.time_encoder import encoder_score
    >>> encoder = lambda x, t: (2.0 * x, torch.ones_like(x))
    >>> x, z = torch.tensor([[0.5]]), torch.tensor([[3.0]])
    >>> encoder_score(encoder, z, x, torch.zeros(1))
    tensor([[4.]])
    """
    with torch.enable_grad():
        x_t = x_t.detach().requires_grad_(True)
        loc, scale = encoder(x_t, t)
        log_q = gaussian_log_prob(z, loc, scale)
        if not log_q.requires_grad:  # an encoder that ignores x_t
            return torch.zeros_like(x_t)
        (grad,) = torch.autograd.grad(log_q.sum(), x_t, create_graph=create_graph, allow_unused=True)
    if grad is None:  # an encoder that ignores x_t
        return torch.zeros_like(x_t)
    return grad if create_graph else grad.detach()
