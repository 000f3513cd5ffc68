"""Networks: multilayer perceptrons with time and context inputs, conditional normalizing flows, the Gaussian output
head, the generator and discriminator of a denoising diffusion GAN, an exponential moving average of a network's
parameters, score networks (an MLP with a per-pixel branch, the DDPM U-Net), time-dependent Gaussian encoders and
their latent score."""

from pyro_diffvi.nn.denoising_gan import DenoisingDiscriminator, DenoisingGenerator
from pyro_diffvi.nn.ema import GeneratorEMA
from pyro_diffvi.nn.flows import FLOW_TYPES, ConditionalFlow
from pyro_diffvi.nn.heads import loc_scale
from pyro_diffvi.nn.hierarchical import HierarchicalNetworks
from pyro_diffvi.nn.mlp import MLP, ConditionalMLP, SinusoidalTimeEmbedding, activation
from pyro_diffvi.nn.score_mlp import ScoreMLP
from pyro_diffvi.nn.time_encoder import ConvGaussianTimeEncoder, GaussianTimeEncoder, encoder_score
from pyro_diffvi.nn.unet import UNet

__all__ = [
    "FLOW_TYPES",
    "MLP",
    "ConditionalFlow",
    "ConditionalMLP",
    "DenoisingDiscriminator",
    "DenoisingGenerator",
    "GeneratorEMA",
    "ConvGaussianTimeEncoder",
    "GaussianTimeEncoder",
    "HierarchicalNetworks",
    "ScoreMLP",
    "SinusoidalTimeEmbedding",
    "UNet",
    "activation",
    "encoder_score",
    "loc_scale",
]
