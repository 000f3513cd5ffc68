"""Guides as parts of an :class:`~pyro.infer.autoguide.AutoGuideList`: what objectives need of a part, as protocols
(:class:`WakeSleepGuide`, :class:`LabelGuide`); the walker that finds the parts that follow them, nested lists
included (:func:`guide_parts`); and the channel by which a label part passes this call's label to the parts after
it (:func:`publish_label`, kept on the list itself)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from pyro import poutine
from pyro.infer.autoguide import AutoGuideList

__all__ = ["LabelGuide", "WakeSleepGuide", "guide_parts", "publish_label", "published_labels"]


@runtime_checkable
class WakeSleepGuide(Protocol):
    r"""What :class:`~pyro_diffvi.infer.DDVI_ELBO`'s sleep term needs of a guide: any guide, or any part of a
    :class:`~pyro.infer.autoguide.AutoGuideList`, that has these members is trained by the sleep term
    (:class:`~pyro_diffvi.guides.DiffusionGuide` is one).

    * ``latent_names``: the latent sites it guides;
    * ``observed_names``: the observed sites whose (simulated) values it reads in the wake-sleep variant;
    * ``training_steps``: an ``int`` the objective counts its training steps in (the warm-up schedule;
      keep it in the guide's ``state_dict`` so that a resumed run continues it);
    * ``setup(*args, **kwargs)``: build the guide for the model's arguments, if not built yet;
    * ``sleep_loss(model_trace, *, use_observed, head, num_particles)``: the sleep term
      :math:`-\mathcal L_{\mathrm{diff}}`
      at the values of its latent (and, with ``use_observed``, observed) sites in ``model_trace``, a
      scalar summed over the data with the sites' scales, averaged over ``num_particles`` draws of its
      own noise per model draw, with its parameters registered in Pyro's param store (see
      :meth:`~pyro_diffvi.guides.DiffusionGuide.sleep_loss`).


    A guide for the local latents of a model with global ones, inside an ``AutoGuideList``; the sleep term
    trains the part that follows the protocol:

    Example:

    >>> import pyro, pyro.distributions as dist, torch
    >>> from pyro import poutine
    >>> from pyro.infer import SVI
    >>> from pyro.infer.autoguide import AutoGuideList, AutoNormal
    >>> from pyro.optim import Adam
    >>> from pyro_diffvi.guides import DiffusionGuide
    >>> from pyro_diffvi.guides import WakeSleepGuide
    >>> from pyro_diffvi.infer import DDVI_ELBO
    >>> def model(x):
    ...     mu = pyro.sample("mu", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    ...         pyro.sample("x", dist.Normal(mu + z, 0.5).to_event(1), obs=x)
    >>> guide = AutoGuideList(model)
    >>> guide.append(AutoNormal(poutine.block(model, expose=["mu"])))
    >>> guide.append(DiffusionGuide(poutine.block(model, hide=["mu"]), "z", "x", num_steps=5))
    >>> [isinstance(part, WakeSleepGuide) for part in guide]
    [False, True]
    >>> svi = SVI(model, guide, Adam({"lr": 1e-3}), DDVI_ELBO())
    >>> step_loss = svi.step(torch.randn(16, 2))
    >>> guide[1].training_steps
    1
    """

    latent_names: tuple[str, ...]
    observed_names: tuple[str, ...]
    training_steps: int

    def setup(self, *args, **kwargs) -> None: ...

    def sleep_loss(
        self, model_trace: poutine.Trace, *, use_observed: bool = True, head: bool = True, num_particles: int = 1
    ) -> torch.Tensor: ...


@runtime_checkable
class LabelGuide(Protocol):
    r"""What :class:`~pyro_diffvi.infer.DDVI_ELBO` needs of a guide for a label that is observed in some calls and
    latent in
    others (semi-supervised models; :class:`~pyro_diffvi.guides.ClassifierGuide` is one):

    * ``enumerates(*args, **kwargs)``: whether this call leaves the label latent, so that the guide emits it
      for parallel enumeration and the wake term is the enumerated ELBO (:class:`~pyro.infer.TraceEnum_ELBO`);
    * ``classification_loss(*args, **kwargs)``: :math:`-\sum_i \log q(l_i|x_i)` over this call's labelled
      data (zero when unlabelled), the term ``classification_weight`` weighs.
    """

    def enumerates(self, *args, **kwargs) -> bool: ...

    def classification_loss(self, *args, **kwargs) -> torch.Tensor: ...


def guide_parts(guide, *, protocol: type | None = None) -> list:
    """The parts of ``guide``: the guide itself, or the parts of an :class:`~pyro.infer.autoguide.AutoGuideList`
    (nested lists included), in order; with ``protocol``, only those that follow it.

    :param guide: a guide, or an ``AutoGuideList``.
    :param protocol: a runtime-checkable protocol (e.g. :class:`WakeSleepGuide`) or class, or ``None`` for every part.

    Example:

    >>> import pyro, pyro.distributions as dist, torch
    >>> from pyro import poutine
    >>> from pyro.infer.autoguide import AutoGuideList, AutoNormal
    >>> from pyro_diffvi.guides import DiffusionGuide, WakeSleepGuide, guide_parts
    >>> def model(x):
    ...     mu = pyro.sample("mu", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    ...         pyro.sample("x", dist.Normal(mu + z, 0.5).to_event(1), obs=x)
    >>> inner = AutoGuideList(model)
    >>> inner.append(DiffusionGuide(poutine.block(model, hide=["mu"]), "z", "x", num_steps=5))
    >>> guide = AutoGuideList(model)
    >>> guide.append(AutoNormal(poutine.block(model, expose=["mu"])))
    >>> guide.append(inner)
    >>> [type(part).__name__ for part in guide_parts(guide)], len(guide_parts(guide, protocol=WakeSleepGuide))
    (['AutoNormal', 'DiffusionGuide'], 1)
    """
    if protocol is not None and isinstance(guide, protocol):
        return [guide]
    if isinstance(guide, AutoGuideList):
        return [found for part in guide for found in guide_parts(part, protocol=protocol)]
    return [guide] if protocol is None else []


class _PublishedLabels(dict):
    """The values of discrete sites that a label part drew (or read) in the current call of an AutoGuideList. Per
    call, so never pickled or copied with the list (a copy starts empty)."""

    def __reduce__(self):
        return (_PublishedLabels, ())


_LABELS_ATTRIBUTE = "_pyro_diffvi_published_labels"


def publish_label(guide_list: AutoGuideList, name: str, value: torch.Tensor) -> None:
    """Make this call's value of the discrete site ``name`` available to the later parts of ``guide_list`` (a
    :class:`~pyro_diffvi.guides.ClassifierGuide` does, for the parts built with ``condition_on=name``).

    :param guide_list: the AutoGuideList (the part's ``master()``).
    :param name: the site.
    :param value: its value in this call.
    """
    if not isinstance(getattr(guide_list, _LABELS_ATTRIBUTE, None), _PublishedLabels):
        setattr(guide_list, _LABELS_ATTRIBUTE, _PublishedLabels())
    getattr(guide_list, _LABELS_ATTRIBUTE)[name] = value


def published_labels(guide_list: AutoGuideList) -> dict[str, torch.Tensor]:
    """The labels published in ``guide_list`` so far (by site name; empty before any).

    :param guide_list: the AutoGuideList.
    """
    return getattr(guide_list, _LABELS_ATTRIBUTE, {})
