r"""The networks of a denoising diffusion GAN: a time-conditioned generator and discriminator (Xiao 2022, Ch. 6).

* The generator :math:`G_\theta(x_t, z, t)` outputs a prediction of the clean :math:`x_0` from the noisy
  :math:`x_t`, a latent :math:`z \sim \mathcal N(0, I_L)` and the step :math:`t` (Eq. 6.12); the denoising
  distribution :math:`p_\theta(x_{t-1}|x_t)` then draws :math:`x_{t-1}` from the forward process's posterior
  :math:`q(x_{t-1}|x_t, x_0 = G_\theta(x_t, z, t))`
  (:func:`~pyro_diffvi.diffusion.posterior_sampling_step`). The latent makes that distribution multimodal.
* The discriminator :math:`D_\phi(x_{t-1}, x_t, t) = \sigma(d_\phi(x_{t-1}, x_t, t))` decides whether
  :math:`x_{t-1}` is a plausible denoised version of :math:`x_t` (Eq. 6.3); this module returns the logit
  :math:`d_\phi`.

Both are MLPs (:class:`~pyro_diffvi.nn.ConditionalMLP`) with the conditioning concatenated to the input and
the step entering through a sinusoidal embedding, as in the dissertation's 25-Gaussians experiment (Sec.
6.4.7: "3 fully-connected layers each with 512 hidden units and LeakyReLU activations (negative slope of
0.2)", the conditioning on :math:`x_t` and :math:`t` by concatenation). Vectors only: flatten images first.

References: Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation,
University of Chicago, 2022, Ch. 6 (Z. Xiao, K. Kreis, A. Vahdat. *Tackling the Generative Learning Trilemma
with Denoising Diffusion GANs*. ICLR, 2022).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyro_diffvi.nn.mlp import ConditionalMLP
from pyro_diffvi.util import check_positive_int, check_widths

__all__ = ["DenoisingDiscriminator", "DenoisingGenerator"]


def _check_vectors(name: str, value: torch.Tensor, width: int) -> None:
    if not torch.is_tensor(value) or value.dim() < 1 or value.shape[-1] != width:
        shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
        raise ValueError(f"{name} must have shape batch + ({width},), got {shape}")


def _times(t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(t, device=like.device)


class DenoisingGenerator(nn.Module):
    r"""The generator :math:`G_\theta(x_t, z, t)` of a denoising diffusion GAN: a prediction of :math:`x_0`
    (Xiao 2022, Eq. 6.12), an MLP on :math:`[x_t, z, e(t)]`.

    With ``noise_dim=0`` it takes no latent and is a deterministic predictor :math:`f_\theta(x_t, t)` (Eq.
    6.6): the same network for a Gaussian-step diffusion model (:class:`~pyro_diffvi.infer.DDPMLoss`).

    :param dim: width :math:`N` of :math:`x_t` and :math:`x_0`.
    :param noise_dim: width :math:`L \ge 0` of the latent :math:`z`.
    :param hidden_dims: hidden widths (the dissertation's 25-Gaussians network: three of 512).
    :param time_dim: width of the sinusoidal embedding of :math:`t` (followed by a linear layer).
    :param activation: hidden activation (``"leaky_relu"``: negative slope 0.2, as in the dissertation).

    Example:

    >>> import torch
    >>> from pyro_diffvi.nn import DenoisingGenerator
    >>> generator = DenoisingGenerator(2, noise_dim=4, hidden_dims=(32, 32))
    >>> x_t, z = torch.randn(5, 2), torch.randn(5, 4)
    >>> generator(x_t, z, torch.tensor([1, 2, 3, 4, 4])).shape  # one step per row, or one int for all
    torch.Size([5, 2])
    """

    def __init__(
        self,
        dim: int,
        *,
        noise_dim: int = 16,
        hidden_dims: Sequence[int] = (512, 512, 512),
        time_dim: int = 32,
        activation: str = "leaky_relu",
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.noise_dim = check_positive_int("noise_dim", noise_dim, minimum=0)
        self.time_dim = check_positive_int("time_dim", time_dim)
        self.net = ConditionalMLP(
            dim + noise_dim, dim, time_dim=time_dim, hidden_dims=check_widths("hidden_dims", hidden_dims),
            activation=activation,
        )

    def forward(self, x_t: torch.Tensor, z: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        r"""The predicted :math:`x_0`.

        :param x_t: the noisy states, ``batch + (dim,)``.
        :param z: the latents, ``batch + (noise_dim,)``.
        :param t: the steps in ``1..T``: an int or an integer tensor broadcast against the batch.
        :return: ``batch + (dim,)``.
        """
        _check_vectors("x_t", x_t, self.dim)
        _check_vectors("z", z, self.noise_dim)
        return self.net(torch.cat([x_t, z.to(x_t)], dim=-1), _times(t, x_t))


class DenoisingDiscriminator(nn.Module):
    r"""The discriminator logit :math:`d_\phi(x_{t-1}, x_t, t)` of a denoising diffusion GAN, with
    :math:`D_\phi = \sigma(d_\phi)` the probability that :math:`x_{t-1}` is a real denoising of :math:`x_t`
    (Xiao 2022, Eq. 6.3): an MLP on :math:`[x_{t-1}, x_t, e(t)]`.

    :param dim: width :math:`N` of :math:`x_{t-1}` and :math:`x_t`.
    :param hidden_dims: hidden widths (the dissertation's 25-Gaussians network: three of 512).
    :param time_dim: width of the sinusoidal embedding of :math:`t` (followed by a linear layer).
    :param activation: hidden activation (``"leaky_relu"``: negative slope 0.2, as in the dissertation).

    Example:

    >>> import torch
    >>> from pyro_diffvi.nn import DenoisingDiscriminator
    >>> discriminator = DenoisingDiscriminator(2, hidden_dims=(32, 32))
    >>> discriminator(torch.randn(5, 2), torch.randn(5, 2), 3).shape  # one logit per row
    torch.Size([5])
    """

    def __init__(
        self,
        dim: int,
        *,
        hidden_dims: Sequence[int] = (512, 512, 512),
        time_dim: int = 32,
        activation: str = "leaky_relu",
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.time_dim = check_positive_int("time_dim", time_dim)
        self.net = ConditionalMLP(
            2 * dim, 1, time_dim=time_dim, hidden_dims=check_widths("hidden_dims", hidden_dims), activation=activation
        )

    def forward(self, x_prev: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        r"""The logit :math:`d_\phi(x_{t-1}, x_t, t)`.

        :param x_prev: the candidate denoised states :math:`x_{t-1}`, ``batch + (dim,)``.
        :param x_t: the noisy states :math:`x_t`, ``batch + (dim,)``.
        :param t: the steps in ``1..T``: an int or an integer tensor broadcast against the batch.
        :return: ``batch``.
        """
        _check_vectors("x_prev", x_prev, self.dim)
        _check_vectors("x_t", x_t, self.dim)
        return self.net(torch.cat([x_prev, x_t.to(x_prev)], dim=-1), _times(t, x_prev)).squeeze(-1)
