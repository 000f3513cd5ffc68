r"""The DDPM U-Net (Ho et al. 2020, Appendix B), the score network of the ScoreVAE paper's Appendix B.1.

A PixelCNN++-style U-Net: at each resolution ``num_res_blocks`` residual blocks (group norm, SiLU, 3x3
convolutions, the time embedding added between the two convolutions, dropout), self-attention at the
resolutions in ``attention_resolutions``, a stride-2 convolution down to the next resolution; a middle of
residual, attention and residual blocks; the mirrored upsampling path (nearest-neighbour upsampling and
a 3x3 convolution) whose blocks read the concatenated skip activations; group norm, SiLU and a 3x3
output convolution initialized at zero (as in DDPM). The time enters as a sinusoidal embedding
(:class:`~pyro_diffvi.nn.SinusoidalTimeEmbedding`) through a two-layer MLP. A context (the latent
:math:`z` of a conditional score model, DiffDecoder) is mapped linearly into the same embedding and added.

The ScoreVAE paper uses 128 base channels, attention at 16x16 and channel multipliers (1, 2, 2, 2) with 4
residual blocks for CIFAR-10 (dropout 0.1); for 28x28 MNIST the natural analogue is (1, 2, 2) with
attention at 14x14 (resolutions 28, 14, 7).

References:

- J. Ho, A. Jain, P. Abbeel. *Denoising Diffusion Probabilistic Models*. NeurIPS, 2020 (Appendix B).
- G. Batzolis, J. Stanczuk, C.-B. Schönlieb. *Variational Diffusion Auto-encoder: Latent Space Extraction
  from Pre-trained Diffusion Models*. arXiv:2304.12141, 2023 (Appendix B.1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from pyro_diffvi.nn.mlp import SinusoidalTimeEmbedding
from pyro_diffvi.util import check_image_shape, check_positive_int, check_widths


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


class _ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(in_channels), nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_channels)
        self.norm2, self.conv2 = _norm(out_channels), nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class _AttentionBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return x + self.proj(out.transpose(1, 2).reshape(n, c, h, w))


class UNet(nn.Module):
    r"""The DDPM U-Net :math:`\hat\epsilon(x, t, c)` for images of shape ``image_shape = (C, H, W)``.

    :param image_shape: ``(channels, height, width)`` of the images.
    :param context_dim: width of a context added to the time embedding (0 for none).
    :param base_channels: channels of the first resolution (the paper: 128).
    :param channel_mults: channel multiplier per resolution (one downsampling between consecutive ones).
    :param num_res_blocks: residual blocks per resolution.
    :param attention_resolutions: the heights at which self-attention is applied.
    :param dropout: dropout rate in the residual blocks.

    Example:

    >>> import torch
    >>> from pyro_diffvi.nn import UNet
    >>> net = UNet((1, 28, 28), context_dim=3, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
    ...            attention_resolutions=(14,))
    >>> x, t, z = torch.randn(2, 1, 28, 28), torch.tensor([10.0, 900.0]), torch.randn(2, 3)
    >>> net(x, t, z).shape
    torch.Size([2, 1, 28, 28])
    >>> bool((net(x, t, z) == 0).all())   # the output convolution starts at zero, as in DDPM
    True
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        *,
        context_dim: int = 0,
        base_channels: int = 128,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (14,),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.image_shape = check_image_shape("image_shape", image_shape)
        channels, height, _ = self.image_shape
        check_positive_int("base_channels", base_channels)
        mults = check_widths("channel_mults", channel_mults)
        check_positive_int("num_res_blocks", num_res_blocks)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.context_dim = int(context_dim)
        emb_dim = 4 * base_channels
        self.time_embedding = nn.Sequential(
            SinusoidalTimeEmbedding(base_channels), nn.Linear(base_channels, emb_dim), nn.SiLU(),
            nn.Linear(emb_dim, emb_dim),
        )
        self.context_embedding = nn.Linear(context_dim, emb_dim) if context_dim else None
        self.conv_in = nn.Conv2d(channels, base_channels, 3, padding=1)
        attention = {int(r) for r in attention_resolutions}
        self.down, widths = nn.ModuleList(), [base_channels]
        width, size = base_channels, height
        for level, mult in enumerate(mults):
            for _ in range(num_res_blocks):
                blocks = [_ResBlock(width, base_channels * mult, emb_dim, dropout)]
                width = base_channels * mult
                if size in attention:
                    blocks.append(_AttentionBlock(width))
                self.down.append(nn.ModuleList(blocks))
                widths.append(width)
            if level < len(mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(width, width, 3, stride=2, padding=1)]))
                widths.append(width)
                size = (size + 1) // 2
        self.middle = nn.ModuleList([
            _ResBlock(width, width, emb_dim, dropout),
            _AttentionBlock(width),
            _ResBlock(width, width, emb_dim, dropout),
        ])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(mults))):
            for _ in range(num_res_blocks + 1):
                blocks = [_ResBlock(width + widths.pop(), base_channels * mult, emb_dim, dropout)]
                width = base_channels * mult
                if size in attention:
                    blocks.append(_AttentionBlock(width))
                self.up.append(nn.ModuleList(blocks))
            if level > 0:
                self.up.append(nn.ModuleList([nn.Conv2d(width, width, 3, padding=1)]))  # after upsampling
                size = size * 2
        self.norm_out = _norm(width)
        self.conv_out = nn.Conv2d(width, channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def output_layer(self) -> nn.Module:
        """The last layer (a ``zero_init`` of :class:`~pyro_diffvi.diffusion.ScoreModel` zeroes it)."""
        return self.conv_out

    def forward(self, x: Tensor, t: Tensor, context: Tensor | None = None) -> Tensor:
        """The output for images ``x`` of shape ``(N,) + image_shape``.

        :param x: the images.
        :param t: the times (real), shape ``(N,)`` or a scalar.
        :param context: shape ``(N, context_dim)``; required when ``context_dim > 0``.
        """
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"x must have shape (N,) + {self.image_shape}, got {tuple(x.shape)}")
        emb = self.time_embedding(torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0]))
        if self.context_embedding is not None:
            if context is None:
                raise ValueError("context is required: this U-Net was built with context_dim > 0")
            emb = emb + self.context_embedding(context)
        h = self.conv_in(x)
        skips = [h]
        for blocks in self.down:
            h = _apply(blocks, h, emb)
            skips.append(h)
        h = _apply(self.middle, h, emb)
        for blocks in self.up:
            if isinstance(blocks[0], _ResBlock):
                h = _apply(blocks, torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = blocks[0](F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def _apply(blocks: nn.ModuleList, h: Tensor, emb: Tensor) -> Tensor:
    for block in blocks:
        h = block(h, emb) if isinstance(block, _ResBlock) else block(h)
    return h
