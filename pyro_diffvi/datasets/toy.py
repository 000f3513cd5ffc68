"""2-D toy datasets and the four unnormalized potentials of Rezende & Mohamed (2015).

Datasets (``TOY_DATASETS``), all returned as float tensors of shape ``(N, 2)``; ``"8gaussians"``,
``"checkerboard"``, ``"2spirals"`` and ``"swissroll"`` are the 2-D densities of the FFJORD
experiments (Grathwohl et al., 2019, Sec. 5.1):

- ``"8gaussians"``: :class:`~pyro_diffvi.priors.GaussianRing` with its defaults (8 means at radius
  :math:`2\\sqrt2`, std :math:`0.5/\\sqrt2`), the 8-Gaussians density of Grathwohl et al. (2019),
  also used by the unnormalized-priors paper (Sec. 4.1).
- ``"25gaussians"``: :class:`~pyro_diffvi.priors.GaussianGrid` with its defaults (5 x 5 grid,
  spacing :math:`1/\\sqrt2`, std :math:`0.05/(2\\sqrt2)`), as in Xiao (2022), Ch. 4 and 6.
- ``"checkerboard"``: uniform on the 8 "black" squares of a 4 x 4 board of side-2 squares covering
  :math:`[-4, 4)^2`, the squares with :math:`\\lfloor z_1/2\\rfloor + \\lfloor z_2/2\\rfloor` even;
  density :math:`1/32` there.
- ``"2spirals"``: two point-symmetric spiral arms. With :math:`u, u_1, u_2 \\sim U[0,1)`,
  :math:`n = 3\\pi\\sqrt{u}`, arm sign :math:`a = \\pm 1` with probability 1/2 and
  :math:`\\varepsilon \\sim \\mathcal{N}(0, I)`:
  :math:`z = \\tfrac{a}{3}(-n\\cos n + u_1/2,\\; n\\sin n + u_2/2) + 0.1\\,\\varepsilon`.
- ``"swissroll"``: :class:`~pyro_diffvi.priors.SwissRoll` with its defaults; its shape is exactly
  the usual 2-D swiss roll (scikit-learn's ``make_swiss_roll`` with unit noise, coordinates 0 and
  2, divided by 5), so the dataset and the prior are one implementation.

Potentials (:func:`potential`, Rezende & Mohamed 2015, Table 1), with
:math:`w_1 = \\sin(2\\pi z_1/4)`, :math:`w_2 = 3\\exp(-\\tfrac12((z_1-1)/0.6)^2)`,
:math:`w_3 = 3\\,\\sigma((z_1-1)/0.3)`:

.. math::

    U_1 &= \\tfrac12\\big((\\lVert z\\rVert-2)/0.4\\big)^2
           - \\ln\\big(e^{-\\frac12((z_1-2)/0.6)^2} + e^{-\\frac12((z_1+2)/0.6)^2}\\big) \\\\
    U_2 &= \\tfrac12\\big((z_2-w_1)/0.4\\big)^2 \\\\
    U_3 &= -\\ln\\big(e^{-\\frac12((z_2-w_1)/0.35)^2} + e^{-\\frac12((z_2-w_1+w_2)/0.35)^2}\\big) \\\\
    U_4 &= -\\ln\\big(e^{-\\frac12((z_2-w_1)/0.4)^2} + e^{-\\frac12((z_2-w_1+w_3)/0.35)^2}\\big)

and the unnormalized density is :math:`e^{-U(z)}`; :func:`potential` returns the unnormalized
log density :math:`-U(z)` (not normalized: its log partition function is unknown in closed form).

References:

- D. J. Rezende, S. Mohamed. *Variational Inference with Normalizing Flows*. International
  Conference on Machine Learning (ICML), 2015.
- W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud. *FFJORD: Free-Form
  Continuous Dynamics for Scalable Reversible Generative Models*. International Conference on
  Learning Representations (ICLR), 2019.
- *Variational Inference with Unnormalized Priors*. Anonymous authors, manuscript under
  double-blind review.
- Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation,
  University of Chicago, 2022.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from pyro_diffvi.priors import GaussianGrid, GaussianRing, SwissRoll
from pyro_diffvi.util import check_event_shape, check_positive_int, tensor_device

TOY_DATASETS: tuple[str, ...] = ("8gaussians", "25gaussians", "checkerboard", "2spirals", "swissroll")
POTENTIALS: tuple[str, ...] = ("U1", "U2", "U3", "U4")


def _checkerboard(n: int, gen: torch.Generator, **to) -> torch.Tensor:
    x1 = 4 * torch.rand(n, generator=gen, **to) - 2
    low_or_high = 2 * torch.randint(2, (n,), generator=gen, device=to["device"]).to(to["dtype"])
    x2 = torch.rand(n, generator=gen, **to) - low_or_high + torch.remainder(torch.floor(x1), 2)
    return 2 * torch.stack([x1, x2], dim=-1)


def _two_spirals(n: int, gen: torch.Generator, **to) -> torch.Tensor:
    angle = 3 * math.pi * torch.rand(n, generator=gen, **to).sqrt()
    jitter = 0.5 * torch.rand(n, 2, generator=gen, **to)
    arm = torch.stack([-angle * angle.cos(), angle * angle.sin()], dim=-1) + jitter
    sign = 2 * torch.randint(2, (n, 1), generator=gen, device=to["device"]).to(to["dtype"]) - 1
    return sign * arm / 3 + 0.1 * torch.randn(n, 2, generator=gen, **to)


def _from_prior(factory: Callable) -> Callable:
    def sample(n: int, gen: torch.Generator, **to) -> torch.Tensor:
        return factory(**to).sample_with_labels((n,), generator=gen)[0]

    return sample


_SAMPLERS: dict[str, Callable] = {
    "8gaussians": _from_prior(GaussianRing),
    "25gaussians": _from_prior(GaussianGrid),
    "checkerboard": _checkerboard,
    "2spirals": _two_spirals,
    "swissroll": _from_prior(SwissRoll),
}


def sample_toy(
    name: str,
    num_samples: int,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Draw ``num_samples`` points of a 2-D toy dataset.

    :param name: one of :data:`TOY_DATASETS`.
    :param num_samples: number of points ``N >= 1``.
    :param seed: optional seed of a fresh generator (reproducible draws without touching the
        global RNG); mutually exclusive with ``generator``.
    :param generator: optional :class:`torch.Generator` on ``device``.
    :param device: device of the result (default: torch's default device).
    :param dtype: floating dtype of the result (default: torch's default dtype).
    :return: tensor of shape ``(N, 2)``.

    Example:

    >>> from pyro_diffvi.datasets import sample_toy
    >>> x = sample_toy("8gaussians", 500, seed=0)
    >>> x.shape
    torch.Size([500, 2])
    >>> bool((x.norm(dim=-1).mean() - 2 * 2**0.5).abs() < 0.2)  # the ring's radius is 2 sqrt(2)
    True
    """
    if name not in _SAMPLERS:
        raise ValueError(f"unknown toy dataset name {name!r}; expected one of {list(TOY_DATASETS)}")
    check_positive_int("num_samples", num_samples)
    if seed is not None and generator is not None:
        raise ValueError("pass at most one of seed and generator")
    device = tensor_device(device)
    dtype = dtype or torch.get_default_dtype()
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    return _SAMPLERS[name](num_samples, generator, device=device, dtype=dtype)


