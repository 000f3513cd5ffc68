r"""Training energies whose noise-free sampling dynamics are the generative model (Xiao (2022), Ch. 5).

:class:`NoiseFreeEBMLoss` is the maximum-likelihood EBM gradient (Eq. 5.1),

.. math::

    \partial_\theta L = \mathbb E_{x\sim p_\text{data}}[\partial_\theta E_\theta(x)]
        - \mathbb E_{x_0\sim p_0}[\partial_\theta E_\theta(G_{\text{sg}(\theta)}(x_0))],

with the negatives drawn by the noise-free dynamics :math:`G_\theta` of
:class:`~pyro_diffvi.samplers.NoiseFreeSampler` (Eq. 5.8, or the ODE of Eq. 5.6) and **detached**
(stop-gradient through the sampler, as in Eq. 5.14's second term), optionally plus the generator loss of
Eq. 5.14: :math:`E_{\text{sg}(\theta)}(G_\theta(x_0))`, the energy with frozen parameters of samples
differentiated through the unrolled dynamics (the W-GAN generator step of Sec. 5.4, on the same batch).

:class:`GradientFlowNLLLoss` is the alternative the dissertation compares with on 2-D data (Sec. 5.5.1):
the same gradient-flow ODE trained by maximum likelihood of its exact density (Eq. 5.7).

Both follow the :class:`~pyro_diffvi.infer.PriorObjective` interface ``objective.loss(energy, z)``.

References

- Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation, University
  of Chicago, 2022 ("Xiao (2022)"), Ch. 5.
- E. Nijkamp, M. Hill, S.-C. Zhu, Y. N. Wu. *Learning Non-Convergent Non-Persistent Short-Run MCMC
  Toward Energy-Based Model*. NeurIPS, 2019.
- R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential Equations*.
  NeurIPS, 2018; W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud. *FFJORD*. ICLR,
  2019 (the instantaneous change of variables).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pyro_diffvi.infer.prior_objectives.base import (
    PriorObjective,
    batched_energy,
    check_samples,
    energy_function,
    energy_with_detached_parameters,
)
from pyro_diffvi.samplers.gradient_flow import gradient_flow_log_prob
from pyro_diffvi.samplers.noise_free import NoiseFreeSampler
from pyro_diffvi.util import check_positive_float, check_positive_int

__all__ = ["GradientFlowNLLLoss", "NoiseFreeEBMLoss"]


def _check_vector_samples(z: Tensor) -> Tensor:
    """``z`` detached, raising unless it is a finite floating-point tensor of shape ``(N, D)``."""
    if torch.is_tensor(z) and z.dim() != 2:
        raise ValueError(f"z must have shape (N, D) (vector events), got {tuple(z.shape)}")
    return check_samples("z", z).detach()


def _check_sampler(sampler) -> NoiseFreeSampler:
    if sampler is None:
        return NoiseFreeSampler(num_steps=10, step_size=0.02, method="rk4")
    if not isinstance(sampler, NoiseFreeSampler):
        raise TypeError(f"sampler must be a NoiseFreeSampler, got {type(sampler).__name__}")
    return sampler


class NoiseFreeEBMLoss(PriorObjective):
    r"""The contrastive EBM objective of Eq. 5.1 with noise-free negatives, plus the optional generator
    loss of Eq. 5.14 (Xiao (2022), Ch. 5).

    Loss (minimized), with data :math:`x_i` and :math:`x_{0,j} \sim p_0`:

    .. math::

        \frac1N\sum_i E_\theta(x_i) - \frac1M\sum_j E_\theta\big(\text{sg}[G_\theta(x_{0,j})]\big)
        + \lambda_G \frac1M\sum_j E_{\text{sg}(\theta)}\big(G_\theta(x_{0,j})\big)
        + \lambda_E\big(\overline{E(x)^2} + \overline{E(\tilde x)^2}\big),

    whose :math:`\theta`-gradient for :math:`\lambda_G = \lambda_E = 0` is the Eq. 5.1 estimate; with
    ``generator_weight`` :math:`\lambda_G = 1` it is Eq. 5.14 (the same negatives serve both terms; the
    generator term back-propagates through the unrolled dynamics, ``create_graph``, and through the
    energy's input only, via :func:`~pyro_diffvi.infer.prior_objectives.energy_with_detached_parameters`).
    ``last_terms``: ``cd_gap``, ``energy_pos``, ``energy_neg`` (and ``generator`` when used).

    :param sampler: the :class:`~pyro_diffvi.samplers.NoiseFreeSampler` drawing the negatives (default:
        RK4, 10 steps of 0.02, i.e. the dissertation's horizon :math:`T = 0.2`, from :math:`\mathcal N(0, I)`).
    :param num_samples: negatives per call (default: as many as the data).
    :param generator_weight: :math:`\lambda_G \ge 0` (0: Eq. 5.1 only; 1: Eq. 5.14).
    :param energy_reg_weight: :math:`\lambda_E \ge 0`, energy-magnitude regularizer (0 in the dissertation).

    Example:

    >>> import torch
    >>> from pyro_diffvi.infer import NoiseFreeEBMLoss
    >>> from pyro_diffvi.samplers import NoiseFreeSampler
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> scale = torch.tensor(1.0, requires_grad=True)
    >>> objective = NoiseFreeEBMLoss(sampler=NoiseFreeSampler(num_steps=5, step_size=0.1), generator_weight=1.0)
    >>> loss = objective(lambda z: 0.5 * scale * z.pow(2).sum(-1), torch.randn(64, 2))
    >>> loss.backward()
    >>> sorted(objective.last_terms), scale.grad is not None
    (['cd_gap', 'energy_neg', 'energy_pos', 'generator'], True)
    """

    def __init__(
        self,
        *,
        sampler: NoiseFreeSampler | None = None,
        num_samples: int | None = None,
        generator_weight: float = 0.0,
        energy_reg_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.sampler = _check_sampler(sampler)
        self.num_samples = None if num_samples is None else check_positive_int("num_samples", num_samples)
        self.generator_weight = check_positive_float("generator_weight", generator_weight, allow_zero=True)
        self.energy_reg_weight = check_positive_float("energy_reg_weight", energy_reg_weight, allow_zero=True)

    def loss(self, prior, z: Tensor, log_q: Tensor | None = None) -> Tensor:
        energy_fn = energy_function(prior)
        z = _check_vector_samples(z)
        n = self.num_samples or z.shape[0]
        x0 = self.sampler.base(z.shape[1], dtype=z.dtype, device=z.device).sample((n,))
        use_generator = self.generator_weight > 0
        generated = self.sampler.run(energy_fn, x0, create_graph=use_generator)
        negatives = generated.detach()
        e_pos = batched_energy(energy_fn, z)
        e_neg = batched_energy(energy_fn, negatives)
        gap = e_pos.mean() - e_neg.mean()
        loss = gap
        terms = {"cd_gap": gap.item(), "energy_pos": e_pos.mean().item(), "energy_neg": e_neg.mean().item()}
        if use_generator:
            generator_term = energy_with_detached_parameters(energy_fn, generated).mean()
            loss = loss + self.generator_weight * generator_term
            terms["generator"] = generator_term.item()
        if self.energy_reg_weight > 0:
            loss = loss + self.energy_reg_weight * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
        self.last_terms = terms
        return loss

    def __repr__(self) -> str:
        return (f"NoiseFreeEBMLoss(sampler={self.sampler!r}, generator_weight={self.generator_weight}, "
                f"energy_reg_weight={self.energy_reg_weight})")


class GradientFlowNLLLoss(PriorObjective):
    r"""Maximum likelihood of the gradient-flow generator: loss :math:`-\frac1N\sum_i \log p_T(x_i)` with
    :math:`\log p_T` of Eq. 5.7 of Xiao (2022) (exact Hessian trace, backward RK4 solve kept in the graph,
    so the gradient needs third derivatives of the energy: practical in 2-D). This is the "ODE flow
    trained by maximum likelihood" the dissertation compares the EBM objective with (Sec. 5.5.1).

    :param sampler: the :class:`~pyro_diffvi.samplers.NoiseFreeSampler` defining the flow (``method``
        ``"rk4"``; default as in :class:`NoiseFreeEBMLoss`).

    Data from :math:`\mathcal N(0, e^{-2T}I)`, the exact flow of :math:`E = \|x\|^2/2`: the loss is near the
    entropy :math:`\log 2\pi e - 2T = 2.44` in 2-D with :math:`T = 0.2`.

    Example:

    >>> import math, torch
    >>> from pyro_diffvi.infer import GradientFlowNLLLoss
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> x = math.exp(-0.2) * torch.randn(4000, 2)
    >>> round(GradientFlowNLLLoss()(lambda z: 0.5 * z.pow(2).sum(-1), x).item(), 1)
    2.4
    """

    def __init__(self, *, sampler: NoiseFreeSampler | None = None) -> None:
        super().__init__()
        self.sampler = _check_sampler(sampler)
        if self.sampler.method != "rk4":
            raise ValueError("GradientFlowNLLLoss needs sampler.method='rk4' (the density of Eq. 5.7)")

    def loss(self, prior, z: Tensor, log_q: Tensor | None = None) -> Tensor:
        energy_fn = energy_function(prior)
        z = _check_vector_samples(z)
        base = self.sampler.base(z.shape[1], dtype=z.dtype, device=z.device)
        result = gradient_flow_log_prob(energy_fn, z, base, time=self.sampler.time, num_steps=self.sampler.num_steps,
                                        method="rk4", create_graph=True)
        loss = -result.log_prob.mean()
        self.last_terms = {"nll": loss.item()}
        return loss

    def __repr__(self) -> str:
        return f"GradientFlowNLLLoss(sampler={self.sampler!r})"
