"""Structure discovery for amortized guides: from the first call's trace of a model, the latent and observed sites,
where each observed value lies among the model's arguments (and along which subsampled plates), and the plates of
the latent sites with where their sizes are read on each call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro.poutine.messenger import Messenger
from torch import nn
from torch.distributions import biject_to, constraints
from torch.distributions.transforms import ReshapeTransform

from pyro_diffvi.util import check_finite

__all__ = [
    "GivenSubsamples",
    "ObservedFn",
    "ObservedSource",
    "PlateSpec",
    "as_names",
    "broadcasts_to",
    "call_observed_fn",
    "call_plates",
    "check_context_batch_shape",
    "check_given_subsamples",
    "check_observed_values",
    "check_sites",
    "constrained",
    "encoder_features",
    "find_source",
    "input_batch_shape",
    "is_unconstrained",
    "locate_observed",
    "num_classes",
    "plain_support",
    "plate_specs",
    "select",
    "user_plates",
]

ObservedFn = Callable[..., "torch.Tensor | Sequence[torch.Tensor]"]
"""``observed_fn(*args, **kwargs)``: the full-size observed value(s) for the model's arguments."""


@dataclass(frozen=True)
class ObservedSource:
    """Where the value observed at a site lives among the model's arguments.

    :ivar position: index into ``args`` or a key of ``kwargs``.
    :ivar subsampled_dims: ``(plate name, tensor dim)`` pairs along which the model indexes the argument.
    """

    position: int | str
    subsampled_dims: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class PlateSpec:
    """A plate of the latent sites, and where its size is read on each call.

    :ivar name: the plate's name.
    :ivar dim: its (negative) tensor dimension.
    :ivar size: its full size in the first call.
    :ivar subsample_size: its subsample size in the first call (``None`` when not subsampled).
    :ivar size_source: ``(observed site index, tensor dim from the right)`` of the full-size value whose shape gives
        the plate's size on every call, or ``None`` for a fixed size.
    """

    name: str
    dim: int
    size: int
    subsample_size: int | None
    size_source: tuple[int, int] | None


def select(source: ObservedSource, value: torch.Tensor, indices: dict) -> torch.Tensor:
    """A full-size argument ``value`` indexed by this call's subsample ``indices`` along the plates ``source``
    records (a value already of the subsample's size is kept).

    :param source: where the value lies and along which plates the model indexes it.
    :param value: the full-size argument.
    :param indices: plate name -> this call's subsample indices.
    """
    for plate, dim in source.subsampled_dims:
        if value.shape[dim] != indices[plate].shape[0]:
            value = value.index_select(dim, indices[plate].to(value.device))
    return value


