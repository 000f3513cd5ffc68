r"""Variance schedules :math:`(\beta_t)_{t=1}^T` of a Gaussian forward diffusion.

DDVI's experiments use the linear DDPM schedule :math:`\beta_t` from :math:`10^{-4}` to :math:`0.02`
(DDVI paper, Sec. 3.4 "Practical considerations" and Appendix A; Ho et al. 2020). With few steps
(``T = 20``) this schedule destroys little of :math:`z` (:math:`\bar\alpha_T \approx 0.82`), so the
Gaussian head :math:`q(y_T|x)` does most of the work and the chain refines it; the cosine schedule
(Nichol & Dhariwal 2021) drives :math:`\bar\alpha_T` to about zero and lets the chain create
multimodality from a near-standard-normal :math:`y_T`. The ``"vp"`` schedule discretizes the variance-preserving
SDE so that few large steps (denoising diffusion GANs, ``T = 4``) end at pure noise (Xiao 2022, Eqs. 6.14-6.15).

References:

- W. T. Piriyakulkij, Y. Wang, V. Kuleshov. *Denoising Diffusion Variational Inference: Diffusion Models
  as Expressive Variational Posteriors*. arXiv:2401.02739, 2024.
- J. Ho, A. Jain, P. Abbeel. *Denoising Diffusion Probabilistic Models*. NeurIPS, 2020.
- A. Q. Nichol, P. Dhariwal. *Improved Denoising Diffusion Probabilistic Models*. ICML, 2021.
- Y. Song, J. Sohl-Dickstein, D. P. Kingma, A. Kumar, S. Ermon, B. Poole. *Score-Based Generative Modeling
  through Stochastic Differential Equations*. ICLR, 2021 (the VP SDE).
- Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation, University of
  Chicago, 2022, Sec. 6.3.3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from pyro_diffvi.util import check_positive_float, check_positive_int

SCHEDULES = ("linear", "cosine", "vp")


def linear_beta_schedule(
    num_steps: int,
    *,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""Linearly spaced :math:`\beta_1 = \text{beta_start}, \ldots, \beta_T = \text{beta_end}`.

    :param num_steps: :math:`T \ge 1`.
    :param beta_start: :math:`\beta_1` in (0, 1).
    :param beta_end: :math:`\beta_T` in (0, 1).
    :param dtype: dtype of the result.
    :param device: device of the result (default: torch's default device).
    :return: tensor of shape ``(T,)``.

    Example:

    >>> from pyro_diffvi.diffusion import linear_beta_schedule
    >>> linear_beta_schedule(3, beta_start=0.1, beta_end=0.3)
    tensor([0.1000, 0.2000, 0.3000])
    """
    check_positive_int("num_steps", num_steps)
    for name, b in (("beta_start", beta_start), ("beta_end", beta_end)):
        if not 0.0 < b < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {b}")
    if num_steps == 1:
        return torch.tensor([beta_end], dtype=dtype, device=device)
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64).to(dtype=dtype, device=device)


