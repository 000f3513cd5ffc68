"""Parameter ownership of amortized guides in Pyro's param store: which live guide owns each parameter tensor, so
that a guide adopts the values loaded into the store (``pyro.get_param_store().load``) but never another guide's
parameters stored under the same names."""

from __future__ import annotations

import copy
import pickle
import warnings
import weakref

import pyro
import torch
from torch import nn

from pyro_diffvi._pyro_compat import adopt_stored_params, param_store_names

__all__ = ["claim", "claimed_by_other", "copied_guide", "pickled_state", "register_params", "release_params"]

# the guide (weakly) owning each parameter tensor, to tell another live guide's parameters in Pyro's
# param store from tensors loaded into it (pyro.get_param_store().load), which a guide adopts
_OWNERS: dict[int, tuple[weakref.ref, weakref.ref]] = {}  # id(parameter) -> (parameter, guide) weak references


def claim(param: torch.Tensor, guide: nn.Module) -> None:
    """Record that ``guide`` owns ``param`` (weakly: neither is kept alive).

    :param param: a parameter of the guide.
    :param guide: the guide.
    """
    entry = _OWNERS.get(id(param))
    if entry is None or entry[0]() is not param:
        _OWNERS[id(param)] = (weakref.ref(param, lambda _, key=id(param): _OWNERS.pop(key, None)), weakref.ref(guide))


def claimed_by_other(tensor: torch.Tensor, guide: nn.Module) -> bool:
    """Whether ``tensor`` is a parameter of another guide (alive or not), rather than one loaded from a file.

    :param tensor: a tensor of Pyro's param store.
    :param guide: the guide asking.
    """
    entry = _OWNERS.get(id(tensor))
    return entry is not None and entry[0]() is tensor and entry[1]() is not guide


def register_params(guide) -> None:
    """Claim ``guide``'s parameters, and adopt the values Pyro's param store already holds under their names
    (``pyro.get_param_store().load(...)`` before or after building the guide, see
    :func:`~pyro_diffvi._pyro_compat.adopt_stored_params`). A name held by another guide's parameter raises,
    unless ``guide`` is a copy of that guide (then it warns once and computes with its own parameters).

    :param guide: an :class:`~pyro_diffvi.guides.AmortizedGuide`.
    """
    if pyro.settings.get("module_local_params"):
        return
    names = param_store_names(guide)
    for param in names.values():
        claim(param, guide)

    def foreign(name: str, value: torch.Tensor) -> bool:
        if not claimed_by_other(value, guide):
            return False
        if guide._is_copy:
            _warn_shared_names(guide, name)
            return True
        raise ValueError(
            f"Pyro's param store already holds '{name}' for another guide of this name: SVI would optimize "
            "that guide's parameters instead of this one's. Call pyro.clear_param_store() before building "
            "a new guide, or give it another name= (to resume training, restore the guide with "
            "load_state_dict, or load a saved param store before the first call)"
        )

    adopt_stored_params(names, owner="guide", foreign=foreign)


def release_params(guide) -> None:
    """Remove ``guide``'s own parameters from Pyro's param store (after a failed set-up).

    :param guide: an :class:`~pyro_diffvi.guides.AmortizedGuide`.
    """
    store = pyro.get_param_store()
    stored = dict(store.named_parameters())
    for name, param in param_store_names(guide).items():
        if stored.get(name) is param:
            del store[name]


# what a copy or an unpickled guide does not inherit: the first call's trace, its AutoGuideList, its plates; and it
# is marked a copy, whose parameter names may still be held by the original's parameters
def _copy_state() -> dict:
    return dict(prototype_trace=None, master=None, plates={}, _is_copy=True, _warned_shared_names=False)


def pickled_state(guide, state: dict) -> dict:
    """The state to pickle (``torch.save``) of ``guide`` from its module ``state``: the networks, shapes and
    training state, marked a copy; the model too when it can be pickled (a function defined at module level, a
    module), else it is left out with a warning.

    :param guide: an :class:`~pyro_diffvi.guides.AmortizedGuide`.
    :param state: the module's ``__getstate__()``.
    """
    state = dict(state, **_copy_state())
    model = guide.model
    if model is not None and not isinstance(model, nn.Module):
        try:
            pickle.dumps(model)
        except Exception as error:
            warnings.warn(
                f"{type(guide).__name__}: the model could not be pickled ({error}); it is saved without it: "
                "set guide.model = model after loading",
                RuntimeWarning,
            )
            state["_model"] = None
    return state


def copied_guide(guide, memo: dict):
    """A deep copy of ``guide``'s networks and state, marked a copy, that shares (does not copy) the model.

    :param guide: an :class:`~pyro_diffvi.guides.AmortizedGuide`.
    :param memo: the ``copy.deepcopy`` memo.
    """
    model = guide.model
    if model is not None:
        memo.setdefault(id(model), model)
    new = type(guide).__new__(type(guide))
    memo[id(guide)] = new
    new.__dict__.update(copy.deepcopy(dict(guide.__dict__, **_copy_state()), memo))
    return new


def _warn_shared_names(guide, name: str) -> None:
    if not guide._warned_shared_names:
        guide._warned_shared_names = True
        warnings.warn(
            f"this copy of a {type(guide).__name__} shares its param-store names (e.g. '{name}') with the "
            "guide it was copied from, which still holds them: it computes with its own parameters, but SVI "
            "would optimize the original's. To train the copy, call pyro.clear_param_store() first",
            RuntimeWarning,
        )
