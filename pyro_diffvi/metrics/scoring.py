"""Scoring a guide against the exact answers of a posterior test problem
(:mod:`pyro_diffvi.datasets.posteriors`): its ELBO's gap to the exact evidence, and its mass on each mode."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from pyro_diffvi.datasets.posteriors import PosteriorProblem
from pyro_diffvi.metrics.log_weights import log_weights

__all__ = ["elbo_gap", "mode_mass_ratio"]


def elbo_gap(problem: PosteriorProblem, guide: Callable, *, num_particles: int = 256) -> tuple[float, float]:
    r"""The ELBO's gap to the exact evidence, :math:`\frac1N\sum_n (\widehat{\mathrm{ELBO}}_n - \log p(x_n))`, in nats
    per observation (:math:`\le 0` up to Monte-Carlo error for a valid bound), and its standard error over
    the ``num_particles`` draws per observation.

    :param problem: a :class:`~pyro_diffvi.datasets.PosteriorProblem`.
    :param guide: a guide for ``problem.model`` (called as ``guide(problem.x)``).
    :param num_particles: draws per observation.
    :return: ``(mean gap, standard error)``.

    Example:

    >>> import pyro, pyro.distributions as dist
    >>> from pyro_diffvi.datasets import make_problem
    >>> from pyro_diffvi.metrics import elbo_gap
    >>> def guide(x):  # a fixed broad Gaussian guide
    ...     with pyro.plate("data", x.shape[0], dim=-1):
    ...         return {"z": pyro.sample("z", dist.Normal(x.new_zeros(2), 3.0).to_event(1))}
    >>> pyro.set_rng_seed(0)
    >>> gap, stderr = elbo_gap(make_problem("four_modes", num_data=8), guide, num_particles=64)
    >>> gap < 0, stderr > 0  # a valid bound: the ELBO is below the exact log evidence
    (True, True)
    """
    weights = log_weights(problem.model, guide, problem.x, num_particles=num_particles, max_particles_per_chunk=64)
    values = weights.values.double()
    per_particle = (values - problem.log_px.to(values)).mean(-1)
    return per_particle.mean().item(), per_particle.std().item() / math.sqrt(num_particles)


def mode_mass_ratio(
    problem: PosteriorProblem, guide: Callable, *, num_particles: int = 256, min_mass: float = 0.02
) -> tuple[float, list[float]]:
    """The smallest ratio (guide's mass / exact mass) over the modes whose exact mass is at least
    ``min_mass``, both pooled over the observations; 1 means every mode gets its exact share.

    :param problem: a multimodal :class:`~pyro_diffvi.datasets.PosteriorProblem` (with ``mode_of`` and ``mode_masses``).
    :param guide: a guide for ``problem.model`` returning ``{"z": z}``; its site ``"z"`` is drawn
        ``num_particles`` times per observation.
    :param num_particles: draws per observation.
    :param min_mass: modes with less exact mass are left out of the ratio.
    :return: ``(smallest ratio, the guide's pooled mass of every mode)``.

    Example:

    >>> import pyro, pyro.distributions as dist
    >>> from pyro_diffvi.datasets import make_problem
    >>> from pyro_diffvi.metrics import mode_mass_ratio
    >>> def guide(x):  # only ever proposes the quadrant z1 > 0, z2 > 0
    ...     with pyro.plate("data", x.shape[0], dim=-1):
    ...         return {"z": pyro.sample("z", dist.Normal(x.new_tensor([1.5, 1.5]), 0.1).to_event(1))}
    >>> pyro.set_rng_seed(0)
    >>> ratio, masses = mode_mass_ratio(make_problem("four_modes", num_data=8), guide, num_particles=16)
    >>> ratio, masses
    (0.0, [0.0, 0.0, 0.0, 1.0])
    """
    if problem.mode_of is None or problem.mode_masses is None:
        raise ValueError(f"problem {problem.name!r} has no mode regions (kind {problem.kind!r})")
    with torch.no_grad():
        z = guide(problem.x.repeat(num_particles, *([1] * (problem.x.dim() - 1))))["z"]
    modes = problem.mode_of(z).reshape(num_particles, -1)
    guide_mass = torch.stack([(modes == m).double().mean() for m in range(problem.num_modes)]).cpu()
    exact = problem.mode_masses.double().mean(0).cpu()
    kept = exact >= min_mass
    return (guide_mass[kept] / exact[kept]).min().item(), guide_mass.tolist()