def _gauss_term(x: torch.Tensor, scale: float) -> torch.Tensor:
    return -0.5 * (x / scale) ** 2


def _u1(z: torch.Tensor) -> torch.Tensor:
    z1 = z[..., 0]
    ring = 0.5 * ((z.norm(dim=-1) - 2) / 0.4) ** 2
    modes = torch.logaddexp(_gauss_term(z1 - 2, 0.6), _gauss_term(z1 + 2, 0.6))
    return ring - modes


def _w1(z: torch.Tensor) -> torch.Tensor:
    return torch.sin(2 * math.pi * z[..., 0] / 4)


def _u2(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((z[..., 1] - _w1(z)) / 0.4) ** 2


def _u3(z: torch.Tensor) -> torch.Tensor:
    w2 = 3 * torch.exp(_gauss_term(z[..., 0] - 1, 0.6))
    d = z[..., 1] - _w1(z)
    return -torch.logaddexp(_gauss_term(d, 0.35), _gauss_term(d + w2, 0.35))


def _u4(z: torch.Tensor) -> torch.Tensor:
    w3 = 3 * torch.sigmoid((z[..., 0] - 1) / 0.3)
    d = z[..., 1] - _w1(z)
    return -torch.logaddexp(_gauss_term(d, 0.4), _gauss_term(d + w3, 0.35))


_POTENTIALS: dict[str, Callable] = {"U1": _u1, "U2": _u2, "U3": _u3, "U4": _u4}


def potential(name: str | int, z: torch.Tensor) -> torch.Tensor:
    """Unnormalized log density :math:`-U_k(z)` of Rezende & Mohamed (2015), Table 1.

    :param name: ``"U1"`` .. ``"U4"`` or the index 1..4.
    :param z: points, shape ``(..., 2)``.
    :return: tensor of shape ``z.shape[:-1]``.

    Example:

    >>> import torch
    >>> from pyro_diffvi.datasets import potential
    >>> z = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    >>> [round(v, 2) for v in potential("U1", z).tolist()]  # off the ring at 0, on it at (2, 0)
    [-17.36, 0.0]
    """
    if isinstance(name, int) and not isinstance(name, bool):
        name = f"U{name}"
    if name not in _POTENTIALS:
        raise ValueError(f"unknown potential {name!r}; expected one of {list(POTENTIALS)} or 1..4")
    if not torch.is_tensor(z) or not z.is_floating_point():
        raise TypeError(f"z must be a floating-point torch.Tensor, got {type(z).__name__}")
    check_event_shape("z", z, (2,))
    return -_POTENTIALS[name](z)
