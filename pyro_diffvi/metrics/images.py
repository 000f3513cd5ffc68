r"""Image reconstruction metrics: the structural similarity index (SSIM) and the per-image L2 distance.

SSIM (Wang, Bovik, Sheikh & Simoncelli 2004, Eq. 13) compares local means, variances and the covariance of
two images under an 11x11 Gaussian window of standard deviation 1.5:

.. math::

    \mathrm{SSIM}(x, y) = \frac{1}{|\Omega|}\sum_{p \in \Omega}
        \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}{(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)}(p),
    \qquad C_1 = (K_1 L)^2,\ C_2 = (K_2 L)^2,

with :math:`K_1 = 0.01`, :math:`K_2 = 0.03`, :math:`L` the data range, the local statistics
:math:`\mu_x = w * x`, :math:`\sigma_x^2 = w * x^2 - \mu_x^2`, :math:`\sigma_{xy} = w * (xy) - \mu_x\mu_y` of the
normalized window :math:`w`, and :math:`\Omega` the positions where the window fits inside the image
(``padding="valid"``: the ``'valid'`` filtering of the reference implementation) or every pixel of the image
reflect-padded by half a window (``padding="reflect"``: the convention of ``torchmetrics``). 1 means identical
images.

References: Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli. *Image Quality Assessment: From Error
Visibility to Structural Similarity*. IEEE Transactions on Image Processing 13(4), 2004.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from pyro_diffvi.util import check_positive_float, check_positive_int

__all__ = ["l2_distance", "ssim"]


def _as_images(name: str, value: Tensor, image_shape: Sequence[int] | None) -> Tensor:
    if not torch.is_tensor(value) or not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {type(value).__name__}")
    if image_shape is not None:
        h, w = (int(s) for s in image_shape)
        if value.shape[-1] != h * w:
            raise ValueError(
                f"{name} must have a last dimension of {h * w} (image_shape {h}x{w}), got {tuple(value.shape)}"
            )
        value = value.reshape(value.shape[:-1] + (h, w))
    if value.dim() < 2:
        raise ValueError(f"{name} must have shape batch_shape + (H, W), got {tuple(value.shape)}")
    return value


def ssim(
    x: Tensor,
    y: Tensor,
    *,
    image_shape: Sequence[int] | None = None,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    padding: str = "valid",
) -> Tensor:
    r"""The SSIM of each pair of grey-scale images (module docstring).

    :param x: images, ``batch_shape + (H, W)``, or flattened ``batch_shape + (H * W,)`` with ``image_shape``.
    :param y: images of the same shape.
    :param image_shape: ``(H, W)`` for flattened images.
    :param data_range: :math:`L`, the range of the pixel values (1 for [0, 1]).
    :param window_size: side of the Gaussian window (odd, at most the image's side).
    :param sigma: standard deviation of the window.
    :param padding: ``"valid"`` (Wang et al.) or ``"reflect"`` (torchmetrics' convention).
    :return: shape ``batch_shape``.

    Example (constant images: only the luminance term differs from 1, :math:`(2ab + C_1)/(a^2 + b^2 + C_1)`):

    >>> import torch
    >>> from pyro_diffvi.metrics import ssim
    >>> a, b, c1 = 0.2, 0.6, 0.01**2
    >>> value = ssim(torch.full((1, 16, 16), a, dtype=torch.float64), torch.full((1, 16, 16), b, dtype=torch.float64))
    >>> round(value.item(), 6), round((2 * a * b + c1) / (a**2 + b**2 + c1), 6)
    (0.6001, 0.6001)
    >>> x = torch.rand(3, 784)
    >>> ssim(x, x, image_shape=(28, 28))
    tensor([1., 1., 1.])
    """
    x = _as_images("x", x, image_shape)
    y = _as_images("y", y, image_shape)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    check_positive_float("data_range", data_range)
    check_positive_float("sigma", sigma)
    check_positive_int("window_size", window_size)
    h, w = x.shape[-2:]
    if window_size % 2 == 0 or window_size > min(h, w):
        raise ValueError(f"window_size must be odd and at most the image's side {min(h, w)}, got {window_size}")
    if padding not in ("valid", "reflect"):
        raise ValueError(f"padding must be 'valid' or 'reflect', got {padding!r}")
    batch_shape = x.shape[:-2]
    coords = torch.arange(window_size, dtype=x.dtype, device=x.device) - (window_size - 1) / 2
    g = torch.exp(-coords.pow(2) / (2 * sigma**2))
    g = g / g.sum()

    def filt(v: Tensor) -> Tensor:  # separable 'valid' Gaussian filtering of (N, 1, H, W)
        return F.conv2d(F.conv2d(v, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))

    xs, ys = x.reshape(-1, 1, h, w), y.reshape(-1, 1, h, w)
    if padding == "reflect":
        pad = (window_size - 1) // 2
        xs, ys = (F.pad(v, (pad, pad, pad, pad), mode="reflect") for v in (xs, ys))
    mu_x, mu_y = filt(xs), filt(ys)
    var_x = filt(xs * xs) - mu_x**2
    var_y = filt(ys * ys) - mu_y**2
    cov = filt(xs * ys) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ratio = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ratio.mean((-3, -2, -1)).reshape(batch_shape)


def l2_distance(x: Tensor, y: Tensor, *, event_dim: int = 1) -> Tensor:
    r"""The Euclidean distance :math:`\|x - y\|_2` of each pair, over the last ``event_dim`` dimensions.

    :param x: images (or any data).
    :param y: data of the same shape.
    :param event_dim: the number of trailing dimensions of one data point.
    :return: shape ``batch_shape``.

    Example:

    >>> import torch
    >>> from pyro_diffvi.metrics import l2_distance
    >>> l2_distance(torch.zeros(2, 4), torch.ones(2, 4))
    tensor([2., 2.])
    """
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    return (x - y).pow(2).sum(tuple(range(-event_dim, 0))).sqrt()

