r"""Sliced score matching (Song et al., 2019; Algorithm 1 of the unnormalized-priors paper): an energy fitted to samples
without its partition function.

References: Y. Song, S. Garg, J. Shi, S. Ermon. *Sliced Score Matching: A Scalable Approach to Density and Score
Estimation*. UAI, 2019. *Variational Inference with Unnormalized Priors*. Anonymous authors, manuscript under
double-blind review ("the unnormalized-priors paper").
"""

from __future__ import annotations

import torch
from torch import Tensor

from pyro_diffvi.infer.prior_objectives.base import PriorObjective, batched_energy, check_samples, energy_function
from pyro_diffvi.util import check_positive_int

__all__ = ["SlicedScoreMatchingLoss"]


def _flat_dot(a: Tensor, b: Tensor) -> Tensor:
    """Inner product over all but the leading dimension."""
    return (a * b).flatten(1).sum(-1)


class SlicedScoreMatchingLoss(PriorObjective):
    r"""Sliced score matching (Song et al., 2019; Algorithm 1 of the unnormalized-priors paper).

    With the model score :math:`s_\beta(z) = -\nabla_z E_\beta(z)` and random projections :math:`v`
    (:math:`\mathbb E[vv^\top] = I`), the loss is

    .. math::
        J(\beta) = \mathbb E_{z}\,\mathbb E_{v}\big[v^\top \nabla_z s_\beta(z)\, v
            + \tfrac12 (v^\top s_\beta(z))^2\big]
        = \mathbb E\big[-v^\top \nabla_z^2 E_\beta(z)\, v + \tfrac12 (v^\top \nabla_z E_\beta(z))^2\big],

    which equals the Hyvärinen score-matching loss up to a constant, so it needs no partition function.
    With ``variance_reduction=True`` (SSM-VR) the second term is replaced by its expectation over
    :math:`v`, :math:`\tfrac12\|\nabla_z E_\beta(z)\|^2`. (Algorithm 1 of the unnormalized-priors paper prints
    the Hessian term with a plus sign; for :math:`p \propto e^{-E}` it is a minus, as derived above.)

    The value returned is :math:`J` (an unbiased estimate over ``v``), which can be negative.

    :param num_projections: number of projections :math:`v` per sample (>= 1).
    :param projection: ``"rademacher"`` or ``"gaussian"``.
    :param variance_reduction: use SSM-VR (closed-form :math:`\tfrac12\|s\|^2`).

    References: Y. Song, S. Garg, J. Shi, S. Ermon. *Sliced Score Matching: A Scalable Approach to
    Density and Score Estimation*. UAI, 2019 (Eqs. 7-8; SSM-VR, Sec. 3); A. Hyvärinen. *Estimation of
    Non-Normalized Statistical Models by Score Matching*. JMLR, 2005.

    A standard Gaussian energy fits samples of a standard Gaussian: the loss is near :math:`-D/2`.

    Example:

    >>> import torch
    >>> from pyro_diffvi.infer import SlicedScoreMatchingLoss
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> z = torch.randn(4000, 2)
    >>> round(SlicedScoreMatchingLoss()(lambda z: 0.5 * z.pow(2).sum(-1), z).item(), 1)
    -1.0
    """

    def __init__(
        self, *, num_projections: int = 1, projection: str = "rademacher", variance_reduction: bool = True
    ) -> None:
        super().__init__()
        check_positive_int("num_projections", num_projections)
        if projection not in ("rademacher", "gaussian"):
            raise ValueError(f"projection must be 'rademacher' or 'gaussian', got {projection!r}")
        self.num_projections = num_projections
        self.projection = projection
        self.variance_reduction = bool(variance_reduction)

    def _projections(self, like: Tensor) -> Tensor:
        if self.projection == "gaussian":
            return torch.randn_like(like)
        return torch.randint(0, 2, like.shape, device=like.device).to(like.dtype) * 2 - 1

    def loss(self, prior, z: Tensor, log_q: Tensor | None = None) -> Tensor:
        energy_fn = energy_function(prior)
        z = check_samples("z", z)
        n, m = z.shape[0], self.num_projections
        z_rep = z.detach().unsqueeze(0).expand((m,) + z.shape).reshape((m * n,) + z.shape[1:])
        with torch.enable_grad():
            z_rep = z_rep.clone().requires_grad_(True)
            energy = batched_energy(energy_fn, z_rep)
            (grad_e,) = torch.autograd.grad(energy.sum(), z_rep, create_graph=True)
            v = self._projections(z_rep)
            grad_e_v = _flat_dot(grad_e, v)
            (hess_v,) = torch.autograd.grad(grad_e_v.sum(), z_rep, create_graph=True)
            hessian_term = -_flat_dot(v, hess_v)
            if self.variance_reduction:
                norm_term = 0.5 * grad_e.pow(2).flatten(1).sum(-1)
            else:
                norm_term = 0.5 * grad_e_v.pow(2)
            loss = (hessian_term + norm_term).mean()
        self.last_terms = {"ssm_loss": loss.item()}
        return loss

    def __repr__(self) -> str:
        return (
            f"SlicedScoreMatchingLoss(num_projections={self.num_projections}, projection={self.projection!r}, "
            f"variance_reduction={self.variance_reduction})"
        )
