r"""Noise-prediction networks :math:`\epsilon_\phi(y_t, t, c)` for diffusion posteriors (DDVI paper, Sec. 3.4).

References: W. T. Piriyakulkij, Y. Wang, V. Kuleshov. *Denoising Diffusion Variational Inference: Diffusion
Models as Expressive Variational Posteriors*. arXiv:2401.02739, 2024.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from pyro_diffvi.nn import ConditionalMLP


class Denoiser(nn.Module):
    r"""A noise predictor :math:`\epsilon_\phi(y_t, t, c)` built on :class:`~pyro_diffvi.nn.ConditionalMLP`.

    ``context_dim = 0`` gives an unconditional denoiser (the simplified wake-sleep of DDVI Sec. 3.4,
    where :math:`q_\phi(z|y)` does not depend on :math:`x`). With ``learn_variance=True`` the network
    also outputs an interpolation weight :math:`v` per coordinate for the reverse log-variance.

    :param dim: width :math:`d` of :math:`y_t`.
    :param context_dim: width of the context :math:`c` (encoder output), 0 for none.
    :param time_dim: width of the sinusoidal time embedding.
    :param hidden_dims: hidden widths (the paper: four layers of 128).
    :param activation: hidden activation name.
    :param learn_variance: also predict the variance interpolation weight.
    :param skip: optional per-step coefficients :math:`s_t`, shape ``(T,)``, of a linear skip
        :math:`\epsilon_\phi(y_t, t, c) = s_t\, y_t + \mathrm{net}(y_t, t, c)` whose network output starts
        at zero. With :math:`s_t = \sqrt{1-\bar\alpha_t}` the initial predictor is the exact noise
        predictor of standard-normal data, :math:`\mathbb E[\epsilon|y_t] = \sqrt{1-\bar\alpha_t}\,y_t`, so
        a chain started at :math:`y_T \sim \mathcal N(0, I)` is exactly :math:`\mathcal N(0, I)` at every step
        (and a learned variance starts at :math:`\beta_t`, the exact reverse variance of that chain).

    The time enters through :class:`~pyro_diffvi.nn.SinusoidalTimeEmbedding` (sines, then cosines)
    followed by a linear layer.

    Example:

    >>> import torch
    >>> from pyro_diffvi.diffusion import Denoiser, GaussianDiffusion
    >>> diffusion = GaussianDiffusion(10)
    >>> net = Denoiser(2, context_dim=3, hidden_dims=(32, 32), skip=diffusion.sqrt_one_minus_alphas_cumprod)
    >>> y, context = torch.randn(5, 2), torch.randn(5, 3)
    >>> eps = net(y, 10, context)
    >>> eps.shape
    torch.Size([5, 2])
    >>> # with the skip, the untrained network is the exact predictor sqrt(1 - abar_t) y_t
    >>> torch.allclose(eps, diffusion.at("sqrt_one_minus_alphas_cumprod", 10) * y)
    True
    """

    def __init__(
        self,
        dim: int,
        *,
        context_dim: int = 0,
        time_dim: int = 32,
        hidden_dims: Sequence[int] = (128, 128, 128, 128),
        activation: str = "silu",
        learn_variance: bool = False,
        skip: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if time_dim <= 0:
            raise ValueError(f"time_dim must be positive (the denoiser needs the time), got {time_dim}")
        self.dim = dim
        self.context_dim = context_dim
        self.learn_variance = learn_variance
        out = 2 * dim if learn_variance else dim
        self.net = ConditionalMLP(
            dim, out, context_dim=context_dim, time_dim=time_dim, hidden_dims=hidden_dims, activation=activation
        )
        self.has_skip = skip is not None
        if skip is not None:
            if skip.dim() != 1:
                raise ValueError(f"skip must have shape (T,), got {tuple(skip.shape)}")
            self.register_buffer("skip", skip.detach().clone(), persistent=False)
            last = self.net.net[-1]
            with torch.no_grad():
                last.weight.zero_()
                last.bias.zero_()

    def forward(
        self, y: torch.Tensor, t: torch.Tensor | int, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Raw output for ``y`` of shape ``batch + (d,)``, times ``t`` (int or tensor of batch shape).

        :param y: the noisy latents :math:`y_t`.
        :param t: the times in ``1..T``.
        :param context: the context :math:`c` (ignored when ``context_dim = 0``).
        :return: the predicted noise, ``batch + (d,)``, followed by the variance weights ``v`` along the
            last dimension when ``learn_variance=True``.
        """
        t = torch.as_tensor(t, device=y.device, dtype=y.dtype)
        out = self.net(y, t, context if self.context_dim else None)
        if self.has_skip:
            coef = self.skip.to(y)[t.long() - 1].unsqueeze(-1)
            out = self._add_skip(out, coef * y)
        return out

    def _add_skip(self, out: torch.Tensor, skip_term: torch.Tensor) -> torch.Tensor:
        if not self.learn_variance:
            return out + skip_term
        eps, v = out.split(self.dim, dim=-1)
        return torch.cat([eps + skip_term, v], dim=-1)

    def stepper(
        self, context: torch.Tensor | None, num_steps: int, like: torch.Tensor
    ) -> Callable[[torch.Tensor, int], torch.Tensor]:
        r"""A fast ``f(y_t, t)`` for a whole reverse chain with a fixed context.

        The first linear layer acts on ``[y, e(t), c]``; its context part :math:`W_c c` and its time
        part :math:`W_t e(t) + b` are computed once per chain instead of once per step. The result
        equals :meth:`forward` up to floating-point rounding.

        :param context: batch + ``(context_dim,)`` or ``None``.
        :param num_steps: :math:`T` (times ``1..T`` are precomputed).
        :param like: a tensor giving device and dtype.

        Example:

        >>> import torch
        >>> from pyro_diffvi.diffusion import Denoiser
        >>> net = Denoiser(2, context_dim=3, hidden_dims=(16,))
        >>> y, context = torch.randn(4, 2), torch.randn(4, 3)
        >>> step = net.stepper(context, 10, like=y)
        >>> torch.allclose(step(y, 7), net(y, 7, context), atol=1e-6)
        True
        """
        layers = list(self.net.net)
        first, rest = layers[0], nn.Sequential(*layers[1:])
        d, k = self.dim, self.net.time_dim
        w = first.weight
        times = torch.arange(1, num_steps + 1, device=like.device, dtype=like.dtype)
        time_bias = self.net.time_embedding(times) @ w[:, d : d + k].T + first.bias  # (T, H)
        ctx_part = context @ w[:, d + k :].T if self.context_dim else None
        w_y = w[:, :d]
        skip = self.skip.to(like) if self.has_skip else None

        def step(y: torch.Tensor, t: int) -> torch.Tensor:
            h = y @ w_y.T + time_bias[t - 1]
            if ctx_part is not None:
                h = h + ctx_part
            out = rest(h)
            return out if skip is None else self._add_skip(out, skip[t - 1] * y)

        return step