class GivenSubsamples(Messenger):
    """Records the names of the plates whose subsample indices the model passes itself
    (``pyro.plate(..., subsample=indices)``): a plate's subsample site arrives with a value that is not
    an observation; every other sample site arrives without one."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def _pyro_sample(self, msg) -> None:
        if msg["value"] is not None and not msg["is_observed"]:
            self.names.add(msg["name"])


def as_names(value: str | Sequence[str], argname: str) -> tuple[str, ...]:
    """One site name or a non-empty sequence of distinct site names, as a tuple.

    :param value: the argument.
    :param argname: its name, for the error message.
    """
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{argname} must be a site name or a non-empty sequence of site names, got {value!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{argname} has repeated site names: {names}")
    return names


def plain_support(support: constraints.Constraint) -> constraints.Constraint:
    """Strip torch's ``MixtureSameFamilyConstraint`` wrapper (same set, but ``biject_to`` refuses it).

    :param support: a site's support.
    """
    if isinstance(support, getattr(constraints, "MixtureSameFamilyConstraint", ())):  # torch >= 2.5
        return plain_support(support.base_constraint)
    return support


def site_bijection(name: str, support: constraints.Constraint):
    """``biject_to(support)`` for latent site ``name``, raising ``ValueError`` naming the site when torch has no
    bijection from unconstrained space onto its support (a positive-definite matrix, say).

    :param name: the latent site.
    :param support: its support.
    """
    try:
        return biject_to(support)
    except NotImplementedError:
        raise ValueError(
            f"latent site {name!r} has support {support}, which torch.distributions.biject_to cannot map from "
            "unconstrained space; write the model with a site the guide can reach (e.g. a Cholesky factor, "
            "dist.LKJCholesky, or unconstrained entries transformed inside the model)"
        ) from None


def broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    """Whether ``shape`` broadcasts to exactly ``target``.

    :param shape: a shape.
    :param target: the shape it should broadcast to.
    """
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def num_classes(fn) -> int | None:
    """The number of categories of a Categorical observation (whose values the encoder one-hot encodes), or ``None``.

    :param fn: a site's distribution.
    """
    base = getattr(fn, "base_dist", fn)
    return base.probs.shape[-1] if isinstance(base, dist.Categorical) else None


def is_unconstrained(support: constraints.Constraint) -> bool:
    """Whether ``support`` is the real line (or its product), so that a latent needs no bijection.

    :param support: a site's support.
    """
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return type(support) is type(constraints.real)


def check_sites(sites: dict, latent_names: Sequence[str], observed_names: Sequence[str]) -> None:
    """Raise unless the latent sites are continuous local sample sites in vectorized plates and the observed sites
    are observed sample sites of the model.

    :param sites: the nodes of the first call's trace.
    :param latent_names: the guide's latent sites.
    :param observed_names: the sites the encoder reads.
    """
    samples = {n for n, s in sites.items() if s["type"] == "sample"}
    for name in latent_names:
        if name not in samples:
            raise ValueError(f"latent site '{name}' is not a sample site of the model; sites: {sorted(samples)}")
        site = sites[name]
        if site["is_observed"]:
            raise ValueError(f"latent site '{name}' is observed in the model; pass it as observed=")
        if site["fn"].support.is_discrete:
            raise ValueError(
                f"latent site '{name}' is discrete ({type(site['fn']).__name__}); amortized continuous "
                "guides need continuous latents: enumerate it out with TraceEnum_ELBO or guide it separately"
            )
        sequential = [f.name for f in site["cond_indep_stack"] if not f.vectorized]
        if sequential:  # checked first: a site of a sequential loop is in no vectorized plate, yet it is local
            raise NotImplementedError(
                f"latent site '{name}' is in the sequential plate(s) {sequential} (a `for i in pyro.plate(...)` "
                "loop); an amortized guide needs vectorized plates: `with pyro.plate(...)` over the data"
            )
        if not any(f.vectorized for f in site["cond_indep_stack"]):
            raise ValueError(
                f"latent site '{name}' is global (outside every plate); an amortized guide covers local "
                "latents only: guide global sites with an AutoGuide and combine them with AutoGuideList"
            )
    for name in observed_names:
        if name not in samples or not sites[name]["is_observed"]:
            observed = sorted(n for n in samples if sites[n]["is_observed"])
            raise ValueError(f"observed site '{name}' is not an observed sample site; observed sites: {observed}")


def locate_observed(sites: dict, observed_names: Sequence[str], args: tuple, kwargs: dict) -> dict[str, ObservedSource]:
    """Where the value of each observed site lies among the model's tensor arguments.

    :param sites: the nodes of the first call's trace.
    :param observed_names: the sites to locate.
    :param args: the first call's positional arguments.
    :param kwargs: its keyword arguments.
    :raises ValueError: naming a site whose value is in no argument.
    """
    sources = {}
    for name in observed_names:
        source = find_source(sites, name, args, kwargs)
        if source is None:
            raise ValueError(
                f"could not find the value observed at site '{name}' among the model's tensor arguments; "
                "pass observed_fn=lambda *args, **kwargs: <the full observed tensor> to the guide"
            )
        sources[name] = source
    return sources


def find_source(sites: dict, name: str, args: tuple, kwargs: dict) -> ObservedSource | None:
    """Where the value of site ``name`` in the first call's trace lies among the model's tensor arguments: the
    argument equal to it, or the full-size argument that the model's subsampled plates index to it.

    :param sites: the nodes of the first call's trace.
    :param name: the site.
    :param args: the first call's positional arguments.
    :param kwargs: its keyword arguments.
    """
    candidates = [(k, a) for k, a in list(enumerate(args)) + list(kwargs.items()) if torch.is_tensor(a)]
    indices = {n: site["value"] for n, site in sites.items() if site["type"] == "sample"}  # plates' too
    return next((s for k, a in candidates if (s := _match(sites, indices, name, k, a))), None)


def _match(sites: dict, indices: dict, name: str, key: int | str, arg: torch.Tensor) -> ObservedSource | None:
    site = sites[name]
    value, event_dim = site["value"], site["fn"].event_dim
    if arg is value or (arg.shape == value.shape and torch.equal(arg, value)):
        return ObservedSource(key, ())
    subsampled, candidate = [], arg
    for frame in site["cond_indep_stack"]:
        if frame.full_size is not None and frame.full_size != frame.size:
            dim = value.dim() - event_dim + frame.dim
            if candidate.dim() != value.dim() or candidate.shape[dim] != frame.full_size:
                return None
            if indices.get(frame.name) is None:
                return None
            candidate = candidate.index_select(dim, indices[frame.name].to(candidate.device))
            subsampled.append((frame.name, dim))
    if subsampled and candidate.shape == value.shape and torch.equal(candidate, value):
        return ObservedSource(key, tuple(subsampled))
    return None


def plate_specs(sites: dict, latent_names: Sequence[str], observed_names: Sequence[str]) -> list[PlateSpec]:
    """The plates of the latent sites, outermost last, with where each one's size is read on later calls.

    :param sites: the nodes of the first call's trace.
    :param latent_names: the guide's latent sites.
    :param observed_names: the sites the encoder reads.
    :raises ValueError: when the latent and observed sites share no plate.
    """
    observed_frames = {f.name for n in observed_names for f in sites[n]["cond_indep_stack"]}
    frames = {f.name: f for n in latent_names for f in sites[n]["cond_indep_stack"]}
    if not set(frames) & observed_frames:
        raise ValueError(
            f"latent sites {tuple(latent_names)} share no plate with observed sites {tuple(observed_names)}; "
            "an amortized guide needs a data plate common to both"
        )
    specs = []
    for f in sorted(frames.values(), key=lambda f: f.dim):
        size = f.full_size or f.size
        subsample_size = f.size if f.size != size else None
        specs.append(PlateSpec(f.name, f.dim, size, subsample_size, _plate_size_source(sites, observed_names, f)))
    return specs


def _plate_size_source(sites: dict, observed_names: Sequence[str], frame) -> tuple[int, int] | None:
    """The observed site and tensor dim whose full-size value has the plate's size on every call."""
    for index, name in enumerate(observed_names):
        site = sites[name]
        if frame in site["cond_indep_stack"]:
            dim = frame.dim - site["fn"].event_dim
            if -dim <= site["value"].dim() and site["value"].shape[dim] == frame.size:
                return index, dim
    return None


