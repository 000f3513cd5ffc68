"""The amortized, model-aware guide that every guide of :mod:`pyro_diffvi.guides` derives from: it traces the model
once (its structure discovery is :mod:`~pyro_diffvi.guides.structure`), builds an encoder and the subclass's
posterior networks (their param-store ownership is :mod:`~pyro_diffvi.guides.ownership`), then emits the model's
latent sites on every call."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoGuide
from pyro.nn import PyroModule
from torch import nn
from torch.distributions import biject_to

from pyro_diffvi._pyro_compat import set_pyro_name
from pyro_diffvi.guides.ownership import copied_guide, pickled_state, register_params, release_params
from pyro_diffvi.guides.protocols import publish_label, published_labels
from pyro_diffvi.guides.structure import (
    GivenSubsamples,
    ObservedFn,
    ObservedSource,
    as_names,
    call_observed_fn,
    call_plates,
    check_context_batch_shape,
    check_given_subsamples,
    check_observed_values,
    check_sites,
    constrained,
    encoder_features,
    input_batch_shape,
    locate_observed,
    num_classes,
    plain_support,
    plate_specs,
    select,
    site_bijection,
    user_plates,
)
from pyro_diffvi.nn import MLP
from pyro_diffvi.nn import activation as make_activation
from pyro_diffvi.util import check_finite, check_widths

__all__ = ["AmortizedGuide"]


class _CallInContext(PyroModule):
    """Calls a function inside the owning guide's Pyro context (a child shares its root's), so that
    the guide's parameters used there are registered with Pyro's param store, as in the guide's own call."""

    def forward(self, fn: Callable, *args, **kwargs):
        return fn(*args, **kwargs)


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
    >>> guide = GaussianGuide(model, "z", "x", encoder_hidden_dims=(16,))
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
    :param encoder_hidden_dims: hidden widths of the default encoder; the last one is the context width.
    :param encoder_activation: activation of the default encoder.
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
        encoder_hidden_dims: Sequence[int] = (256, 256),
        encoder_activation: str = "relu",
        observed_fn: ObservedFn | None = None,
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
        check_widths("encoder_hidden_dims", encoder_hidden_dims)
        make_activation(encoder_activation, argument="encoder_activation")  # now rather than at the first call
        super().__init__(model, create_plates=create_plates)
        if name is not None:
            set_pyro_name(self, name)
        self._call_in_context = _CallInContext()
        self.latent_names = as_names(latent, "latent")
        self.observed_names = as_names(observed, "observed")
        if set(self.latent_names) & set(self.observed_names):
            raise ValueError("a site cannot be both latent and observed")
        self.condition_names = as_names(condition_on, "condition_on") if condition_on else ()
        if set(self.condition_names) & (set(self.latent_names) | set(self.observed_names)):
            raise ValueError("condition_on sites must differ from the latent and observed sites")
        self.encoder = encoder
        self._user_encoder = encoder
        self._is_setup = False
        self._is_copy = self._warned_shared_names = False
        self._encoder_hidden_dims = tuple(int(h) for h in encoder_hidden_dims)
        self._encoder_activation = encoder_activation
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
        return pickled_state(self, super(AutoGuide, self).__getstate__())  # AutoGuide's would clear the model

    def __deepcopy__(self, memo: dict) -> AmortizedGuide:
        """A copy of the guide's networks and state that shares (does not copy) the model."""
        return copied_guide(self, memo)

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

    def _forget_setup(self) -> None:
        self._is_setup = False
        release_params(self)
        for attr in set(self._modules) - self._modules_before:
            delattr(self, attr)
        self.encoder = self._user_encoder

    def _trace_and_build(self, args: tuple, kwargs: dict) -> None:
        given = GivenSubsamples()
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
        self._num_classes = {n: num_classes(sites[n]["fn"]) for n in self._input_names}
        self._set_latent_shapes(sites, args, kwargs)
        self._plates = plate_specs(sites, self.latent_names, self.observed_names)
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
        self._latent_supports = {n: plain_support(sites[n]["fn"].support) for n in self.latent_names}
        self._unconstrained_shapes = {
            n: torch.Size(site_bijection(n, self._latent_supports[n]).inverse_shape(self.latent_event_shapes[n]))
            for n in self.latent_names
        }
        self.latent_dims = {n: math.prod(s) for n, s in self._unconstrained_shapes.items()}
        self._latent_dtype = sites[self.latent_names[0]]["value"].dtype

    def _check_condition_sites(self, sites: dict) -> None:
        for name in self.condition_names:
            site = sites.get(name)
            if site is None or site["type"] != "sample" or num_classes(site["fn"]) is None:
                raise ValueError(f"condition_on site '{name}' must be a Categorical sample site of the model")
            if self.master is None:
                raise ValueError(
                    f"condition_on=('{name}',) reads the label a ClassifierGuide draws: put a ClassifierGuide for "
                    f"'{name}' and then this guide in an AutoGuideList"
                )

    def _register_params(self) -> None:
        """Claim this guide's parameters, and adopt values that Pyro's param store already holds under
        their names (``pyro.get_param_store().load(...)`` before or after building the guide)."""
        register_params(self)

    def _check_sites(self, sites: dict) -> None:
        check_sites(sites, self.latent_names, self.observed_names)

    def _locate_observed(self, sites: dict, args: tuple, kwargs: dict) -> dict[str, ObservedSource] | None:
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
        return locate_observed(sites, self.observed_names, args, kwargs)

    def _check_given_subsamples(self, given: set[str], args: tuple, kwargs: dict) -> None:
        check_given_subsamples(given, self._plates, self._given_plates(args, kwargs))

    def _given_plates(self, args: tuple, kwargs: dict) -> dict[str, pyro.plate]:
        """The plates the user gives: ``create_plates``' (or, inside an AutoGuideList, the list's)."""
        if self.master is not None:  # the list's plates, once it has created them (a part may be set up first)
            return dict(getattr(self.master(), "plates", None) or {})
        return user_plates(self.create_plates, args, kwargs)

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
        self.plates = call_plates(self._plates, self._given_plates(args, kwargs), observed)
        return self.plates

    def _build_encoder(self, observed: list[torch.Tensor]):
        """Build the default encoder if none was given; return the context of ``observed``."""
        ref = observed[0]
        dtype = self._latent_dtype  # the model's dtype, which the guide's draws must have (not the data's)
        if self.encoder is None:
            width = self._encoder_features(observed, dtype).shape[-1]
            *hidden, out = self._encoder_hidden_dims
            self.encoder = nn.Sequential(
                MLP(width, out, hidden_dims=hidden, activation=self._encoder_activation),
                make_activation(self._encoder_activation),
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
        if self.context_dim is not None:
            check_context_batch_shape(sites, self.latent_names, self.observed_names, context)

    def _build_posteriors(self) -> None:
        """Create the subclass's networks; ``self.context_dim`` and ``self.latent_dims`` are known."""
        raise NotImplementedError

    def _like_encoder(self, module: nn.Module) -> nn.Module:
        """``module`` moved to the device and dtype of the encoder's parameters."""
        param = next(self.encoder.parameters())
        return module.to(device=param.device, dtype=param.dtype)

    def _require_context_tensor(self) -> None:
        if self.context_dim is None:
            raise ValueError(
                f"{type(self).__name__} needs an encoder returning one context tensor, not a (loc, scale) tuple"
            )

    # ---- per call -----------------------------------------------------------------------------

    def posterior(self, name: str, context) -> dist.TorchDistribution:
        """The variational distribution of latent ``name`` given the encoder's ``context``.

        :return: a distribution with ``batch_shape == context.shape[:-1]`` and
            ``event_shape == (self.latent_dims[name],)`` (the flattened latent, unconstrained).
        """
        raise NotImplementedError

    exact_density: bool = False
    """Whether ``posterior(...).log_prob`` is the exact log density of the guide's draws, so that a sleep
    phase can train the guide by the forward KL (:class:`~pyro_diffvi.infer.WakeSleepStartLoss`)."""

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
            self._on_context(context)
            return {name: pyro.sample(name, self._site_distribution(name, context)) for name in self.latent_names}

    def _on_context(self, context) -> None:
        """Called with each call's context before the sites are emitted (for objectives that need more of it)."""

    def _condition_values(self) -> list[torch.Tensor]:
        """This call's values of the ``condition_on`` labels, published by the ClassifierGuide before this guide."""
        if not self.condition_names:
            return []
        published = published_labels(self.master())
        missing = [n for n in self.condition_names if n not in published]
        if missing:
            raise RuntimeError(f"no value of {missing} in this call: a ClassifierGuide for them must come first")
        return [published[n] for n in self.condition_names]

    def _publish(self, name: str, value: torch.Tensor) -> None:
        """Make this call's value of site ``name`` available to the later parts of the AutoGuideList."""
        if self.master is not None:
            publish_label(self.master(), name, value)

    def _check_observed(self, observed: list[torch.Tensor]) -> None:
        """Every call: the observed values have the event shapes the guide was built for, and are finite."""
        check_observed_values(self.observed_names, observed, self.observed_event_shapes)

    def _ensure_setup(self, args: tuple, kwargs: dict) -> None:
        if self.model is None:
            raise RuntimeError("this guide was unpickled without its model: set guide.model = model before using it")
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
        return value if self._sources is None else select(self._sources[name], value, indices)

    def _site_distribution(self, name: str, context) -> dist.TorchDistribution:
        shape, support = self._unconstrained_shapes[name], self._latent_supports[name]
        return constrained(self.posterior(name, context), self.latent_dims[name], shape, support)

    # ---- helpers ------------------------------------------------------------------------------

    def _call_observed_fn(self, args: tuple, kwargs: dict) -> list[torch.Tensor]:
        return call_observed_fn(self._observed_fn, self.observed_names, args, kwargs)

    def _batch_shape(self, inputs: list[torch.Tensor]) -> torch.Size:
        """The broadcast batch shape of the encoder's inputs (an enumerated label adds its dimension)."""
        return input_batch_shape(self._input_names, inputs, self.observed_event_shapes)

    def _encoder_features(self, inputs: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        return encoder_features(self._input_names, inputs, self.observed_event_shapes, self._num_classes, dtype)
