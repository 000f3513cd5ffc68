"""Structured priors with exact log densities: Pinwheel, SwissRoll, Square, Gaussian mixtures, and the
learnable mixture of the clustering models (LearnableMixture).

All are labelled mixtures sharing the :class:`StructuredPrior` API (``num_components``,
``mixture_logits``, ``component_log_prob``, ``component``, ``sample_with_labels``).
"""

from pyro_diffvi.priors.base import MixtureComponent, StructuredPrior
from pyro_diffvi.priors.gaussian_mixtures import GaussianGrid, GaussianRing, IsotropicGaussianMixture
from pyro_diffvi.priors.learnable import LearnableMixture, ShiftedMixture
from pyro_diffvi.priors.pinwheel import Pinwheel
from pyro_diffvi.priors.square import Square
from pyro_diffvi.priors.swiss_roll import SwissRoll

__all__ = [
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
]
