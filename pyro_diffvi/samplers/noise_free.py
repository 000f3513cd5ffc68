r"""Noise-free Langevin dynamics as a flow: the gradient-descent ODE and its exact densities
(Xiao (2022), Ch. 5, Sec. 5.3).

Removing the noise from Langevin dynamics turns the sampler into a deterministic, invertible map of
its initial point :math:`x_0 \sim p_0` (e.g. :math:`\mathcal N(0, I)` or a uniform box), i.e. a
generator / normalizing flow whose density is computable:

* **ODE form** (Eqs. 5.5-5.6): :math:`x'(t) = -\nabla_x E(x(t))`, :math:`x(0) = x_0`,
  :math:`t \in [0, T]`, solved here by a fixed-step classical Runge-Kutta scheme
  (:func:`odeint_fixed`, ``method="rk4"``). The instantaneous change of variables (Chen et al., 2018;
  Grathwohl et al., 2019) gives :math:`\frac{d}{dt}\log p_t(x(t)) = -\operatorname{tr}\partial_x(-\nabla E)
  = \operatorname{tr}\nabla^2 E(x(t))`, hence Eq. 5.7:

  .. math::

      \log p_T(x_T) = \log p_0(x_0) + \int_0^T \operatorname{tr}\big[\nabla^2_{xx} E(x(t))\big]\,dt .

  The density of a data point :math:`x` is obtained by solving the ODE backwards from :math:`x_T = x`
  to :math:`x_0` while accumulating the integral (:func:`gradient_flow_log_prob`). The trace is exact
  (one Hessian-row backward pass per dimension, the default; cheap in 2-D) or a Hutchinson (1989)
  estimate :math:`\operatorname{tr} H = \mathbb E_v[v^\top H v]` with Rademacher probes held fixed along
  each solve (as in FFJORD), returned with its standard error over probes.

* **Discrete form** (Eqs. 5.8-5.9): :math:`x_{k+1} = x_k - h\nabla_x E(x_k)`, :math:`k = 0..K-1`
  (:func:`noise_free_langevin`; the dissertation writes :math:`h = \eta/2`, the package's Langevin
  convention of :func:`~pyro_diffvi.samplers.langevin` with the noise removed; it is the forward Euler
  solution of the ODE with :math:`T = K h`). The map is a residual flow, invertible when
  :math:`\mathrm{Lip}(h \nabla E) < 1`, with the exact discrete change of variables
  :math:`\log p_K(x_K) = \log p_0(x_0) - \sum_{k<K} \log\lvert\det(I - h\nabla^2 E(x_k))\rvert`
  (full Hessians, exact; :func:`noise_free_langevin_log_prob` inverts the steps by fixed-point
  iteration).

:class:`NoiseFreeSampler` packages both as a sampler option (an
:class:`~pyro_diffvi.distributions.EnergyDistribution` ``sampler``) with a ``log_prob`` of its samples.

References

- Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation, University
  of Chicago, 2022 ("Xiao (2022)"), Ch. 5.
- E. Nijkamp, M. Hill, S.-C. Zhu, Y. N. Wu. *Learning Non-Convergent Non-Persistent Short-Run MCMC
  Toward Energy-Based Model*. NeurIPS, 2019; E. Nijkamp, M. Hill, T. Han, S.-C. Zhu, Y. N. Wu. *On the
  Anatomy of MCMC-Based Maximum Likelihood Learning of Energy-Based Models*. AAAI, 2020.
- R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential Equations*.
  NeurIPS, 2018 (instantaneous change of variables).
- W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud. *FFJORD: Free-Form Continuous
  Dynamics for Scalable Reversible Generative Models*. ICLR, 2019 (Hutchinson trace estimates).
- M. F. Hutchinson. *A Stochastic Estimator of the Trace of the Influence Matrix for Laplacian Smoothing
  Splines*. Communications in Statistics - Simulation and Computation, 1989.
- J. Behrmann, W. Grathwohl, R. T. Q. Chen, D. Duvenaud, J.-H. Jacobsen. *Invertible Residual
  Networks*. ICML, 2019 (invertibility of residual maps).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Union

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal, Uniform

from pyro_diffvi.util import check_positive_float, check_positive_int

EnergyFn = Callable[[Tensor], Tensor]
State = Union[Tensor, Sequence[Tensor]]

__all__ = [
    "FlowLogProb",
    "NoiseFreeSampler",
    "energy_grad_and_hessian_trace",
    "energy_hessian",
    "gradient_flow",
    "gradient_flow_log_prob",
    "noise_free_langevin",
    "noise_free_langevin_log_prob",
    "odeint_fixed",
]

METHODS = ("rk4", "euler")


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def _check_states(name: str, x: Tensor) -> Tensor:
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, D), got {type(x).__name__}")
    if x.dim() != 2 or x.shape[0] < 1 or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor of shape (N, D) with N >= 1, got "
                         f"{tuple(x.shape)} of dtype {x.dtype}")
    return x


def odeint_fixed(
    func: Callable[[float, tuple[Tensor, ...]], tuple[Tensor, ...]] | Callable[[float, Tensor], Tensor],
    y0: State,
    *,
    t0: float,
    t1: float,
    num_steps: int,
    method: str = "rk4",
) -> State:
    r"""Solve :math:`y' = f(t, y)`, :math:`y(t_0) = y_0` to :math:`t_1` with ``num_steps`` equal steps.

    ``method="rk4"``: the classical fourth-order Runge-Kutta scheme, with :math:`\Delta = (t_1 - t_0)/n`,

    .. math::

        k_1 = f(t, y),\; k_2 = f(t + \tfrac\Delta2, y + \tfrac\Delta2 k_1),\;
        k_3 = f(t + \tfrac\Delta2, y + \tfrac\Delta2 k_2),\; k_4 = f(t + \Delta, y + \Delta k_3),\quad
        y \leftarrow y + \tfrac\Delta6 (k_1 + 2k_2 + 2k_3 + k_4),

    global error :math:`O(\Delta^4)`; ``method="euler"``: :math:`y \leftarrow y + \Delta f(t, y)`, error
    :math:`O(\Delta)`. :math:`t_1 < t_0` integrates backwards. Everything is vectorized over the batch
    and differentiable through autograd when ``f`` is. The fixed-step solver stands in for the adaptive
    Dormand-Prince solver of Xiao (2022), Sec. 5.5.3 (Eq. 5.6's "ODESolve"; Chen et al., 2018).

    :param func: ``f(t, y)``; ``y`` a tensor, or a tuple of tensors (then ``f`` returns a tuple of the
        same shapes: an augmented state such as ``(x, log_det)``).
    :param y0: the initial state (tensor or tuple of tensors).
    :param t0: initial time.
    :param t1: final time.
    :param num_steps: number of steps ``>= 1``.
    :param method: ``"rk4"`` or ``"euler"``.
    :returns: :math:`y(t_1)`, of the structure of ``y0``.

    Example (:math:`y' = -y`, :math:`y(1) = e^{-1}`)::

        >>> import math, torch
        >>> from pyro_diffvi.samplers import odeint_fixed
        >>> y = odeint_fixed(lambda t, y: -y, torch.ones(1, dtype=torch.float64), t0=0.0, t1=1.0, num_steps=10)
        >>> abs(y.item() - math.exp(-1)) < 1e-6
        True
    """
    num_steps = check_positive_int("num_steps", num_steps)
    _check_method(method)
    if not (math.isfinite(float(t0)) and math.isfinite(float(t1))):
        raise ValueError(f"t0 and t1 must be finite, got t0={t0!r}, t1={t1!r}")
    single = torch.is_tensor(y0)
    y = (y0,) if single else tuple(y0)
    if not y or not all(torch.is_tensor(v) for v in y):
        raise TypeError("y0 must be a tensor or a non-empty tuple of tensors")

    def f(t: float, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        out = func(t, state[0]) if single else func(t, state)
        out = (out,) if single else tuple(out)
        if len(out) != len(state) or any(o.shape != s.shape for o, s in zip(out, state)):
            raise ValueError("func(t, y) must return derivatives of the same structure and shapes as y")
        return out

    def axpy(state, a: float, k):
        return tuple(s + a * d for s, d in zip(state, k))

    dt = (float(t1) - float(t0)) / num_steps
    t = float(t0)
    for _ in range(num_steps):
        k1 = f(t, y)
        if method == "euler":
            y = axpy(y, dt, k1)
        else:
            k2 = f(t + dt / 2, axpy(y, dt / 2, k1))
            k3 = f(t + dt / 2, axpy(y, dt / 2, k2))
            k4 = f(t + dt, axpy(y, dt, k3))
            y = tuple(s + (dt / 6) * (a + 2 * b + 2 * c + d) for s, a, b, c, d in zip(y, k1, k2, k3, k4))
        t += dt
    return y[0] if single else y


def _grad_with_graph(energy_fn: EnergyFn, x: Tensor) -> tuple[Tensor, Tensor]:
    """(x with grad, grad E(x) with create_graph) for Hessian products."""
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
    :returns: ``(grad, trace)``: ``(N, D)`` and ``(N,)`` (exact) or ``(P, N)`` (one estimate per probe).

    Example (:math:`E = \tfrac12 z^\top A z` has trace :math:`\operatorname{tr} A = 5`)::

        >>> import torch
        >>> from pyro_diffvi.samplers import energy_grad_and_hessian_trace
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
        >>> grad, trace = energy_grad_and_hessian_trace(lambda z: 0.5 * ((z @ A) * z).sum(-1), torch.ones(4, 2))
        >>> grad[0].tolist(), trace.tolist()
        ([3.0, 4.0], [5.0, 5.0, 5.0, 5.0])
    """
    x = _check_states("x", x)
    with torch.enable_grad():
        x, grad = _grad_with_graph(energy_fn, x)
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
    :returns: ``(grad, hessian)`` of shapes ``(N, D)`` and ``(N, D, D)``.

    Example::

        >>> import torch
        >>> from pyro_diffvi.samplers import energy_hessian
        >>> _, H = energy_hessian(lambda z: z[:, 0] ** 2 * z[:, 1], torch.tensor([[1.0, 2.0]]))
        >>> H[0].tolist()
        [[4.0, 2.0], [2.0, 0.0]]
    """
    x = _check_states("x", x)
    with torch.enable_grad():
        x, grad = _grad_with_graph(energy_fn, x)
        rows = [torch.autograd.grad(grad[:, i].sum(), x, create_graph=create_graph, retain_graph=True)[0]
                for i in range(x.shape[1])]
        hessian = torch.stack(rows, dim=1)
    if not create_graph:
        return grad.detach(), hessian.detach()
    return grad, hessian


def _descent(energy_fn: EnergyFn, create_graph: bool) -> Callable[[float, Tensor], Tensor]:
    def f(t: float, x: Tensor) -> Tensor:
        with torch.enable_grad():
            _, grad = _grad_with_graph(energy_fn, x)
        return -(grad if create_graph else grad.detach())

    return f


def gradient_flow(
    energy_fn: EnergyFn,
    x0: Tensor,
    *,
    time: float,
    num_steps: int,
    method: str = "rk4",
    create_graph: bool = False,
    with_log_det: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""The generator of Eq. 5.6 of Xiao (2022): solve :math:`x' = -\nabla_x E(x)` (Eq. 5.5) from ``x0``
    over :math:`[0, T]` with :func:`odeint_fixed`.

    With ``with_log_det=True`` it also integrates Eq. 5.7 along the path, returning
    :math:`\int_0^T \operatorname{tr}\nabla^2 E(x(t))\,dt = \log p_T(x_T) - \log p_0(x_0)` (exact trace),
    the log-density change of the samples.

    :param energy_fn: maps ``(N, D)`` states to ``(N,)`` energies.
    :param x0: initial points ``(N, D)`` (draws of :math:`p_0`).
    :param time: the horizon :math:`T > 0` (0.2 in the dissertation's 2-D experiments).
    :param num_steps: solver steps.
    :param method: ``"rk4"`` or ``"euler"`` (``"euler"`` is exactly :func:`noise_free_langevin` with
        ``step_size = T / num_steps``).
    :param create_graph: keep the graph through the whole solve (unrolled), so the output is
        differentiable in the energy's parameters and in ``x0`` (the generator loss, Eq. 5.14);
        otherwise the output is detached.
    :param with_log_det: also return the integral of the Hessian trace.
    :returns: :math:`x_T` ``(N, D)``, or ``(x_T, integral)`` with ``integral`` of shape ``(N,)``.

    Example (:math:`E = \|x\|^2/2`: :math:`x_T = e^{-T} x_0`, integral :math:`= D T`)::

        >>> import torch
        >>> from pyro_diffvi.samplers import gradient_flow
        >>> x, log_det = gradient_flow(lambda x: 0.5 * x.pow(2).sum(-1), torch.ones(3, 2), time=1.0,
        ...                            num_steps=20, with_log_det=True)
        >>> round(x[0, 0].item(), 4), round(log_det[0].item(), 4)
        (0.3679, 2.0)
    """
    x0 = _check_states("x0", x0)
    time = check_positive_float("time", time)
    if not with_log_det:
        x = odeint_fixed(_descent(energy_fn, create_graph), x0, t0=0.0, t1=time, num_steps=num_steps, method=method)
        return x if create_graph else x.detach()

    def f(t: float, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        grad, trace = energy_grad_and_hessian_trace(energy_fn, state[0], create_graph=create_graph)
        return -grad, trace

    x, log_det = odeint_fixed(f, (x0, x0.new_zeros(x0.shape[0])), t0=0.0, t1=time, num_steps=num_steps,
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


def _rademacher(num: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    bits = torch.randint(0, 2, (num,) + tuple(like.shape), generator=generator, device=like.device)
    return bits.to(like.dtype) * 2 - 1


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
    :returns: a :class:`FlowLogProb` ``(log_prob, stderr, initial)``.

    Example (:math:`E = \|x\|^2/2`, :math:`p_0 = \mathcal N(0, I)`: :math:`p_T = \mathcal N(0, e^{-2T} I)`)::

        >>> import torch
        >>> from torch.distributions import Independent, Normal
        >>> from pyro_diffvi.samplers import gradient_flow_log_prob
        >>> base = Independent(Normal(torch.zeros(2), 1.0), 1)
        >>> res = gradient_flow_log_prob(lambda x: 0.5 * x.pow(2).sum(-1), torch.zeros(1, 2), base,
        ...                              time=0.5, num_steps=10)
        >>> round(res.log_prob.item(), 4)  # log N(0; 0, e^{-1} I) = -log(2 pi) + 1
        -0.8379
    """
    x = _check_states("x", x)
    time = check_positive_float("time", time)
    if trace not in ("exact", "hutchinson"):
        raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}")
    probes = None
    if trace == "hutchinson":
        probes = _rademacher(check_positive_int("num_probes", num_probes, minimum=2), x, generator)

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


def noise_free_langevin(
    energy_fn: EnergyFn,
    x0: Tensor,
    *,
    num_steps: int,
    step_size: float,
    create_graph: bool = False,
    with_log_det: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Noise-free Langevin dynamics, Eqs. 5.8-5.9 of Xiao (2022): :math:`x_{k+1} = x_k - h\nabla_x E(x_k)`
    for :math:`k = 0..K-1` (:math:`h = \eta/2` of the dissertation; Langevin dynamics of
    :func:`~pyro_diffvi.samplers.langevin` without noise; Euler's solution of Eq. 5.5 with :math:`T = Kh`).

    With ``with_log_det=True`` it also returns :math:`\sum_k \log\lvert\det(I - h\nabla^2E(x_k))\rvert`
    (full Hessians: ``D`` backward passes per step), so that the exact density of the output is
    :math:`\log p_K(x_K) = \log p_0(x_0) - \text{log\_det}` whenever the map is invertible
    (:math:`\mathrm{Lip}(h\nabla E) < 1`, Behrmann et al., 2019).

    :param energy_fn: maps ``(N, D)`` states to ``(N,)`` energies.
    :param x0: initial points ``(N, D)``.
    :param num_steps: :math:`K \ge 0`.
    :param step_size: :math:`h > 0`.
    :param create_graph: differentiate through the unrolled steps (Eq. 5.14's generator term);
        otherwise the output is detached.
    :param with_log_det: also return the summed log-determinants ``(N,)``.
    :returns: :math:`x_K`, or ``(x_K, log_det)``.

    Example (:math:`E = \|x\|^2/2`: each step multiplies by :math:`1 - h`)::

        >>> import torch
        >>> from pyro_diffvi.samplers import noise_free_langevin
        >>> x, log_det = noise_free_langevin(lambda x: 0.5 * x.pow(2).sum(-1), torch.ones(1, 2), num_steps=2,
        ...                                  step_size=0.5, with_log_det=True)
        >>> x.tolist(), round(log_det.item(), 4)  # 2 steps x 2 dims x log(1/2)
        ([[0.25, 0.25]], -2.7726)
    """
    x = _check_states("x0", x0)
    num_steps = check_positive_int("num_steps", num_steps, minimum=0)
    step_size = check_positive_float("step_size", step_size)
    if not create_graph:
        x = x.detach()
    log_det = x.new_zeros(x.shape[0])
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    for _ in range(num_steps):
        if with_log_det:
            grad, hessian = energy_hessian(energy_fn, x, create_graph=create_graph)
            log_det = log_det + torch.linalg.slogdet(eye - step_size * hessian)[1]
        else:
            with torch.enable_grad():
                _, grad = _grad_with_graph(energy_fn, x)
            if not create_graph:
                grad = grad.detach()
        x = x - step_size * grad
    if not create_graph:
        x, log_det = x.detach(), log_det.detach()
    return (x, log_det) if with_log_det else x


def noise_free_langevin_log_prob(
    energy_fn: EnergyFn,
    x: Tensor,
    base: Distribution,
    *,
    num_steps: int,
    step_size: float,
    tol: float = 1e-6,
    max_iter: int = 500,
) -> FlowLogProb:
    r"""Exact log density of the output of :func:`noise_free_langevin` at data ``x`` (the discrete change
    of variables of the residual flow Eq. 5.9 of Xiao (2022)).

    Each step :math:`y = z - h\nabla E(z)` is inverted by the fixed-point iteration
    :math:`z \leftarrow y + h\nabla E(z)` (a contraction when :math:`\mathrm{Lip}(h\nabla E) < 1`,
    Behrmann et al., 2019), from :math:`x_K = x` back to :math:`x_0`; then
    :math:`\log p_K(x) = \log p_0(x_0) - \sum_k \log\lvert\det(I - h\nabla^2 E(x_k))\rvert`.

    :param energy_fn: maps ``(N, D)`` states to ``(N,)`` energies.
    :param x: points ``(N, D)``.
    :param base: the initial distribution :math:`p_0` (``log_prob`` of ``(N, D)`` gives ``(N,)``).
    :param num_steps: :math:`K`.
    :param step_size: :math:`h`.
    :param tol: fixed-point tolerance (max-norm change of an iterate).
    :param max_iter: fixed-point iterations allowed per step.
    :returns: a :class:`FlowLogProb` (``stderr`` is ``None``: exact).
    :raises RuntimeError: naming ``step_size`` if a fixed-point iteration does not converge (the step
        is then not invertible by this iteration: lower ``step_size``).

    Example::

        >>> import math, torch
        >>> from torch.distributions import Independent, Normal
        >>> from pyro_diffvi.samplers import noise_free_langevin_log_prob
        >>> base = Independent(Normal(torch.zeros(1, dtype=torch.float64), 1.0), 1)
        >>> res = noise_free_langevin_log_prob(lambda x: 0.5 * x.pow(2).sum(-1), torch.zeros(1, 1, dtype=torch.float64),
        ...                                    base, num_steps=1, step_size=0.5)
        >>> round(res.log_prob.item() - (-0.5 * math.log(2 * math.pi) + math.log(2.0)), 8)  # N(0, 1/4)
        0.0
    """
    x = _check_states("x", x).detach()
    num_steps = check_positive_int("num_steps", num_steps, minimum=0)
    step_size = check_positive_float("step_size", step_size)
    check_positive_float("tol", tol)
    check_positive_int("max_iter", max_iter)
    path = []
    y = x
    for _ in range(num_steps):
        z = y
        for _ in range(max_iter):
            with torch.enable_grad():
                _, grad = _grad_with_graph(energy_fn, z)
            z_new = y + step_size * grad.detach()
            change = (z_new - z).abs().max().item()
            z = z_new
            if change <= tol:
                break
        else:
            raise RuntimeError(
                f"noise_free_langevin_log_prob: the fixed-point inversion of a step did not converge in "
                f"{max_iter} iterations (last change {change:.3g}); step_size={step_size!r} is too large for "
                "this energy (Lip(h grad E) must be < 1): lower step_size"
            )
        path.append(z)
        y = z
    x0 = y
    log_det = x.new_zeros(x.shape[0])
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    for z in path:
        _, hessian = energy_hessian(energy_fn, z)
        log_det = log_det + torch.linalg.slogdet(eye - step_size * hessian)[1]
    return FlowLogProb((base.log_prob(x0) - log_det).detach(), None, x0)


@dataclass(kw_only=True)
class NoiseFreeSampler:
    r"""Noise-free Langevin sampler (Xiao (2022), Ch. 5): draws :math:`x_0 \sim p_0` and runs the
    deterministic dynamics, ``method="euler"`` (Eq. 5.8, :func:`noise_free_langevin`) or
    ``method="rk4"`` (the ODE of Eq. 5.5 by RK4, :func:`gradient_flow`), over the horizon
    :math:`T = \text{num\_steps} \times \text{step\_size}`; :meth:`log_prob` is the exact density of its
    samples (the discrete change of variables for ``"euler"``, Eq. 5.7 for ``"rk4"``).

    Usable as the ``sampler`` of an :class:`~pyro_diffvi.distributions.EnergyDistribution` (called with
    the distribution and a sample shape) and directly through :meth:`sample`.

    :param num_steps: solver steps :math:`K`.
    :param step_size: :math:`h` (the dissertation's :math:`\eta/2`).
    :param method: ``"euler"`` or ``"rk4"``.
    :param init: :math:`p_0`: ``"normal"`` (:math:`\mathcal N(0, s^2 I)`, the dissertation's choice) or
        ``"uniform"`` (uniform on :math:`[-s, s]^D`).
    :param init_scale: :math:`s > 0`.

    Example (:math:`E = \|x\|^2/2`, :math:`T = 1`: samples are :math:`\mathcal N(0, e^{-2} I)`)::

        >>> import torch
        >>> from pyro_diffvi.samplers import NoiseFreeSampler
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> sampler = NoiseFreeSampler(num_steps=10, step_size=0.1, method="rk4")
        >>> energy = lambda x: 0.5 * x.pow(2).sum(-1)
        >>> x = sampler.sample(energy, 4000, 2)
        >>> round(x.var().item(), 2), round(sampler.log_prob(energy, torch.zeros(1, 2)).log_prob.item(), 3)
        (0.14, 0.162)
    """

    num_steps: int = 20
    step_size: float = 0.01
    method: str = "euler"
    init: str = "normal"
    init_scale: float = 1.0

    def __post_init__(self) -> None:
        check_positive_int("num_steps", self.num_steps)
        check_positive_float("step_size", self.step_size)
        _check_method(self.method)
        if self.init not in ("normal", "uniform"):
            raise ValueError(f"init must be 'normal' or 'uniform', got {self.init!r}")
        check_positive_float("init_scale", self.init_scale)

    @property
    def time(self) -> float:
        """The horizon :math:`T = K h`."""
        return self.num_steps * self.step_size

    def base(self, dim: int, *, dtype: torch.dtype | None = None, device=None) -> Distribution:
        """The initial distribution :math:`p_0` on :math:`\\mathbb R^{dim}`.

        :param dim: the dimension ``D``.
        :param dtype: floating dtype (default: torch's default).
        :param device: device.
        """
        dim = check_positive_int("dim", dim)
        zeros = torch.zeros(dim, dtype=dtype or torch.get_default_dtype(), device=device)
        if self.init == "normal":
            return Independent(Normal(zeros, self.init_scale), 1)
        return Independent(Uniform(zeros - self.init_scale, zeros + self.init_scale), 1)

    def run(self, energy_fn: EnergyFn, x0: Tensor, *, create_graph: bool = False) -> Tensor:
        """Run the dynamics from given initial points ``x0`` ``(N, D)``.

        :param energy_fn: maps ``(N, D)`` states to ``(N,)`` energies.
        :param x0: initial points.
        :param create_graph: differentiate through the unrolled dynamics (Eq. 5.14).
        """
        if self.method == "euler":
            return noise_free_langevin(energy_fn, x0, num_steps=self.num_steps, step_size=self.step_size,
                                       create_graph=create_graph)
        return gradient_flow(energy_fn, x0, time=self.time, num_steps=self.num_steps, method="rk4",
                             create_graph=create_graph)

    def sample(self, energy_fn: EnergyFn, num_samples: int, dim: int, *, dtype: torch.dtype | None = None,
               device=None) -> Tensor:
        """Draw ``num_samples`` samples ``(num_samples, dim)`` (detached).

        :param energy_fn: maps ``(N, D)`` states to ``(N,)`` energies.
        :param num_samples: number of samples.
        :param dim: dimension ``D``.
        :param dtype: floating dtype.
        :param device: device.
        """
        x0 = self.base(dim, dtype=dtype, device=device).sample((check_positive_int("num_samples", num_samples),))
        return self.run(energy_fn, x0)

    def log_prob(self, energy_fn: EnergyFn, x: Tensor, *, trace: str = "exact", num_probes: int = 16,
                 generator: torch.Generator | None = None) -> FlowLogProb:
        """Log density of this sampler's output distribution at ``x`` ``(N, D)``.

        ``method="euler"``: exact, :func:`noise_free_langevin_log_prob` (``trace`` must be ``"exact"``);
        ``method="rk4"``: Eq. 5.7 by :func:`gradient_flow_log_prob` with the same steps (exact trace or a
        Hutchinson estimate with its standard error).

        :param energy_fn: the energy the samples were drawn with.
        :param x: points ``(N, D)``.
        :param trace: ``"exact"`` or ``"hutchinson"`` (``"rk4"`` only).
        :param num_probes: Hutchinson probes.
        :param generator: random generator for the probes.
        """
        x = _check_states("x", x)
        base = self.base(x.shape[1], dtype=x.dtype, device=x.device)
        if self.method == "euler":
            if trace != "exact":
                raise ValueError("trace='hutchinson' needs method='rk4'; the discrete (euler) density is exact")
            return noise_free_langevin_log_prob(energy_fn, x, base, num_steps=self.num_steps, step_size=self.step_size)
        return gradient_flow_log_prob(energy_fn, x, base, time=self.time, num_steps=self.num_steps, method="rk4",
                                      trace=trace, num_probes=num_probes, generator=generator)

    def __call__(self, distribution, shape: torch.Size) -> Tensor:
        """Draw samples of ``shape`` (``(N, D)``, or ``(..., D)`` flattened to rows) from ``distribution``
        (an energy distribution with ``energy``, ``dtype`` and ``device``)."""
        shape = torch.Size(shape)
        event_shape = tuple(getattr(distribution, "event_shape", shape[-1:]))
        if len(shape) < 1 or len(event_shape) != 1:
            raise ValueError(f"NoiseFreeSampler needs a vector event (event_shape (D,)), got event_shape "
                             f"{event_shape} and shape {tuple(shape)}")
        n = int(math.prod(shape[:-1])) if len(shape) > 1 else 1
        x = self.sample(distribution.energy, n, shape[-1], dtype=distribution.dtype, device=distribution.device)
        return x.reshape(shape)
