"""Variance schedules, the Gaussian forward process and denoiser networks (DDVI paper, Sec. 3); the continuous-time
VP SDE, data-space score models, their training, likelihood bound and samplers (ScoreVAE paper)."""

from pyro_diffvi.diffusion.denoiser import Denoiser
from pyro_diffvi.diffusion.implicit_step import PREDICTIONS, PosteriorStep, posterior_sampling_step
from pyro_diffvi.diffusion.process import REVERSE_VARIANCES, GaussianDiffusion
from pyro_diffvi.diffusion.schedules import (
    SCHEDULES,
    cosine_beta_schedule,
    linear_beta_schedule,
    make_schedule,
    vp_beta_schedule,
)
from pyro_diffvi.diffusion.score_matching import DenoisingScoreMatchingLoss, ScoreModelTrainer
from pyro_diffvi.diffusion.score_model import ScoreModel
from pyro_diffvi.diffusion.sde import VPSDE
from pyro_diffvi.diffusion.sde_bound import sde_bound_terms
from pyro_diffvi.diffusion.sde_sampling import probability_flow_sample, reverse_sde_sample

__all__ = [
    "Denoiser",
    "DenoisingScoreMatchingLoss",
    "GaussianDiffusion",
    "PREDICTIONS",
    "PosteriorStep",
    "REVERSE_VARIANCES",
    "SCHEDULES",
    "ScoreModel",
    "ScoreModelTrainer",
    "VPSDE",
    "cosine_beta_schedule",
    "linear_beta_schedule",
    "make_schedule",
    "posterior_sampling_step",
    "vp_beta_schedule",
    "probability_flow_sample",
    "reverse_sde_sample",
    "sde_bound_terms",
]
