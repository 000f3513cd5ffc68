"""What the trainers of diffusion generators share: input checks, the guarded optimizer update and the
generator's exponential moving average (used by :class:`~pyro_diffvi.infer.DDGANLoss` and
:class:`~pyro_diffvi.infer.DDPMLoss`)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from pyro_diffvi.infer.guard import check_terms, guard_gradients, nonfinite_terms, skip_or_raise
from pyro_diffvi.util import check_finite

__all__ = ["GeneratorEMA", "check_batch", "guarded_update"]


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


class GeneratorEMA:
    r"""An exponential moving average of a network's parameters (a copy of the network without gradients),
    :math:`\bar\theta \leftarrow \lambda_n \bar\theta + (1 - \lambda_n)\theta` after update :math:`n = 0, 1, \dots`,
    with the warm-up :math:`\lambda_n = \min(\lambda, \frac{1 + n}{10 + n})` (so that the average forgets the
    initialization within the first updates, as TensorFlow's ``ExponentialMovingAverage(num_updates=...)``);
    buffers are copied. The average follows the trained network's device and dtype when that is moved.

    :param network: the network to average (copied now).
    :param decay: :math:`\lambda \in [0, 1)`; 0 keeps a plain copy of the latest parameters.

    Example:

    >>> from torch import nn
    >>> from pyro_diffvi.infer.generator_training import GeneratorEMA
    >>> net = nn.Linear(1, 1, bias=False)
    >>> _ = nn.init.zeros_(net.weight)
    >>> ema = GeneratorEMA(net, 0.5)
    >>> _ = nn.init.ones_(net.weight)
    >>> ema.update(net); ema.update(net)  # lambda_0 = 0.1, lambda_1 = 2/11
    >>> round(ema.network.weight.item(), 4), ema.num_updates
    (0.9818, 2)
    """

    def __init__(self, network: nn.Module, decay: float) -> None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must be a number in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.network = copy.deepcopy(network).requires_grad_(False)
        self.num_updates = 0

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        """Move the average towards ``network``'s current parameters (one update).

        :param network: the trained network (the one copied at construction).
        """
        n = self.num_updates
        decay = min(self.decay, (1 + n) / (10 + n))
        ref = next(network.parameters(), None)
        if ref is not None:  # the trained network was moved (module.to(...)) after the copy: follow it
            self.network.to(device=ref.device, dtype=ref.dtype)
        for avg, new in zip(self.network.parameters(), network.parameters()):
            avg.lerp_(new.detach(), 1.0 - decay)
        for avg, new in zip(self.network.buffers(), network.buffers()):
            avg.copy_(new)
        self.num_updates += 1

    def state_dict(self) -> dict:
        """The averaged network's ``state_dict()`` and the update count."""
        return {"network": self.network.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved.

        :param state: a dict from :meth:`state_dict`.
        """
        if not isinstance(state, dict) or set(state) != {"network", "num_updates"}:
            raise ValueError("the EMA state must be a dict with keys ['network', 'num_updates']")
        self.network.load_state_dict(state["network"])
        self.num_updates = int(state["num_updates"])
