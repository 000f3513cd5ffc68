"""Every prior of the package: structured priors with exact log densities (Pinwheel, SwissRoll, Square, Gaussian
mixtures), and learnable priors (the clustering mixture LearnableMixture, the energy priors EnergyPrior and
GRBMPrior, the normalizing-flow prior FlowPrior and the VampPrior).

The structured priors are labelled mixtures sharing the :class:`StructuredPrior` API (``num_components``,
``mixture_logits``, ``component_log_prob``, ``component``, ``sample_with_labels``); a learnable prior is a
``PyroModule`` that returns its distribution when called (``prior()``).
"""

from pyro_diffvi.priors.base import MixtureComponent, StructuredPrior
from pyro_diffvi.priors.energy import EnergyPrior
from pyro_diffvi.priors.flow import FlowPrior
from pyro_diffvi.priors.gaussian_mixtures import GaussianGrid, GaussianRing, IsotropicGaussianMixture
from pyro_diffvi.priors.grbm import GRBMPrior
from pyro_diffvi.priors.learnable import LearnableMixture, ShiftedMixture
from pyro_diffvi.priors.pinwheel import Pinwheel
from pyro_diffvi.priors.square import Square
from pyro_diffvi.priors.swiss_roll import SwissRoll
from pyro_diffvi.priors.vamp import VampPrior

__all__ = [
    "EnergyPrior",
    "FlowPrior",
    "GRBMPrior",
    "GaussianGrid",
    "GaussianRing",
    "IsotropicGaussianMixture",
    "LearnableMixture",
    "MixtureComponent",
    "Pinwheel",
    "ShiftedMixture",
    "Square",
    "StructuredPrior",
    "SwissRoll",
    "VampPrior",
]
