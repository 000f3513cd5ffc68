"""The few facts about Pyro's internals the package relies on, isolated here and pinned by
``tests/test_pyro_compat.py`` so that a Pyro release that changes them fails loudly."""

from __future__ import annotations

from collections.abc import Callable

import pyro
import torch
from pyro.nn import PyroModule
from pyro.params.param_store import param_with_module_name
from torch import nn


def pyro_name(module: PyroModule) -> str:
    """The name under which a :class:`~pyro.nn.PyroModule` registers its parameters."""
    return module._pyro_name


def set_pyro_name(module: PyroModule, name: str) -> None:
    """Give a root :class:`~pyro.nn.PyroModule` that has no children yet the param-store prefix ``name``
    (for modules whose base class fixes the name, such as :class:`~pyro.infer.autoguide.AutoGuide`)."""
    module._pyro_name = name


def param_store_names(module: PyroModule) -> dict[str, nn.Parameter]:
    """The param-store name of every parameter of ``module``, as :class:`~pyro.nn.PyroModule` registers
    them when they are used: attributes of PyroModules joined by ``"."``, and a plain ``nn.Module``
    child's parameters under :func:`~pyro.params.param_store.param_with_module_name`."""
    names: dict[str, nn.Parameter] = {}

    def walk(mod: nn.Module, prefix: str) -> None:
        for local, param in mod.named_parameters(recurse=False):
            names[f"{prefix}.{local}"] = param
        for child_name, child in mod.named_children():
            full = f"{prefix}.{child_name}"
            if isinstance(child, PyroModule):
                walk(child, full)
            else:
                for local, param in child.named_parameters():
                    names[param_with_module_name(full, local)] = param

    walk(module, pyro_name(module))
    return names


def in_namespace(name: str, prefix: str) -> bool:
    """Whether param-store ``name`` lies under ``prefix``: equal to it, or ``prefix`` followed by a
    separator (``"."`` between PyroModule attributes, or Pyro's module divider of
    :func:`~pyro.params.param_store.param_with_module_name`). ``"vae.b"`` lies under ``"vae"``;
    ``"vaeb"`` and ``"vae_b"`` do not."""
    return name == prefix or name.startswith((prefix + ".", param_with_module_name(prefix, "")))


def owns_param_name(module: PyroModule, name: str) -> bool:
    """Whether a param-store ``name`` lies in ``module``'s namespace."""
    return in_namespace(name, pyro_name(module))


def adopt_stored_params(
    names: dict[str, nn.Parameter], *, owner: str, foreign: Callable[[str, torch.Tensor], bool] | None = None
) -> None:
    """Adopt the values that Pyro's param store holds under the param-store ``names`` of some parameters (after
    ``pyro.get_param_store().load(...)`` or ``set_state(...)``): each such value is copied into the parameter, which
    then takes its place in the store, so that a restored param store resumes training and the store and the module
    hold one tensor. Does nothing under ``pyro.settings.set(module_local_params=True)``.

    :param names: param-store name -> parameter, e.g. from :func:`param_store_names`.
    :param owner: what owns the parameters (a class name), for the error messages.
    :param foreign: optional ``foreign(name, value)``: whether a stored value belongs to another live object and is
        to be left alone (it may raise instead); by default every stored value is adopted.
    :raises ValueError: when a stored value's shape differs from its parameter's (a differently built ``owner``).
    """
    if pyro.settings.get("module_local_params"):
        return
    store = pyro.get_param_store()
    stored = dict(store.named_parameters())
    for name, param in names.items():
        value = stored.get(name)
        if value is None or value is param:
            continue
        if foreign is not None and foreign(name, value):
            continue
        if value.shape != param.shape:
            raise ValueError(
                f"Pyro's param store holds '{name}' with shape {tuple(value.shape)}, but this {owner}'s parameter "
                f"has shape {tuple(param.shape)}: the store holds (or was saved from) a differently built {owner} of "
                f"this name. Call pyro.clear_param_store(), give this {owner} another name=, or build it as it was "
                "when the store was saved"
            )
        with torch.no_grad():
            param.copy_(value)
        store[name] = param  # an unconstrained parameter is stored as is: the store now holds the parameter


def register_child(module: PyroModule, name: str) -> nn.Module:
    """Register a :class:`~pyro.nn.PyroModule`'s plain ``nn.Module`` child ``name`` with Pyro's param store under
    ``f"{pyro_name(module)}.{name}"`` (as PyroModule registers such an attribute), adopting the values the store
    already holds under its parameters' names (:func:`adopt_stored_params`); return the child. Reading the child
    here, not as ``module.<name>``, keeps PyroModule from registering it a second time without adopting.

    :param module: the owner.
    :param name: the attribute name of the child.
    """
    child = module._modules[name]
    if pyro.settings.get("module_local_params"):
        return child
    prefix = f"{pyro_name(module)}.{name}"
    names = {param_with_module_name(prefix, local): param for local, param in child.named_parameters()}
    adopt_stored_params(names, owner=type(module).__name__)
    pyro.module(prefix, child)
    return child
