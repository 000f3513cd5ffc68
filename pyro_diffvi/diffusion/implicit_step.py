r"""The posterior-sampling step of a diffusion model whose denoiser predicts :math:`x_0` (Xiao 2022, Eqs. 6.6, 6.12).

One reverse step draws :math:`x_{t-1} \sim p_\theta(x_{t-1}|x_t)` in two parts: a prediction
:math:`x_0' = G_\theta(x_t, z, t)` of the clean state, then a draw from the forward process's posterior
:math:`q(x_{t-1}|x_t, x_0 = x_0')` (:meth:`~pyro_diffvi.diffusion.GaussianDiffusion.posterior_sample`):

.. math::

    p_\theta(x_{t-1}|x_t) = \int p(z)\, q(x_{t-1}|x_t, x_0 = G_\theta(x_t, z, t))\, dz \quad (6.12).

With a latent :math:`z \sim \mathcal N(0, I)` (a denoising diffusion GAN) the step is an implicit, multimodal
distribution; with no latent (``noise_dim = 0``) it is the Gaussian step of DDPM (Eq. 6.6), and a noise
prediction :math:`\hat\epsilon` is turned into :math:`x_0'` by Eq. 6.9 (``prediction="eps"``).

References: Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation,
University of Chicago, 2022, Sec. 6.3.1; J. Ho, A. Jain, P. Abbeel. *Denoising Diffusion Probabilistic Models*.
NeurIPS, 2020.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from pyro_diffvi.diffusion.process import GaussianDiffusion

__all__ = ["PREDICTIONS", "PosteriorStep", "posterior_sampling_step"]

PREDICTIONS = ("x0", "eps")


class PosteriorStep(NamedTuple):
    """The result of :func:`posterior_sampling_step`."""

    x_prev: torch.Tensor
    """the draw of :math:`x_{t-1}`"""
    x0: torch.Tensor
    """the denoiser's prediction :math:`x_0'` it was drawn from"""


def posterior_sampling_step(
    process: GaussianDiffusion,
    generator: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | int], torch.Tensor],
    x_t: torch.Tensor,
    t: int | torch.Tensor,
    *,
    z: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    prediction: str = "x0",
) -> PosteriorStep:
    r"""Draw :math:`x_{t-1} \sim q(x_{t-1}|x_t, x_0 = x_0')` with :math:`x_0' = G(x_t, z, t)` (Eq. 6.12).

    At :math:`t = 1` the posterior is the point mass at :math:`x_0'`, so ``x_prev`` is the prediction itself
    (Alg. 2's output). The draw is reparameterized: gradients flow to the generator's parameters.

    :param process: the forward process (its schedule gives the posterior's coefficients).
    :param generator: a callable ``G(x_t, z, t)`` returning ``batch + (dim,)``, e.g. a
        :class:`~pyro_diffvi.nn.DenoisingGenerator`; its ``noise_dim`` attribute (default 0) is the width of
        the latents drawn when ``z`` is not given.
    :param x_t: the noisy states, ``batch + (dim,)``.
    :param t: the step(s) in ``1..T``: an int, or an integer tensor of shape ``batch``.
    :param z: the latents, ``batch + (noise_dim,)`` (default: standard normal draws).
    :param noise: the posterior's standard normal noise, ``batch + (dim,)`` (default: fresh draws).
    :param prediction: what the generator outputs: ``"x0"`` (the clean state, the dissertation's choice) or
        ``"eps"`` (the noise of :math:`x_t`, converted by Eq. 6.9).
    :return: a :class:`PosteriorStep` ``(x_prev, x0)``.

    Example (a generator that returns the true :math:`x_0` reproduces the forward posterior):

    >>> import torch
    >>> from pyro_diffvi.diffusion import GaussianDiffusion, posterior_sampling_step
    >>> process = GaussianDiffusion(4, schedule="vp", dtype=torch.float64)
    >>> x0 = torch.tensor([0.5, -1.0], dtype=torch.float64).expand(100000, 2)
    >>> x_t = process.q_sample(x0, 3, torch.randn_like(x0))
    >>> step = posterior_sampling_step(process, lambda x_t, z, t: x0, x_t, 3)
    >>> q = process.posterior(x_t, x0, 3)
    >>> bool(((step.x_prev - q.loc).std() - q.scale[0, 0]).abs() < 0.01)
    True
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if not torch.is_tensor(x_t) or x_t.dim() < 1 or not x_t.is_floating_point():
        raise ValueError(f"x_t must be a floating-point tensor of shape batch + (dim,), got {x_t!r:.60}")
    if isinstance(t, int):
        if not 1 <= t <= process.num_steps:
            raise ValueError(f"t must be in 1..{process.num_steps}, got {t}")
    elif t.shape != x_t.shape[:-1]:
        raise ValueError(
            f"t must be an int or a tensor of the batch shape {tuple(x_t.shape[:-1])}, got {tuple(t.shape)}"
        )
    if z is None:
        z = x_t.new_empty(x_t.shape[:-1] + (getattr(generator, "noise_dim", 0),)).normal_()
    out = generator(x_t, z, t)
    x0 = out if prediction == "x0" else process.predict_y0(x_t, t, out)
    if noise is None:
        noise = torch.randn_like(x0)
    return PosteriorStep(process.posterior_sample(x_t, x0, t, noise), x0)
