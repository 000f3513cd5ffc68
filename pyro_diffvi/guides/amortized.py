"""The amortized, model-aware guide machinery shared by every guide in :mod:`pyro_diffvi.guides`."""

from __future__ import annotations

import copy
import math
import pickle
import warnings
import weakref
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoGuide
from pyro.nn import PyroModule
from pyro.poutine.messenger import Messenger
from torch import nn
from torch.distributions import biject_to, constraints
from torch.distributions.transforms import ReshapeTransform

from pyro_diffvi._pyro_compat import param_store_names, set_pyro_name
from pyro_diffvi.nn import MLP
from pyro_diffvi.nn import activation as make_activation
from pyro_diffvi.util import check_finite, check_widths

# the guide (weakly) owning each parameter tensor, to tell another live guide's parameters in Pyro's
# param store from tensors loaded into it (pyro.get_param_store().load), which a guide adopts
_OWNERS: dict[int, tuple[weakref.ref, weakref.ref]] = {}  # id(parameter) -> (parameter, guide) weak references


def _claim(param: torch.Tensor, guide: AmortizedGuide) -> None:
    entry = _OWNERS.get(id(param))
    if entry is None or entry[0]() is not param:
        _OWNERS[id(param)] = (weakref.ref(param, lambda _, key=id(param): _OWNERS.pop(key, None)), weakref.ref(guide))


def _claimed_by_other(tensor: torch.Tensor, guide: AmortizedGuide) -> bool:
    """Whether ``tensor`` is a parameter of another guide (alive or not), rather than one loaded from a file."""
    entry = _OWNERS.get(id(tensor))
    return entry is not None and entry[0]() is tensor and entry[1]() is not guide

_ObservedFn = Callable[..., "torch.Tensor | Sequence[torch.Tensor]"]

# values of discrete sites a ClassifierGuide drew (or read) in the current call of an AutoGuideList, for the
# parts after it that condition on them (condition_on=)
_PUBLISHED: weakref.WeakKeyDictionary[nn.Module, dict[str, torch.Tensor]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class _ObservedSource:
    """Where the value observed at a site lives among the model's arguments."""

    position: int | str  # index into ``args`` or a key of ``kwargs``
    subsampled_dims: tuple[tuple[str, int], ...]  # (plate name, tensor dim) pairs indexed by the model


@dataclass(frozen=True)
class _PlateSpec:
    """A plate of the latent sites, and where its size is read on each call."""

    name: str
    dim: int
    size: int
    subsample_size: int | None
    size_source: tuple[int, int] | None  # (observed site index, tensor dim from the right) of the full-size value


def _select(source: _ObservedSource, value: torch.Tensor, indices: dict) -> torch.Tensor:
    """A full-size argument ``value`` indexed by this call's subsample ``indices`` along the plates ``source``
    records (a value already of the subsample's size is kept)."""
    for plate, dim in source.subsampled_dims:
        if value.shape[dim] != indices[plate].shape[0]:
            value = value.index_select(dim, indices[plate].to(value.device))
    return value


class _GivenSubsamples(Messenger):
    """Records the names of the plates whose subsample indices the model passes itself
    (``pyro.plate(..., subsample=indices)``): a plate's subsample site arrives with a value that is not
    an observation; every other sample site arrives without one."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def _pyro_sample(self, msg) -> None:
        if msg["value"] is not None and not msg["is_observed"]:
            self.names.add(msg["name"])


class _CallInContext(PyroModule):
    """Calls a function inside the owning guide's Pyro context (a child shares its root's), so that
    the guide's parameters used there are registered with Pyro's param store, as in the guide's own call."""

    def forward(self, fn: Callable, *args, **kwargs):
        return fn(*args, **kwargs)


