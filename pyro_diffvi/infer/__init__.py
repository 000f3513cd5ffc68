"""Objectives: DDVI_ELBO, energy-prior ELBOs and prior objectives, adversarial autoencoders."""

from pyro_diffvi.infer.adversarial import AdversarialAutoencoderLoss
from pyro_diffvi.infer.ddvi import DDVI_ELBO
from pyro_diffvi.infer.guard import DivergenceError
from pyro_diffvi.infer.energy import EnergyPriorELBO, find_energy_distribution, split_optim_args
from pyro_diffvi.infer.prior_objectives import (
    AdversarialCD,
    ContrastiveDivergence,
    ImportanceWeightedLogZ,
    PriorObjective,
    SlicedScoreMatching,
    energy_with_detached_parameters,
    importance_weighted_log_partition,
)

__all__: list[str] = [
    "DivergenceError",
    "AdversarialAutoencoderLoss",
    "DDVI_ELBO",
    "AdversarialCD",
    "ContrastiveDivergence",
    "EnergyPriorELBO",
    "ImportanceWeightedLogZ",
    "PriorObjective",
    "SlicedScoreMatching",
    "energy_with_detached_parameters",
    "find_energy_distribution",
    "importance_weighted_log_partition",
    "split_optim_args",
]
