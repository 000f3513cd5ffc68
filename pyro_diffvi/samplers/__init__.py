"""MCMC samplers: Langevin (ULA, MALA), persistent / short-run chains, annealed importance sampling.

Gibbs and Gibbs-Langevin sampling of GRBMs are methods of :class:`pyro_diffvi.distributions.GRBM`.
"""

from pyro_diffvi.samplers.ais import ais_log_partition, check_betas, log_mean_exp_with_se, sigmoid_schedule
from pyro_diffvi.samplers.langevin import energy_and_grad, langevin, langevin_step
from pyro_diffvi.samplers.replay import ReplayBuffer, persistent_langevin, short_run_langevin

__all__ = [
    "ReplayBuffer",
    "ais_log_partition",
    "check_betas",
    "energy_and_grad",
    "langevin",
    "langevin_step",
    "log_mean_exp_with_se",
    "persistent_langevin",
    "short_run_langevin",
    "sigmoid_schedule",
]
