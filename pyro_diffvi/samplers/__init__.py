"""MCMC samplers: Langevin (ULA, MALA), persistent / short-run chains, annealed importance sampling;
noise-free Langevin dynamics and the gradient-flow ODE with exact densities (:class:`NoiseFreeSampler`).

Samplers for energy distributions (their ``sampler`` argument): :class:`LangevinSampler` for any
:class:`~pyro_diffvi.distributions.EnergyDistribution`, :class:`GibbsSampler` and
:class:`GibbsLangevinSampler` for :class:`~pyro_diffvi.distributions.GRBM`.
"""

from pyro_diffvi.samplers.ais import ais_log_partition, sigmoid_schedule
from pyro_diffvi.samplers.gibbs import GibbsLangevinSampler, GibbsSampler
from pyro_diffvi.samplers.gradient_flow import FlowLogProb, gradient_flow, gradient_flow_log_prob
from pyro_diffvi.samplers.langevin import LangevinSampler, langevin, langevin_step
from pyro_diffvi.samplers.noise_free import NoiseFreeSampler, noise_free_langevin, noise_free_langevin_log_prob
from pyro_diffvi.samplers.replay import ReplayBuffer, persistent_langevin, short_run_langevin

__all__ = [
    "GibbsLangevinSampler",
    "FlowLogProb",
    "GibbsSampler",
    "LangevinSampler",
    "NoiseFreeSampler",
    "ReplayBuffer",
    "ais_log_partition",
    "gradient_flow",
    "gradient_flow_log_prob",
    "langevin",
    "langevin_step",
    "noise_free_langevin",
    "noise_free_langevin_log_prob",
    "persistent_langevin",
    "short_run_langevin",
    "sigmoid_schedule",
]
