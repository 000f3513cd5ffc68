r"""Importance-weighted evaluation of a Pyro model/guide pair: ELBO and IWAE bound per data point.

Both estimators are built on one quantity, the per-particle, per-data-point log importance weight

.. math::

    \log w_{s,n} = \log p_\theta(x_n, z_{s,n}) - \log q_\phi(z_{s,n} \mid x_n),
    \qquad z_{s,n} \sim q_\phi(\cdot \mid x_n),\ s = 1..S,

computed by tracing the guide and replaying the model under a vectorized particle plate placed left of
the model's plates (as Pyro's ``vectorize_particles`` does). Every site contributes
``site["fn"].log_prob(site["value"])`` (``Trace.compute_log_prob``, which applies the site's scale and
mask as Pyro's ELBOs do), so guides whose density is known only along their own draws (auxiliary-variable
bounds such as the DDVI diffusion posterior, DDVI paper Eq. 5) are evaluated with their own bound and the
result is still a lower bound on :math:`\log p(x)`: with an auxiliary trajectory :math:`y` the weight
:math:`p(x, z)\, r(y \mid z, x) / q(y, z \mid x)` is an importance weight for the extended target
:math:`p(x, z)\, r(y \mid z, x)`, whose normalizer is :math:`p(x)`, so IWAE and PSIS apply on that space.

* ELBO (Kingma & Welling 2014): :math:`\frac1N\sum_n \frac1S\sum_s \log w_{s,n}`.
* IWAE bound (Burda et al. 2016, Eq. 8):
  :math:`\mathcal L_K(x_n) = \log \frac1K \sum_{k=1}^K w_{k,n} \le \log p(x_n)`, averaged over data points.

References:

* D. P. Kingma, M. Welling. *Auto-Encoding Variational Bayes*. ICLR 2014.
* Y. Burda, R. Grosse, R. Salakhutdinov. *Importance Weighted Autoencoders*. ICLR 2016 (Eq. 8).
* W. T. Piriyakulkij, Y. Wang, V. Kuleshov. *Denoising Diffusion Variational Inference: Diffusion
  Models as Expressive Variational Posteriors*. arXiv:2401.02739, 2024 (Eq. 5, the auxiliary bound).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites

from pyro_diffvi.ops.log_mean_exp import log_mean_exp_with_se
from pyro_diffvi.util import check_positive_int

__all__ = ["Estimate", "LogWeights", "combine_estimates", "elbo", "iwae", "log_weights"]

_PARTICLE_PLATE = "_pyro_diffvi_eval_particles"


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

    Example::

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


@dataclass(frozen=True)
class LogWeights:
    """Log importance weights :math:`\\log p(x, z) - \\log q(z \\mid x)` of a model/guide pair.

    :ivar values: shape ``(num_particles, num_data)`` when ``per_point``; shape ``(num_particles, 1)``
        holding the total over the batch when the model has global latent sites.
    :ivar per_point: whether ``values`` splits into data points.
    :ivar data_plate: name of the plate holding the observations.
    :ivar num_data: size of that plate.

    Example::

        >>> import pyro, pyro.distributions as dist, torch
        >>> def model(x):  # z ~ N(0, 1), x | z ~ N(z, 1): p(x) = N(x; 0, 2)
        ...     with pyro.plate("data", x.shape[0]):
        ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
        ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
        >>> def guide(x):  # the exact posterior N(x / 2, 1 / 2)
        ...     with pyro.plate("data", x.shape[0]):
        ...         pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))
        >>> from pyro_diffvi.metrics import log_weights
        >>> weights = log_weights(model, guide, torch.tensor([0.0, 1.0, 2.0]), num_particles=5)
        >>> weights.values.shape, weights.per_point, weights.data_plate, weights.num_data
        (torch.Size([5, 3]), True, 'data', 3)
    """

    values: torch.Tensor
    per_point: bool
    data_plate: str
    num_data: int


@dataclass(frozen=True)
class _Structure:
    max_plate_nesting: int
    data_plate: str
    data_dim: int
    num_data: int
    per_point: bool


def _frames(site: dict) -> list:
    return [f for f in site["cond_indep_stack"] if f.vectorized and f.name != _PARTICLE_PLATE]


def _sample_sites(trace) -> dict:
    return {name: site for name, site in trace.nodes.items() if site["type"] == "sample"}


def _is_observed(site: dict) -> bool:
    return site["is_observed"] and not site["infer"].get("_deterministic", False)


def _is_factor(site: dict) -> bool:
    fn = site["fn"]
    while not isinstance(fn, dist.Unit) and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return isinstance(fn, dist.Unit)


def _run_pair(model: Callable, guide: Callable, args: tuple, kwargs: dict):
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    return prune_subsample_sites(model_trace), prune_subsample_sites(guide_trace)


def _check_sites(model_sites: dict, guide_sites: dict) -> None:
    for site in list(model_sites.values()) + list(guide_sites.values()):
        for f in site["cond_indep_stack"]:
            if f.full_size is not None and f.full_size != f.size:
                raise ValueError(
                    f"plate '{f.name}' is subsampled (subsample_size={f.size} of size={f.full_size}); "
                    "evaluation runs on the full batch it is given: pass the batch to evaluate and "
                    "no subsample_size"
                )
    missing = [n for n, s in model_sites.items() if not _is_observed(s) and n not in guide_sites]
    if missing:
        raise ValueError(f"model latent site(s) {missing} are not sampled by the guide")
    extra = [
        n
        for n, s in guide_sites.items()
        if n not in model_sites and not s["infer"].get("is_auxiliary", False)
    ]
    if extra:
        raise ValueError(
            f"guide site(s) {extra} do not appear in the model; mark auxiliary guide sites with "
            "infer={'is_auxiliary': True}"
        )


def _find_data_plate(model_sites: dict, data_plate: str | None):
    observed = {n: s for n, s in model_sites.items() if _is_observed(s)}
    if not observed:
        raise ValueError("the model has no observed sample site: nothing to evaluate")
    # pyro.factor terms need not lie in the data plate (one outside it makes the estimate a total)
    observed = {n: s for n, s in observed.items() if not _is_factor(s)} or observed
    common = None
    for site in observed.values():
        names = {f.name: f for f in _frames(site)}
        common = names if common is None else {k: v for k, v in common.items() if k in names}
    if data_plate is not None:
        if data_plate not in common:
            raise ValueError(
                f"data_plate={data_plate!r} does not contain every observed site "
                f"{sorted(observed)}; plates containing all of them: {sorted(common)}"
            )
        return common[data_plate]
    if not common:
        raise ValueError(
            f"no vectorized pyro.plate contains every observed site {sorted(observed)}: wrap the "
            "observations in a data plate (pyro.plate('data', N)) to evaluate per data point"
        )
    if len(common) > 1:
        raise ValueError(
            f"ambiguous data plate: observed sites {sorted(observed)} lie in plates {sorted(common)}; "
            "pass data_plate=<name>"
        )
    return next(iter(common.values()))


def _is_local(site: dict, frame) -> bool:
    if frame.size == 1 or any(f.name == frame.name for f in _frames(site)):
        return True
    batch_shape = site["fn"].batch_shape
    return len(batch_shape) >= -frame.dim and batch_shape[frame.dim] == frame.size


def _inspect(model, guide, args, kwargs, data_plate) -> _Structure:
    with poutine.block():
        model_trace, guide_trace = _run_pair(model, guide, args, kwargs)
    model_sites, guide_sites = _sample_sites(model_trace), _sample_sites(guide_trace)
    _check_sites(model_sites, guide_sites)
    frame = _find_data_plate(model_sites, data_plate)
    sites = list(model_sites.values()) + list(guide_sites.values())
    nesting = max(
        [0]
        + [-f.dim for s in sites for f in _frames(s)]
        + [len(s["fn"].batch_shape) for s in sites]
    )
    per_point = all(_is_local(s, frame) for s in sites)
    return _Structure(nesting, frame.name, frame.dim, frame.size, per_point)


def _reduce_site(log_prob: torch.Tensor, structure: _Structure, num: int, name: str) -> torch.Tensor:
    """Sum a site's log density over every batch dim except particles (and data, when per point)."""
    batch_dims = structure.max_plate_nesting + 1
    if log_prob.dim() > batch_dims:
        raise ValueError(
            f"site '{name}' has log_prob of shape {tuple(log_prob.shape)}, more batch dims than the "
            f"{batch_dims} expected (enumerated or unplated batch dims are not supported)"
        )
    log_prob = log_prob.reshape((1,) * (batch_dims - log_prob.dim()) + tuple(log_prob.shape))
    if not structure.per_point:
        return log_prob.reshape(log_prob.shape[0], -1).sum(-1).expand(num).unsqueeze(-1)
    data_axis = batch_dims + structure.data_dim
    other = [d for d in range(1, batch_dims) if d != data_axis]
    if other:
        log_prob = log_prob.sum(other, keepdim=True)
    return log_prob.reshape(log_prob.shape[0], -1).expand(num, structure.num_data)


