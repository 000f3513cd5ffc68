r"""Pareto-smoothed importance sampling diagnostic :math:`\hat k` of a guide (Vehtari et al. 2024).

For each data point the importance weights :math:`w_s = p(x, z_s) / q(z_s \mid x)`, :math:`z_s \sim q`,
have a right tail fitted by a generalized Pareto distribution; its shape :math:`\hat k` says how many
moments of the weights exist (:math:`1/\hat k`). :math:`\hat k < 0.7` (for :math:`S` in the thousands)
means importance sampling with the guide is reliable; larger values flag a guide much narrower than the
posterior (Yao et al. 2018, "Yes, but did it work?"). The fit is ArviZ's ``psislw`` (ArviZ < 1.0).

Exactly constant weights (the guide is the exact posterior) have no tail to fit: ArviZ then returns
:math:`\hat k = +\infty` (its "too few tail samples" value), which would flag a perfect guide. We detect
weights constant to floating-point precision (range at most ``64 * eps * max(1, max|log w|)`` of their
dtype, unless ``constant_tol`` is given) and return :math:`\hat k = -\infty` for them: a point mass has
every moment, the limit :math:`k \to -\infty` of bounded tails.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from pyro_diffvi.metrics.elbo import log_weights
from pyro_diffvi.util import check_finite

__all__ = ["psis_khat", "psis_khat_from_log_weights"]


def _arviz_psislw():
    try:
        import arviz
    except ImportError as e:  # pragma: no cover - arviz is a dependency
        raise ImportError("psis_khat needs arviz (pip install 'arviz<1.0')") from e
    if not hasattr(arviz, "psislw"):
        raise ImportError(
            f"psis_khat uses arviz.psislw, which arviz {arviz.__version__} no longer provides "
            "(arviz >= 1.0 moved PSIS to arviz-stats with different conventions); install 'arviz<1.0'"
        )
    return arviz.psislw


def psis_khat_from_log_weights(
    log_weights: torch.Tensor, *, constant_tol: float | None = None
) -> torch.Tensor:
    r"""PSIS :math:`\hat k` of each column of log importance weights.

    :param log_weights: shape ``(S, N)``: :math:`S` draws for each of :math:`N` data points
        (or ``(S,)`` for one). Needs :math:`S \ge 25` for a tail fit (ArviZ fits the largest
        :math:`\min(S/5, 3\sqrt S)` weights and needs at least 5).
    :param constant_tol: largest range of log weights treated as constant (:math:`\hat k = -\infty`);
        default ``64 * eps * max(1, max|log w|)`` of the dtype.
    :return: :math:`\hat k`, shape ``(N,)`` (``()`` for 1-D input), float64, on the input's device.
    """
    check_finite("log_weights", log_weights)
    squeeze = log_weights.dim() == 1
    lw = log_weights.unsqueeze(-1) if squeeze else log_weights
    if lw.dim() != 2:
        raise ValueError(f"log_weights must have shape (num_samples, num_data), got {tuple(lw.shape)}")
    if lw.shape[0] < 25:
        raise ValueError(f"PSIS needs at least 25 samples per data point, got {lw.shape[0]}")
    psislw = _arviz_psislw()
    lw64 = lw.detach().to(torch.float64)
    spread = lw64.max(0).values - lw64.min(0).values
    if constant_tol is None:
        scale = lw64.abs().max(0).values.clamp(min=1.0)
        tol = 64 * torch.finfo(lw.dtype).eps * scale
    else:
        tol = torch.full_like(spread, float(constant_tol))
    constant = spread <= tol
    khat = np.full(lw.shape[1], -np.inf)
    varying = (~constant).cpu().numpy()
    if varying.any():
        _, k = psislw(lw64.cpu().numpy().T[varying])
        khat[varying] = np.asarray(k, dtype=np.float64)
    out = torch.as_tensor(khat, dtype=torch.float64, device=log_weights.device)
    return out[0] if squeeze else out


def psis_khat(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 1000,
    max_particles_per_chunk: int | None = None,
    data_plate: str | None = None,
    constant_tol: float | None = None,
    no_grad: bool = True,
    **kwargs,
) -> torch.Tensor:
    r"""PSIS :math:`\hat k` of :math:`\log p(x_n, z) - \log q(z \mid x_n)` for each data point.

    The weights come from :func:`~pyro_diffvi.metrics.elbo.log_weights` (the same computation as the
    IWAE bound). For models with global latent sites the weights are those of the whole batch and the
    result has shape ``(1,)``.

    :param num_samples: draws :math:`S` per data point (at least 25; thousands for a reliable fit).
    :param constant_tol: see :func:`psis_khat_from_log_weights`.
    :return: :math:`\hat k`, shape ``(N,)``.
    """
    weights = log_weights(
        model,
        guide,
        *args,
        num_samples=num_samples,
        max_particles_per_chunk=max_particles_per_chunk,
        data_plate=data_plate,
        no_grad=no_grad,
        **kwargs,
    )
    return psis_khat_from_log_weights(weights.values, constant_tol=constant_tol)
