"""Objectives: DDVI_ELBO, energy-prior ELBOs and prior objectives, adversarial autoencoders, the Generative Latent Flow."""

from pyro_diffvi.infer.adversarial import AdversarialAutoencoderLoss
from pyro_diffvi.infer.ddvi import DDVI_ELBO
from pyro_diffvi.infer.energy import EnergyPriorELBO
from pyro_diffvi.infer.glf import GLFLoss
from pyro_diffvi.infer.noise_free_ebm import GradientFlowNLLLoss, NoiseFreeEBMLoss
from pyro_diffvi.infer.prior_objectives import (
    AdversarialCDLoss,
    ContrastiveDivergenceLoss,
    ImportanceWeightedLogZLoss,
    PriorObjective,
    SlicedScoreMatchingLoss,
)
from pyro_diffvi.infer.vaebm import VAEBMContrastiveLoss
from pyro_diffvi.infer.wake_sleep import WakeSleepStartLoss

__all__: list[str] = [
    "AdversarialAutoencoderLoss",
    "DDVI_ELBO",
    "AdversarialCDLoss",
    "ContrastiveDivergenceLoss",
    "EnergyPriorELBO",
    "GLFLoss",
    "GradientFlowNLLLoss",
    "ImportanceWeightedLogZLoss",
    "NoiseFreeEBMLoss",
    "PriorObjective",
    "SlicedScoreMatchingLoss",
    "VAEBMContrastiveLoss",
    "WakeSleepStartLoss",
]
