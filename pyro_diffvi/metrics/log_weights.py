r"""The log importance weights of a Pyro model/guide pair, per particle and data point, the one quantity the ELBO and
the IWAE bound (:mod:`pyro_diffvi.metrics.elbo`) and PSIS (:mod:`pyro_diffvi.metrics.psis`) are built on:

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

References:

* W. T. Piriyakulkij, Y. Wang, V. Kuleshov. *Denoising Diffusion Variational Inference: Diffusion
  Models as Expressive Variational Posteriors*. arXiv:2401.02739, 2024 (Eq. 5, the auxiliary bound).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites

from pyro_diffvi.util import check_positive_int

__all__ = ["LogWeights", "log_weights", "run_pair"]

_PARTICLE_PLATE = "_pyro_diffvi_eval_particles"


@dataclass(frozen=True)
class LogWeights:
    """Log importance weights :math:`\\log p(x, z) - \\log q(z \\mid x)` of a model/guide pair.

    :ivar values: shape ``(num_particles, num_data)`` when ``per_point``; shape ``(num_particles, 1)``
        holding the total over the batch when the model has global latent sites.
    :ivar per_point: whether ``values`` splits into data points.
    :ivar data_plate: name of the plate holding the observations.
    :ivar num_data: size of that plate.

    Example:

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


def run_pair(model: Callable, guide: Callable, args: tuple, kwargs: dict):
    """Trace ``guide(*args, **kwargs)`` and replay ``model`` on its draws; both traces without subsample sites.

    :param model: a Pyro model.
    :param guide: a guide for it.
    :param args: their positional arguments.
    :param kwargs: their keyword arguments.
    :return: ``(model_trace, guide_trace)``.
    """
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
        model_trace, guide_trace = run_pair(model, guide, args, kwargs)
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
        model_trace, guide_trace = run_pair(
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

    Example (with the exact posterior as guide every weight equals :math:`\log p(x_n)`):

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
