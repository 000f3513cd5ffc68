"""Objectives: DDVI_ELBO, energy-prior ELBOs and prior objectives, adversarial autoencoders."""

__all__: list[str] = []
