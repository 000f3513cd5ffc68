"""The shared type aliases."""

import collections.abc
import typing

import torch

from pyro_diffvi.ops import EnergyFn


def test_energy_fn_is_a_callable_from_tensors_to_tensors():
    assert typing.get_origin(EnergyFn) is collections.abc.Callable
    assert typing.get_args(EnergyFn) == ([torch.Tensor], torch.Tensor)


def energy(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * z.pow(2).sum(-1)


def test_an_energy_function_is_an_energy_fn():
    fn: EnergyFn = energy
    assert isinstance(fn, collections.abc.Callable)
    assert fn(torch.ones(3, 2)).shape == (3,)
