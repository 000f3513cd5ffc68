"""Amortized, model-aware guides: GaussianGuide, DiffusionGuide, FlowGuide, HierarchicalGuide, PathIntegralGuide."""

from pyro_diffvi.guides.amortized import AmortizedGuide
from pyro_diffvi.guides.classifier import ClassifierGuide
from pyro_diffvi.guides.diffusion import DiffusionGuide
from pyro_diffvi.guides.flow import FlowGuide
from pyro_diffvi.guides.gaussian import GaussianGuide
from pyro_diffvi.guides.hierarchical import HierarchicalGuide
from pyro_diffvi.guides.pis import PathIntegralGuide

__all__: list[str] = [
    "AmortizedGuide",
    "ClassifierGuide",
    "DiffusionGuide",
    "FlowGuide",
    "GaussianGuide",
    "HierarchicalGuide",
    "PathIntegralGuide",
]
