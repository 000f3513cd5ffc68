"""Helpers shared by the tests (import as ``from tests.common import ...``)."""

import pytest
import torch

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def load_example(name: str):
    """The module of ``examples/<name>.py`` (the example scripts are not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flat_state(value, prefix: str = "") -> dict:
    """Every leaf of a nested state (``state_dict()`` results: dicts and lists) by its dotted path, tensors
    detached and cloned, other leaves (counts, settings) as they are."""
    if torch.is_tensor(value):
        return {prefix: value.detach().clone()}
    if isinstance(value, (dict, list, tuple)):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        out = {}
        for key, item in items:
            out.update(flat_state(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def state_differences(reference: dict, other: dict) -> list[str]:
    """The paths of two :func:`flat_state` results whose leaves differ (tensors bit for bit), or whose key sets
    differ."""
    if reference.keys() != other.keys():
        return sorted(set(reference) ^ set(other))

    def same(a, b):
        return torch.equal(a, b) if torch.is_tensor(a) and torch.is_tensor(b) else a == b

    return [k for k in reference if not same(reference[k], other[k])]
