"""MCMC samplers: Langevin (ULA, MALA), persistent / short-run chains, annealed importance sampling.

Samplers for energy distributions (their ``sampler`` argument): :class:`LangevinSampler` for any
:class:`~pyro_diffvi.distributions.EnergyDistribution`, :class:`GibbsSampler` and
:class:`GibbsLangevinSampler` for :class:`~pyro_diffvi.distributions.GRBM`.
"""

from pyro_diffvi.samplers.ais import ais_log_partition, log_mean_exp_with_se, sigmoid_schedule
from pyro_diffvi.samplers.gibbs import GibbsLangevinSampler, GibbsSampler
from pyro_diffvi.samplers.langevin import LangevinSampler, langevin, langevin_step
from pyro_diffvi.samplers.replay import ReplayBuffer, persistent_langevin, short_run_langevin

__all__ = [
    "GibbsLangevinSampler",
    "GibbsSampler",
    "LangevinSampler",
    "ReplayBuffer",
    "ais_log_partition",
    "langevin",
    "langevin_step",
    "log_mean_exp_with_se",
    "persistent_langevin",
    "short_run_langevin",
    "sigmoid_schedule",
]
