"""Every guide: amortized, model-aware posteriors (GaussianGuide, DiffusionGuide, FlowGuide, HierarchicalGuide,
PathIntegralGuide), the label guide of semi-supervised models (ClassifierGuide), the rule that picks a diffusion
guide's posterior by its measured bound (BoundSelector), the deterministic encoder of the Generative Latent Flow
(EncoderGuide), ScoreVAE's time-dependent Gaussian encoder (TimeDependentGaussianGuide), and the protocols
objectives rely on (WakeSleepGuide, LabelGuide)."""

from pyro_diffvi.guides.amortized import AmortizedGuide
from pyro_diffvi.guides.classifier import ClassifierGuide
from pyro_diffvi.guides.diffusion import Alternatives, DiffusionGuide
from pyro_diffvi.guides.encoder import EncoderGuide
from pyro_diffvi.guides.flow import FlowGuide
from pyro_diffvi.guides.gaussian import GaussianGuide
from pyro_diffvi.guides.hierarchical import HierarchicalGuide
from pyro_diffvi.guides.pis import PathIntegralGuide
from pyro_diffvi.guides.protocols import LabelGuide, WakeSleepGuide, guide_parts
from pyro_diffvi.guides.selection import BoundSelector
from pyro_diffvi.guides.time_gaussian import TimeDependentGaussianGuide

__all__: list[str] = [
    "Alternatives",
    "AmortizedGuide",
    "BoundSelector",
    "ClassifierGuide",
    "DiffusionGuide",
    "EncoderGuide",
    "FlowGuide",
    "GaussianGuide",
    "HierarchicalGuide",
    "LabelGuide",
    "PathIntegralGuide",
    "TimeDependentGaussianGuide",
    "WakeSleepGuide",
    "guide_parts",
]
