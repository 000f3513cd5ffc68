r"""Maximum likelihood of an energy with an importance-weighted :math:`\log Z` (Eqs. 5 and 7 of the unnormalized-priors
paper), and that estimate of :math:`\log Z` itself.

References: *Variational Inference with Unnormalized Priors*. Anonymous authors, manuscript under double-blind review
("the unnormalized-priors paper").
"""

from __future__ import annotations

import torch
from torch import Tensor

from pyro_diffvi.infer.prior_objectives.base import PriorObjective, batched_energy, check_samples, energy_function
from pyro_diffvi.ops.log_mean_exp import log_mean_exp_with_se

__all__ = ["ImportanceWeightedLogZLoss", "importance_weighted_log_partition"]


def importance_weighted_log_partition(
    prior, samples: Tensor, log_q: Tensor
) -> tuple[Tensor, Tensor]:
    r"""Importance-sampling estimate of :math:`\log Z = \log \int e^{-E(z)} dz` (Eq. 5 of the
    unnormalized-priors paper).

    :math:`\log \hat Z = \log \frac1N \sum_i e^{-E(z_i) - \log q(z_i)}` with :math:`z_i \sim q`.
    :math:`\hat Z` is unbiased, so :math:`\log \hat Z` is a consistent but (in expectation) downward-biased
    estimate; the standard error is by the delta method, :math:`\mathrm{sd}(w) / (\sqrt N \bar w)`
    (:func:`~pyro_diffvi.ops.log_mean_exp_with_se`).
    Samples may come from different proposals :math:`q_i` (e.g. :math:`q(z|x_i)` for a minibatch) as long
    as ``log_q[i]`` is the log density of the proposal that drew ``z_i``: each term is unbiased for Z.

    :param prior: an object with an ``energy(z)`` method, or a callable ``z -> E(z)``.
    :param samples: ``(N,) + event_shape`` proposal draws.
    :param log_q: ``(N,)`` their proposal log densities.
    :return: ``(log_z_estimate, standard_error)``; differentiable in the energy's parameters.

    Example (:math:`E(z) = \|z\|^2/2` in 2-D has :math:`\log Z = \log 2\pi \approx 1.84`):

    >>> import torch
    >>> import pyro.distributions as dist
    >>> from pyro_diffvi.infer.prior_objectives import importance_weighted_log_partition
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> proposal = dist.Normal(torch.zeros(2), 1.5).to_event(1)
    >>> z = proposal.sample((20000,))
    >>> log_z, se = importance_weighted_log_partition(lambda z: 0.5 * z.pow(2).sum(-1), z, proposal.log_prob(z))
    >>> round(log_z.item(), 1), se.item() < 0.01
    (1.8, True)
    """
    energy_fn = energy_function(prior)
    samples = check_samples("samples", samples)
    if not torch.is_tensor(log_q) or log_q.shape != samples.shape[:1]:
        raise ValueError(
            f"log_q must be a tensor of shape {tuple(samples.shape[:1])} (one log density per sample), "
            f"got {getattr(log_q, 'shape', type(log_q).__name__)}"
        )
    log_w = -batched_energy(energy_fn, samples) - log_q
    log_z, stderr = log_mean_exp_with_se(log_w)
    if log_w.shape[0] == 1:  # one sample leaves the error unknown: infinite rather than NaN
        stderr = torch.full_like(log_z, float("inf"))
    return log_z, stderr.detach()


class ImportanceWeightedLogZLoss(PriorObjective):
    r"""Maximum likelihood of the energy on the samples with the importance-weighted :math:`\log Z`
    (Eqs. 5 and 7 of the unnormalized-priors paper): loss :math:`\frac1N\sum_i E(z_i) + \log \hat Z`, with
    :math:`\hat Z`
    from :func:`importance_weighted_log_partition` using the same samples and their proposal densities
    (in a VAE: :math:`z_i \sim q(z|x_i)`, ``log_q`` from the guide, pooled over the minibatch).

    Its gradient is Eq. 7 (negated): the positive phase on the samples minus a self-normalized
    importance-weighted negative phase. Biased but consistent; the paper shows it fails in practice
    because :math:`q(z|x)` does not cover the prior. The value is the estimated negative average
    log-likelihood of the samples under the prior. Provided for comparison.

    Samples of a standard Gaussian under its own energy: the loss is near the Gaussian's negative log-likelihood,
    :math:`1 + \log 2\pi \approx 2.84`.

    Example:

    >>> import torch
    >>> import pyro.distributions as dist
    >>> from pyro_diffvi.infer import ImportanceWeightedLogZLoss
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> proposal = dist.Normal(torch.zeros(2), 1.0).to_event(1)
    >>> z = proposal.sample((4000,))
    >>> loss = ImportanceWeightedLogZLoss()(lambda z: 0.5 * z.pow(2).sum(-1), z, proposal.log_prob(z))
    >>> round(loss.item(), 1)
    2.8
    """

    needs_log_q = True

    def loss(self, prior, z: Tensor, log_q: Tensor | None = None) -> Tensor:
        if log_q is None:
            raise ValueError("ImportanceWeightedLogZLoss needs log_q, the proposal log density of each sample z")
        energy_fn = energy_function(prior)
        z = check_samples("z", z).detach()
        log_z, stderr = importance_weighted_log_partition(energy_fn, z, log_q.detach())
        mean_energy = batched_energy(energy_fn, z).mean()
        loss = mean_energy + log_z
        self.last_terms = {"iw_nll": loss.item(), "iw_log_z": log_z.item(), "iw_log_z_se": stderr.item()}
        return loss
