"""Objectives: DDVI_ELBO (with its wake-sleep regularizer), the wake-sleep start for other guides, the energy-prior
ELBO and its prior objectives, the Generative Latent Flow, adversarial autoencoders, denoising diffusion GANs and
their Gaussian-step baseline, the ScoreVAE objective, and GuardedObjective, the base class of an objective with a
divergence guard."""

from pyro_diffvi.infer.adversarial import AdversarialAutoencoderLoss
from pyro_diffvi.infer.ddgan import AdversarialPairs, DDGANLoss
from pyro_diffvi.infer.ddpm import DDPMLoss
from pyro_diffvi.infer.ddvi import DDVI_ELBO
from pyro_diffvi.infer.energy import EnergyPriorELBO
from pyro_diffvi.infer.glf import GLFLoss
from pyro_diffvi.infer.guard import GuardedObjective
from pyro_diffvi.infer.noise_free_ebm import GradientFlowNLLLoss, NoiseFreeEBMLoss
from pyro_diffvi.infer.prior_objectives import (
    AdversarialCDLoss,
    ContrastiveDivergenceLoss,
    ImportanceWeightedLogZLoss,
    PriorObjective,
    SlicedScoreMatchingLoss,
)
from pyro_diffvi.infer.score_vae import ScoreVAE_ELBO
from pyro_diffvi.infer.vaebm import VAEBMContrastiveLoss
from pyro_diffvi.infer.wake_sleep import WakeSleepStartLoss

__all__: list[str] = [
    "DDVI_ELBO",
    "ScoreVAE_ELBO",
    "AdversarialAutoencoderLoss",
    "AdversarialCDLoss",
    "AdversarialPairs",
    "ContrastiveDivergenceLoss",
    "DDGANLoss",
    "DDPMLoss",
    "EnergyPriorELBO",
    "GLFLoss",
    "GradientFlowNLLLoss",
    "GuardedObjective",
    "ImportanceWeightedLogZLoss",
    "NoiseFreeEBMLoss",
    "PriorObjective",
    "SlicedScoreMatchingLoss",
    "VAEBMContrastiveLoss",
    "WakeSleepStartLoss",
]