def call_plates(
    specs: Sequence[PlateSpec], given: dict[str, pyro.plate], observed: list[torch.Tensor]
) -> dict[str, pyro.plate]:
    """This call's plates: the ``given`` ones, and for the others the first call's plates with the size of the data
    plates read from this call's full-size ``observed`` values.

    :param specs: the plates of the latent sites (:func:`plate_specs`).
    :param given: the plates the user gives, by name (filled in place).
    :param observed: this call's full-size observed values, in the order of the guide's observed sites.
    """
    for p in specs:
        if p.name in given:
            _check_given_plate_size(p, given[p.name], observed)
            continue
        size = p.size
        if p.size_source is not None:
            index, dim = p.size_source
            size = observed[index].shape[dim]
        subsample_size = None if p.subsample_size is None else min(p.subsample_size, size)
        given[p.name] = pyro.plate(p.name, size, subsample_size=subsample_size, dim=p.dim)
    return given


def _check_given_plate_size(spec: PlateSpec, plate: pyro.plate, observed: list[torch.Tensor]) -> None:
    """Raise unless a given plate whose size the data set has the size of this call's full-size observed value."""
    if spec.size_source is None:
        return
    index, dim = spec.size_source
    size = observed[index].shape[dim]
    if plate.size != size:
        raise ValueError(
            f"plate '{spec.name}' given to the guide has size {plate.size}, but this call's observed values have "
            f"{size} rows along it (a smaller last batch, say); an AutoGuideList fixes its plates at its first call "
            f"unless it has create_plates: AutoGuideList(model, create_plates=lambda x, *args, **kwargs: "
            f"pyro.plate('{spec.name}', x.shape[0])) (with the model's own arguments and plate options)"
        )


