"""Distribution classes: the diffusion, path-integral and hierarchical posteriors (auxiliary-variable bounds),
unnormalized energy distributions and the GRBM, the VAEBM's tilted density, the implicit distribution of a
denoising diffusion GAN, and the diffusion-model likelihood of ScoreVAE and DiffDecoder."""

from pyro_diffvi.distributions.auxiliary import AuxiliaryBoundDistribution
from pyro_diffvi.distributions.diffusion import DiffusionPosterior
from pyro_diffvi.distributions.diffusion_likelihood import DiffusionLikelihood
from pyro_diffvi.distributions.energy import EnergyDistribution, find_energy_distribution, prior_gradients
from pyro_diffvi.distributions.grbm import GRBM
from pyro_diffvi.distributions.hierarchical import HierarchicalPosterior
from pyro_diffvi.distributions.implicit_diffusion import ImplicitDiffusion
from pyro_diffvi.distributions.path import PathIntegralPosterior
from pyro_diffvi.distributions.vaebm import VAEBM

__all__: list[str] = [
    "GRBM",
    "VAEBM",
    "AuxiliaryBoundDistribution",
    "DiffusionLikelihood",
    "DiffusionPosterior",
    "EnergyDistribution",
    "HierarchicalPosterior",
    "ImplicitDiffusion",
    "PathIntegralPosterior",
    "find_energy_distribution",
    "prior_gradients",
]
