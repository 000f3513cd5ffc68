r"""Annealed importance sampling (AIS) estimates of a log partition function.

Neal (2001); used for evaluation in the unnormalized-priors paper (Sec. 2, "Post-training evaluation
... annealed importance sampling"). For an unnormalized density :math:`f(z) = e^{-E(z)}` and a
normalized base :math:`p_0`, the geometric path

.. math::

    f_\beta(z) = p_0(z)^{1-\beta} e^{-\beta E(z)}, \qquad 0 = \beta_0 < \beta_1 < \dots < \beta_K = 1,

is traversed by chains :math:`z_0 \sim p_0`, :math:`z_k \sim T_k(\cdot \mid z_{k-1})` with
:math:`T_k` leaving :math:`f_{\beta_k}` invariant, and importance weights

.. math::

    \log w = \sum_{k=1}^K (\beta_k - \beta_{k-1}) \big(-E(z_{k-1}) - \log p_0(z_{k-1})\big).

:math:`\hat Z = \frac1N \sum_n w_n` is unbiased for :math:`Z = \int e^{-E}`, hence by Jensen
:math:`\mathbb E[\log \hat Z] \le \log Z`: **the log estimate is a stochastic lower bound on log Z**
(and a log-likelihood computed with it, :math:`-E(z) - \log \hat Z`, is a stochastic upper bound).
Exactness of the weights requires transitions that leave each :math:`f_\beta` exactly invariant
(``transition="mala"``); ``"ula"`` is cheaper but biased by the discretisation.

References

- R. M. Neal. *Annealed Importance Sampling*. Statistics and Computing 11(2), 2001.
- R. B. Grosse, Z. Ghahramani, R. P. Adams. *Sandwiching the Marginal Likelihood Using Bidirectional
  Monte Carlo*. arXiv:1511.02543, 2015 (the sigmoid schedule).
- *Variational Inference with Unnormalized Priors*. Anonymous authors, manuscript under double-blind
  review ("the unnormalized-priors paper").
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pyro_diffvi.ops.log_mean_exp import log_mean_exp_with_se
from pyro_diffvi.ops.types import EnergyFn
from pyro_diffvi.samplers.langevin import langevin_step
from pyro_diffvi.util import check_positive_float, check_positive_int

TRANSITIONS = ("mala", "ula")


def sigmoid_schedule(num_steps: int, *, sharpness: float = 4.0, dtype=None, device=None) -> Tensor:
    """Inverse temperatures ``0 = beta_0 < ... < beta_K = 1`` spaced by a rescaled sigmoid.

    Denser near both ends, where the geometric path changes fastest (Grosse et al., 2015).

    :param num_steps: ``K``, the number of annealing steps (>= 1).
    :param sharpness: the sigmoid's range is ``[-sharpness, sharpness]``.
    :param dtype: the schedule's dtype (default ``torch.get_default_dtype()``).
    :param device: the schedule's device (default CPU).

    Example:

    >>> from pyro_diffvi.samplers import sigmoid_schedule
    >>> [round(beta, 3) for beta in sigmoid_schedule(4).tolist()]
    [0.0, 0.105, 0.5, 0.895, 1.0]
    """
    check_positive_int("num_steps", num_steps)
    t = torch.linspace(-sharpness, sharpness, num_steps + 1, dtype=dtype, device=device)
    s = torch.sigmoid(t)
    return (s - s[0]) / (s[-1] - s[0])


def check_betas(betas) -> Tensor:
    r"""Validate an annealing schedule and return it as a tensor.

    Used by :func:`ais_log_partition` and :meth:`pyro_diffvi.distributions.GRBM.ais_log_partition`.

    :param betas: inverse temperatures :math:`0 = \beta_0 \le \beta_1 \le \dots \le \beta_K = 1`, a 1-D
        tensor (or sequence) of at least 2 finite entries, starting at exactly 0 and ending at exactly 1.
    :return: ``betas`` as a tensor.
    :raises ValueError: naming ``betas`` when it has the wrong shape, a NaN or infinite entry, does not
        start at 0 or end at 1, or decreases somewhere.

    Example:

    >>> import torch
    >>> from pyro_diffvi.samplers.ais import check_betas
    >>> check_betas(torch.tensor([0.0, 0.5, 1.0]))
    tensor([0.0000, 0.5000, 1.0000])
    """
    betas = torch.as_tensor(betas)
    if betas.dim() != 1 or betas.numel() < 2:
        raise ValueError(f"betas must be a 1-D tensor with at least 2 entries, got shape {tuple(betas.shape)}")
    if not betas.is_floating_point():
        raise ValueError(f"betas must be a floating-point tensor, got dtype {betas.dtype}")
    finite = torch.isfinite(betas)
    if not finite.all():
        bad = (~finite).nonzero().flatten().tolist()
        raise ValueError(f"betas must be finite; entries {bad} are NaN or infinite")
    decreasing = (betas[1:] < betas[:-1]).nonzero().flatten().tolist()
    if betas[0].item() != 0.0 or betas[-1].item() != 1.0 or decreasing:
        raise ValueError(
            "betas must increase monotonically from exactly 0 to exactly 1, got first entry "
            f"{betas[0].item()}, last entry {betas[-1].item()}, decreases after entries {decreasing}"
        )
    return betas


def ais_log_partition(
    energy_fn: EnergyFn,
    base,
    *,
    num_chains: int = 256,
    num_steps: int = 500,
    transition: str = "mala",
    step_size: float = 0.05,
    num_mcmc_steps: int = 1,
    betas: Tensor | None = None,
    adapt_step_size: bool = True,
    target_accept: float = 0.6,
    return_log_weights: bool = False,
):
    r"""Estimate :math:`\log Z = \log \int e^{-E(z)} dz` by annealed importance sampling.

    See the module docstring for the path and the weights. The estimate is :math:`\log` of the mean AIS
    weight; its standard error is by the delta method, :math:`\mathrm{sd}(w)/(\sqrt N\,\bar w)`. Because
    :math:`\hat Z` is unbiased, :math:`\log \hat Z` is a stochastic **lower** bound on :math:`\log Z`
    in expectation (the SE understates the error when the weights are heavy-tailed).

    :param energy_fn: maps ``z`` of shape ``(num_chains,) + event_shape`` to energies of shape
        ``(num_chains,)``; differentiable with respect to ``z``.
    :param base: a Pyro/torch distribution with normalized ``log_prob``, ``sample`` and the event shape of
        ``z`` (e.g. ``dist.Normal(zeros(D), 3.).to_event(1)``); should cover the mass of ``e^{-E}``.
    :param num_chains: ``N >= 2`` independent AIS chains.
    :param num_steps: ``K``, number of intermediate distributions (ignored when ``betas`` is given).
    :param transition: ``"mala"`` (exact invariance) or ``"ula"`` (unadjusted, biased).
    :param step_size: initial Langevin step size :math:`h` (see :func:`~pyro_diffvi.samplers.langevin`).
    :param num_mcmc_steps: transitions per temperature.
    :param betas: optional schedule, a 1-D tensor increasing from 0 to 1, validated by :func:`check_betas`
        (default: :func:`sigmoid_schedule`).
    :param adapt_step_size: for MALA, after each temperature multiply the step size by
        ``exp(acceptance - target_accept)`` (a population-level adaptation, shared by all chains).
    :param target_accept: acceptance rate targeted by the adaptation.
    :param return_log_weights: also return the ``(N,)`` log weights.
    :return: ``(log_Z_estimate, standard_error)`` (scalar tensors), plus the log weights if asked.

    Example (:math:`E(z) = 2\|z\|^2` in 3-D has :math:`\log Z = \tfrac32 \log(\pi/2) \approx 0.68`):

    >>> import pyro, torch
    >>> from pyro.distributions import Normal
    >>> from pyro_diffvi.samplers import ais_log_partition
    >>> pyro.set_rng_seed(0)
    >>> log_z, se = ais_log_partition(
    ...     lambda z: 2 * z.pow(2).sum(-1), Normal(torch.zeros(3), 1.0).to_event(1), num_chains=200, num_steps=50
    ... )
    >>> round(log_z.item(), 1), se.item() < 0.05
    (0.7, True)
    """
    check_positive_int("num_chains", num_chains, minimum=2)  # two for a standard error
    if transition not in TRANSITIONS:
        raise ValueError(f"transition must be one of {TRANSITIONS}, got {transition!r}")
    step_size = check_positive_float("step_size", step_size)
    num_mcmc_steps = check_positive_int("num_mcmc_steps", num_mcmc_steps, minimum=0)
    if not (0.0 < target_accept < 1.0):
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}")
    if not hasattr(base, "log_prob") or not hasattr(base, "sample"):
        raise TypeError(f"base must be a distribution with sample and log_prob, got {type(base).__name__}")

    with torch.no_grad():
        z = base.sample((num_chains,))
    if tuple(base.batch_shape) != ():
        raise ValueError(f"base must have batch_shape (), got {tuple(base.batch_shape)}")
    if betas is None:
        betas = sigmoid_schedule(num_steps, dtype=z.dtype, device=z.device)
    else:
        betas = check_betas(torch.as_tensor(betas, dtype=z.dtype, device=z.device))

    def log_ratio(z: Tensor) -> Tensor:  # log f_1(z) - log f_0(z)
        with torch.no_grad():
            e = energy_fn(z)
            if e.shape != (num_chains,):
                raise ValueError(f"energy_fn must map {tuple(z.shape)} to shape ({num_chains},), got {tuple(e.shape)}")
            return -e - base.log_prob(z)

    metropolis = transition == "mala"
    log_w = torch.zeros(num_chains, dtype=z.dtype, device=z.device)
    for k in range(1, betas.shape[0]):
        beta_prev, beta = betas[k - 1], betas[k]
        log_w = log_w + (beta - beta_prev) * log_ratio(z)
        if k == betas.shape[0] - 1:
            break  # the final state is not needed
        annealed = _annealed_energy(energy_fn, base, beta)
        accepts = []
        for _ in range(num_mcmc_steps):
            z, accepted, _, _ = langevin_step(annealed, z, step_size=step_size, metropolis=metropolis)
            accepts.append(accepted.to(z.dtype).mean())
        if metropolis and adapt_step_size and accepts:
            step_size *= math.exp(torch.stack(accepts).mean().item() - target_accept)
    log_z, se = log_mean_exp_with_se(log_w)
    if return_log_weights:
        return log_z, se, log_w
    return log_z, se


def _annealed_energy(energy_fn: EnergyFn, base, beta: Tensor) -> EnergyFn:
    """Energy of :math:`f_\\beta`: :math:`-(1-\\beta)\\log p_0(z) + \\beta E(z)`."""

    def annealed(z: Tensor) -> Tensor:
        return beta * energy_fn(z) - (1.0 - beta) * base.log_prob(z)

    return annealed
