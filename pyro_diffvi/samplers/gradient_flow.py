r"""The gradient-descent ODE of an energy as a generator with an exact density (Xiao (2022), Ch. 5, Sec. 5.3).

Removing the noise from Langevin dynamics turns the sampler into a deterministic, invertible map of
its initial point :math:`x_0 \sim p_0` (e.g. :math:`\mathcal N(0, I)` or a uniform box), i.e. a
generator / normalizing flow whose density is computable. In its **ODE form** (Eqs. 5.5-5.6),
:math:`x'(t) = -\nabla_x E(x(t))`, :math:`x(0) = x_0`, :math:`t \in [0, T]`, solved here by a fixed-step
classical Runge-Kutta scheme (:func:`~pyro_diffvi.ops.odeint_fixed`, ``method="rk4"``). The instantaneous
change of variables (Chen et al., 2018; Grathwohl et al., 2019) gives
:math:`\frac{d}{dt}\log p_t(x(t)) = -\operatorname{tr}\partial_x(-\nabla E) = \operatorname{tr}\nabla^2 E(x(t))`,
hence Eq. 5.7:

.. math::

    \log p_T(x_T) = \log p_0(x_0) + \int_0^T \operatorname{tr}\big[\nabla^2_{xx} E(x(t))\big]\,dt .

The density of a data point :math:`x` is obtained by solving the ODE backwards from :math:`x_T = x`
to :math:`x_0` while accumulating the integral (:func:`gradient_flow_log_prob`). The trace is exact
(one Hessian-row backward pass per dimension, the default; cheap in 2-D) or a Hutchinson (1989)
estimate :math:`\operatorname{tr} H = \mathbb E_v[v^\top H v]` with Rademacher probes held fixed along
each solve (as in FFJORD), returned with its standard error over probes. The discrete form of the same
dynamics is :mod:`pyro_diffvi.samplers.noise_free`.

References

- Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation, University
  of Chicago, 2022 ("Xiao (2022)"), Ch. 5.
- R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential Equations*.
  NeurIPS, 2018 (instantaneous change of variables).
- W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud. *FFJORD: Free-Form Continuous
  Dynamics for Scalable Reversible Generative Models*. ICLR, 2019 (Hutchinson trace estimates).
- M. F. Hutchinson. *A Stochastic Estimator of the Trace of the Influence Matrix for Laplacian Smoothing
  Splines*. Communications in Statistics - Simulation and Computation, 1989.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Distribution

from pyro_diffvi.ops.hessian import (
    check_states,
    energy_grad_and_hessian_trace,
    energy_grad_with_graph,
    rademacher_probes,
)
from pyro_diffvi.ops.ode import odeint_fixed
from pyro_diffvi.ops.types import EnergyFn
from pyro_diffvi.util import check_positive_float, check_positive_int

__all__ = ["FlowLogProb", "gradient_flow", "gradient_flow_log_prob"]


def _descent(energy_fn: EnergyFn, create_graph: bool) -> Callable[[float, Tensor], Tensor]:
    def f(t: float, x: Tensor) -> Tensor:
        with torch.enable_grad():
            _, grad = energy_grad_with_graph(energy_fn, x)
        return -(grad if create_graph else grad.detach())

    return f


def gradient_flow(
    energy_fn: EnergyFn,
    init: Tensor,
    *,
    time: float,
    num_steps: int,
    method: str = "rk4",
    create_graph: bool = False,
    with_log_det: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""The generator of Eq. 5.6 of Xiao (2022): solve :math:`x' = -\nabla_x E(x)` (Eq. 5.5) from ``init``
    over :math:`[0, T]` with :func:`odeint_fixed`.

    With ``with_log_det=True`` it also integrates Eq. 5.7 along the path, returning
    :math:`\int_0^T \operatorname{tr}\nabla^2 E(x(t))\,dt = \log p_T(x_T) - \log p_0(x_0)` (exact trace),
    the log-density change of the samples.

    :param energy_fn: maps ``(N, D)`` states to ``(N,)`` energies.
    :param init: initial points ``(N, D)`` (draws of :math:`p_0`).
    :param time: the horizon :math:`T > 0` (0.2 in the dissertation's 2-D experiments).
    :param num_steps: solver steps.
    :param method: ``"rk4"`` or ``"euler"`` (``"euler"`` is exactly :func:`noise_free_langevin` with
        ``step_size = T / num_steps``).
    :param create_graph: keep the graph through the whole solve (unrolled), so the output is
        differentiable in the energy's parameters and in ``init`` (the generator loss, Eq. 5.14);
        otherwise the output is detached.
    :param with_log_det: also return the integral of the Hessian trace.
    :return: :math:`x_T` ``(N, D)``, or ``(x_T, integral)`` with ``integral`` of shape ``(N,)``.

    Example (:math:`E = \|x\|^2/2`: :math:`x_T = e^{-T} x_0`, integral :math:`= D T`):

    >>> import torch
    >>> from pyro_diffvi.samplers import gradient_flow
    >>> x, log_det = gradient_flow(lambda x: 0.5 * x.pow(2).sum(-1), torch.ones(3, 2), time=1.0,
    ...                            num_steps=20, with_log_det=True)
    >>> round(x[0, 0].item(), 4), round(log_det[0].item(), 4)
    (0.3679, 2.0)
    """
    init = check_states("init", init)
    time = check_positive_float("time", time)
    if not with_log_det:
        x = odeint_fixed(_descent(energy_fn, create_graph), init, t0=0.0, t1=time, num_steps=num_steps, method=method)
        return x if create_graph else x.detach()

    def f(t: float, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        grad, trace = energy_grad_and_hessian_trace(energy_fn, state[0], create_graph=create_graph)
        return -grad, trace

    x, log_det = odeint_fixed(f, (init, init.new_zeros(init.shape[0])), t0=0.0, t1=time, num_steps=num_steps,
                              method=method)
    return (x, log_det) if create_graph else (x.detach(), log_det.detach())


class FlowLogProb(NamedTuple):
    """Result of :func:`gradient_flow_log_prob` / :meth:`NoiseFreeSampler.log_prob`.

    :ivar log_prob: ``(N,)`` log densities (an estimate when ``stderr`` is not ``None``).
    :ivar stderr: ``(N,)`` standard errors of the Hutchinson estimate over probes, or ``None`` (exact).
    :ivar initial: ``(N, D)`` the initial points :math:`x_0` the data map back to.
    """

    log_prob: Tensor
    stderr: Tensor | None
    initial: Tensor


def gradient_flow_log_prob(
    energy_fn: EnergyFn,
    x: Tensor,
    base: Distribution,
    *,
    time: float,
    num_steps: int,
    method: str = "rk4",
    trace: str = "exact",
    num_probes: int = 16,
    generator: torch.Generator | None = None,
    create_graph: bool = False,
) -> FlowLogProb:
    r"""Log density of the gradient-flow generator (Eq. 5.6) at data ``x`` by Eq. 5.7 of Xiao (2022).

    The ODE is solved backwards in time from :math:`x(T) = x` (with :math:`s = T - t`,
    :math:`\frac{dy}{ds} = +\nabla E(y)`) jointly with :math:`I' = \operatorname{tr}\nabla^2E(y)`, giving

    .. math::

        \log p_T(x) = \log p_0(x(0)) + \int_0^T \operatorname{tr}\big[\nabla^2_{xx} E(x(t))\big]\,dt .

    ``trace="exact"`` uses the exact trace (``D`` backward passes per evaluation: the right choice in
    2-D); ``trace="hutchinson"`` the Hutchinson (1989) estimator with ``num_probes`` Rademacher probes,
    each held fixed along the solve (Grathwohl et al., 2019). Because the backward path does not depend
    on the probes and the trace enters linearly, each probe gives an unbiased estimate of the log-density
    (up to the solver's error); the result is their mean with ``stderr`` = their standard deviation
    over :math:`\sqrt P` (an **estimate**, to be reported with this standard error).

    :param energy_fn: maps ``(N, D)`` states to ``(N,)`` energies.
    :param x: points ``(N, D)`` at which to evaluate the density.
    :param base: the initial distribution :math:`p_0`, with ``log_prob`` of ``(N, D)`` returning ``(N,)``
        (e.g. ``Independent(Normal(zeros(D), 1), 1)``).
    :param time: the horizon :math:`T > 0`.
    :param num_steps: solver steps (use the sampler's for a consistent density).
    :param method: ``"rk4"`` or ``"euler"`` (the solver for the backward solve).
    :param trace: ``"exact"`` or ``"hutchinson"``.
    :param num_probes: Hutchinson probes ``P >= 2``.
    :param generator: optional random generator for the probes.
    :param create_graph: keep the graph (maximum-likelihood training of the flow through Eq. 5.7).
    :return: a :class:`FlowLogProb` ``(log_prob, stderr, initial)``.

    Example (:math:`E = \|x\|^2/2`, :math:`p_0 = \mathcal N(0, I)`: :math:`p_T = \mathcal N(0, e^{-2T} I)`):

    >>> import torch
    >>> from torch.distributions import Independent, Normal
    >>> from pyro_diffvi.samplers import gradient_flow_log_prob
    >>> base = Independent(Normal(torch.zeros(2), 1.0), 1)
    >>> res = gradient_flow_log_prob(lambda x: 0.5 * x.pow(2).sum(-1), torch.zeros(1, 2), base,
    ...                              time=0.5, num_steps=10)
    >>> round(res.log_prob.item(), 4)  # log N(0; 0, e^{-1} I) = -log(2 pi) + 1
    -0.8379
    """
    x = check_states("x", x)
    time = check_positive_float("time", time)
    if trace not in ("exact", "hutchinson"):
        raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}")
    probes = None
    if trace == "hutchinson":
        probes = rademacher_probes(check_positive_int("num_probes", num_probes, minimum=2), x, generator)

    def f(s: float, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        y = state[0]
        if probes is None:
            grad, tr = energy_grad_and_hessian_trace(energy_fn, y, create_graph=create_graph)
        else:
            grad, tr = energy_grad_and_hessian_trace(energy_fn, y, probes=probes, create_graph=create_graph)
        return grad, tr

    integral0 = x.new_zeros(x.shape[:1] if probes is None else (probes.shape[0], x.shape[0]))
    x0, integral = odeint_fixed(f, (x, integral0), t0=0.0, t1=time, num_steps=num_steps, method=method)
    log_p0 = base.log_prob(x0)
    if probes is None:
        log_prob, stderr = log_p0 + integral, None
    else:
        log_prob = log_p0 + integral.mean(0)
        stderr = integral.std(0, unbiased=True).detach() / math.sqrt(probes.shape[0])
    if not create_graph:
        log_prob, x0 = log_prob.detach(), x0.detach()
    return FlowLogProb(log_prob, stderr, x0)
