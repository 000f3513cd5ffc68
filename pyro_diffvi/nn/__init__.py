"""Networks: multilayer perceptrons with time and context inputs, conditional normalizing flows, the Gaussian output
head."""

from pyro_diffvi.nn.averaging import AveragedCopy
from pyro_diffvi.nn.flows import FLOW_TYPES, ConditionalFlow
from pyro_diffvi.nn.heads import loc_scale
from pyro_diffvi.nn.hierarchical import HierarchicalNetworks
from pyro_diffvi.nn.mlp import MLP, ConditionalMLP, SinusoidalTimeEmbedding, activation

__all__ = [
    "FLOW_TYPES",
    "MLP",
    "AveragedCopy",
    "ConditionalFlow",
    "ConditionalMLP",
    "HierarchicalNetworks",
    "SinusoidalTimeEmbedding",
    "activation",
    "loc_scale",
]
