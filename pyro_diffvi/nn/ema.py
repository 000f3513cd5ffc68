r"""An exponential moving average (EMA) of a network's parameters, the copy a trained generator samples with
(Xiao 2022, Sec. 6.4: the generator EMA of denoising diffusion GANs; Ho et al. 2020 average DDPM's weights the
same way). It works for any :class:`torch.nn.Module`; :class:`~pyro_diffvi.infer.DDGANLoss` and
:class:`~pyro_diffvi.infer.DDPMLoss` keep one, and a measuring :class:`~pyro_diffvi.guides.DiffusionGuide` emits its
chain with averaged parameters.

References: Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation, University
of Chicago, 2022, Ch. 6; B. T. Polyak, A. B. Juditsky. *Acceleration of Stochastic Approximation by Averaging*.
SIAM J. Control Optim., 1992.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["GeneratorEMA", "check_decay"]


def check_decay(name: str, decay: float) -> float:
    """Return ``decay`` as a float after checking it is a number in [0, 1).

    :param name: the argument's name, for the error message.
    :param decay: the value.

    Example:

    >>> from pyro_diffvi.nn.ema import check_decay
    >>> check_decay("ema_decay", 1.0)
    Traceback (most recent call last):
    ...
    ValueError: ema_decay must be a number in [0, 1), got 1.0
    """
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {decay!r}")
    return float(decay)


class GeneratorEMA:
    r"""An exponential moving average of a network's parameters, held in a copy of the network without gradients:
    after update :math:`n = 0, 1, \dots`

    .. math::

        \bar\theta \leftarrow \lambda_n \bar\theta + (1 - \lambda_n)\,\theta, \qquad
        \lambda_n = \min\Big(\lambda, \frac{1 + n}{10 + n}\Big),

    starting from :math:`\bar\theta = \theta_{\text{init}}` (the parameters when the copy was made). The warm-up of
    :math:`\lambda_n` (as TensorFlow's ``ExponentialMovingAverage(num_updates=...)``) lets the average forget the
    initialization within the first updates instead of carrying its weight :math:`\lambda^n` for
    :math:`\sim 1/(1-\lambda)` updates. Buffers (e.g. normalization statistics) are copied, not averaged. The copy
    follows the trained network's device and dtype when that is moved after construction.

    Use: ``ema.update(network)`` after each optimizer step; evaluate or sample with :attr:`network`;
    :meth:`state_dict` / :meth:`load_state_dict` checkpoint the average and the update count (a resumed run continues
    the same recursion).

    :param network: the network to average (copied now; it is not modified).
    :param decay: :math:`\lambda \in [0, 1)`; 0 keeps a plain copy of the latest parameters.

    Example:

    >>> from torch import nn
    >>> from pyro_diffvi.nn import GeneratorEMA
    >>> net = nn.Linear(1, 1, bias=False)
    >>> _ = nn.init.zeros_(net.weight)
    >>> ema = GeneratorEMA(net, decay=0.5)
    >>> _ = nn.init.ones_(net.weight)
    >>> ema.update(net); ema.update(net)  # lambda_0 = 1/10, lambda_1 = 2/11
    >>> round(ema.network.weight.item(), 4), ema.num_updates
    (0.9818, 2)
    """

    def __init__(self, network: nn.Module, *, decay: float) -> None:
        if not isinstance(network, nn.Module):
            raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}")
        self.decay = check_decay("decay", decay)
        self.network = copy.deepcopy(network).requires_grad_(False)
        self.num_updates = 0

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        """Move the average towards ``network``'s current parameters (one update).

        :param network: the trained network (the one copied at construction, or one of the same architecture).
        :raises ValueError: if ``network``'s parameters or buffers do not match the copy's in number and shape.
        """
        params, buffers = list(network.parameters()), list(network.buffers())
        avg_params, avg_buffers = list(self.network.parameters()), list(self.network.buffers())
        if [p.shape for p in params] != [p.shape for p in avg_params] or [b.shape for b in buffers] != [
            b.shape for b in avg_buffers
        ]:
            raise ValueError(
                "network must have the parameters and buffers (number and shapes) of the network the average was "
                f"made from: got {len(params)} parameters and {len(buffers)} buffers, expected {len(avg_params)} "
                f"and {len(avg_buffers)} (or different shapes)"
            )
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        if params:  # the trained network was moved (module.to(...)) after the copy: follow it
            self.network.to(device=params[0].device, dtype=params[0].dtype)
        for avg, new in zip(self.network.parameters(), params):
            avg.lerp_(new.detach(), 1.0 - decay)
        for avg, new in zip(self.network.buffers(), buffers):
            avg.copy_(new)
        self.num_updates += 1

    def state_dict(self) -> dict:
        """The averaged network's ``state_dict()`` and the update count.

        :return: ``{"network": ..., "num_updates": int}``.
        """
        return {"network": self.network.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved.

        :param state: a dict from :meth:`state_dict`.
        """
        if not isinstance(state, dict) or set(state) != {"network", "num_updates"}:
            raise ValueError("the EMA state must be a dict with keys ['network', 'num_updates']")
        self.network.load_state_dict(state["network"])
        self.num_updates = int(state["num_updates"])

    def __repr__(self) -> str:
        return f"GeneratorEMA({type(self.network).__name__}, decay={self.decay}, num_updates={self.num_updates})"
