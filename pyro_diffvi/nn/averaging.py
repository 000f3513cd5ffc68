r"""An exponential moving average of a network's parameters (Polyak averaging), held as buffers."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["AveragedCopy"]


class AveragedCopy(nn.Module):
    r"""A copy of ``module`` whose parameters track an exponential moving average of ``module``'s,

    .. math::

        \bar\theta_k = \delta_k\, \bar\theta_{k-1} + (1 - \delta_k)\, \theta_k, \qquad \bar\theta_0 = \theta_0,
        \qquad \delta_k = \min\Big(\delta, \frac{1 + k}{10 + k}\Big),

    one :meth:`update` per training step (Polyak and Juditsky 1992; the weight averaging of diffusion models, Ho et
    al. 2020). The warm-up of :math:`\delta_k` (as in TensorFlow's ``ExponentialMovingAverage(num_updates=...)``)
    lets the average leave the initial parameters within the first updates instead of carrying their weight
    :math:`\delta^k` for :math:`\sim 1/(1-\delta)` steps. The averaged values are *buffers*, not parameters: no
    optimizer and no Pyro param store sees them, ``state_dict`` saves them, ``.to()`` moves them. Calling the copy
    runs the averaged network (``forward`` delegates to the copied module); :attr:`module` is the copy itself, for
    methods other than ``forward``.

    Example:

    >>> import torch
    >>> from pyro_diffvi.nn import AveragedCopy
    >>> net = torch.nn.Linear(1, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.fill_(0.0)
    >>> average = AveragedCopy(net, decay=0.5)
    >>> with torch.no_grad():
    ...     _ = net.weight.fill_(1.0)
    >>> average.update(net)   # delta_1 = min(0.5, 2/11)
    >>> round(average.module.weight.item(), 4), list(average.parameters())
    (0.8182, [])

    :param module: the network to average (copied now; it is not modified).
    :param decay: :math:`\delta \in [0, 1)`; 0 copies the current parameters at each update.
    """

    def __init__(self, module: nn.Module, *, decay: float) -> None:
        super().__init__()
        if not (isinstance(decay, (int, float)) and 0.0 <= decay < 1.0):
            raise ValueError(f"decay must be a number in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.module = _as_buffers(copy.deepcopy(module))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, source: nn.Module) -> None:
        """One averaging step towards the current parameters of ``source`` (the module this copies)."""
        self.num_updates += 1
        k = int(self.num_updates)
        decay = min(self.decay, (1.0 + k) / (10.0 + k))
        averaged = dict(self.module.named_buffers())
        for name, param in source.named_parameters():
            averaged[name].lerp_(param.detach().to(averaged[name]), 1.0 - decay)

    @torch.no_grad()
    def reset(self, source: nn.Module) -> None:
        """Set the average to the current parameters of ``source``."""
        self.num_updates.zero_()
        averaged = dict(self.module.named_buffers())
        for name, param in source.named_parameters():
            averaged[name].copy_(param.detach())

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def _as_buffers(module: nn.Module) -> nn.Module:
    """``module`` with every parameter re-registered as a (detached) buffer of the same name."""
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is None:
                continue
            del sub._parameters[name]
            sub.register_buffer(name, param.detach().clone())
    return module