def _chunk_log_weights(model, guide, args, kwargs, structure: _Structure, num: int) -> torch.Tensor:
    def in_particle_plate(fn):
        def wrapped(*a, **k):
            with pyro.plate(_PARTICLE_PLATE, num, dim=-(structure.max_plate_nesting + 1)):
                return fn(*a, **k)

        return wrapped

    with poutine.block():
        model_trace, guide_trace = _run_pair(
            in_particle_plate(model), in_particle_plate(guide), args, kwargs
        )
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    total = 0.0
    for sign, trace in ((1.0, model_trace), (-1.0, guide_trace)):
        for name, site in _sample_sites(trace).items():
            total = total + sign * _reduce_site(site["log_prob"], structure, num, name)
    return total


def log_weights(
    model: Callable,
    guide: Callable,
    *args,
    num_particles: int = 1,
    max_particles_per_chunk: int | None = None,
    data_plate: str | None = None,
    no_grad: bool = True,
    **kwargs,
) -> LogWeights:
    r"""Log importance weights :math:`\log p(x_n, z_{s,n}) - \log q(z_{s,n} \mid x_n)`, vectorized.

    The guide is traced and the model replayed against it inside a particle plate of size at most
    ``max_particles_per_chunk`` placed left of the model's plates; chunks are concatenated. Each
    site's ``log_prob`` is summed over every batch dim except the particle dim and the data plate's dim.

    The data plate is the (unique) vectorized plate containing every observed site (``pyro.factor``
    sites are ignored here unless they are the only observed sites). When the model or
    guide has latent sites outside it (global latents), per-point weights do not exist and the total
    over the batch is returned as a single column (``per_point=False``).

    :param model: a Pyro model; its observed sites must lie in a data plate.
    :param guide: a Pyro guide sampling every latent site of the model.
    :param args: positional arguments of model and guide (the batch to evaluate, in full).
    :param num_particles: number of particles (guide draws) :math:`S` per data point.
    :param max_particles_per_chunk: largest particle plate run at once (memory bound); ``None`` runs
        all particles together.
    :param data_plate: name of the data plate; auto-detected when ``None``.
    :param no_grad: run under ``torch.no_grad()`` (set ``False`` for guides that need autograd inside).
    :param kwargs: keyword arguments of model and guide.
    :return: :class:`LogWeights` with ``values`` of shape ``(S, N)`` (or ``(S, 1)``).
    :raises ValueError: subsampled plates, no or ambiguous data plate, model latents missing from the
        guide, non-auxiliary guide sites missing from the model, non-finite weights.

    Example: with the exact posterior as guide every weight equals :math:`\log p(x_n)`::

        >>> import pyro, pyro.distributions as dist, torch
        >>> def model(x):  # z ~ N(0, 1), x | z ~ N(z, 1): p(x) = N(x; 0, 2)
        ...     with pyro.plate("data", x.shape[0]):
        ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
        ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
        >>> def guide(x):  # the exact posterior N(x / 2, 1 / 2)
        ...     with pyro.plate("data", x.shape[0]):
        ...         pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))
        >>> from pyro_diffvi.metrics import log_weights
        >>> pyro.set_rng_seed(0)
        >>> x = torch.tensor([0.0, 1.0, 2.0])
        >>> weights = log_weights(model, guide, x, num_particles=4)
        >>> torch.allclose(weights.values, dist.Normal(0.0, 2.0**0.5).log_prob(x).expand(4, 3), atol=1e-5)
        True
    """
    check_positive_int("num_particles", num_particles)
    chunk = num_particles if max_particles_per_chunk is None else max_particles_per_chunk
    check_positive_int("max_particles_per_chunk", chunk)
    with torch.set_grad_enabled(not no_grad):
        structure = _inspect(model, guide, args, kwargs, data_plate)
        sizes = [min(chunk, num_particles - start) for start in range(0, num_particles, chunk)]
        values = torch.cat(
            [_chunk_log_weights(model, guide, args, kwargs, structure, n) for n in sizes], dim=0
        )
    if torch.isnan(values).any():
        raise ValueError("log importance weights contain NaN: check the model and guide densities")
    return LogWeights(values, structure.per_point, structure.data_plate, structure.num_data)


