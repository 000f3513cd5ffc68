r"""An amortized classifier guide for a discrete label of a semi-supervised Pyro model (the M2 model of
Kingma et al. 2014 and the semi-supervised DDVI of the DDVI paper, Sec. 4.1).

In the model the label :math:`l` is observed for labelled data and latent for unlabelled data; the
guide :math:`q_\phi(l|x) = \mathrm{Categorical}(\mathrm{softmax}(h_\phi(x)))` emits it only when it
is latent, marked for parallel enumeration, so :class:`~pyro.infer.TraceEnum_ELBO` (and
:class:`~pyro_diffvi.infer.DDVI_ELBO`) sum over every label exactly:

.. math::

    \mathcal U(x) = \sum_l q_\phi(l|x)\,\mathcal L(x, l) + \mathcal H\big(q_\phi(\cdot|x)\big)
    \;\le\; \log p(x),

where :math:`\mathcal L(x, l)` is the labelled bound with the continuous guide conditioned on
:math:`l`. (The DDVI paper's Eq. for :math:`\mathcal U_{\mathrm{semi}}` prints
:math:`+\mathrm{KL}(q(l|x)\,\|\,p(l))`; the bound has it with a minus sign, which is what the
enumerated ELBO computes: :math:`\mathbb E_q[\log p(l)] + \mathcal H(q) = -\mathrm{KL}(q\|p)`.)

References: D. P. Kingma, D. J. Rezende, S. Mohamed, M. Welling. *Semi-supervised Learning with Deep
Generative Models*. NeurIPS 2014. W. T. Piriyakulkij, Y. Wang, V. Kuleshov. *Denoising Diffusion
Variational Inference: Diffusion Models as Expressive Variational Posteriors*. arXiv:2401.02739, 2024.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from contextlib import ExitStack

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_diffvi.guides.amortized import AmortizedGuide
from pyro_diffvi.guides.structure import ObservedSource, find_source, num_classes, select
from pyro_diffvi.util import trace_until


class ClassifierGuide(AmortizedGuide):
    r"""Amortized guide :math:`q_\phi(l|x)` for a Categorical label site that is observed in some calls of
    the model (labelled data) and latent in others (unlabelled data, ``obs=None``).

    On an unlabelled call it emits the label with ``infer={"enumerate": "parallel"}``; on a labelled call
    it emits nothing. Either way it publishes this call's label to the later parts of its
    :class:`~pyro.infer.autoguide.AutoGuideList`, so that a continuous guide built with
    ``condition_on="y"`` reads it (one-hot) as context: :math:`q(z|x, l)`.

    Whether a call is labelled is read from the model's arguments, without running the model: the label
    argument is found on the first call (the tensor equal to the observed label, or else the one argument
    that is ``None``), or given by ``label_fn(*args, **kwargs)`` (a tensor, or ``None`` for unlabelled). A
    model with no argument for the label (a cluster assignment, never observed) is unlabelled on every call.

    Example (the semi-supervised model of the DDVI paper, Sec. 4.1, on toy data):

    >>> import pyro, pyro.distributions as dist, torch
    >>> from pyro.infer import SVI, TraceEnum_ELBO
    >>> from pyro.infer.autoguide import AutoGuideList
    >>> from pyro.optim import Adam
    >>> from pyro_diffvi.guides import ClassifierGuide, GaussianGuide
    >>> from pyro_diffvi.priors import Pinwheel
    >>> prior = Pinwheel(num_components=3)
    >>> def model(x, y=None):
    ...     with pyro.plate("data", x.shape[0]):
    ...         y = pyro.sample("y", dist.Categorical(logits=torch.zeros(3)), obs=y)
    ...         z = pyro.sample("z", prior.component(y))          # each label owns one arm
    ...         pyro.sample("x", dist.Normal(z, 0.1).to_event(1), obs=x)
    >>> guide = AutoGuideList(model)
    >>> guide.append(ClassifierGuide(model, "y", "x"))
    >>> guide.append(GaussianGuide(model, "z", "x", condition_on="y"))
    >>> elbo = TraceEnum_ELBO(max_plate_nesting=1, strict_enumeration_warning=False)
    >>> svi = SVI(model, guide, Adam({"lr": 1e-2}), elbo)
    >>> x, y = torch.randn(8, 2), torch.randint(0, 3, (8,))
    >>> labelled, unlabelled = svi.step(x, y), svi.step(x)
    >>> guide[0].probs(x).shape
    torch.Size([8, 3])

    :param model: the Pyro model.
    :param latent: the label site (a ``Categorical`` inside the data plate).
    :param observed: the observed site(s) the classifier reads.
    :param label_fn: optional ``label_fn(*args, **kwargs)`` returning this call's full-size labels, or
        ``None`` when the call is unlabelled.

    The other parameters (``encoder``, ``encoder_hidden_dims``, ``encoder_activation``, ``observed_fn``,
    ``create_plates``, ``name``) are those of :class:`~pyro_diffvi.guides.AmortizedGuide`.
    """

    def __init__(self, model, latent: str, observed, *, label_fn: Callable | None = None, **kwargs) -> None:
        if not isinstance(latent, str):
            raise TypeError(f"latent must be the name of one label site, got {latent!r}")
        if label_fn is not None and not callable(label_fn):
            raise TypeError(f"label_fn must be callable, got {type(label_fn).__name__}")
        if kwargs.get("condition_on"):
            raise ValueError("a ClassifierGuide does not take condition_on")
        super().__init__(model, latent, observed, **kwargs)
        self._label_fn = label_fn

    @property
    def label_name(self) -> str:
        return self.latent_names[0]

    # ---- set-up ---------------------------------------------------------------------------------

    def _ensure_setup(self, args: tuple, kwargs: dict) -> None:
        if not self._is_setup and self.model is not None:
            self._check_first_labels(args, kwargs)
        super()._ensure_setup(args, kwargs)

    def _check_first_labels(self, args: tuple, kwargs: dict) -> None:
        """Before the first call's full trace of the model: its observed labels against its Categorical's number of
        classes, since a label out of range fails inside the model (an index or ``one_hot`` error) otherwise."""
        try:
            site = trace_until(self.model, [self.label_name], *args, **kwargs).nodes.get(self.label_name)
        except Exception:  # noqa: BLE001 - the full trace that follows reports the model's own errors
            return
        k = None if site is None or site["type"] != "sample" else num_classes(site["fn"])
        if k is not None and site["is_observed"]:
            self._check_labels(site["value"], k)

    def _check_sites(self, sites: dict) -> None:
        name = self.label_name
        site = sites.get(name)
        if site is None or site["type"] != "sample" or num_classes(site["fn"]) is None:
            raise ValueError(f"label site '{name}' must be a Categorical sample site of the model")
        if not any(f.vectorized for f in site["cond_indep_stack"]):
            raise ValueError(f"label site '{name}' must be inside the data plate")
        for observed in self.observed_names:
            if observed not in sites or not sites[observed]["is_observed"]:
                raise ValueError(f"observed site '{observed}' is not an observed sample site")

    def _set_latent_shapes(self, sites: dict, args: tuple, kwargs: dict) -> None:
        site = sites[self.label_name]
        self.num_classes = num_classes(site["fn"])
        self.latent_event_shapes = {self.label_name: torch.Size()}
        self.latent_dims = {self.label_name: self.num_classes}
        observed = sites[self.observed_names[0]]["value"]
        self._latent_dtype = observed.dtype if observed.dtype.is_floating_point else torch.get_default_dtype()
        self._label_source = None if self._label_fn is not None else self._locate_label(site, args, kwargs)
        self._label_index = self._positional_index(self._label_source)

    def _locate_label(self, site: dict, args: tuple, kwargs: dict) -> ObservedSource | None:
        if site["is_observed"]:
            source = find_source(self.prototype_trace.nodes, self.label_name, args, kwargs)
        else:
            nones = self._none_arguments(args, kwargs)
            if not nones:  # the model has no argument for the label: it is always latent (clustering)
                return None
            source = None
            if len(nones) == 1:
                dims = tuple(
                    (f.name, site["value"].dim() + f.dim)
                    for f in site["cond_indep_stack"]
                    if f.full_size is not None and f.full_size != f.size
                )
                source = ObservedSource(nones[0], dims)
        if source is None:
            raise ValueError(
                f"could not tell which model argument holds the labels of site '{self.label_name}' (the tensor "
                "equal to the observed labels, or the one argument that is None); pass "
                "label_fn=lambda *args, **kwargs: <the labels, or None when unlabelled>"
            )
        return source

    def _positional_index(self, source: ObservedSource | None) -> int | None:
        """The position at which a label passed by name could also be passed positionally."""
        if source is None or isinstance(source.position, int):
            return None
        try:
            names = list(inspect.signature(self.model).parameters)
        except (TypeError, ValueError):
            return None
        return names.index(source.position) if source.position in names else None

    def _none_arguments(self, args: tuple, kwargs: dict) -> list[int | str]:
        """The model's arguments that are ``None`` in this call (defaults included), by position or name."""
        try:
            bound = inspect.signature(self.model).bind(*args, **kwargs)
        except (TypeError, ValueError):
            return [k for k, a in list(enumerate(args)) + list(kwargs.items()) if a is None]
        bound.apply_defaults()
        positional = list(bound.signature.parameters)[: len(args)]
        return [
            positional.index(name) if name in positional else name
            for name, value in bound.arguments.items()
            if value is None
        ]

    def _build_posteriors(self) -> None:
        self._require_context_tensor()
        self.head = self._like_encoder(nn.Linear(self.context_dim, self.num_classes))

    # ---- per call -------------------------------------------------------------------------------

    def labels(self, *args, **kwargs) -> torch.Tensor | None:
        """This call's full-size labels, or ``None`` for an unlabelled call; labels outside
        ``[0, num_classes)`` raise ``ValueError`` naming the label site."""
        labels = self._find_labels(args, kwargs)
        return None if labels is None else self._check_labels(labels, self.num_classes)

    def _find_labels(self, args: tuple, kwargs: dict) -> torch.Tensor | None:
        self._ensure_setup(args, kwargs)
        if self._label_fn is not None:
            return self._label_fn(*args, **kwargs)
        if self._label_source is None:
            return None
        position = self._label_source.position
        if isinstance(position, int):
            return args[position] if position < len(args) else None
        if position in kwargs:
            return kwargs[position]
        index = self._label_index
        return args[index] if index is not None and index < len(args) else None

    def _check_labels(self, labels, k: int) -> torch.Tensor:
        """``labels``, raising unless they are a tensor of whole numbers in ``[0, k)`` (one host sync)."""
        site = self.label_name
        if not torch.is_tensor(labels) or labels.is_complex() or labels.dtype == torch.bool:
            got = f"dtype {labels.dtype}" if torch.is_tensor(labels) else type(labels).__name__
            raise TypeError(f"labels of site {site!r} must be an integer tensor of classes in [0, {k}), got {got}")
        if labels.numel() == 0:
            return labels
        whole = labels == labels.floor() if labels.is_floating_point() else True
        if not bool((whole & (labels >= 0) & (labels < k)).all()):
            bad = labels[~(whole & (labels >= 0) & (labels < k))]
            raise ValueError(
                f"labels of site {site!r} must be classes in [0, {k}) (num_classes={k} from the model's "
                f"Categorical), got {bad.numel()} value(s) outside it, e.g. {bad.flatten()[0].item()!r}"
            )
        return labels

    def enumerates(self, *args, **kwargs) -> bool:
        """Whether this call is unlabelled, so that the guide emits the label for enumeration."""
        return self.labels(*args, **kwargs) is None

    def posterior(self, name: str, context: torch.Tensor) -> dist.Categorical:
        """:math:`q_\\phi(l|x)` given the encoder's context."""
        return dist.Categorical(logits=self.head(context))

    def probs(self, *observed_values: torch.Tensor) -> torch.Tensor:
        """Class probabilities :math:`q_\\phi(l|x)` for observed values (shapes ``batch_shape + event_shape``)."""
        return self.posterior(self.label_name, self.context(*observed_values)).probs

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        self.setup(*args, **kwargs)
        observed = self.observed_values(*args, **kwargs)
        self._check_observed(observed)
        labels = self.labels(*args, **kwargs)
        with ExitStack() as stack:
            indices = self._open_plates(stack, args, kwargs, observed)
            if labels is not None:
                self._publish(self.label_name, self._subsample_labels(labels, indices))
                return {}
            observed = [self._subsample(n, v, indices) for n, v in zip(self.observed_names, observed)]
            fn = self.posterior(self.label_name, self.context(*observed))
            value = pyro.sample(self.label_name, fn, infer={"enumerate": "parallel"})
            self._publish(self.label_name, value)
            return {self.label_name: value}

    def _subsample_labels(self, labels: torch.Tensor, indices: dict) -> torch.Tensor:
        return labels if self._label_source is None else select(self._label_source, labels, indices)

    def classification_loss(self, *args, **kwargs) -> torch.Tensor:
        r"""The M2 classification term :math:`-\sum_i \log q_\phi(l_i|x_i)` over the labelled data of this call,
        scaled like the ELBO's data terms (full data size over batch size); zero for an unlabelled call.
        :class:`~pyro_diffvi.infer.DDVI_ELBO` adds it with weight ``classification_weight`` (Kingma et al.
        2014, Eq. 9)."""
        self.setup(*args, **kwargs)
        labels = self.labels(*args, **kwargs)
        observed = self.observed_values(*args, **kwargs)
        if labels is None:
            return observed[0].new_zeros(())
        return self.call_in_context(self._classification_loss, args, kwargs, observed, labels)

    def _classification_loss(self, args, kwargs, observed, labels) -> torch.Tensor:
        with pyro.poutine.block(), ExitStack() as stack:
            indices = self._open_plates(stack, args, kwargs, observed)
            observed = [self._subsample(n, v, indices) for n, v in zip(self.observed_names, observed)]
            labels = self._subsample_labels(labels, indices)
            scale = math.prod(self.plates[p.name].size / indices[p.name].shape[0] for p in self._plates)
        log_q = self.posterior(self.label_name, self.context(*observed)).log_prob(labels)
        return -scale * log_q.sum()
