r"""Pareto-smoothed importance sampling diagnostic :math:`\hat k` of a guide.

For each data point the importance weights :math:`w_s = p(x, z_s) / q(z_s \mid x)`, :math:`z_s \sim q`,
have a right tail fitted by a generalized Pareto distribution; its shape :math:`\hat k` says how many
moments of the weights exist (:math:`1/\hat k`). :math:`\hat k < 0.7` (for :math:`S` in the thousands)
means importance sampling with the guide is reliable; larger values flag a guide much narrower than the
posterior. The fit is ArviZ's: ``arviz_stats.base.array_stats.psislw`` (arviz-stats, the computational
package of ArviZ >= 1.0) when installed, else ``arviz.psislw`` (ArviZ 0.x). The two fit the largest
:math:`\lfloor 3\sqrt S\rfloor` (arviz-stats, :math:`S > 225`) or :math:`\lceil\min(S/5, 3\sqrt S)\rceil`
(ArviZ 0.x) weights, so their :math:`\hat k` differ slightly.

Exactly constant weights (the guide is the exact posterior) have no tail to fit: ArviZ then returns
:math:`\hat k = +\infty` or raises, which would flag a perfect guide. We detect
weights constant to floating-point precision (range at most ``64 * eps * max(1, max|log w|)`` of their
dtype, unless ``constant_tol`` is given) and return :math:`\hat k = -\infty` for them: a point mass has
every moment, the limit :math:`k \to -\infty` of bounded tails. A tail of identical weights
among varying ones has :math:`\hat k = +\infty` (no tail to fit), with either backend.

References:

* A. Vehtari, D. Simpson, A. Gelman, Y. Yao, J. Gabry. *Pareto Smoothed Importance Sampling*.
  Journal of Machine Learning Research 25(72), 1-58, 2024 (Sec. 3, the :math:`\hat k` diagnostic).
* Y. Yao, A. Vehtari, D. Simpson, A. Gelman. *Yes, but Did It Work?: Evaluating Variational
  Inference*. ICML 2018.
* R. Kumar, C. Carroll, A. Hartikainen, O. Martin. *ArviZ a unified library for exploratory analysis
  of Bayesian models in Python*. Journal of Open Source Software 4(33), 1143, 2019.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from pyro_diffvi.metrics.log_weights import log_weights
from pyro_diffvi.util import check_finite

__all__ = ["psis_khat", "psis_khat_from_log_weights"]


def _khat_rows(psislw: Callable, log_ratios: np.ndarray) -> np.ndarray:
    """Apply one ArviZ ``psislw`` to each row (a 1-D array of draws); ``+inf`` where it finds no tail."""
    khat = np.empty(log_ratios.shape[0])
    for i, row in enumerate(log_ratios):
        try:
            khat[i] = float(np.asarray(psislw(row)[1]))
        except ValueError:  # arviz-stats: "All tail values are the same"; ArviZ 0.x returns +inf there
            khat[i] = np.inf
    return khat


def _psis_backend(name: str | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """ArviZ's PSIS fit as ``log_weights (N, S) -> khat (N,)``.

    ``"arviz_stats"`` (ArviZ >= 1.0 computes with arviz-stats), else ``"arviz"`` (ArviZ 0.x,
    ``arviz.psislw``); ``None`` takes the first importable one.
    """
    if name in (None, "arviz_stats"):
        try:
            from arviz_stats.base import array_stats
        except ImportError:
            if name is not None:
                raise
        else:
            # arviz-stats takes log ratios with the sign of a log-likelihood (PSIS-LOO's weights are
            # 1 / p(y_i | theta)) and smooths their negation: pass minus the log weights.
            return lambda lw: _khat_rows(lambda row: array_stats.psislw(-row, axis=-1), lw)
    if name not in (None, "arviz"):
        raise ValueError(f"unknown PSIS backend {name!r}; expected 'arviz_stats' or 'arviz'")
    try:
        import arviz
    except ImportError as e:
        raise ImportError("psis_khat needs arviz-stats (pip install arviz-stats) or arviz < 1.0") from e
    if not hasattr(arviz, "psislw"):
        raise ImportError(
            f"arviz {arviz.__version__} has no psislw (ArviZ >= 1.0 computes PSIS with arviz-stats): "
            "pip install arviz-stats"
        )
    return lambda lw: _khat_rows(arviz.psislw, lw)


def psis_khat_from_log_weights(
    log_weights: torch.Tensor, *, constant_tol: float | None = None
) -> torch.Tensor:
    r"""PSIS :math:`\hat k` of each column of log importance weights.

    :param log_weights: shape ``(S, N)``: :math:`S` draws for each of :math:`N` data points
        (or ``(S,)`` for one). Needs :math:`S \ge 25` for a tail fit (ArviZ fits about
        :math:`\min(S/5, 3\sqrt S)` of the largest weights and needs at least 5).
    :param constant_tol: largest range of log weights treated as constant (:math:`\hat k = -\infty`);
        default ``64 * eps * max(1, max|log w|)`` of the dtype.
    :return: :math:`\hat k`, shape ``(N,)`` (``()`` for 1-D input), float64, on the input's device.
    :raises ValueError: naming ``log_weights`` if it is not finite, not 1-D or 2-D, or has fewer than
        25 rows.

    Uniform weights are bounded (true :math:`k = -1`); Pareto weights with tail index :math:`\alpha = 0.8`, i.e.
    :math:`\log w \sim \mathrm{Exponential}(0.8)`, have no mean (true :math:`k = 1/\alpha = 1.25`).

    Example:

    >>> import torch
    >>> from pyro_diffvi.metrics import psis_khat_from_log_weights
    >>> _ = torch.manual_seed(0)
    >>> bounded = torch.rand(4000, 2).log()
    >>> pareto = torch.distributions.Exponential(0.8).sample((4000, 2))
    >>> khat = psis_khat_from_log_weights(torch.cat([bounded, pareto], dim=1))
    >>> khat.shape, (khat[:2] < 0).tolist(), (khat[2:] > 1).tolist()
    (torch.Size([4]), [True, True], [True, True])
    >>> psis_khat_from_log_weights(torch.zeros(100))  # constant weights: the guide is exact
    tensor(-inf, dtype=torch.float64)
    """
    check_finite("log_weights", log_weights)
    squeeze = log_weights.dim() == 1
    lw = log_weights.unsqueeze(-1) if squeeze else log_weights
    if lw.dim() != 2:
        raise ValueError(f"log_weights must have shape (num_particles, num_data), got {tuple(lw.shape)}")
    if lw.shape[0] < 25:
        raise ValueError(f"PSIS needs at least 25 samples per data point, got {lw.shape[0]}")
    backend = _psis_backend()
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
        khat[varying] = backend(lw64.cpu().numpy().T[varying])
    out = torch.as_tensor(khat, dtype=torch.float64, device=log_weights.device)
    return out[0] if squeeze else out


def psis_khat(
    model: Callable,
    guide: Callable,
    *args,
    num_particles: int = 1000,
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

    :param model: a Pyro model; its observed sites must lie in a data plate.
    :param guide: a Pyro guide sampling every latent site of the model.
    :param args: positional arguments of model and guide (the batch to evaluate, in full).
    :param num_particles: guide draws :math:`S` per data point (at least 25; thousands for a reliable
        fit).
    :param max_particles_per_chunk: largest particle plate run at once (memory bound); ``None`` runs
        all particles together.
    :param data_plate: name of the data plate; auto-detected when ``None``.
    :param constant_tol: see :func:`psis_khat_from_log_weights`.
    :param no_grad: run under ``torch.no_grad()``.
    :param kwargs: keyword arguments of model and guide.
    :return: :math:`\hat k`, shape ``(N,)``.

    A guide four times narrower than the exact Gaussian posterior gives heavy-tailed weights (theory:
    :math:`k = 1 - 0.25^2 \approx 0.94`), one twice as wide bounded weights (:math:`k < 0`).

    Example:

    >>> import pyro, pyro.distributions as dist, torch
    >>> from pyro_diffvi.metrics import psis_khat
    >>> def model(x):  # z ~ N(0, 1), x | z ~ N(z, 1): posterior N(x / 2, 1 / 2)
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def scaled_guide(factor):  # N(posterior mean, factor^2 * posterior variance)
    ...     def guide(x):
    ...         with pyro.plate("data", x.shape[0]):
    ...             pyro.sample("z", dist.Normal(x / 2, factor * 0.5**0.5))
    ...     return guide
    >>> pyro.set_rng_seed(0)
    >>> x = torch.tensor([-1.0, 0.0, 1.0])
    >>> narrow = psis_khat(model, scaled_guide(0.25), x, num_particles=4000)
    >>> wide = psis_khat(model, scaled_guide(2.0), x, num_particles=4000)
    >>> (narrow > 0.7).tolist(), (wide < 0).tolist()
    ([True, True, True], [True, True, True])
    """
    weights = log_weights(
        model, guide, *args, num_particles=num_particles, max_particles_per_chunk=max_particles_per_chunk,
        data_plate=data_plate, no_grad=no_grad, **kwargs,
    )
    return psis_khat_from_log_weights(weights.values, constant_tol=constant_tol)
