r"""Objectives that fit an energy-based prior :math:`p_\beta(z) \propto e^{-E_\beta(z)}` to samples.

The unnormalized-priors paper (Sec. 2.3) trains the encoder and decoder of a VAE on the partition-free
bound and fits the energy prior to the **aggregate posterior** :math:`q_\phi(z) = \int q_\phi(z|x) p(x) dx` with any
objective that matches an EBM to samples. Every objective here has the same interface::

    objective.loss(prior, z, log_q=None) -> scalar Tensor      # minimized
    objective.last_terms                                        # floats for logging

``prior`` is anything with an ``energy(z)`` method (an
:class:`~pyro_diffvi.distributions.EnergyDistribution`, a ``GRBM``, an ``EnergyPrior`` module) or a
plain callable ``z -> E(z)``; ``z`` has shape ``(N,) + event_shape`` and is treated as data (detached);
``log_q`` (shape ``(N,)``) is the proposal log density of ``z``, needed only by
:class:`ImportanceWeightedLogZLoss`. The returned tensor is a *surrogate*: its gradient with respect to the
energy's parameters is the objective's gradient (and, for :class:`AdversarialCDLoss`, its gradient with
respect to the variational flow's parameters is the flow's objective); its value is documented per class.

The same objectives fit an energy directly to data (no VAE): pass data points as ``z``.

References

- *Variational Inference with Unnormalized Priors*. Anonymous authors, manuscript under double-blind
  review ("the unnormalized-priors paper").
- Y. Song, S. Garg, J. Shi, S. Ermon. *Sliced Score Matching: A Scalable Approach to Density and Score
  Estimation*. Conference on Uncertainty in Artificial Intelligence (UAI), 2019.
- Y. Du, I. Mordatch. *Implicit Generation and Modeling with Energy-Based Models*. NeurIPS, 2019.
"""

from pyro_diffvi.infer.prior_objectives.adversarial import AdversarialCDLoss
from pyro_diffvi.infer.prior_objectives.base import PriorObjective, energy_function, energy_with_detached_parameters
from pyro_diffvi.infer.prior_objectives.contrastive import ContrastiveDivergenceLoss
from pyro_diffvi.infer.prior_objectives.importance_weighted import (
    ImportanceWeightedLogZLoss,
    importance_weighted_log_partition,
)
from pyro_diffvi.infer.prior_objectives.score_matching import SlicedScoreMatchingLoss

__all__ = [
    "AdversarialCDLoss",
    "ContrastiveDivergenceLoss",
    "ImportanceWeightedLogZLoss",
    "PriorObjective",
    "SlicedScoreMatchingLoss",
    "energy_function",
    "energy_with_detached_parameters",
    "importance_weighted_log_partition",
]
