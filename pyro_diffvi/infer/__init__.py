"""Objectives: DDVI_ELBO, energy-prior ELBOs and prior objectives, adversarial autoencoders."""

from pyro_diffvi.infer.adversarial import AdversarialAutoencoderLoss
from pyro_diffvi.infer.ddvi import DDVI_ELBO

__all__: list[str] = ["AdversarialAutoencoderLoss", "DDVI_ELBO"]
