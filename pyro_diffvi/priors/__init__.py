"""Structured priors with exact log densities: Pinwheel, SwissRoll, Square, Gaussian mixtures.

All are labelled mixtures sharing the :class:`StructuredPrior` API (``num_components``,
``mixture_logits``, ``component_log_prob``, ``component``, ``sample_with_labels``).
"""

from pyro_diffvi.priors.base import MixtureComponent, StructuredPrior
from pyro_diffvi.priors.gaussian_mixtures import GaussianGrid, GaussianRing, IsotropicGaussianMixture
from pyro_diffvi.priors.pinwheel import Pinwheel
from pyro_diffvi.priors.square import Square
from pyro_diffvi.priors.swiss_roll import SwissRoll

__all__ = [
    "GaussianGrid",
    "GaussianRing",
    "IsotropicGaussianMixture",
    "MixtureComponent",
    "Pinwheel",
    "Square",
    "StructuredPrior",
    "SwissRoll",
]
