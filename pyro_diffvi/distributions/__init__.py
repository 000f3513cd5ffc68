"""Distributions: diffusion and path-integral posteriors, energy-based priors (GRBM, neural energies), VampPrior, normalizing-flow priors."""

from pyro_diffvi.distributions.auxiliary import AuxiliaryBoundDistribution
from pyro_diffvi.distributions.diffusion import DiffusionPosterior
from pyro_diffvi.distributions.energy import EnergyDistribution, EnergyPrior, prior_gradients
from pyro_diffvi.distributions.flow_prior import FlowPrior
from pyro_diffvi.distributions.grbm import GRBM, GRBMPrior
from pyro_diffvi.distributions.hierarchical import HierarchicalPosterior
from pyro_diffvi.distributions.path import PathIntegralPosterior
from pyro_diffvi.distributions.vaebm import VAEBM
from pyro_diffvi.distributions.vamp import VampPrior

__all__: list[str] = [
    "prior_gradients",
    "AuxiliaryBoundDistribution",
    "DiffusionPosterior",
    "PathIntegralPosterior",
    "EnergyDistribution",
    "EnergyPrior",
    "GRBM",
    "GRBMPrior",
    "HierarchicalPosterior",
    "FlowPrior",
    "VampPrior",
    "VAEBM",
]
