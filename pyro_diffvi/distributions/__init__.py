"""Distributions: diffusion posteriors, energy-based priors (GRBM, neural energies), VampPrior."""

__all__: list[str] = []
