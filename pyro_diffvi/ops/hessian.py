r"""Gradients, Hessians and Hessian traces of an energy :math:`E(x)` by autograd, one row of states at a time.

The trace is exact (one backward pass per dimension) or a Hutchinson (1989) estimate from probe vectors.

References: M. F. Hutchinson. *A Stochastic Estimator of the Trace of the Influence Matrix for Laplacian
Smoothing Splines*. Communications in Statistics - Simulation and Computation, 1989.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pyro_diffvi.ops.types import EnergyFn

__all__ = [
    "check_states",
    "energy_grad_and_hessian_trace",
    "energy_grad_with_graph",
    "energy_hessian",
    "rademacher_probes",
]


def check_states(name: str, x: Tensor) -> Tensor:
    """Return ``x``, raising naming ``name`` unless it is a floating-point tensor of shape ``(N, D)`` with
    ``N >= 1`` (a batch of states).

    :param name: the argument's name, for the error message.
    :param x: the states.

    Example:

    >>> import torch
    >>> from pyro_diffvi.ops import check_states
    >>> check_states("x", torch.zeros(3)).shape
    Traceback (most recent call last):
    ...
    ValueError: x must be a floating-point tensor of shape (N, D) with N >= 1, got (3,) of dtype torch.float32
    """
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, D), got {type(x).__name__}")
    if x.dim() != 2 or x.shape[0] < 1 or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor of shape (N, D) with N >= 1, got "
                         f"{tuple(x.shape)} of dtype {x.dtype}")
    return x


def energy_grad_with_graph(energy_fn: EnergyFn, x: Tensor) -> tuple[Tensor, Tensor]:
    r"""``x`` requiring gradients and :math:`\nabla_x E(x)` with its graph kept (``create_graph``), for
    Hessian products and for differentiating through a gradient step.

    :param energy_fn: maps ``(N, D)`` states to ``(N,)`` energies.
    :param x: states ``(N, D)`` (used as they are if they already require gradients).
    :return: ``(x, grad)``.

    Example:

    >>> import torch
    >>> from pyro_diffvi.ops import energy_grad_with_graph
    >>> x, grad = energy_grad_with_graph(lambda z: z.pow(2).sum(-1), torch.ones(2, 3))
    >>> grad.tolist(), grad.requires_grad
    ([[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]], True)
    """
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    energy = energy_fn(x)
    if energy.shape != x.shape[:1]:
        raise ValueError(f"energy_fn must map states of shape {tuple(x.shape)} to shape {tuple(x.shape[:1])}, "
                         f"got {tuple(energy.shape)}")
    (grad,) = torch.autograd.grad(energy.sum(), x, create_graph=True)
    return x, grad


def energy_grad_and_hessian_trace(
    energy_fn: EnergyFn, x: Tensor, *, probes: Tensor | None = None, create_graph: bool = False
) -> tuple[Tensor, Tensor]:
    r""":math:`\nabla_x E(x)` and :math:`\operatorname{tr}\nabla^2_{xx} E(x)` per row of ``x``.

    Exact (``probes=None``): :math:`\sum_i \partial_i (\nabla E)_i`, one backward pass per dimension
    :math:`D`. Hutchinson (1989) (``probes`` of shape ``(P, N, D)`` with :math:`\mathbb E[vv^\top] = I`,
    e.g. Rademacher): :math:`v^\top \nabla^2 E\, v` per probe, an unbiased estimate of the trace, one
    Hessian-vector product per probe. This is the integrand of Eq. 5.7 of Xiao (2022).

    :param energy_fn: maps ``(N, D)`` states to ``(N,)`` energies, twice differentiable.
    :param x: states ``(N, D)``.
    :param probes: ``None`` (exact trace) or probe vectors ``(P, N, D)``.
    :param create_graph: keep the graph (to differentiate the results in the energy's parameters or
        in ``x``); otherwise the results are detached.
    :return: ``(grad, trace)``: ``(N, D)`` and ``(N,)`` (exact) or ``(P, N)`` (one estimate per probe).

    Example (:math:`E = \tfrac12 z^\top A z` has trace :math:`\operatorname{tr} A = 5`):

    >>> import torch
    >>> from pyro_diffvi.ops import energy_grad_and_hessian_trace
    >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
    >>> grad, trace = energy_grad_and_hessian_trace(lambda z: 0.5 * ((z @ A) * z).sum(-1), torch.ones(4, 2))
    >>> grad[0].tolist(), trace.tolist()
    ([3.0, 4.0], [5.0, 5.0, 5.0, 5.0])
    """
    x = check_states("x", x)
    with torch.enable_grad():
        x, grad = energy_grad_with_graph(energy_fn, x)
        if probes is None:
            trace = x.new_zeros(x.shape[0])
            for i in range(x.shape[1]):
                (row,) = torch.autograd.grad(grad[:, i].sum(), x, create_graph=create_graph, retain_graph=True)
                trace = trace + row[:, i]
        else:
            if probes.dim() != 3 or probes.shape[1:] != x.shape:
                raise ValueError(f"probes must have shape (P,) + {tuple(x.shape)}, got {tuple(probes.shape)}")
            estimates = []
            for v in probes:
                (hv,) = torch.autograd.grad((grad * v).sum(), x, create_graph=create_graph, retain_graph=True)
                estimates.append((hv * v).sum(-1))
            trace = torch.stack(estimates)
    if not create_graph:
        return grad.detach(), trace.detach()
    return grad, trace


def energy_hessian(energy_fn: EnergyFn, x: Tensor, *, create_graph: bool = False) -> tuple[Tensor, Tensor]:
    r""":math:`\nabla_x E(x)` and the full Hessian :math:`\nabla^2_{xx} E(x)` per row (``D`` backward passes).

    :param energy_fn: maps ``(N, D)`` states to ``(N,)`` energies.
    :param x: states ``(N, D)``.
    :param create_graph: keep the graph; otherwise the results are detached.
    :return: ``(grad, hessian)`` of shapes ``(N, D)`` and ``(N, D, D)``.

    Example:

    >>> import torch
    >>> from pyro_diffvi.ops import energy_hessian
    >>> _, H = energy_hessian(lambda z: z[:, 0] ** 2 * z[:, 1], torch.tensor([[1.0, 2.0]]))
    >>> H[0].tolist()
    [[4.0, 2.0], [2.0, 0.0]]
    """
    x = check_states("x", x)
    with torch.enable_grad():
        x, grad = energy_grad_with_graph(energy_fn, x)
        rows = [torch.autograd.grad(grad[:, i].sum(), x, create_graph=create_graph, retain_graph=True)[0]
                for i in range(x.shape[1])]
        hessian = torch.stack(rows, dim=1)
    if not create_graph:
        return grad.detach(), hessian.detach()
    return grad, hessian


def rademacher_probes(num: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """``num`` Rademacher probe vectors (entries ``+1`` or ``-1``, equally likely) of ``like``'s shape, device
    and dtype, for Hutchinson trace estimates.

    :param num: the number of probes ``P``.
    :param like: a tensor of states ``(N, D)``.
    :param generator: optional random generator.
    :return: ``(P,) + like.shape``.

    Example:

    >>> import torch
    >>> from pyro_diffvi.ops import rademacher_probes
    >>> probes = rademacher_probes(4, torch.zeros(2, 3), None)
    >>> probes.shape, bool((probes.abs() == 1).all())
    (torch.Size([4, 2, 3]), True)
    """
    bits = torch.randint(0, 2, (num,) + tuple(like.shape), generator=generator, device=like.device)
    return bits.to(like.dtype) * 2 - 1
