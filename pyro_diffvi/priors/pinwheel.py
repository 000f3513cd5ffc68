"""Pinwheel prior with an exact density (radius-dependent rotation has unit Jacobian)."""

from __future__ import annotations

import math

import torch

from pyro_diffvi.priors.base import (
    StructuredPrior,
    normal_log_prob,
    rotate,
    safe_norm,
)
from pyro_diffvi.util import check_positive_float, check_positive_int


class Pinwheel(StructuredPrior):
    """Pinwheel prior of the DDVI paper (Sec. 5.1, Tables 1-2) with ``K`` labelled arms.

    Generative process for arm :math:`l` (after Johnson et al. 2016):

    .. math::

        v \\sim \\mathcal{N}\\big((\\rho, 0), \\operatorname{diag}(\\sigma_r^2, \\sigma_t^2)\\big), \\qquad
        z = R\\big(\\varphi_l(\\lVert v \\rVert)\\big)\\, v, \\qquad
        \\varphi_l(r) = \\frac{2\\pi l}{K} + a\\, e^{r / \\rho},

    where :math:`R(\\varphi)` is the rotation by :math:`\\varphi`. Johnson et al. make the angle a
    function of the first coordinate :math:`v_1`; we use the radius :math:`\\lVert v \\rVert`
    instead (identical up to the tangential spread, :math:`\\lVert v\\rVert = v_1 + O(v_2^2)`), because
    then the map is a bijection with unit Jacobian: writing :math:`J` for the rotation by
    :math:`\\pi/2`, :math:`\\partial z/\\partial v = R(\\varphi)\\,(I + \\varphi'(r)\\, J v v^\\top / r)`
    and :math:`\\det(I + u w^\\top) = 1 + w^\\top u = 1 + \\varphi'(r)\\, v^\\top J v / r = 1`.
    The inverse is :math:`v = R(-\\varphi_l(\\lVert z\\rVert))\\, z` because rotations preserve the
    norm, so the component density is exact:

    .. math::

        \\log p(z \\mid l) = \\log \\mathcal{N}(v_1; \\rho, \\sigma_r^2) + \\log \\mathcal{N}(v_2; 0, \\sigma_t^2),
        \\quad v = R\\big(-\\varphi_l(\\lVert z\\rVert)\\big) z,

    and :math:`p(z) = \\frac1K \\sum_l p(z \\mid l)`.

    Defaults: ``K = 10`` arms (one per MNIST class, as in the DDVI experiments) and Johnson et
    al.'s pinwheel parameters radial std 0.3, tangential std 0.05, rate 0.25 at unit mean radius
    (without their final x10 rescaling, so the prior lives at the N(0, I) scale of a VAE latent).
    The DDVI paper's main text does not state its exact values.

    References:

    - W. T. Piriyakulkij, Y. Wang, V. Kuleshov. *Denoising Diffusion Variational Inference: Diffusion
      Models as Expressive Variational Posteriors*. arXiv:2401.02739, 2024.
    - M. J. Johnson, D. Duvenaud, A. B. Wiltschko, S. R. Datta, R. P. Adams. *Composing Graphical
      Models with Neural Networks for Structured Representations and Fast Inference*. NeurIPS, 2016.

    :param num_components: number of arms ``K >= 1``.
    :param radius: mean radius :math:`\\rho > 0` of the Gaussian blob before rotation. The swirl
        depends on :math:`r / \\rho`, so scaling ``radius``, ``radial_scale`` and ``tangential_scale``
        together scales the whole pinwheel (``Pinwheel(radius=10, radial_scale=3, tangential_scale=0.5)``
        is Johnson et al.'s original size, the latent scale of the DDVI paper's experiments, whose MMD
        kernels have bandwidths 2 to 80).
    :param radial_scale: :math:`\\sigma_r > 0`.
    :param tangential_scale: :math:`\\sigma_t > 0`.
    :param rate: swirl rate :math:`a \\ge 0` (0 gives straight arms).
    :param dim: event size (coordinates beyond two are standard normal).

    Example:

    >>> import pyro, torch
    >>> from pyro_diffvi.priors import Pinwheel
    >>> pyro.set_rng_seed(0)
    >>> prior = Pinwheel(num_components=5)
    >>> z = prior.sample((1000,))
    >>> z.shape, bool(torch.isfinite(prior.log_prob(z)).all())
    (torch.Size([1000, 2]), True)
    >>> round(z.norm(dim=-1).mean().item(), 1)  # the arms lie around the unit radius
    1.0
    """

    def __init__(
        self,
        *,
        num_components: int = 10,
        radius: float = 1.0,
        radial_scale: float = 0.3,
        tangential_scale: float = 0.05,
        rate: float = 0.25,
        dim: int = 2,
        **kwargs,
    ) -> None:
        self._k = check_positive_int("num_components", num_components)
        self.radius = check_positive_float("radius", radius)
        self.radial_scale = check_positive_float("radial_scale", radial_scale)
        self.tangential_scale = check_positive_float("tangential_scale", tangential_scale)
        self.rate = check_positive_float("rate", rate, allow_zero=True)
        super().__init__(dim=dim, **kwargs)
        k = torch.arange(self._k, dtype=self._dtype, device=self._device)
        self.arm_angles = 2 * math.pi * k / self._k

    @property
    def num_components(self) -> int:
        return self._k

    def _buffers(self) -> dict[str, torch.Tensor]:
        c, s = self.arm_angles.cos(), self.arm_angles.sin()
        # columns give the arm-frame coordinates: v = R(-theta_l) w for every arm l at once
        return {"radial_axes": torch.stack([c, s]), "tangential_axes": torch.stack([-s, c])}

    def _swirl(self, r: torch.Tensor) -> torch.Tensor:
        # a e^{r / rho}; the exponent is capped at 60 (r = 60 rho), where the density is below e^{-10^4}
        # anyway, so that far-away points get a finite (tiny) density instead of NaN from inf angles
        return self.rate * torch.exp((r / self.radius).clamp(max=60.0))

    def _component_log_probs_2d(self, z2: torch.Tensor) -> torch.Tensor:
        # R(-theta_l - phi(r)) z = R(-theta_l) R(-phi(r)) z: unswirl once per point, then one
        # matmul per coordinate gives all K arm frames.
        b = self.buffers_like(z2)
        w = rotate(z2, -self._swirl(safe_norm(z2)))
        v1, v2 = w @ b["radial_axes"], w @ b["tangential_axes"]  # (..., K)
        return normal_log_prob(v1, self.radius, self.radial_scale) + normal_log_prob(
            v2, 0.0, self.tangential_scale
        )

    def _sample_2d(self, labels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        eps = torch.randn(labels.shape + (2,), dtype=self._dtype, device=self._device, generator=generator)
        v = torch.stack(
            [self.radius + self.radial_scale * eps[..., 0], self.tangential_scale * eps[..., 1]], dim=-1
        )
        return rotate(v, self.arm_angles[labels] + self._swirl(safe_norm(v)))
