"""Objectives: DDVI_ELBO, energy-prior ELBOs and prior objectives, adversarial autoencoders, the Generative Latent Flow."""

from pyro_diffvi.infer.adversarial import AdversarialAutoencoderLoss
from pyro_diffvi.infer.ddvi import DDVI_ELBO
from pyro_diffvi.infer.energy import EnergyPriorELBO
from pyro_diffvi.infer.glf import GLFLoss
from pyro_diffvi.infer.noise_free_ebm import GradientFlowNLL, NoiseFreeEBM
from pyro_diffvi.infer.prior_objectives import (
    AdversarialCD,
    ContrastiveDivergence,
    ImportanceWeightedLogZ,
    PriorObjective,
    SlicedScoreMatching,
)
from pyro_diffvi.infer.vaebm import VAEBMContrastive
from pyro_diffvi.infer.wake_sleep import WakeSleepStart

__all__: list[str] = [
    "AdversarialAutoencoderLoss",
    "DDVI_ELBO",
    "AdversarialCD",
    "ContrastiveDivergence",
    "EnergyPriorELBO",
    "GLFLoss",
    "GradientFlowNLL",
    "ImportanceWeightedLogZ",
    "NoiseFreeEBM",
    "PriorObjective",
    "SlicedScoreMatching",
    "VAEBMContrastive",
    "WakeSleepStart",
]
