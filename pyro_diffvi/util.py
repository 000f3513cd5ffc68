"""Small helpers shared across the package: seeding, argument validation, partial model tracing."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger


def set_seed(seed: int) -> None:
    """Seed Python, NumPy, PyTorch (all devices) and Pyro from one integer.

    :param seed: a non-negative integer.

    Example:

    >>> import torch
    >>> from pyro_diffvi import set_seed
    >>> set_seed(0); a = torch.rand(2)
    >>> set_seed(0); b = torch.rand(2)
    >>> torch.equal(a, b)
    True
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    pyro.set_rng_seed(seed)  # seeds torch (CPU and CUDA) as well


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``value``, raising ``ValueError`` unless it is an ``int`` (not a ``bool``) ``>= minimum``.

    :param name: the argument's name, for the error message.
    :param value: the value to check.
    :param minimum: the smallest allowed value.

    Example:

    >>> from pyro_diffvi.util import check_positive_int
    >>> check_positive_int("num_steps", 20)
    20
    >>> check_positive_int("num_steps", 0)
    Traceback (most recent call last):
    ...
    ValueError: num_steps must be an integer >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_positive_float(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float, raising ``ValueError`` unless it is a finite positive real number
    (or zero, with ``allow_zero``).

    :param name: the argument's name, for the error message.
    :param value: the value to check.
    :param allow_zero: accept zero too.

    Example:

    >>> from pyro_diffvi.util import check_positive_float
    >>> check_positive_float("step_size", 1)
    1.0
    >>> check_positive_float("step_size", float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: step_size must be finite and > 0, got nan
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a positive real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return value


def check_probability(name: str, value: Any) -> float:
    """Return ``value`` as a float, raising ``ValueError`` unless it is a real number in ``[0, 1]``.

    :param name: the argument's name, for the error message.
    :param value: the value to check.

    Example:

    >>> from pyro_diffvi.util import check_probability
    >>> check_probability("reinit_prob", 0.05)
    0.05
    >>> check_probability("reinit_prob", 2.0)
    Traceback (most recent call last):
    ...
    ValueError: reinit_prob must be a probability in [0, 1], got 2.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def check_widths(name: str, widths: Any, *, allow_empty: bool = False) -> tuple[int, ...]:
    """Return hidden-layer ``widths`` as a tuple of ints, raising ``ValueError`` unless each is an int
    ``>= 1`` (and, unless ``allow_empty``, there is at least one).

    :param name: the argument's name, for the error message.
    :param widths: a sequence of widths.
    :param allow_empty: accept an empty sequence (no hidden layer).

    Example:

    >>> from pyro_diffvi.util import check_widths
    >>> check_widths("hidden_dims", [128, 128])
    (128, 128)
    """
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise ValueError(f"{name} must be a sequence of positive int widths, got {widths!r}")
    if not widths and not allow_empty:
        raise ValueError(f"{name} must have at least one width, got {widths!r}")
    for width in widths:
        check_positive_int(f"each width of {name}", width)
    return tuple(widths)


def check_image_shape(name: str, shape: Any) -> tuple[int, int, int]:
    """Return an image shape ``(channels, height, width)`` as a tuple of ints, raising ``ValueError`` unless it has
    three entries, each an int ``>= 1``.

    :param name: the argument's name, for the error message.
    :param shape: the shape.

    Example:

    >>> from pyro_diffvi.util import check_image_shape
    >>> check_image_shape("image_shape", [1, 28, 28])
    (1, 28, 28)
    """
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) != 3:
        raise ValueError(f"{name} must be (channels, height, width), got {shape!r}")
    for size in shape:
        check_positive_int(f"each size of {name}", size)
    return tuple(int(s) for s in shape)


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Raise ``ValueError`` naming ``name`` if ``value`` has NaN or infinite entries; return ``value``.

    :param name: the argument's name, for the error message.
    :param value: the tensor to check.

    Example:

    >>> import torch
    >>> from pyro_diffvi.util import check_finite
    >>> check_finite("x", torch.tensor([0.0, float("inf")]))
    Traceback (most recent call last):
    ...
    ValueError: x contains 1 non-finite value(s) (NaN or inf)
    """
    if not torch.is_tensor(value):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not torch.isfinite(value).all():
        bad = (~torch.isfinite(value)).sum().item()
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return value


def check_event_shape(name: str, value: torch.Tensor, event_shape: Sequence[int]) -> None:
    """Raise ``ValueError`` unless the trailing dimensions of ``value`` equal ``event_shape``.

    :param name: the argument's name, for the error message.
    :param value: the tensor to check.
    :param event_shape: the expected trailing shape.

    Example:

    >>> import torch
    >>> from pyro_diffvi.util import check_event_shape
    >>> check_event_shape("z", torch.zeros(5, 2), (2,))
    >>> check_event_shape("z", torch.zeros(5, 3), (2,))
    Traceback (most recent call last):
    ...
    ValueError: z must have trailing shape (2,), got shape (5, 3)
    """
    event_shape = tuple(event_shape)
    n = len(event_shape)
    if value.dim() < n or tuple(value.shape[value.dim() - n :]) != event_shape:
        raise ValueError(
            f"{name} must have trailing shape {event_shape}, got shape {tuple(value.shape)}"
        )


def check_module_name(name: str | None, default: str) -> str:
    """The ``name`` argument of a learnable prior module: ``default`` (the class name) for ``None``,
    otherwise a non-empty ``str`` (the prefix of its parameters' names in Pyro's param store).

    :param name: the name given, or ``None``.
    :param default: the name for ``None``.

    Example:

    >>> from pyro_diffvi.util import check_module_name
    >>> check_module_name(None, "GRBMPrior"), check_module_name("prior", "GRBMPrior")
    ('GRBMPrior', 'prior')
    """
    if name is None:
        return default
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"name must be a non-empty str (the param-store prefix of the prior's parameters), got {name!r}"
        )
    return name


def default_device() -> torch.device:
    """CUDA when available, else CPU; used only where a user asks for ``device="auto"``.

    Example:

    >>> import torch
    >>> from pyro_diffvi.util import default_device
    >>> default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    True
    """
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turn ``"auto"``/``None``/a name into a :class:`torch.device`, with a clear error for CUDA.

    :param device: ``"auto"``, ``None``, a device name or a :class:`torch.device`.

    Example:

    >>> from pyro_diffvi.util import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None or device == "auto":
        return default_device()
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} requested but CUDA is not available")
    return device


