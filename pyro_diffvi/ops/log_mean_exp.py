"""The log of a mean of weights given on the log scale, with its delta-method standard error."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["log_mean_exp_with_se"]


def log_mean_exp_with_se(log_w: Tensor, *, dim: int = 0) -> tuple[Tensor, Tensor]:
    r"""Log of a mean of weights given on the log scale, and its delta-method standard error.

    For weights :math:`w_1, \dots, w_N` (given as :math:`\log w_n`) along ``dim``,

    .. math::

        \log \bar w = \log \frac1N \sum_{n=1}^N w_n, \qquad
        \mathrm{se}(\log \bar w) \approx \frac{\mathrm{sd}(w)}{\sqrt N\, \bar w},

    the second by the delta method (first-order Taylor expansion of :math:`\log` around :math:`\bar w`),
    with the unbiased sample standard deviation. This is the standard error of an importance-sampling
    estimate of a log normalizer: an AIS :math:`\log \hat Z` (R. M. Neal. *Annealed importance
    sampling*. Statistics and Computing 11, 125-139, 2001) or an importance-weighted bound
    :math:`\log \frac1K \sum_k w_k` (Y. Burda, R. Grosse, R. Salakhutdinov. *Importance Weighted
    Autoencoders*. ICLR 2016). It understates the error when the weights are heavy-tailed.
    The computation is stable: weights are rescaled by their maximum before exponentiating.

    :param log_w: log weights; any shape with at least one entry along ``dim``.
    :param dim: the dimension holding the :math:`N` weights (reduced away in both results).
    :return: ``(log_mean, standard_error)``, each of ``log_w``'s shape without ``dim``; the standard
        error is ``nan`` where :math:`N = 1`.

    Example:

    >>> import torch
    >>> from pyro_diffvi.ops import log_mean_exp_with_se
    >>> weights = torch.tensor([1.0, 2.0, 3.0])  # mean 2, standard deviation 1
    >>> log_mean, se = log_mean_exp_with_se(weights.log())
    >>> round(log_mean.exp().item(), 4), round(se.item(), 4)  # se = 1 / (sqrt(3) * 2)
    (2.0, 0.2887)
    >>> log_mean, se = log_mean_exp_with_se(torch.tensor([[1.0, 2.0], [3.0, 4.0]]).log(), dim=0)
    >>> log_mean.exp(), se.shape
    (tensor([2., 3.]), torch.Size([2]))
    """
    if not torch.is_tensor(log_w) or log_w.dim() == 0 or log_w.shape[dim] < 1:
        raise ValueError(
            f"log_w must be a tensor with at least one entry along dim={dim}, got "
            f"{getattr(log_w, 'shape', type(log_w).__name__)}"
        )
    n = log_w.shape[dim]
    log_mean = torch.logsumexp(log_w, dim) - math.log(n)
    if n == 1:
        return log_mean, torch.full_like(log_mean, math.nan)
    w = torch.exp(log_w - log_w.amax(dim, keepdim=True))
    se = w.std(dim, unbiased=True) / (math.sqrt(n) * w.mean(dim))
    return log_mean, se
