r"""Test log-likelihood of a model with energy-based (unnormalized) priors: an **estimate**.

The unnormalized-priors paper (Eq. 6 and Sec. 2.3, AIS evaluation): with an unnormalized prior :math:`e^{-E(z)}`,

.. math::
    \log p(x) = \log \tilde p(x) - \log Z, \qquad
    \log \tilde p(x) \approx \mathcal L_K(x) = \log \frac1K \sum_{k=1}^K
        \frac{p(x|z_k)\, e^{-E(z_k)}}{q(z_k|x)},\quad z_k \sim q(z|x),

and :math:`\log Z` is estimated by annealed importance sampling
(:func:`~pyro_diffvi.samplers.ais_log_partition`). Both parts are stochastic:

* :math:`\mathcal L_K` is a lower bound on :math:`\log \tilde p(x)` in expectation (IWAE, Burda et al.
  2016), tight as :math:`K \to \infty` or for the exact posterior;
* the AIS :math:`\log \hat Z` is a stochastic **lower** bound on :math:`\log Z` (Jensen on an unbiased
  :math:`\hat Z`), so subtracting it tends to **over-estimate** :math:`\log p(x)` (under-estimate the NLL).

The two biases have opposite signs, so the result is neither a lower nor an upper bound: it is an
estimate, reported with its Monte-Carlo standard error (IWAE delta-method error per data point and the
AIS standard error, combined) and, separately, the spread over data points.

References:

* *Variational Inference with Unnormalized Priors*. Anonymous authors, manuscript under double-blind
  review (Eq. 6, Sec. 2.3).
* Y. Burda, R. Grosse, R. Salakhutdinov. *Importance Weighted Autoencoders*. ICLR 2016 (Eq. 8).
* R. M. Neal. *Annealed importance sampling*. Statistics and Computing 11, 125-139, 2001.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pyro.distributions as dist
import torch
from torch import Tensor

from pyro_diffvi.distributions.energy import find_energy_distribution
from pyro_diffvi.metrics.estimates import Estimate
from pyro_diffvi.metrics.log_weights import log_weights, run_pair
from pyro_diffvi.ops.log_mean_exp import log_mean_exp_with_se
from pyro_diffvi.samplers.ais import ais_log_partition

__all__ = ["EnergyLogLikelihood", "energy_prior_log_likelihood"]


@dataclass(frozen=True)
class EnergyLogLikelihood:
    """ESTIMATE of :math:`\\log p(x)` per data point for a model with energy-based priors.

    :ivar mean: estimated :math:`\\log p(x)` in nats per data point (negate for the test NLL).
    :ivar stderr: Monte-Carlo standard error of ``mean`` for this batch: IWAE delta-method errors of the
        data points and the AIS errors of :math:`\\log Z`, combined in quadrature. It does not cover the
        biases (see the module docstring).
    :ivar data_stderr: standard deviation over data points divided by :math:`\\sqrt N` (test-set variability).
    :ivar unnormalized_iwae: the IWAE bound on :math:`\\log \\tilde p(x)` (unnormalized prior).
    :ivar log_partition: ``{site: (log_Z_estimate, standard_error)}``; standard error 0 if given exactly.
    :ivar sites_per_point: ``{site: number of prior draws per data point}`` (how often log Z is subtracted).
    :ivar num_particles: guide draws :math:`K` per data point in the IWAE term.
    :ivar num_data: number of data points :math:`N`.
    :ivar values: per-data-point estimates, shape ``(N,)``.
    """

    mean: float
    stderr: float
    data_stderr: float
    unnormalized_iwae: Estimate
    log_partition: dict
    sites_per_point: dict
    num_particles: int
    num_data: int
    values: Tensor = field(repr=False)

    def __str__(self) -> str:
        return (
            f"log p(x) ESTIMATE {self.mean:.3f} ± {self.stderr:.3f} (MC SE; ± {self.data_stderr:.3f} over "
            f"{self.num_data} data points) nats: IWAE-{self.num_particles} with the unnormalized prior minus "
            "an AIS log Z (a stochastic lower bound on log Z, which tends to over-estimate log p(x))"
        )


def _energy_sites(model: Callable, guide: Callable, args, kwargs) -> dict:
    model_trace, _ = run_pair(model, guide, args, kwargs)
    sites = {}
    for name, site in model_trace.nodes.items():
        if site["type"] == "sample" and not site["is_observed"]:
            prior = find_energy_distribution(site["fn"])
            if prior is not None:
                z = site["value"].detach().reshape((-1,) + tuple(prior.event_shape))
                sites[name] = (prior, z)
    return sites


def _default_base(z: Tensor) -> dist.Distribution:
    """A broad diagonal Gaussian around the aggregate posterior draws (AIS starting distribution)."""
    flat = z.flatten(1)
    loc = flat.mean(0)
    scale = (2.0 * flat.std(0)).clamp(min=1.0) if flat.shape[0] > 1 else torch.ones_like(loc)
    return dist.Normal(loc.reshape(z.shape[1:]), scale.reshape(z.shape[1:])).to_event(z.dim() - 1)


def _log_partition(name, prior, z, given, ais_base, ais_kwargs) -> tuple[float, float]:
    if given is not None and name in given:
        value = given[name]
        log_z, se = value if isinstance(value, tuple) else (value, 0.0)
        return float(log_z), float(se)
    if callable(ais_base) and not isinstance(ais_base, dist.Distribution):
        base = ais_base(name, prior, z)
    else:
        base = ais_base if ais_base is not None else _default_base(z)
    log_z, se = ais_log_partition(prior.energy, base, **ais_kwargs)
    return float(log_z.detach()), float(se.detach())


def energy_prior_log_likelihood(
    model: Callable,
    guide: Callable,
    *args,
    num_particles: int = 1000,
    max_particles_per_chunk: int | None = 100,
    log_partition: dict | None = None,
    ais_base=None,
    num_chains: int = 256,
    num_ais_steps: int = 500,
    ais_kwargs: dict | None = None,
    data_plate: str | None = None,
    **kwargs,
) -> EnergyLogLikelihood:
    r"""ESTIMATE of the test log-likelihood :math:`\log p(x)` of a model whose latent sites have
    energy-based priors (the unnormalized-priors paper, Eq. 6, with an AIS :math:`\log Z`): IWAE with the unnormalized
    prior
    (:func:`~pyro_diffvi.metrics.log_weights`) minus :math:`\log \hat Z` per prior draw. See the module
    docstring for the biases (AIS under-estimates :math:`\log Z`, so this tends to over-estimate
    :math:`\log p(x)`).

    :param model: Pyro model; energy-prior latent sites must be per data point (inside the data plate).
    :param guide: guide for every latent site.
    :param args: the batch (positional arguments of model and guide).
    :param num_particles: IWAE guide draws :math:`K` per data point.
    :param max_particles_per_chunk: particles evaluated at once (memory bound).
    :param log_partition: optional ``{site: log_Z}`` or ``{site: (log_Z, standard_error)}`` to use instead
        of AIS (e.g. ``GRBM.exact_log_partition()`` for small hidden layers).
    :param ais_base: AIS base distribution (normalized, with the prior's event shape), or a callable
        ``(site_name, prior, aggregate_posterior_samples) -> distribution``; default: a diagonal Gaussian
        with the mean and twice the standard deviation (at least 1) of the guide's draws on this batch.
    :param num_chains: AIS chains.
    :param num_ais_steps: AIS intermediate distributions.
    :param ais_kwargs: further arguments of :func:`~pyro_diffvi.samplers.ais_log_partition`.
    :param data_plate: name of the data plate (auto-detected when ``None``).
    :return: :class:`EnergyLogLikelihood`.

    The unnormalized prior :math:`e^{-z^2/2}` (:math:`\log Z = \frac12\log 2\pi`) with
    :math:`x \mid z \sim \mathcal N(z, 1)` and the exact posterior :math:`\mathcal N(x/2, 1/2)` as guide, so that the
    IWAE term is exact
    and :math:`\log p(x) = \log \mathcal N(x; 0, 2)`.

    Example:

    >>> import math, pyro, pyro.distributions as dist, torch
    >>> from pyro_diffvi.distributions import EnergyDistribution
    >>> from pyro_diffvi.metrics import energy_prior_log_likelihood
    >>> def model(x):
    ...     prior = EnergyDistribution(lambda z: 0.5 * z.square().sum(-1), (1,))
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", prior)
    ...         pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)
    >>> def guide(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.5**0.5).to_event(1))
    >>> pyro.set_rng_seed(0)
    >>> x = torch.tensor([[0.0], [1.0]])
    >>> exact = dist.Normal(0.0, 2.0**0.5).log_prob(x).mean().item()
    >>> known = energy_prior_log_likelihood(
    ...     model, guide, x, num_particles=10, log_partition={"z": 0.5 * math.log(2 * math.pi)})
    >>> abs(known.mean - exact) < 1e-5
    True
    >>> ais = energy_prior_log_likelihood(model, guide, x, num_particles=10, num_chains=64, num_ais_steps=20)
    >>> abs(ais.mean - exact) < 4 * ais.stderr
    True
    """
    if log_partition is not None and not isinstance(log_partition, dict):
        raise TypeError(f"log_partition must be a dict {{site: log_Z}}, got {type(log_partition).__name__}")
    with torch.no_grad():
        sites = _energy_sites(model, guide, args, kwargs)
    if not sites:
        raise ValueError("energy_prior_log_likelihood: the model has no latent site with an energy-based prior")
    unknown = set(log_partition or ()) - set(sites)
    if unknown:
        raise ValueError(f"log_partition names unknown energy-prior sites {sorted(unknown)}; sites: {sorted(sites)}")
    weights = log_weights(
        model, guide, *args, num_particles=num_particles, max_particles_per_chunk=max_particles_per_chunk,
        data_plate=data_plate, **kwargs,
    )
    if not weights.per_point:
        raise ValueError("energy_prior_log_likelihood needs per-data-point weights (no global latent sites)")
    lw = weights.values.detach().to(torch.float64)
    n = weights.num_data
    iwae_values, iwae_se = log_mean_exp_with_se(lw, dim=0)  # se is nan for num_particles=1
    iwae_var = iwae_se.square()

    ais_kwargs = dict(ais_kwargs or {})
    ais_kwargs.setdefault("num_chains", num_chains)
    ais_kwargs.setdefault("num_steps", num_ais_steps)
    log_z, per_point = {}, {}
    total_log_z, log_z_var = 0.0, 0.0
    for name, (prior, z) in sites.items():
        count = z.shape[0] / n
        if count != int(count):
            raise ValueError(f"site {name!r}: {z.shape[0]} prior draws do not split into {n} data points")
        log_z[name] = _log_partition(name, prior, z, log_partition, ais_base, ais_kwargs)
        per_point[name] = int(count)
        total_log_z += count * log_z[name][0]
        log_z_var += (count * log_z[name][1]) ** 2
    values = iwae_values - total_log_z
    stderr = math.sqrt(iwae_var.sum().item() / n**2 + log_z_var)
    data_stderr = values.std().item() / math.sqrt(n) if n > 1 else math.nan
    iwae_estimate = Estimate(
        mean=iwae_values.mean().item(),
        stderr=math.sqrt(iwae_var.sum().item()) / n,
        num_particles=num_particles,
        num_data=n,
        per_point=True,
        values=iwae_values,
    )
    return EnergyLogLikelihood(
        values.mean().item(), stderr, data_stderr, iwae_estimate, log_z, per_point, num_particles, n, values
    )
