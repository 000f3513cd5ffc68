r"""Importance-weighted evaluation of a Pyro model/guide pair: the ELBO and the IWAE bound per data point, both built
on the log importance weights :math:`\log w_{s,n}` of :mod:`pyro_diffvi.metrics.log_weights` (which also says why
auxiliary-variable guides keep them valid bounds).

* ELBO (Kingma & Welling 2014): :math:`\frac1N\sum_n \frac1S\sum_s \log w_{s,n}`.
* IWAE bound (Burda et al. 2016, Eq. 8):
  :math:`\mathcal L_K(x_n) = \log \frac1K \sum_{k=1}^K w_{k,n} \le \log p(x_n)`, averaged over data points.

References:

* D. P. Kingma, M. Welling. *Auto-Encoding Variational Bayes*. ICLR 2014.
* Y. Burda, R. Grosse, R. Salakhutdinov. *Importance Weighted Autoencoders*. ICLR 2016 (Eq. 8).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pyro_diffvi.metrics.estimates import Estimate, as_float64, data_estimate
from pyro_diffvi.metrics.log_weights import log_weights
from pyro_diffvi.ops.log_mean_exp import log_mean_exp_with_se

__all__ = ["elbo", "iwae"]


def elbo(
    model: Callable,
    guide: Callable,
    *args,
    num_particles: int = 16,
    max_particles_per_chunk: int | None = None,
    data_plate: str | None = None,
    no_grad: bool = True,
    **kwargs,
) -> Estimate:
    r"""Monte-Carlo ELBO in nats per data point, with its Monte-Carlo standard error.

    .. math::

        \widehat{\mathrm{ELBO}} = \frac1S \sum_{s=1}^S e_s, \qquad
        e_s = \frac1N \sum_{n=1}^N \log \frac{p(x_n, z_{s,n})}{q(z_{s,n} \mid x_n)},

    a lower bound on :math:`\frac1N \log p(x_{1:N})` in expectation. ``stderr`` is the Monte-Carlo
    standard error for the given batch, :math:`\mathrm{sd}(e_s)/\sqrt S` (``nan`` for ``S = 1``); it
    does not include variability over data sets. When the model has global latent sites
    (``per_point=False``) :math:`e_s` is the total over the batch divided by :math:`N`.

    Arguments are those of :func:`log_weights` (``num_particles`` = :math:`S`).

    Example (a guide too narrow by half gives an ELBO below the exact :math:`\frac1N\log p(x)`):

    >>> import pyro, pyro.distributions as dist, torch
    >>> def model(x):  # z ~ N(0, 1), x | z ~ N(z, 1): p(x) = N(x; 0, 2)
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):  # the exact posterior N(x / 2, 1 / 2)
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))
    >>> from pyro_diffvi.metrics import elbo
    >>> def narrow_guide(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.5 * 0.5**0.5))
    >>> pyro.set_rng_seed(0)
    >>> x = torch.tensor([0.0, 1.0, 2.0])
    >>> exact = dist.Normal(0.0, 2.0**0.5).log_prob(x).mean().item()
    >>> round(elbo(model, guide, x, num_particles=4).mean - exact, 4) == 0
    True
    >>> est = elbo(model, narrow_guide, x, num_particles=1000)
    >>> est.mean < exact - 5 * est.stderr, est.stderr_kind
    (True, 'monte_carlo')
    """
    weights = log_weights(
        model, guide, *args, num_particles=num_particles, max_particles_per_chunk=max_particles_per_chunk,
        data_plate=data_plate, no_grad=no_grad, **kwargs,
    )
    lw = as_float64(weights.values)
    per_particle = lw.sum(-1) / weights.num_data
    stderr = per_particle.std().item() / math.sqrt(num_particles) if num_particles > 1 else math.nan
    values = lw.mean(0) if weights.per_point else per_particle.mean(0, keepdim=True)
    return Estimate(
        per_particle.mean().item(), stderr, num_particles, weights.num_data, weights.per_point, values,
        "monte_carlo",
    )


def iwae(
    model: Callable,
    guide: Callable,
    *args,
    num_particles: int = 64,
    max_particles_per_chunk: int | None = None,
    data_plate: str | None = None,
    no_grad: bool = True,
    **kwargs,
) -> Estimate:
    r"""Importance-weighted bound :math:`\mathcal L_K` (Burda et al. 2016, Eq. 8) in nats per data point.

    .. math::

        \mathcal L_K(x_n) = \log \frac1K \sum_{k=1}^K \frac{p(x_n, z_{k,n})}{q(z_{k,n} \mid x_n)}
        \le \log p(x_n), \qquad \widehat{\mathcal L}_K = \frac1N \sum_n \mathcal L_K(x_n).

    It increases with :math:`K` towards :math:`\log p(x)` and equals it for every :math:`K` when the
    guide is the exact posterior. ``stderr`` is the standard error across data points,
    :math:`\mathrm{sd}_n(\mathcal L_K(x_n))/\sqrt N`: the uncertainty of the batch mean as an estimate of
    the population mean (data variability plus Monte-Carlo noise); it does not measure the bound's bias
    :math:`\log p(x) - \mathbb E\mathcal L_K \ge 0`. With global latent sites (``per_point=False``) the
    bound is taken on the whole batch, :math:`\log\frac1K\sum_k w_k(x_{1:N})`, divided by :math:`N`,
    and ``stderr`` is ``nan``.

    Arguments are those of :func:`log_weights` (``num_particles`` = :math:`K`).

    Example (the bound tightens as :math:`K` grows (here for a guide too narrow by half)):

    >>> import pyro, pyro.distributions as dist, torch
    >>> def model(x):  # z ~ N(0, 1), x | z ~ N(z, 1): p(x) = N(x; 0, 2)
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):  # the exact posterior N(x / 2, 1 / 2)
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))
    >>> from pyro_diffvi.metrics import iwae
    >>> def narrow_guide(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.5 * 0.5**0.5))
    >>> pyro.set_rng_seed(0)
    >>> x = torch.linspace(-2.0, 2.0, 50)
    >>> exact = dist.Normal(0.0, 2.0**0.5).log_prob(x).mean().item()
    >>> k1 = iwae(model, narrow_guide, x, num_particles=1).mean
    >>> k1000 = iwae(model, narrow_guide, x, num_particles=1000).mean
    >>> k1 < k1000 < exact + 1e-3
    True
    """
    weights = log_weights(
        model, guide, *args, num_particles=num_particles, max_particles_per_chunk=max_particles_per_chunk,
        data_plate=data_plate, no_grad=no_grad, **kwargs,
    )
    bound, _ = log_mean_exp_with_se(as_float64(weights.values), dim=0)
    if not weights.per_point:
        values = bound / weights.num_data
        return Estimate(values.item(), math.nan, num_particles, weights.num_data, False, values, "data")
    return data_estimate(bound, num_particles)
