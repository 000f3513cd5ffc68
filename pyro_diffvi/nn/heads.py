"""The Gaussian output head shared by the guides' networks."""

from __future__ import annotations

import torch
from torch.nn.functional import softplus


def loc_scale(params: torch.Tensor, min_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Split a network's output ``params`` of width :math:`2D` into a mean and a standard deviation
    :math:`\sigma = \mathrm{softplus}(\cdot) + \sigma_{\min}` (positive with a floor, smooth).

    Example:

    >>> import torch
    >>> loc, scale = loc_scale(torch.tensor([0.5, -1.0, 0.0, 30.0]), min_scale=1e-4)
    >>> loc
    tensor([ 0.5000, -1.0000])
    >>> scale
    tensor([ 0.6932, 30.0001])

    :param params: tensor of shape ``batch_shape + (2 D,)``: the means, then the raw scales.
    :param min_scale: :math:`\sigma_{\min} \ge 0`.
    :return: ``(loc, scale)``, each of shape ``batch_shape + (D,)``.
    """
    loc, raw_scale = params.chunk(2, dim=-1)
    return loc, softplus(raw_scale) + min_scale
