r"""Samplers for the Gaussian-Bernoulli RBM :class:`~pyro_diffvi.distributions.GRBM` (its ``sampler``
argument): block Gibbs and Gibbs-Langevin chains, each a thin wrapper of the GRBM's own
:meth:`~pyro_diffvi.distributions.GRBM.gibbs` and :meth:`~pyro_diffvi.distributions.GRBM.gibbs_langevin`.

References

- R. Liao, S. Kornblith, M. Ren, D. J. Fleet, G. Hinton. *Gaussian-Bernoulli RBMs Without Tears*.
  arXiv:2210.10318, 2022 (Gibbs-Langevin sampling).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pyro_diffvi.util import check_positive_float, check_positive_int


@dataclass(kw_only=True)
class GibbsSampler:
    r"""Block Gibbs sampler for :class:`~pyro_diffvi.distributions.GRBM`: ``num_steps`` sweeps
    :math:`h \sim p(h|v)`, :math:`v \sim p(v|h)` from :math:`v_0 \sim \mathcal N(\mu, \sigma^2)`.
    Approximate (finite chains).

    :param num_steps: Gibbs sweeps per draw.

    Example:

    >>> import torch
    >>> from pyro_diffvi.distributions import GRBM
    >>> from pyro_diffvi.samplers import GibbsSampler
    >>> grbm = GRBM(torch.zeros(2), torch.zeros(2), torch.ones(2, 3), torch.zeros(3),
    ...             sampler=GibbsSampler(num_steps=10))
    >>> tuple(grbm.sample((4,)).shape)
    (4, 2)
    """

    num_steps: int = 200

    def __post_init__(self) -> None:
        check_positive_int("num_steps", self.num_steps, minimum=0)

    def __call__(self, grbm, shape: torch.Size) -> Tensor:
        """Draw samples of ``shape`` from ``grbm``."""
        return grbm.gibbs(grbm.initial_visible(shape), num_steps=self.num_steps)


@dataclass(kw_only=True)
class GibbsLangevinSampler:
    r"""Gibbs-Langevin sampler for :class:`~pyro_diffvi.distributions.GRBM`, see
    :meth:`~pyro_diffvi.distributions.GRBM.gibbs_langevin` (Liao et al., 2022). Approximate.

    :param num_steps: Gibbs-Langevin iterations per draw.
    :param step_size: Langevin step size :math:`h`.
    :param langevin_steps: Langevin steps on :math:`v` per iteration.
    :param noise_scale: Langevin noise scale (1 = Langevin dynamics).
    :param metropolis: MALA instead of ULA.

    Example:

    >>> import torch
    >>> from pyro_diffvi.distributions import GRBM
    >>> from pyro_diffvi.samplers import GibbsLangevinSampler
    >>> sampler = GibbsLangevinSampler(num_steps=5, step_size=0.1, metropolis=True)
    >>> mu, log_sigma, W, b = torch.zeros(3), torch.zeros(3), torch.ones(3, 2), torch.zeros(2)
    >>> GRBM(mu, log_sigma, W, b, sampler=sampler).sample((6,)).shape
    torch.Size([6, 3])
    """

    num_steps: int = 100
    step_size: float = 1e-2
    langevin_steps: int = 1
    noise_scale: float = 1.0
    metropolis: bool = False

    def __post_init__(self) -> None:
        check_positive_int("num_steps", self.num_steps, minimum=0)
        check_positive_float("step_size", self.step_size)
        check_positive_int("langevin_steps", self.langevin_steps)
        check_positive_float("noise_scale", self.noise_scale)

    def __call__(self, grbm, shape: torch.Size) -> Tensor:
        """Draw samples of ``shape`` from ``grbm``."""
        return grbm.gibbs_langevin(
            grbm.initial_visible(shape),
            num_steps=self.num_steps,
            step_size=self.step_size,
            langevin_steps=self.langevin_steps,
            noise_scale=self.noise_scale,
            metropolis=self.metropolis,
        )
