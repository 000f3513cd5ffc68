"""What the trainers of diffusion generators share: the forward process in the network's dtype and device, input
checks and the guarded optimizer update (used by
:class:`~pyro_diffvi.infer.DDGANLoss` and :class:`~pyro_diffvi.infer.DDPMLoss`; their generator EMA is
:class:`~pyro_diffvi.nn.GeneratorEMA`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyro_diffvi.diffusion import GaussianDiffusion
from pyro_diffvi.infer.guard import check_on_nonfinite, check_terms, guard_gradients, nonfinite_terms, skip_or_raise
from pyro_diffvi.nn.ema import GeneratorEMA, check_decay
from pyro_diffvi.util import check_finite

__all__ = ["GeneratorTrainer", "check_batch", "first_parameter", "guarded_update", "process_like"]


def first_parameter(network: nn.Module) -> torch.Tensor | None:
    """The first floating-point parameter of ``network`` (its dtype and device stand for the network's), or
    ``None`` for a network without one.

    :param network: a module.
    """
    return next((p for p in network.parameters() if p.is_floating_point()), None)


def process_like(
    network: nn.Module, num_steps: int, schedule: str | Sequence[float] | torch.Tensor
) -> GaussianDiffusion:
    """The forward process :class:`~pyro_diffvi.diffusion.GaussianDiffusion` with ``num_steps`` steps on
    ``schedule``, in the dtype and on the device of ``network``'s parameters (torch's default dtype on the CPU for
    a network without parameters); the schedule is checked to be representable in that dtype.

    :param network: the network the process is trained with.
    :param num_steps: :math:`T \\ge 1`.
    :param schedule: a schedule name or explicit betas (see :func:`~pyro_diffvi.diffusion.make_schedule`).
    :return: the process.

    Example:

    >>> import torch
    >>> from pyro_diffvi.infer.generator_training import process_like
    >>> process_like(torch.nn.Linear(2, 2).double(), 4, "vp").betas.dtype
    torch.float64
    """
    ref = first_parameter(network)
    dtype = ref.dtype if ref is not None else torch.get_default_dtype()
    process = GaussianDiffusion(num_steps, schedule=schedule, dtype=dtype)
    return process if ref is None else process.to(ref.device)


def check_batch(name: str, x: torch.Tensor, dim: int, like: torch.Tensor | None) -> torch.Tensor:
    """Return the data batch ``x`` after checking it is a finite floating-point tensor of shape ``(N, dim)``,
    ``N >= 1``, on the device (and in the dtype) of ``like`` (a parameter of the network it trains).

    :param name: the argument's name, for the error message.
    :param x: the batch.
    :param dim: the width the network expects.
    :param like: a parameter of the network, or ``None`` to skip the device and dtype checks.

    Example:

    >>> import torch
    >>> from pyro_diffvi.infer.generator_training import check_batch
    >>> check_batch("x", torch.zeros(4, 3), 2, None)
    Traceback (most recent call last):
    ...
    ValueError: x must have shape (N, 2) (the generator's dim), got (4, 3)
    """
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor of shape (N, {dim}), got {type(x).__name__}")
    if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] != dim:
        raise ValueError(f"{name} must have shape (N, {dim}) (the generator's dim), got {tuple(x.shape)}")
    if like is not None and (x.device != like.device or x.dtype != like.dtype):
        raise ValueError(
            f"{name} is a {x.dtype} tensor on {x.device} but the networks' parameters are {like.dtype} on "
            f"{like.device}: move one of them (x.to(parameter) or module.to(x))"
        )
    return check_finite(name, x)


def guarded_update(
    objective: str,
    loss: torch.Tensor,
    terms: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    params: dict[str, torch.Tensor],
    on_nonfinite: str,
) -> bool:
    """One optimizer update of ``params`` on ``loss`` behind the divergence guard of
    :mod:`pyro_diffvi.infer.guard`: a non-finite term (before the backward pass) or gradient (after it) raises
    :class:`~pyro_diffvi.errors.DivergenceError` naming it, or with ``on_nonfinite="skip"`` warns and skips
    the update; either way before the optimizer touches ``params``.

    :param objective: the objective's name, for the message.
    :param loss: the scalar to minimize.
    :param terms: its named parts (checked for finiteness).
    :param optimizer: the optimizer of ``params``.
    :param params: the parameters the update may change, by name (their gradients are checked).
    :param on_nonfinite: ``"raise"`` or ``"skip"``.
    :return: whether the update was applied.
    """
    bad = nonfinite_terms(terms)
    if bad:
        if on_nonfinite == "raise":
            check_terms(objective, terms)
        skip_or_raise(objective, on_nonfinite, params, f"non-finite loss term(s) {bad}")
        return False
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if not guard_gradients(objective, params, on_nonfinite, ", ".join(terms)):
        return False
    optimizer.step()
    return True


class GeneratorTrainer:
    """What :class:`~pyro_diffvi.infer.DDGANLoss` and :class:`~pyro_diffvi.infer.DDPMLoss` hold in common: the
    forward process in the network's dtype and on its device (:func:`process_like`), the network's EMA
    (:class:`~pyro_diffvi.nn.GeneratorEMA`, which counts the completed updates) and the divergence guard's
    setting.

    :param network: the trained network (the generator).
    :param num_steps: :math:`T \\ge 1`.
    :param schedule: a schedule name or explicit betas.
    :param ema_decay: decay of the network's EMA, in [0, 1).
    :param on_nonfinite: ``"raise"`` or ``"skip"``.
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        num_steps: int,
        schedule: str | Sequence[float] | torch.Tensor,
        ema_decay: float,
        on_nonfinite: str,
    ) -> None:
        self.process = process_like(network, num_steps, schedule)
        self.ema = GeneratorEMA(network, decay=check_decay("ema_decay", ema_decay))
        self.on_nonfinite = check_on_nonfinite(on_nonfinite)

    @property
    def num_steps(self) -> int:
        """:math:`T`."""
        return self.process.num_steps

    @property
    def num_updates(self) -> int:
        """Completed updates of the network (and of its EMA)."""
        return self.ema.num_updates
