"""Evaluation: ELBO / IWAE and their log importance weights, the energy-prior log-likelihood, MMD, latent NLL, kNN
accuracy, clustering scores, PSIS k-hat, image SSIM and L2, the scoring of a guide against a posterior test
problem's exact answers, and the mode coverage of a generative model's samples."""

from pyro_diffvi.metrics.clustering import (
    cluster_completeness,
    cluster_nmi,
    cluster_purity,
    clustering_scores,
    gmm_clustering_scores,
    gmm_clusters,
    knn_accuracy,
)
from pyro_diffvi.metrics.elbo import elbo, iwae
from pyro_diffvi.metrics.energy import EnergyLogLikelihood, energy_prior_log_likelihood
from pyro_diffvi.metrics.estimates import Estimate, combine_estimates
from pyro_diffvi.metrics.images import l2_distance, ssim
from pyro_diffvi.metrics.latent import GaussianKDE, latent_nll
from pyro_diffvi.metrics.log_weights import LogWeights, log_weights
from pyro_diffvi.metrics.mmd import DDVI_MMD_SIGMAS, mmd, mmd2, rbf_mixture_kernel
from pyro_diffvi.metrics.modes import ModeCoverage, mixture_mode_coverage, mode_coverage, nearest_modes
from pyro_diffvi.metrics.psis import psis_khat, psis_khat_from_log_weights
from pyro_diffvi.metrics.scoring import elbo_gap, mode_mass_ratio

__all__: list[str] = [
    "EnergyLogLikelihood",
    "energy_prior_log_likelihood",
    "DDVI_MMD_SIGMAS",
    "Estimate",
    "GaussianKDE",
    "LogWeights",
    "ModeCoverage",
    "cluster_completeness",
    "cluster_nmi",
    "cluster_purity",
    "clustering_scores",
    "combine_estimates",
    "elbo",
    "elbo_gap",
    "gmm_clustering_scores",
    "gmm_clusters",
    "iwae",
    "knn_accuracy",
    "l2_distance",
    "latent_nll",
    "log_weights",
    "mmd",
    "mixture_mode_coverage",
    "mmd2",
    "mode_coverage",
    "mode_mass_ratio",
    "nearest_modes",
    "psis_khat",
    "psis_khat_from_log_weights",
    "rbf_mixture_kernel",
    "ssim",
]
