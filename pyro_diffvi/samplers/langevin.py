r"""Langevin dynamics for energy-based distributions: unadjusted (ULA) and Metropolis-adjusted (MALA).

One convention is used throughout the package. For a density :math:`p(z) \propto e^{-E(z)}`,

.. math::

    z' = z - h \nabla_z E(z) + s \sqrt{2 h}\, \epsilon, \qquad \epsilon \sim \mathcal N(0, I),

with step size :math:`h` (``step_size``) and noise scale :math:`s` (``noise_scale``, 1 for proper
Langevin dynamics; smaller values give the "shrunk noise" used by EBM training recipes).

Mapping to the papers: Eq. 13 of the unnormalized-priors paper,
:math:`z_{k+1} = z_k - \sigma \nabla_z E_\beta(z_k) + \sqrt{2\sigma}\,\epsilon_k`, is this update with
``step_size = sigma`` (their :math:`\sigma` is a step size, not the GRBM's standard deviation) and
``noise_scale = 1``. Xiao (2022), Eq. 2.39, uses :math:`\alpha = h`; its Eqs. 4.10 and 5.3 use
:math:`\eta/2 = h` (drift :math:`(\eta/2)\nabla E`, noise :math:`\sqrt{\eta}`).

With ``metropolis=True`` the same proposal is accepted or rejected by a Metropolis-Hastings test (MALA),
which leaves :math:`p` exactly invariant. That correction is only valid for ``noise_scale = 1``.

Divergence: a step size too large for the energy's curvature makes ULA blow up to NaN or infinite
states. :func:`langevin` then emits a ``RuntimeWarning`` naming the step size and the number of chains
with non-finite states, and returns the states as they are (a caller such as
:class:`~pyro_diffvi.infer.ContrastiveDivergenceLoss` inside an objective with a divergence guard then
stops or skips the step). MALA rejects non-finite proposals, so only a non-finite start can end there.

References

- *Variational Inference with Unnormalized Priors*. Anonymous authors, manuscript under double-blind
  review ("the unnormalized-priors paper").
- Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation, University
  of Chicago, 2022 ("Xiao (2022)").
- G. O. Roberts, R. L. Tweedie. *Exponential Convergence of Langevin Distributions and Their Discrete
  Approximations*. Bernoulli, 1996 (ULA and MALA).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from pyro_diffvi.ops.types import EnergyFn
from pyro_diffvi.util import check_positive_float, check_positive_int


def energy_and_grad(energy_fn: EnergyFn, z: Tensor) -> tuple[Tensor, Tensor]:
    """Evaluate :math:`E(z)` (detached) and :math:`\\nabla_z E(z)` by autograd.

    Only ``z`` is differentiated, so no gradient accumulates on the energy's parameters.

    :param energy_fn: maps ``z`` of shape ``chains + event`` to energies of shape ``chains``.
    :param z: the current states.

    Example:

    >>> import torch
    >>> from pyro_diffvi.samplers.langevin import energy_and_grad
    >>> energy, grad = energy_and_grad(lambda z: 0.5 * z.pow(2).sum(-1), torch.tensor([[1.0, 2.0]]))
    >>> energy, grad
    (tensor([2.5000]), tensor([[1., 2.]]))
    """
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        energy = energy_fn(z)
        if energy.shape != z.shape[: energy.dim()] or energy.dim() >= z.dim():
            raise ValueError(
                f"energy_fn must map states of shape {tuple(z.shape)} to one energy per chain "
                f"(a prefix of that shape), got shape {tuple(energy.shape)}"
            )
        (grad,) = torch.autograd.grad(energy.sum(), z)
    return energy.detach(), grad.detach()


def _sum_event(x: Tensor, chain_dim: int) -> Tensor:
    return x.reshape(x.shape[:chain_dim] + (-1,)).sum(-1)


def _log_proposal(to: Tensor, frm: Tensor, grad_frm: Tensor, step_size: float, chain_dim: int) -> Tensor:
    """log N(to; frm - h grad E(frm), 2h I) up to a constant that cancels in the MH ratio."""
    diff = to - frm + step_size * grad_frm
    return -_sum_event(diff.pow(2), chain_dim) / (4.0 * step_size)


def langevin_step(
    energy_fn: EnergyFn,
    z: Tensor,
    *,
    step_size: float,
    noise_scale: float = 1.0,
    metropolis: bool = False,
    energy: Tensor | None = None,
    grad: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One Langevin (``metropolis=False``) or MALA (``metropolis=True``) step, see the module docstring.

    :param energy_fn: maps ``chains + event`` states to ``chains`` energies.
    :param z: current states.
    :param step_size: :math:`h > 0`.
    :param noise_scale: :math:`s > 0`; must be 1 for MALA.
    :param metropolis: apply the Metropolis-Hastings correction.
    :param energy: cached :math:`E(z)`, if known.
    :param grad: cached :math:`\\nabla E(z)`, if known.
    :return: ``(z_new, accepted, energy_new, grad_new)``; ``accepted`` is a boolean per chain
        (all true for ULA).

    Example:

    >>> import torch
    >>> from pyro_diffvi.samplers import langevin_step
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> z, accepted, energy, grad = langevin_step(
    ...     lambda z: 0.5 * z.pow(2).sum(-1), torch.zeros(4, 2), step_size=0.1, metropolis=True
    ... )
    >>> tuple(z.shape), accepted.dtype, tuple(energy.shape)
    ((4, 2), torch.bool, (4,))
    """
    if energy is None or grad is None:
        energy, grad = energy_and_grad(energy_fn, z)
    noise = torch.randn_like(z)
    proposal = z - step_size * grad + noise_scale * math.sqrt(2.0 * step_size) * noise
    prop_energy, prop_grad = energy_and_grad(energy_fn, proposal)
    chain_dim = energy.dim()
    if not metropolis:
        accepted = torch.ones(energy.shape, dtype=torch.bool, device=z.device)
        return proposal, accepted, prop_energy, prop_grad
    log_ratio = (
        energy
        - prop_energy
        + _log_proposal(z, proposal, prop_grad, step_size, chain_dim)
        - _log_proposal(proposal, z, grad, step_size, chain_dim)
    )
    log_ratio = torch.nan_to_num(log_ratio, nan=-math.inf)
    accepted = torch.rand_like(log_ratio).log() < log_ratio
    mask = accepted.reshape(accepted.shape + (1,) * (z.dim() - chain_dim))
    z_new = torch.where(mask, proposal, z)
    energy_new = torch.where(accepted, prop_energy, energy)
    grad_new = torch.where(mask, prop_grad, grad)
    return z_new, accepted, energy_new, grad_new