def _as_float64(values: torch.Tensor) -> torch.Tensor:
    return values.detach().to(torch.float64)


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

    Example: a guide too narrow by half gives an ELBO below the exact :math:`\frac1N\log p(x)`::

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
    lw = _as_float64(weights.values)
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

    Example: the bound tightens as :math:`K` grows (here for a guide too narrow by half)::

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
    bound, _ = log_mean_exp_with_se(_as_float64(weights.values), dim=0)
    if not weights.per_point:
        values = bound / weights.num_data
        return Estimate(values.item(), math.nan, num_particles, weights.num_data, False, values, "data")
    return _data_estimate(bound, num_particles)


def combine_estimates(estimates: Sequence[Estimate]) -> Estimate:
    r"""Combine estimates computed on disjoint batches of one data set (batch-by-batch evaluation).

    The mean is weighted by ``num_data``. A ``"monte_carlo"`` standard error combines independent
    batches, :math:`\sqrt{\sum_i N_i^2 \mathrm{se}_i^2} / \sum_i N_i`; a ``"data"`` standard error is
    recomputed from the concatenated per-point ``values`` (``nan`` for totals, ``per_point=False``).

    :param estimates: estimates of the same kind with the same ``num_particles``.
    :return: the :class:`Estimate` of the union of the batches.

    Example::

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
    values = torch.cat([_as_float64(e.values).cpu() for e in estimates])
    if first.stderr_kind == "monte_carlo":
        stderr = math.sqrt(sum((e.stderr * n) ** 2 for e, n in zip(estimates, sizes))) / total
        return Estimate(mean, stderr, first.num_particles, total, per_point, values, "monte_carlo")
    if per_point:
        return _data_estimate(values, first.num_particles)
    return Estimate(mean, math.nan, first.num_particles, total, False, values, "data")


def _data_estimate(values: torch.Tensor, num_particles: int | None) -> Estimate:
    r"""Mean of per-point ``values`` with the standard error across points, :math:`\mathrm{sd}/\sqrt N`."""
    n = values.shape[0]
    stderr = values.std().item() / math.sqrt(n) if n > 1 else math.nan
    return Estimate(values.mean().item(), stderr, num_particles, n, True, values, "data")