def user_plates(create_plates: Callable | None, args: tuple, kwargs: dict) -> dict[str, pyro.plate]:
    """The plates that ``create_plates(*args, **kwargs)`` returns (a plate or a sequence of them), by name.

    :param create_plates: the guide's ``create_plates``, or ``None`` (no plates).
    :param args: this call's positional arguments.
    :param kwargs: its keyword arguments.
    """
    if create_plates is None:
        return {}
    plates = create_plates(*args, **kwargs)
    plates = [plates] if isinstance(plates, pyro.plate) else list(plates)
    if not all(isinstance(p, pyro.plate) for p in plates):
        raise TypeError("create_plates must return a pyro.plate or a sequence of pyro.plate")
    return {p.name: p for p in plates}


def check_given_subsamples(given: set[str], specs: Sequence[PlateSpec], plates: dict[str, pyro.plate]) -> None:
    """Raise unless every plate of the latent sites whose subsample indices the model passes itself is given.

    :param given: the names of the plates the model subsamples itself (:class:`GivenSubsamples`).
    :param specs: the plates of the latent sites.
    :param plates: the plates the user gives, by name.
    """
    missing = sorted(given & {p.name for p in specs} - set(plates))
    if missing:
        raise ValueError(
            f"the model passes its own subsample indices to plate(s) {missing} (pyro.plate(..., subsample=...)); "
            "as for Pyro's autoguides, pass the same plate(s) to the guide: "
            "create_plates=lambda *args, **kwargs: pyro.plate(name, size, subsample=indices)"
        )


def call_observed_fn(observed_fn: ObservedFn, names: Sequence[str], args: tuple, kwargs: dict) -> list[torch.Tensor]:
    """``observed_fn(*args, **kwargs)`` as a list of one tensor per observed site.

    :param observed_fn: the guide's ``observed_fn``.
    :param names: the observed sites.
    :param args: this call's positional arguments.
    :param kwargs: its keyword arguments.
    """
    values = observed_fn(*args, **kwargs)
    values = [values] if torch.is_tensor(values) else list(values)
    if len(values) != len(names) or not all(torch.is_tensor(v) for v in values):
        raise ValueError(
            f"observed_fn must return {len(names)} tensor(s), one per observed site "
            f"{tuple(names)}, got {len(values)} value(s)"
        )
    return values


def check_observed_values(names: Sequence[str], values: list[torch.Tensor], event_shapes: dict) -> None:
    """Raise unless the observed ``values`` have the event shapes the guide was built for and are finite (one host
    synchronization when they are).

    :param names: the observed sites.
    :param values: this call's observed values.
    :param event_shapes: site name -> event shape in the first call.
    """
    for name, value in zip(names, values):
        expected = event_shapes[name]
        if value.shape[value.dim() - len(expected) :] != expected:
            raise ValueError(
                f"observed site '{name}' has shape {tuple(value.shape)}, but the guide was built on its first "
                f"call for event shape {tuple(expected)}; build a new guide for data of another shape"
            )
    floats = [v for v in values if v.dtype.is_floating_point]
    if floats and not bool(torch.stack([torch.isfinite(v).all() for v in floats]).all()):  # one host sync
        for name, value in zip(names, values):
            check_finite(f"observed site '{name}'", value.float())