def tensor_device(device: str | torch.device | None) -> torch.device:
    """The device tensors created with ``device=device`` land on: torch's default device for ``None``,
    otherwise :func:`resolve_device`'s (with its clear error for CUDA where there is none).

    :param device: ``None``, ``"auto"``, a device name or a :class:`torch.device`.

    Example:

    >>> import torch
    >>> from pyro_diffvi.util import tensor_device
    >>> tensor_device(None) == torch.empty(0).device, tensor_device("cpu")
    (True, device(type='cpu'))
    """
    return torch.empty(0, device=None if device is None else resolve_device(device)).device


class CheckedDevice:
    """Mixin for a :class:`torch.nn.Module` whose ``.to(device)`` and ``.cuda()`` give :func:`resolve_device`'s
    clear error where CUDA is asked for but absent (rather than torch's "Torch not compiled with CUDA enabled").

    Example:

    >>> import torch
    >>> from pyro_diffvi.util import CheckedDevice
    >>> class Net(CheckedDevice, torch.nn.Linear):
    ...     pass
    >>> Net(2, 1).to("cpu").weight.device
    device(type='cpu')
    """

    def to(self, *args, **kwargs):
        device = kwargs.get("device", args[0] if args and isinstance(args[0], (str, torch.device)) else None)
        if device is not None:
            resolve_device(device)
        return super().to(*args, **kwargs)

    def cuda(self, device=None):
        resolve_device("cuda" if device is None or isinstance(device, int) else device)
        return super().cuda(device)


class _SitesSeen(Exception):
    pass


class _StopAfterSites(Messenger):
    def __init__(self, names: set[str]) -> None:
        super().__init__()
        self.names, self.seen = names, set()

    def _postprocess_message(self, msg) -> None:
        if msg["type"] == "sample" and msg["name"] in self.names:
            self.seen.add(msg["name"])
            if self.seen == self.names:
                raise _SitesSeen


def trace_until(fn, names: Sequence[str], *args, **kwargs) -> poutine.Trace:
    """Trace ``fn(*args, **kwargs)`` only until every sample site in ``names`` has been drawn.

    The rest of ``fn`` is not run, e.g. a model's likelihood (and its decoder) when only prior draws of
    its latents are needed. Raises ``ValueError`` if ``fn`` returns without reaching every site.

    :param fn: a model or any function with Pyro sample sites.
    :param names: the sample sites to reach.
    :param args: positional arguments of ``fn``.
    :param kwargs: keyword arguments of ``fn``.

    Example:

    >>> import pyro, pyro.distributions as dist
    >>> from pyro_diffvi.util import trace_until
    >>> def model():
    ...     z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...     raise RuntimeError("the likelihood is never reached")
    >>> list(trace_until(model, ["z"]).nodes)
    ['_INPUT', 'z']
    """
    stopper = _StopAfterSites(set(names))
    tracer = poutine.trace(stopper(fn))
    try:
        tracer(*args, **kwargs)
    except _SitesSeen:
        pass
    else:
        missing = set(names) - stopper.seen
        if missing:
            raise ValueError(f"the model never sampled site(s) {sorted(missing)}")
    return tracer.trace
