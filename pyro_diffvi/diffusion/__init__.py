"""Variance schedules, the Gaussian forward process and denoiser networks (DDVI paper, Sec. 3)."""

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

__all__ = [
    "Denoiser",
    "GaussianDiffusion",
    "PREDICTIONS",
    "PosteriorStep",
    "REVERSE_VARIANCES",
    "SCHEDULES",
    "cosine_beta_schedule",
    "linear_beta_schedule",
    "make_schedule",
    "posterior_sampling_step",
    "vp_beta_schedule",
]