def cosine_beta_schedule(
    num_steps: int,
    *,
    s: float = 0.008,
    max_beta: float = 0.5,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""The cosine schedule :math:`\bar\alpha_t = f(t)/f(0)`,
    :math:`f(t) = \cos^2\big(\frac{t/T + s}{1 + s}\frac{\pi}{2}\big)`,
    :math:`\beta_t = \min(1 - \bar\alpha_t/\bar\alpha_{t-1}, \text{max_beta})` (Nichol & Dhariwal 2021, Eq. 17).

    :param num_steps: :math:`T \ge 1`.
    :param s: offset :math:`s \ge 0` keeping :math:`\beta_1` away from zero.
    :param max_beta: clip of the last betas (< 1 keeps every transition non-degenerate). With few
        steps the last beta reaches the clip, and the first reverse step of a noise-prediction chain
        divides by :math:`\sqrt{1-\beta_T}` (32 for 0.999), amplifying the predictor's error: an
        untrained DDVI chain then draws huge values and its ELBO gradients explode. The default 0.5
        (Nichol & Dhariwal use 0.999 with T = 4000) keeps :math:`\bar\alpha_T` small (0.025 for
        ``T = 10``) and the chain tame: with 0.999 the DDVI defaults diverged on a unit-radius pinwheel
        prior (bound -1.4e6 nats) where 0.5 trains.
    :param dtype: dtype of the result.
    :param device: device of the result (default: torch's default device).
    :return: tensor of shape ``(T,)``.

    Example:

    >>> from pyro_diffvi.diffusion import cosine_beta_schedule
    >>> betas = cosine_beta_schedule(10)
    >>> round(betas[0].item(), 4), betas[-1].item()  # the last beta reaches the clip
    (0.0279, 0.5)
    >>> round((1 - betas).prod().item(), 3)  # the chain's end is nearly pure noise
    0.025
    """
    check_positive_int("num_steps", num_steps)
    check_positive_float("s", s, allow_zero=True)
    if not 0.0 < max_beta < 1.0:
        raise ValueError(f"max_beta must be in (0, 1), got {max_beta}")
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    betas = (1 - abar[1:] / abar[:-1]).clamp(min=1e-8, max=max_beta)
    return betas.to(dtype=dtype, device=device)


def vp_beta_schedule(
    num_steps: int,
    *,
    beta_min: float = 0.1,
    beta_max: float = 20.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""The discretized variance-preserving SDE of denoising diffusion GANs (Xiao 2022, Eqs. 6.14-6.15).

    With the normalized time :math:`t' = t/T`, the VP SDE's marginal variance is
    :math:`\sigma^2(t') = 1 - e^{-\beta_{\min} t' - \frac12(\beta_{\max} - \beta_{\min}) t'^2}` (Eq. 6.14);
    solving :math:`1 - \bar\alpha_t = \sigma^2(t/T)` gives

    .. math::

        \beta_t = 1 - \frac{\bar\alpha_t}{\bar\alpha_{t-1}}
                = 1 - e^{-\beta_{\min}/T - \frac12(\beta_{\max} - \beta_{\min})(2t - 1)/T^2} \quad (6.15),

    so :math:`\bar\alpha_T = e^{-\beta_{\min} - (\beta_{\max} - \beta_{\min})/2}` (:math:`4.3 \cdot 10^{-5}`
    with the defaults) for every ``T``: the same continuous process, cut into ``T`` steps.

    :param num_steps: :math:`T \ge 1`.
    :param beta_min: :math:`\beta_{\min} \ge 0` (0.1 in the dissertation).
    :param beta_max: :math:`\beta_{\max} \ge \beta_{\min}`, not both zero (20 in the dissertation).
    :param dtype: dtype of the result; the betas must lie in (0, 1) after rounding to it.
    :param device: device of the result (default: torch's default device).
    :return: tensor of shape ``(T,)``.
    :raises ValueError: naming ``num_steps``, ``beta_min`` or ``beta_max`` when out of range, or when a beta
        rounds to 0 or 1 in ``dtype`` (e.g. ``T = 1`` with ``beta_max = 40`` in float32).

    Example:

    >>> import torch
    >>> from pyro_diffvi.diffusion import vp_beta_schedule
    >>> vp_beta_schedule(4)  # the dissertation's T = 4: large steps
    tensor([0.4763, 0.8490, 0.9565, 0.9875])
    >>> f"{torch.prod(1 - vp_beta_schedule(4, dtype=torch.float64)).item():.3g}"  # x_T is nearly pure noise
    '4.32e-05'
    """
    check_positive_int("num_steps", num_steps)
    beta_min = check_positive_float("beta_min", beta_min, allow_zero=True)
    beta_max = check_positive_float("beta_max", beta_max, allow_zero=True)
    if beta_max < beta_min or beta_max == 0:
        raise ValueError(f"beta_max must be >= beta_min = {beta_min} and > 0, got {beta_max}")
    t = torch.arange(1, num_steps + 1, dtype=torch.float64)
    log_alphas = -beta_min / num_steps - 0.5 * (beta_max - beta_min) * (2 * t - 1) / num_steps**2
    betas = -torch.expm1(log_alphas)
    rounded = betas.to(dtype)
    if not ((rounded > 0) & (rounded < 1)).all():
        raise ValueError(
            f"vp_beta_schedule(num_steps={num_steps}, beta_min={beta_min}, beta_max={beta_max}) has betas from "
            f"{betas.min().item():.17g} to {betas.max().item():.17g}, which {dtype} rounds to 0 or 1 (it cannot "
            "represent this schedule): use more steps, a smaller beta_max, a larger beta_min, or a wider dtype"
        )
    return betas.to(dtype=dtype, device=device)


def make_schedule(
    schedule: str | Sequence[float] | torch.Tensor,
    num_steps: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Resolve a schedule given by name (``"linear"``, ``"cosine"``, ``"vp"``) or as explicit betas.

    :param schedule: a name in :data:`SCHEDULES` or a sequence of ``num_steps`` betas in (0, 1).
    :param num_steps: :math:`T`.
    :param dtype: dtype of the result.
    :param device: device of the result (default: torch's default device).
    :return: tensor of shape ``(T,)``.

    Example:

    >>> from pyro_diffvi.diffusion import make_schedule
    >>> make_schedule("linear", 20).shape
    torch.Size([20])
    >>> make_schedule([0.1, 0.2], 2)
    tensor([0.1000, 0.2000])
    """
    if isinstance(schedule, str):
        if schedule == "linear":
            return linear_beta_schedule(num_steps, dtype=dtype, device=device)
        if schedule == "cosine":
            return cosine_beta_schedule(num_steps, dtype=dtype, device=device)
        if schedule == "vp":
            return vp_beta_schedule(num_steps, dtype=dtype, device=device)
        raise ValueError(f"schedule must be one of {SCHEDULES} or a tensor of betas, got {schedule!r}")
    check_positive_int("num_steps", num_steps)
    betas = torch.as_tensor(schedule, dtype=dtype, device=device)
    if betas.shape != (num_steps,):
        raise ValueError(f"schedule must have shape ({num_steps},) (num_steps betas), got {tuple(betas.shape)}")
    check_betas_representable(betas, dtype)
    return betas


def check_betas_representable(betas: torch.Tensor, dtype: torch.dtype) -> None:
    """Raise ``ValueError`` unless every beta lies in (0, 1) *after* rounding to ``dtype`` (a beta within
    machine epsilon of 1 rounds to 1 in float32, and the chain then divides by zero).

    :param betas: the schedule, in any precision.
    :param dtype: the dtype the schedule will be used in.

    Example:

    >>> import torch
    >>> from pyro_diffvi.diffusion.schedules import check_betas_representable
    >>> betas = torch.tensor([0.5, 1 - 1e-9], dtype=torch.float64)
    >>> check_betas_representable(betas, torch.float32)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: schedule betas must lie in (0, 1) in torch.float32 ...
    """
    rounded = betas.to(dtype)
    if not ((rounded > 0) & (rounded < 1)).all():
        eps = torch.finfo(dtype).eps
        raise ValueError(
            f"schedule betas must lie in (0, 1) in {dtype} (keep them within [{eps:.2g}, 1 - {eps:.2g}]); "
            f"got values from {betas.min().item():.17g} to {betas.max().item():.17g}"
        )