def langevin(
    energy_fn: EnergyFn,
    init: Tensor,
    *,
    num_steps: int,
    step_size: float,
    noise_scale: float = 1.0,
    metropolis: bool = False,
) -> tuple[Tensor, Tensor]:
    r"""Run vectorized Langevin chains (ULA, or MALA with ``metropolis=True``) on :math:`p \propto e^{-E}`.

    Update (Eq. 13 of the unnormalized-priors paper with its step :math:`\sigma` renamed ``step_size``):
    :math:`z' = z - h \nabla E(z) + s \sqrt{2h}\,\epsilon`. ULA has an :math:`O(h)` bias in its
    stationary distribution; MALA is exact (for ``noise_scale = 1``).

    :param energy_fn: maps states of shape ``chains + event`` to energies of shape ``chains``;
        differentiable with respect to its input.
    :param init: initial states, shape ``chains + event`` (e.g. ``(num_chains, D)``).
    :param num_steps: number of steps (>= 0).
    :param step_size: :math:`h > 0`.
    :param noise_scale: :math:`s > 0` (1 = Langevin dynamics).
    :param metropolis: Metropolis-Hastings correction (MALA); requires ``noise_scale == 1``.
    :return: ``(samples, acceptance_rate)``: final states (detached, shape of ``init``) and the
        fraction of accepted proposals per chain (ones for ULA).
    :warns RuntimeWarning: when some chains end with NaN or infinite states (see the module docstring);
        the message names ``step_size`` and the number of such chains.

    Example (MALA on a standard Gaussian: the chains' variance is near 1):

    >>> import torch
    >>> from pyro_diffvi.samplers import langevin
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> z, rate = langevin(
    ...     lambda z: 0.5 * z.pow(2).sum(-1), torch.zeros(4000, 2), num_steps=50, step_size=0.5, metropolis=True
    ... )
    >>> round(z.var().item(), 1), bool(rate.mean() > 0.5)
    (1.0, True)
    """
    if not torch.is_tensor(init):
        raise TypeError(f"init must be a torch.Tensor, got {type(init).__name__}")
    if not init.is_floating_point():
        raise TypeError(f"init must be a floating-point tensor, got dtype {init.dtype}")
    num_steps = check_positive_int("num_steps", num_steps, minimum=0)
    step_size = check_positive_float("step_size", step_size)
    noise_scale = check_positive_float("noise_scale", noise_scale)
    if metropolis and noise_scale != 1.0:
        raise ValueError(
            f"metropolis=True (MALA) requires noise_scale=1 (the MH test targets exp(-E)); got {noise_scale}"
        )
    z = init.detach()
    energy, grad = energy_and_grad(energy_fn, z)
    num_accepted = torch.zeros(energy.shape, dtype=z.dtype, device=z.device)
    for _ in range(num_steps):
        z, accepted, energy, grad = langevin_step(
            energy_fn, z, step_size=step_size, noise_scale=noise_scale, metropolis=metropolis, energy=energy, grad=grad
        )
        num_accepted += accepted.to(z.dtype)
    rate = num_accepted / num_steps if num_steps > 0 else torch.ones_like(num_accepted)
    warn_nonfinite_chains(z, energy.dim(), step_size, kind="ULA" if not metropolis else "MALA")
    return z.detach(), rate


