"""Monte-Carlo estimates in nats per data point with their standard errors (:class:`Estimate`), and how estimates of
disjoint batches combine (:func:`combine_estimates`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["Estimate", "as_float64", "combine_estimates", "data_estimate"]


@dataclass(frozen=True)
class Estimate:
    """A Monte-Carlo estimate in nats per data point, with its standard error.

    :ivar mean: the estimate (nats per data point).
    :ivar stderr: its standard error; what it measures is stated by the function that returns it
        (``nan`` where it cannot be estimated).
    :ivar num_particles: number of guide draws (particles) per data point, or ``None`` for an estimate
        that draws none (:func:`~pyro_diffvi.metrics.latent_nll`, an average over prior samples).
    :ivar num_data: number of data points in the evaluated batch.
    :ivar per_point: ``False`` when the model has global latent sites, so that only the total over the
        batch is defined; ``mean`` is then the total divided by ``num_data``.
    :ivar values: per-data-point estimates, shape ``(num_data,)`` (shape ``(1,)``, total / ``num_data``,
        when ``per_point`` is ``False``).
    :ivar stderr_kind: ``"monte_carlo"`` (sampling noise for the given batch, as for :func:`elbo`) or
        ``"data"`` (spread of ``values`` across data points, as for :func:`iwae`).

    Example:

    >>> import torch
    >>> from pyro_diffvi.metrics import Estimate
    >>> values = torch.tensor([-1.0, -2.0, -3.0], dtype=torch.float64)
    >>> est = Estimate(values.mean().item(), 1 / 3**0.5, 8, 3, True, values, "data")
    >>> print(est)
    -2.0000 ± 0.5774 (nats per data point, 8 particles)
    """

    mean: float
    stderr: float
    num_particles: int | None
    num_data: int
    per_point: bool
    values: torch.Tensor
    stderr_kind: str = "monte_carlo"

    def __str__(self) -> str:
        particles = "" if self.num_particles is None else f", {self.num_particles} particles"
        return f"{self.mean:.4f} ± {self.stderr:.4f} (nats per data point{particles})"


def as_float64(values: torch.Tensor) -> torch.Tensor:
    """``values`` detached, in float64 (the precision every estimate is reported in)."""
    return values.detach().to(torch.float64)


def combine_estimates(estimates: Sequence[Estimate]) -> Estimate:
    r"""Combine estimates computed on disjoint batches of one data set (batch-by-batch evaluation).

    The mean is weighted by ``num_data``. A ``"monte_carlo"`` standard error combines independent
    batches, :math:`\sqrt{\sum_i N_i^2 \mathrm{se}_i^2} / \sum_i N_i`; a ``"data"`` standard error is
    recomputed from the concatenated per-point ``values`` (``nan`` for totals, ``per_point=False``).

    :param estimates: estimates of the same kind with the same ``num_particles``.
    :return: the :class:`Estimate` of the union of the batches.

    Example:

    >>> import pyro, pyro.distributions as dist, torch
    >>> def model(x):  # z ~ N(0, 1), x | z ~ N(z, 1): p(x) = N(x; 0, 2)
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):  # the exact posterior N(x / 2, 1 / 2)
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))
    >>> from pyro_diffvi.metrics import combine_estimates, iwae
    >>> pyro.set_rng_seed(0)
    >>> x = torch.tensor([0.0, 1.0, 2.0, 3.0])
    >>> parts = [iwae(model, guide, batch, num_particles=8) for batch in x.split(2)]
    >>> whole = combine_estimates(parts)
    >>> whole.num_data, round(whole.mean, 4) == round(dist.Normal(0.0, 2.0**0.5).log_prob(x).mean().item(), 4)
    (4, True)
    """
    estimates = list(estimates)
    if not estimates or not all(isinstance(e, Estimate) for e in estimates):
        raise TypeError("estimates must be a non-empty sequence of Estimate")
    first = estimates[0]
    for e in estimates[1:]:
        if (e.stderr_kind, e.num_particles) != (first.stderr_kind, first.num_particles):
            raise ValueError(
                "estimates must share stderr_kind and num_particles, got "
                f"{(first.stderr_kind, first.num_particles)} and {(e.stderr_kind, e.num_particles)}"
            )
    sizes = [e.num_data for e in estimates]
    total = sum(sizes)
    mean = sum(e.mean * n for e, n in zip(estimates, sizes)) / total
    per_point = all(e.per_point for e in estimates)
    values = torch.cat([as_float64(e.values).cpu() for e in estimates])
    if first.stderr_kind == "monte_carlo":
        stderr = math.sqrt(sum((e.stderr * n) ** 2 for e, n in zip(estimates, sizes))) / total
        return Estimate(mean, stderr, first.num_particles, total, per_point, values, "monte_carlo")
    if per_point:
        return data_estimate(values, first.num_particles)
    return Estimate(mean, math.nan, first.num_particles, total, False, values, "data")


def data_estimate(values: torch.Tensor, num_particles: int | None) -> Estimate:
    r"""Mean of per-point ``values`` with the standard error across points, :math:`\mathrm{sd}/\sqrt N`.

    :param values: per-point estimates ``(N,)``.
    :param num_particles: the guide draws per point behind them (``None`` for none).
    """
    n = values.shape[0]
    stderr = values.std().item() / math.sqrt(n) if n > 1 else math.nan
    return Estimate(values.mean().item(), stderr, num_particles, n, True, values, "data")
