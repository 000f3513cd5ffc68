"""Small shared networks."""

from pyro_diffvi.nn.mlp import MLP, ConditionalMLP, SinusoidalTimeEmbedding, activation

__all__ = ["MLP", "ConditionalMLP", "SinusoidalTimeEmbedding", "activation"]
