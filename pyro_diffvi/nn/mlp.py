"""Multilayer perceptrons, with optional time and context conditioning."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from pyro_diffvi.util import check_positive_int, check_widths

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}


def activation(name: str, *, argument: str = "activation") -> nn.Module:
    """Build an activation module by name (``relu``, ``leaky_relu``, ``elu``, ``silu``, ``tanh``, ``softplus``).

    :param name: the activation's name; ``leaky_relu`` has negative slope 0.2.
    :param argument: the caller's argument that gave ``name``, for the error message
        (e.g. ``"denoiser_activation"``).

    Example:

    >>> from pyro_diffvi.nn import activation
    >>> activation("leaky_relu")
    LeakyReLU(negative_slope=0.2)
    """
    try:
        return _ACTIVATIONS[name]()
    except (KeyError, TypeError):
        raise ValueError(
            f"{argument} must be one of {sorted(_ACTIVATIONS)}, got {name!r}"
        ) from None


class MLP(nn.Sequential):
    """A fully connected network ``dim -> hidden_dims... -> out_dim``.

    :param dim: input width.
    :param out_dim: output width.
    :param hidden_dims: widths of the hidden layers, each ``>= 1`` (empty: one linear map).
    :param activation: name of the hidden activation (see :func:`activation`).

    Example:

    >>> import torch
    >>> from pyro_diffvi.nn import MLP
    >>> net = MLP(3, 2, hidden_dims=(16,), activation="tanh")
    >>> net
    MLP(
      (0): Linear(in_features=3, out_features=16, bias=True)
      (1): Tanh()
      (2): Linear(in_features=16, out_features=2, bias=True)
    )
    >>> net(torch.zeros(5, 3)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        dim: int,
        out_dim: int,
        *,
        hidden_dims: Sequence[int] = (256, 256),
        activation: str = "relu",
    ) -> None:
        dim = check_positive_int("dim", dim)
        out_dim = check_positive_int("out_dim", out_dim)
        hidden_dims = check_widths("hidden_dims", hidden_dims, allow_empty=True)
        globals()["activation"](activation)  # an unknown name fails here, even without a hidden layer
        dims = [dim, *hidden_dims, out_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(globals()["activation"](activation))
        super().__init__(*layers)
        self.dim = dim
        self.out_dim = out_dim


class SinusoidalTimeEmbedding(nn.Module):
    r"""Fixed sinusoidal embedding of a (possibly fractional) time index.

    With :math:`h = d/2` frequencies :math:`\omega_i = 10000^{-i/h}`, :math:`i = 0..h-1`, the first half
    of the embedding holds the sines and the second half the cosines:
    :math:`e(t)_i = \sin(\omega_i t)` and :math:`e(t)_{h+i} = \cos(\omega_i t)`. These are the
    frequencies of the transformer's position encoding (Vaswani et al. 2017), concatenated instead of
    interleaved, as in DDPM denoisers (Ho et al. 2020).

    References:

    - A. Vaswani, N. Shazeer, N. Parmar, J. Uszkoreit, L. Jones, A. N. Gomez, Ł. Kaiser, I. Polosukhin.
      *Attention Is All You Need*. NeurIPS, 2017.
    - J. Ho, A. Jain, P. Abbeel. *Denoising Diffusion Probabilistic Models*. NeurIPS, 2020.

    :param dim: embedding width (even).

    Example:

    >>> import torch
    >>> from pyro_diffvi.nn import SinusoidalTimeEmbedding
    >>> embed = SinusoidalTimeEmbedding(4)  # frequencies 1 and 1/100
    >>> embed(torch.tensor([0.0, 1.0])).round(decimals=4)
    tensor([[0.0000, 0.0000, 1.0000, 1.0000],
            [0.8415, 0.0100, 0.5403, 0.9999]])
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim <= 0 or dim % 2:
            raise ValueError(f"dim must be a positive even int, got {dim}")
        freqs = torch.exp(-math.log(10000.0) * torch.arange(dim // 2) / (dim // 2))
        self.register_buffer("freqs", freqs, persistent=False)
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """The embedding of times ``t`` (any shape), shape ``t.shape + (dim,)``.

        :param t: the times, integer or real.
        """
        angles = t.to(self.freqs.dtype).unsqueeze(-1) * self.freqs
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ConditionalMLP(nn.Module):
    """An MLP ``f(y, t, c)`` of an input ``y``, an integer/real time ``t`` and a context ``c``.

    The time enters through a :class:`SinusoidalTimeEmbedding` followed by a linear layer; time and
    context embeddings are concatenated with ``y`` at the input. ``context_dim=0`` means no context;
    ``time_dim=0`` means no time input.

    :param dim: width of ``y``.
    :param out_dim: output width.
    :param context_dim: width of ``c`` (0 for none).
    :param time_dim: width of the time embedding (0 for none).
    :param hidden_dims: hidden widths.
    :param activation: hidden activation name.

    Example:

    >>> import torch
    >>> from pyro_diffvi.nn import ConditionalMLP
    >>> net = ConditionalMLP(2, 2, context_dim=3, time_dim=8, hidden_dims=(16,))
    >>> y, context = torch.zeros(5, 2), torch.zeros(5, 3)
    >>> net(y, torch.tensor(4), context).shape  # one time for the whole batch
    torch.Size([5, 2])
    """

    def __init__(
        self,
        dim: int,
        out_dim: int,
        *,
        context_dim: int = 0,
        time_dim: int = 0,
        hidden_dims: Sequence[int] = (128, 128, 128, 128),
        activation: str = "silu",
    ) -> None:
        super().__init__()
        self.context_dim = context_dim
        self.time_dim = time_dim
        self.time_embedding = (
            nn.Sequential(SinusoidalTimeEmbedding(time_dim), nn.Linear(time_dim, time_dim))
            if time_dim
            else None
        )
        self.net = MLP(dim + context_dim + time_dim, out_dim, hidden_dims=hidden_dims, activation=activation)

    def forward(
        self,
        y: torch.Tensor,
        t: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The output for inputs ``y`` (``batch + (dim,)``), shape ``batch + (out_dim,)``.

        :param y: the input.
        :param t: the time(s), broadcast against the batch; required when ``time_dim > 0``.
        :param context: the context, ``batch + (context_dim,)``; required when ``context_dim > 0``.
        """
        parts = [y]
        batch_shape = y.shape[:-1]
        if self.time_embedding is not None:
            if t is None:
                raise ValueError("t is required: this network was built with time_dim > 0")
            t = torch.as_tensor(t, device=y.device)
            parts.append(self.time_embedding(t).expand(*batch_shape, self.time_dim))
        if self.context_dim:
            if context is None:
                raise ValueError("context is required: this network was built with context_dim > 0")
            parts.append(context.expand(*batch_shape, self.context_dim))
        return self.net(torch.cat(parts, dim=-1))