def warn_nonfinite_chains(z: Tensor, chain_dim: int, step_size: float, *, kind: str = "Langevin") -> int:
    """Warn (``RuntimeWarning``) if some chains of ``z`` hold NaN or infinite states; return their number.

    :param z: states of shape ``chains + event``.
    :param chain_dim: number of leading chain dimensions.
    :param step_size: the step size used (named in the message).
    :param kind: the sampler's name for the message.

    Example:

    >>> import warnings, torch
    >>> from pyro_diffvi.samplers.langevin import warn_nonfinite_chains
    >>> with warnings.catch_warnings(record=True):
    ...     warn_nonfinite_chains(torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]), 1, step_size=10.0)
    1
    """
    finite = torch.isfinite(z.reshape(z.shape[:chain_dim] + (-1,))).all(-1)
    bad = int((~finite).sum().item())
    if bad:
        warnings.warn(
            f"{kind}: {bad} of {finite.numel()} chain(s) have non-finite (NaN or inf) states with "
            f"step_size={step_size!r}; the step size is too large for this energy: lower step_size",
            RuntimeWarning,
            stacklevel=3,
        )
    return bad


@dataclass(kw_only=True)
class LangevinSampler:
    r"""Approximate sampler for :class:`~pyro_diffvi.distributions.EnergyDistribution` (its ``sampler``
    argument): Langevin chains started from :math:`\mathcal N(0, \text{init\_scale}^2 I)` (see
    :func:`langevin`).

    Defaults follow the unnormalized-priors paper (100 steps of unadjusted Langevin dynamics, Sec. 4.2).

    :param num_steps: Langevin steps per draw.
    :param step_size: step size :math:`h`.
    :param noise_scale: noise scale :math:`s` (1 = Langevin dynamics).
    :param metropolis: MALA instead of ULA.
    :param init_scale: standard deviation of the initial states.

    Example:

    >>> import torch
    >>> from pyro_diffvi.distributions import EnergyDistribution
    >>> from pyro_diffvi.samplers import LangevinSampler
    >>> sampler = LangevinSampler(num_steps=20, step_size=0.1, metropolis=True)
    >>> d = EnergyDistribution(lambda z: 0.5 * z.pow(2).sum(-1), (2,), sampler=sampler)
    >>> tuple(d.sample((5,)).shape)
    (5, 2)
    """

    num_steps: int = 100
    step_size: float = 1e-2
    noise_scale: float = 1.0
    metropolis: bool = False
    init_scale: float = 1.0

    def __post_init__(self) -> None:
        check_positive_int("num_steps", self.num_steps, minimum=0)
        check_positive_float("step_size", self.step_size)
        check_positive_float("noise_scale", self.noise_scale)
        check_positive_float("init_scale", self.init_scale)
        if self.metropolis and self.noise_scale != 1.0:
            raise ValueError("metropolis=True (MALA) requires noise_scale=1")

    def __call__(self, distribution, shape: torch.Size) -> Tensor:
        """Draw samples of ``shape`` from ``distribution`` (an energy distribution with ``energy``,
        ``dtype`` and ``device``)."""
        init = self.init_scale * torch.randn(shape, dtype=distribution.dtype, device=distribution.device)
        samples, _ = langevin(
            distribution.energy,
            init,
            num_steps=self.num_steps,
            step_size=self.step_size,
            noise_scale=self.noise_scale,
            metropolis=self.metropolis,
        )
        return samples
