"""The few facts about Pyro's internals the package relies on, isolated here and pinned by
``tests/test_pyro_compat.py`` so that a Pyro release that changes them fails loudly."""

from __future__ import annotations

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