def _as_names(value: str | Sequence[str], argname: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{argname} must be a site name or a non-empty sequence of site names, got {value!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{argname} has repeated site names: {names}")
    return names


def _plain_support(support: constraints.Constraint) -> constraints.Constraint:
    """Strip torch's ``MixtureSameFamilyConstraint`` wrapper (same set, but ``biject_to`` refuses it)."""
    if isinstance(support, getattr(constraints, "MixtureSameFamilyConstraint", ())):  # torch >= 2.5
        return _plain_support(support.base_constraint)
    return support


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def _num_classes(fn) -> int | None:
    """The number of categories of a Categorical observation (whose values the encoder one-hot encodes)."""
    base = getattr(fn, "base_dist", fn)
    return base.probs.shape[-1] if isinstance(base, dist.Categorical) else None


def _is_unconstrained(support: constraints.Constraint) -> bool:
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return type(support) is type(constraints.real)


class AmortizedGuide(AutoGuide):
    r"""Base class of amortized guides :math:`q_\phi(z|x)` for an arbitrary Pyro model.

    Like :class:`~pyro.infer.autoguide.AutoGuide`, the guide traces the model once on its first call
    to learn the latent sites' shapes, supports and plates, then on every call it opens the same
    plates (with the same subsampling), encodes the observed values into a context
    :math:`c = \mathrm{enc}_\phi(x)` and emits each latent site from the subclass's
    :meth:`posterior`. It therefore works unchanged with :class:`~pyro.infer.Trace_ELBO`,
    :class:`~pyro.infer.RenyiELBO`, :class:`~pyro.infer.Predictive` and ``poutine`` handlers.

    Latent sites must be continuous and *local*: inside at least one plate of the observed sites
    (the data plate). Constrained latents are mapped to their support with ``biject_to``.

    The guide is an :class:`~pyro.infer.autoguide.AutoGuide`, so it combines with autoguides for
    other sites in an :class:`~pyro.infer.autoguide.AutoGuideList` (e.g. an ``AutoNormal`` for global
    sites), and it creates its plates as autoguides do: from the first call's trace, with the size of
    the data plates read from the observed values on each call (batches of any size), or from
    ``create_plates``. Inside an ``AutoGuideList`` the list's plates are used (pass ``create_plates``
    to the list for batches whose size varies).

    Example:

    >>> import pyro, pyro.distributions as dist, torch
    >>> from pyro.infer import SVI, Trace_ELBO
    >>> from pyro.optim import Adam
    >>> from pyro_diffvi.guides import GaussianGuide
    >>> def model(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    ...         pyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)
    >>> pyro.clear_param_store()
    >>> guide = GaussianGuide(model, "z", "x", hidden_dims=(16,))
    >>> svi = SVI(model, guide, Adam({"lr": 1e-2}), Trace_ELBO())
    >>> loss = svi.step(torch.randn(8, 2))
    >>> guide(torch.randn(3, 2))["z"].shape
    torch.Size([3, 2])

    :param model: the Pyro model.
    :param latent: name(s) of the latent sample site(s) this guide covers.
    :param observed: name(s) of the observed site(s) the encoder reads (their values, in this order).
    :param encoder: optional ``nn.Module`` called as ``encoder(*observed_values)`` on values of shape
        ``batch_shape + event_shape`` and returning a context of shape ``batch_shape + (C,)``. By
        default an MLP of the flattened, concatenated observed values (categorical observations are
        one-hot encoded).
    :param hidden_dims: hidden widths of the default encoder; the last one is the context width.
    :param activation: activation of the default encoder.
    :param observed_fn: optional ``observed_fn(*args, **kwargs)`` returning the full-size observed
        value(s), for models that transform their arguments before observing them. By default the
        values are located among the model's arguments on the first call.
    :param condition_on: name(s) of discrete sites (labels) the encoder also reads, one-hot encoded after
        the observed values: the observed label on labelled calls, the label a
        :class:`~pyro_diffvi.guides.ClassifierGuide` earlier in the same
        :class:`~pyro.infer.autoguide.AutoGuideList` drew (enumerated) on unlabelled ones. A user
        ``encoder`` receives them after the observed values.
    :param create_plates: optional ``create_plates(*args, **kwargs)`` returning a
        :class:`pyro.plate` or a sequence of them, as for Pyro's autoguides; needed when the model
        passes its own subsample indices (``pyro.plate(..., subsample=indices)``).
    :param name: prefix of the guide's parameter names in Pyro's param store (default: the class
        name). Give two guides of the same class in one param store different names.
    """

    def __init__(
        self,
        model: Callable,
        latent: str | Sequence[str],
        observed: str | Sequence[str],
        *,
        encoder: nn.Module | None = None,
        hidden_dims: Sequence[int] = (256, 256),
        activation: str = "relu",
        observed_fn: _ObservedFn | None = None,
        condition_on: str | Sequence[str] = (),
        create_plates: Callable | None = None,
        name: str | None = None,
    ) -> None:
        if not callable(model):
            raise TypeError(f"model must be callable, got {type(model).__name__}")
        if encoder is not None and not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
        if create_plates is not None and not callable(create_plates):
            raise TypeError(f"create_plates must be callable, got {type(create_plates).__name__}")
        check_widths("hidden_dims", hidden_dims)
        make_activation(activation)  # validates the name now rather than at the first call
        super().__init__(model, create_plates=create_plates)
        if name is not None:
            set_pyro_name(self, name)
        self._call_in_context = _CallInContext()
        self.latent_names = _as_names(latent, "latent")
        self.observed_names = _as_names(observed, "observed")
        if set(self.latent_names) & set(self.observed_names):
            raise ValueError("a site cannot be both latent and observed")
        self.condition_names = _as_names(condition_on, "condition_on") if condition_on else ()
        if set(self.condition_names) & (set(self.latent_names) | set(self.observed_names)):
            raise ValueError("condition_on sites must differ from the latent and observed sites")
        self.encoder = encoder
        self._user_encoder = encoder
        self._is_setup = False
        self._is_copy = self._warned_shared_names = False
        self._hidden_dims = tuple(int(h) for h in hidden_dims)
        self._activation = activation
        self._observed_fn = observed_fn

    @property
    def model(self) -> Callable | None:
        """The Pyro model (``None`` after unpickling a guide whose model could not be pickled)."""
        return self._model[0] if self._model is not None else None

    @model.setter
    def model(self, model: Callable) -> None:
        if not callable(model):
            raise TypeError(f"model must be callable, got {type(model).__name__}")
        self._model = (model,)  # a tuple keeps a PyroModule model out of this module's children

    # ---- saving ---------------------------------------------------------------------------------

    def __getstate__(self) -> dict:
        """Pickle/``torch.save`` state: the networks, shapes and training state; the model too when it can be
        pickled (a function defined at module level, a module), else it is left out with a warning."""
        state = dict(super(AutoGuide, self).__getstate__())  # AutoGuide's would clear this guide's model
        state.update(prototype_trace=None, master=None, plates={}, _is_copy=True, _warned_shared_names=False)
        model = self.model
        if model is not None and not isinstance(model, nn.Module):
            try:
                pickle.dumps(model)
            except Exception as error:
                warnings.warn(
                    f"{type(self).__name__}: the model could not be pickled ({error}); it is saved without it: "
                    "set guide.model = model after loading",
                    RuntimeWarning,
                )
                state["_model"] = None
        return state

    def __deepcopy__(self, memo: dict) -> AmortizedGuide:
        """A copy of the guide's networks and state that shares (does not copy) the model."""
        model = self.model
        if model is not None:
            memo.setdefault(id(model), model)
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        state = dict(self.__dict__, prototype_trace=None, master=None, plates={}, _is_copy=True, _warned_shared_names=False)
        new.__dict__.update(copy.deepcopy(state, memo))
        return new

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Restore a state saved by :meth:`state_dict`. The networks are built from the model's shapes on
        the guide's first call, so build them first: ``guide.setup(*model_args)`` (any batch of the
        training data), then ``guide.load_state_dict(...)``; or save the whole guide with ``torch.save``."""
        if not self._is_setup:
            raise RuntimeError(
                f"{type(self).__name__}.load_state_dict: the guide's networks are not built yet (they are built "
                "from the model's shapes on the first call). Call guide.setup(*model_args) with a batch of the "
                "data first, or save and load the whole guide with torch.save(guide) / torch.load"
            )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ---- set-up -------------------------------------------------------------------------------

    def _setup_prototype(self, *args, **kwargs) -> None:
        for key, value in list(enumerate(args)) + list(kwargs.items()):
            if type(value).__module__ == "numpy":
                raise TypeError(
                    f"model argument {key!r} is a numpy {type(value).__name__}; pass torch tensors "
                    "(torch.as_tensor(value)) to the model and guide"
                )
        self._modules_before = set(self._modules)
        try:
            with poutine.block():  # plates created while building are not the guide's sample sites
                self._trace_and_build(args, kwargs)
        except Exception:
            self._forget_setup()  # a failed set-up leaves nothing behind: the next call starts afresh
            raise
        finally:
            self.prototype_trace = None  # holds the first batch's values and autograd graph; not kept
        self._register_params()

    def _warn_shared_names(self, name: str) -> None:
        if not self._warned_shared_names:
            self._warned_shared_names = True
            warnings.warn(
                f"this copy of a {type(self).__name__} shares its param-store names (e.g. '{name}') with the "
                "guide it was copied from, which still holds them: it computes with its own parameters, but SVI "
                "would optimize the original's. To train the copy, call pyro.clear_param_store() first",
                RuntimeWarning,
            )

    def _forget_setup(self) -> None:
        self._is_setup = False
        store = pyro.get_param_store()
        stored = dict(store.named_parameters())
        for name, param in param_store_names(self).items():
            if stored.get(name) is param:
                del store[name]
        for attr in set(self._modules) - self._modules_before:
            delattr(self, attr)
        self.encoder = self._user_encoder

    def _trace_and_build(self, args: tuple, kwargs: dict) -> None:
        given = _GivenSubsamples()
        self.prototype_trace = poutine.block(poutine.trace(given(self.model)).get_trace)(*args, **kwargs)
        sites = self.prototype_trace.nodes
        self._check_sites(sites)
        self._check_condition_sites(sites)
        observed = [sites[n]["value"] for n in self.observed_names]
        for name, value in zip(self.observed_names, observed):
            check_finite(f"observed site '{name}'", value.float())
        # a likelihood that does not fit the observed values (e.g. a wrong feature width) fails here, once
        self.prototype_trace.compute_log_prob(lambda name, site: site["is_observed"])
        self.observed_event_shapes = {n: sites[n]["fn"].event_shape for n in self._input_names}
        self._num_classes = {n: _num_classes(sites[n]["fn"]) for n in self._input_names}
        self._set_latent_shapes(sites, args, kwargs)
        self._plates = self._plate_specs(sites)
        self._check_given_subsamples(given.names, args, kwargs)
        self._sources = self._locate_observed(sites, args, kwargs)
        context = self._build_encoder(observed + [sites[n]["value"] for n in self.condition_names])
        self._check_context_batch_shape(sites, context)
        self._build_posteriors()
        self._is_setup = True

    @property
    def _input_names(self) -> tuple[str, ...]:
        """The sites the encoder reads, in order: the observed ones, then the conditioning labels."""
        return self.observed_names + self.condition_names

    def _set_latent_shapes(self, sites: dict, args: tuple, kwargs: dict) -> None:
        """Shapes, supports and dtype of the latent sites, from the first call's trace of the model."""
        self.latent_event_shapes = {n: sites[n]["fn"].event_shape for n in self.latent_names}
        self._latent_supports = {n: _plain_support(sites[n]["fn"].support) for n in self.latent_names}
        self._unconstrained_shapes = {
            n: torch.Size(biject_to(self._latent_supports[n]).inverse_shape(self.latent_event_shapes[n]))
            for n in self.latent_names
        }
        self.latent_dims = {n: math.prod(s) for n, s in self._unconstrained_shapes.items()}
        self._latent_dtype = sites[self.latent_names[0]]["value"].dtype

    def _check_condition_sites(self, sites: dict) -> None:
        for name in self.condition_names:
            site = sites.get(name)
            if site is None or site["type"] != "sample" or _num_classes(site["fn"]) is None:
                raise ValueError(f"condition_on site '{name}' must be a Categorical sample site of the model")
            if self.master is None:
                raise ValueError(
                    f"condition_on=('{name}',) reads the label a ClassifierGuide draws: put a ClassifierGuide for "
                    f"'{name}' and then this guide in an AutoGuideList"
                )

    def _register_params(self) -> None:
        """Claim this guide's parameters, and adopt values that Pyro's param store already holds under
        their names (``pyro.get_param_store().load(...)`` before or after building the guide)."""
        if pyro.settings.get("module_local_params"):
            return
        store = pyro.get_param_store()
        stored = dict(store.named_parameters())
        for name, param in param_store_names(self).items():
            _claim(param, self)
            value = stored.get(name)
            if value is None or value is param:
                continue
            if _claimed_by_other(value, self):
                if self._is_copy:
                    self._warn_shared_names(name)
                    continue
                raise ValueError(
                    f"Pyro's param store already holds '{name}' for another guide of this name: SVI would optimize "
                    "that guide's parameters instead of this one's. Call pyro.clear_param_store() before building "
                    "a new guide, or give it another name= (to resume training, restore the guide with "
                    "load_state_dict, or load a saved param store before the first call)"
                )
            if value.shape != param.shape:
                raise ValueError(
                    f"Pyro's param store holds '{name}' with shape {tuple(value.shape)}, but this guide's parameter "
                    f"has shape {tuple(param.shape)}: the store was saved from a differently built guide; clear it "
                    "or build the guide as it was when the store was saved"
                )
            with torch.no_grad():
                param.copy_(value)
            store[name] = param  # an unconstrained parameter is stored as is: the store now holds ours

    def _check_sites(self, sites: dict) -> None:
        samples = {n for n, s in sites.items() if s["type"] == "sample"}
        for name in self.latent_names:
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
            if not any(f.vectorized for f in site["cond_indep_stack"]):
                raise ValueError(
                    f"latent site '{name}' is global (outside every plate); an amortized guide covers local "
                    "latents only: guide global sites with an AutoGuide and combine them with AutoGuideList"
                )
            if any(not f.vectorized for f in site["cond_indep_stack"]):
                raise NotImplementedError(f"latent site '{name}' is in a sequential plate; use vectorized plates")
        for name in self.observed_names:
            if name not in samples or not sites[name]["is_observed"]:
                observed = sorted(n for n in samples if sites[n]["is_observed"])
                raise ValueError(f"observed site '{name}' is not an observed sample site; observed sites: {observed}")

    def _locate_observed(self, sites: dict, args: tuple, kwargs: dict) -> dict[str, _ObservedSource] | None:
        if self._observed_fn is not None:
            values = self._call_observed_fn(args, kwargs)
            for name, value in zip(self.observed_names, values):
                expected = sites[name]["fn"].event_shape
                if value.shape[value.dim() - len(expected) :] != expected:
                    raise ValueError(
                        f"observed_fn returned shape {tuple(value.shape)} for site '{name}', whose event "
                        f"shape is {tuple(expected)}"
                    )
            return None
        sources = {}
        for name in self.observed_names:
            source = self._find_source(sites, name, args, kwargs)
            if source is None:
                raise ValueError(
                    f"could not find the value observed at site '{name}' among the model's tensor arguments; "
                    "pass observed_fn=lambda *args, **kwargs: <the full observed tensor> to the guide"
                )
            sources[name] = source
        return sources

    def _find_source(self, sites: dict, name: str, args: tuple, kwargs: dict) -> _ObservedSource | None:
        """Where the value of site ``name`` in the first call's trace lies among the model's tensor arguments."""
        candidates = [(k, a) for k, a in list(enumerate(args)) + list(kwargs.items()) if torch.is_tensor(a)]
        indices = {n: site["value"] for n, site in sites.items() if site["type"] == "sample"}  # plates' too
        return next((s for k, a in candidates if (s := self._match(sites, indices, name, k, a))), None)

    @staticmethod
    def _match(sites: dict, indices: dict, name: str, key: int | str, arg: torch.Tensor) -> _ObservedSource | None:
        site = sites[name]
        value, event_dim = site["value"], site["fn"].event_dim
        if arg is value or (arg.shape == value.shape and torch.equal(arg, value)):
            return _ObservedSource(key, ())
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
            return _ObservedSource(key, tuple(subsampled))
        return None

    def _plate_specs(self, sites: dict) -> list[_PlateSpec]:
        observed_frames = {f.name for n in self.observed_names for f in sites[n]["cond_indep_stack"]}
        frames = {f.name: f for n in self.latent_names for f in sites[n]["cond_indep_stack"]}
        if not set(frames) & observed_frames:
            raise ValueError(
                f"latent sites {self.latent_names} share no plate with observed sites {self.observed_names}; "
                "an amortized guide needs a data plate common to both"
            )
        specs = []
        for f in sorted(frames.values(), key=lambda f: f.dim):
            size = f.full_size or f.size
            subsample_size = f.size if f.size != size else None
            specs.append(_PlateSpec(f.name, f.dim, size, subsample_size, self._plate_size_source(sites, f)))
        return specs

    def _plate_size_source(self, sites: dict, frame) -> tuple[int, int] | None:
        """The observed site and tensor dim whose full-size value has the plate's size on every call."""
        for index, name in enumerate(self.observed_names):
            site = sites[name]
            if frame in site["cond_indep_stack"]:
                dim = frame.dim - site["fn"].event_dim
                if -dim <= site["value"].dim() and site["value"].shape[dim] == frame.size:
                    return index, dim
        return None

    def _check_given_subsamples(self, given: set[str], args: tuple, kwargs: dict) -> None:
        missing = sorted(given & {p.name for p in self._plates} - set(self._given_plates(args, kwargs)))
        if missing:
            raise ValueError(
                f"the model passes its own subsample indices to plate(s) {missing} (pyro.plate(..., subsample=...)); "
                "as for Pyro's autoguides, pass the same plate(s) to the guide: "
                "create_plates=lambda *args, **kwargs: pyro.plate(name, size, subsample=indices)"
            )

    def _given_plates(self, args: tuple, kwargs: dict) -> dict[str, pyro.plate]:
        """The plates the user gives: ``create_plates``' (or, inside an AutoGuideList, the list's)."""
        if self.master is not None:  # the list's plates, once it has created them (a part may be set up first)
            return dict(getattr(self.master(), "plates", None) or {})
        if self.create_plates is None:
            return {}
        plates = self.create_plates(*args, **kwargs)
        plates = [plates] if isinstance(plates, pyro.plate) else list(plates)
        if not all(isinstance(p, pyro.plate) for p in plates):
            raise TypeError("create_plates must return a pyro.plate or a sequence of pyro.plate")
        return {p.name: p for p in plates}

    def _create_plates(self, *args, **kwargs) -> dict[str, pyro.plate]:
        """The plates of this call (see :meth:`_plates_for_call`)."""
        return self._plates_for_call(args, kwargs, self.observed_values(*args, **kwargs))

    def _open_plates(self, stack: ExitStack, args: tuple, kwargs: dict, observed: list[torch.Tensor]) -> dict:
        """Enter this call's plates of the latent sites on ``stack``; return their (subsample) indices."""
        plates = self._plates_for_call(args, kwargs, observed)
        return {p.name: stack.enter_context(plates[p.name]) for p in self._plates}

    def _plates_for_call(self, args: tuple, kwargs: dict, observed: list[torch.Tensor]) -> dict[str, pyro.plate]:
        """The given plates, and for the others the first call's plates with the size of the data plates read
        from this call's full-size ``observed`` values."""
        self.plates = self._given_plates(args, kwargs)
        for p in self._plates:
            if p.name in self.plates:
                continue
            size = p.size
            if p.size_source is not None:
                index, dim = p.size_source
                size = observed[index].shape[dim]
            subsample_size = None if p.subsample_size is None else min(p.subsample_size, size)
            self.plates[p.name] = pyro.plate(p.name, size, subsample_size=subsample_size, dim=p.dim)
        return self.plates

    def _build_encoder(self, observed: list[torch.Tensor]):
        """Build the default encoder if none was given; return the context of ``observed``."""
        ref = observed[0]
        dtype = self._latent_dtype  # the model's dtype, which the guide's draws must have (not the data's)
        if self.encoder is None:
            width = self._encoder_features(observed, dtype).shape[-1]
            *hidden, out = self._hidden_dims
            self.encoder = nn.Sequential(
                MLP(width, out, hidden, self._activation),
                make_activation(self._activation),
            ).to(device=ref.device, dtype=dtype)
            self._default_encoder = True
        else:
            self._default_encoder = False
        with torch.no_grad():
            context = self.context(*observed)
        if isinstance(context, tuple):
            self.context_dim = None
        else:
            batch_shape = self._batch_shape(observed)
            if context.shape[:-1] != batch_shape:
                raise ValueError(
                    f"encoder output must have shape batch_shape + (C,) = {tuple(batch_shape)} + (C,), "
                    f"got {tuple(context.shape)}"
                )
            self.context_dim = context.shape[-1]
        return context

    def _check_context_batch_shape(self, sites: dict, context) -> None:
        if self.context_dim is None:
            return
        context_shape = context.shape[:-1]
        for name in self.latent_names:
            fn = sites[name]["fn"]
            latent_shape = sites[name]["value"].shape[: sites[name]["value"].dim() - fn.event_dim]
            if not _broadcasts_to(context_shape, latent_shape):
                latent_plates = {f.name for f in sites[name]["cond_indep_stack"]}
                extra = sorted(
                    {f.name for n in self.observed_names for f in sites[n]["cond_indep_stack"]} - latent_plates
                )
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

    def _build_posteriors(self) -> None:
        """Create the subclass's networks; ``self.context_dim`` and ``self.latent_dims`` are known."""
        raise NotImplementedError

    def _like_encoder(self, module: nn.Module) -> nn.Module:
        """``module`` moved to the device and dtype of the encoder's parameters."""
        param = next(self.encoder.parameters())
        return module.to(device=param.device, dtype=param.dtype)

    def _require_context_tensor(self) -> None:
        if self.context_dim is None:
            raise ValueError(f"{type(self).__name__} needs an encoder returning one context tensor, not a (loc, scale) tuple")

    # ---- per call -----------------------------------------------------------------------------

    def posterior(self, name: str, context) -> dist.TorchDistribution:
        """The variational distribution of latent ``name`` given the encoder's ``context``.

        :return: a distribution with ``batch_shape == context.shape[:-1]`` and
            ``event_shape == (self.latent_dims[name],)`` (the flattened latent, unconstrained).
        """
        raise NotImplementedError

    exact_density: bool = False
    """Whether ``posterior(...).log_prob`` is the exact log density of the guide's draws, so that a sleep
    phase can train the guide by the forward KL (:class:`~pyro_diffvi.infer.WakeSleepStart`)."""

    def simulated_context(self, model_trace: poutine.Trace):
        """The context of the observed values (and ``condition_on`` labels) in a trace of the model
        (draws of ``poutine.uncondition(model)``, detached), for a sleep phase."""
        return self.context(*(model_trace.nodes[n]["value"].detach() for n in self._input_names))

    def sleep_log_prob(self, model_trace: poutine.Trace) -> torch.Tensor:
        r""":math:`\sum_n \log q_\phi(z_n|x_n)` at the draws :math:`(x_n, z_n)` of a model trace (detached),
        summed over this guide's latent sites with their data-plate scales: minus the sleep loss of the
        classic wake-sleep algorithm (Hinton et al. 1995), the forward KL's guide term. Needs an exact
        density (``exact_density``); the networks used are registered with Pyro's param store.

        :param model_trace: a trace of ``poutine.uncondition(model)``.
        :return: a scalar tensor.
        """
        if not self.exact_density:
            raise TypeError(f"{type(self).__name__} has no exact log density for a sleep phase")
        return self.call_in_context(self._sleep_log_prob, model_trace)

    def _sleep_log_prob(self, model_trace: poutine.Trace) -> torch.Tensor:
        context = self.simulated_context(model_trace)
        total = 0.0
        for name in self.latent_names:
            site = model_trace.nodes[name]
            y = self.flatten_latent(name, site["value"].detach())
            total = total + (self.posterior(name, context).log_prob(y) * site["scale"]).sum()
        return torch.as_tensor(total)

    def context(self, *observed_values: torch.Tensor):
        """Encode observed values (shapes ``batch_shape + event_shape``) into the context."""
        if self._default_encoder:
            dtype = next(self.encoder.parameters()).dtype
            return self.encoder(self._encoder_features(list(observed_values), dtype))
        return self.encoder(*observed_values)

    def observed_values(self, *args, **kwargs) -> list[torch.Tensor]:
        """The full-size observed values for the model arguments ``args, kwargs`` (not subsampled)."""
        self._ensure_setup(args, kwargs)
        if self._sources is None:
            return self._call_observed_fn(args, kwargs)
        return [
            args[s.position] if isinstance(s.position, int) else kwargs[s.position]
            for s in (self._sources[n] for n in self.observed_names)
        ]

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        self.setup(*args, **kwargs)
        observed = self.observed_values(*args, **kwargs)
        self._check_observed(observed)
        with ExitStack() as stack:
            indices = self._open_plates(stack, args, kwargs, observed)
            observed = [self._subsample(n, v, indices) for n, v in zip(self.observed_names, observed)]
            context = self.context(*observed, *self._condition_values())
            return {name: pyro.sample(name, self._site_distribution(name, context)) for name in self.latent_names}

    def _condition_values(self) -> list[torch.Tensor]:
        """This call's values of the ``condition_on`` labels, published by the ClassifierGuide before this guide."""
        if not self.condition_names:
            return []
        published = _PUBLISHED.get(self.master(), {})
        missing = [n for n in self.condition_names if n not in published]
        if missing:
            raise RuntimeError(
                f"no value of {missing} in this call: a ClassifierGuide for them must come before this guide in "
                "the AutoGuideList"
            )
        return [published[n] for n in self.condition_names]

    def _publish(self, name: str, value: torch.Tensor) -> None:
        """Make this call's value of site ``name`` available to the later parts of the AutoGuideList."""
        if self.master is not None:
            _PUBLISHED.setdefault(self.master(), {})[name] = value

    def _check_observed(self, observed: list[torch.Tensor]) -> None:
        """Every call: the observed values have the event shapes the guide was built for, and are finite."""
        for name, value in zip(self.observed_names, observed):
            expected = self.observed_event_shapes[name]
            if value.shape[value.dim() - len(expected) :] != expected:
                raise ValueError(
                    f"observed site '{name}' has shape {tuple(value.shape)}, but the guide was built on its first "
                    f"call for event shape {tuple(expected)}; build a new guide for data of another shape"
                )
        floats = [v for v in observed if v.dtype.is_floating_point]
        if floats and not bool(torch.stack([torch.isfinite(v).all() for v in floats]).all()):  # one host sync
            for name, value in zip(self.observed_names, observed):
                check_finite(f"observed site '{name}'", value.float())

    def _ensure_setup(self, args: tuple, kwargs: dict) -> None:
        if self.model is None:
            raise RuntimeError(
                "this guide was unpickled without its model (the model could not be pickled); "
                "set guide.model = model before using it"
            )
        if not self._is_setup:
            self._setup_prototype(*args, **kwargs)

    def setup(self, *args, **kwargs) -> None:
        """Trace the model on these arguments and build the networks now, if not done yet (the first
        call does it otherwise), and make sure Pyro's param store holds this guide's parameters (adopting
        values loaded into the store with ``pyro.get_param_store().load``)."""
        self._ensure_setup(args, kwargs)
        self._register_params()

    def call_in_context(self, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)`` with the guide's parameters registered with Pyro's param store as they
        are used, as inside the guide's own call: objectives that use the guide's networks outside a call
        of the guide (a sleep phase) go through it, so that ``SVI`` sees and optimizes them."""
        return self._call_in_context(fn, *args, **kwargs)

    def flatten_latent(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """A model value of latent ``name`` mapped to the guide's flattened unconstrained space."""
        event_dim = len(self.latent_event_shapes[name])
        batch_shape = value.shape[: value.dim() - event_dim]
        value = biject_to(self._latent_supports[name]).inv(value)
        return value.reshape(batch_shape + (self.latent_dims[name],))

    def _subsample(self, name: str, value: torch.Tensor, indices: dict) -> torch.Tensor:
        return value if self._sources is None else _select(self._sources[name], value, indices)

    def _site_distribution(self, name: str, context) -> dist.TorchDistribution:
        fn = self.posterior(name, context)
        transforms = []
        shape = self._unconstrained_shapes[name]
        if shape != (self.latent_dims[name],):
            transforms.append(ReshapeTransform((self.latent_dims[name],), shape, cache_size=1))
        support = self._latent_supports[name]
        if not _is_unconstrained(support):
            transforms.append(biject_to(support).with_cache(1))
        return dist.TransformedDistribution(fn, transforms) if transforms else fn

    # ---- helpers ------------------------------------------------------------------------------

    def _call_observed_fn(self, args: tuple, kwargs: dict) -> list[torch.Tensor]:
        values = self._observed_fn(*args, **kwargs)
        values = [values] if torch.is_tensor(values) else list(values)
        if len(values) != len(self.observed_names) or not all(torch.is_tensor(v) for v in values):
            raise ValueError(
                f"observed_fn must return {len(self.observed_names)} tensor(s), one per observed site "
                f"{self.observed_names}, got {len(values)} value(s)"
            )
        return values

    def _batch_shape(self, inputs: list[torch.Tensor]) -> torch.Size:
        """The broadcast batch shape of the encoder's inputs (an enumerated label adds its dimension)."""
        return torch.broadcast_shapes(
            *(v.shape[: v.dim() - len(self.observed_event_shapes[n])] for n, v in zip(self._input_names, inputs))
        )

    def _encoder_features(self, inputs: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        batch_shape = self._batch_shape(inputs)
        parts = []
        for name, value in zip(self._input_names, inputs):
            own_batch = value.shape[: value.dim() - len(self.observed_event_shapes[name])]
            if self._num_classes[name] is not None:
                value = nn.functional.one_hot(value.long(), self._num_classes[name])
            parts.append(value.to(dtype).reshape(*own_batch, -1).expand(*batch_shape, -1))
        return torch.cat(parts, dim=-1)