def input_batch_shape(names: Sequence[str], inputs: list[torch.Tensor], event_shapes: dict) -> torch.Size:
    """The broadcast batch shape of an encoder's inputs (an enumerated label adds its dimension).

    :param names: the sites the encoder reads.
    :param inputs: their values.
    :param event_shapes: site name -> event shape.
    """
    return torch.broadcast_shapes(*(v.shape[: v.dim() - len(event_shapes[n])] for n, v in zip(names, inputs)))


def encoder_features(
    names: Sequence[str], inputs: list[torch.Tensor], event_shapes: dict, classes: dict, dtype: torch.dtype
) -> torch.Tensor:
    """The default encoder's input: the values flattened and concatenated, categorical ones one-hot encoded.

    :param names: the sites the encoder reads.
    :param inputs: their values.
    :param event_shapes: site name -> event shape.
    :param classes: site name -> number of categories (``None`` for a non-categorical site).
    :param dtype: the encoder's dtype.
    """
    batch_shape = input_batch_shape(names, inputs, event_shapes)
    parts = []
    for name, value in zip(names, inputs):
        own_batch = value.shape[: value.dim() - len(event_shapes[name])]
        if classes[name] is not None:
            value = nn.functional.one_hot(value.long(), classes[name])
        parts.append(value.to(dtype).reshape(*own_batch, -1).expand(*batch_shape, -1))
    return torch.cat(parts, dim=-1)


def check_context_batch_shape(
    sites: dict, latent_names: Sequence[str], observed_names: Sequence[str], context: torch.Tensor
) -> None:
    """Raise unless the encoder's context has the batch shape of every latent site (each observation maps to its own
    latent), naming the plates of the observed sites that a latent site is not in.

    :param sites: the nodes of the first call's trace.
    :param latent_names: the guide's latent sites.
    :param observed_names: the sites the encoder reads.
    :param context: the encoder's context of the first call's values.
    """
    context_shape = context.shape[:-1]
    for name in latent_names:
        fn = sites[name]["fn"]
        latent_shape = sites[name]["value"].shape[: sites[name]["value"].dim() - fn.event_dim]
        if not broadcasts_to(context_shape, latent_shape):
            latent_plates = {f.name for f in sites[name]["cond_indep_stack"]}
            extra = sorted({f.name for n in observed_names for f in sites[n]["cond_indep_stack"]} - latent_plates)
            raise ValueError(
                f"latent site '{name}' has batch shape {tuple(latent_shape)} but the encoder's context has batch "
                f"shape {tuple(context_shape)}"
                + (
                    f": the observed site(s) lie in plate(s) {extra} that '{name}' is not in; an amortized "
                    f"guide maps each observation to its own latent, so move '{name}' into those plates"
                    if extra
                    else ""
                )
            )


def constrained(
    fn: dist.TorchDistribution, dim: int, shape: torch.Size, support: constraints.Constraint
) -> dist.TorchDistribution:
    """A posterior ``fn`` over a latent's flattened unconstrained space, reshaped to ``shape`` and mapped to the
    site's ``support`` by ``biject_to`` (``fn`` itself for a real vector site).

    :param fn: the posterior, event shape ``(dim,)``.
    :param dim: the flattened dimension.
    :param shape: the unconstrained event shape.
    :param support: the site's support.
    """
    transforms = []
    if shape != (dim,):
        transforms.append(ReshapeTransform((dim,), shape, cache_size=1))
    if not is_unconstrained(support):
        transforms.append(biject_to(support).with_cache(1))
    return dist.TransformedDistribution(fn, transforms) if transforms else fn
