r"""Noise-free Langevin dynamics as a residual flow with an exact density (Xiao (2022), Ch. 5, Sec. 5.3).

Removing the noise from Langevin dynamics turns the sampler into a deterministic, invertible map of
its initial point :math:`x_0 \sim p_0`. In its **discrete form** (Eqs. 5.8-5.9),
:math:`x_{k+1} = x_k - h\nabla_x E(x_k)`, :math:`k = 0..K-1` (:func:`noise_free_langevin`; the dissertation
writes :math:`h = \eta/2`, the package's Langevin convention of :func:`~pyro_diffvi.samplers.langevin` with
the noise removed; it is the forward Euler solution of the gradient-flow ODE of
:mod:`pyro_diffvi.samplers.gradient_flow` with :math:`T = K h`). The map is a residual flow, invertible when
:math:`\mathrm{Lip}(h \nabla E) < 1`, with the exact discrete change of variables
:math:`\log p_K(x_K) = \log p_0(x_0) - \sum_{k<K} \log\lvert\det(I - h\nabla^2 E(x_k))\rvert`
(full Hessians, exact; :func:`noise_free_langevin_log_prob` inverts the steps by fixed-point iteration).

:class:`NoiseFreeSampler` packages both forms as a sampler option (an
:class:`~pyro_diffvi.distributions.EnergyDistribution` ``sampler``) with a ``log_prob`` of its samples.

References

- Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation, University
  of Chicago, 2022 ("Xiao (2022)"), Ch. 5.
- E. Nijkamp, M. Hill, S.-C. Zhu, Y. N. Wu. *Learning Non-Convergent Non-Persistent Short-Run MCMC
  Toward Energy-Based Model*. NeurIPS, 2019; E. Nijkamp, M. Hill, T. Han, S.-C. Zhu, Y. N. Wu. *On the
  Anatomy of MCMC-Based Maximum Likelihood Learning of Energy-Based Models*. AAAI, 2020.
- J. Behrmann, W. Grathwohl, R. T. Q. Chen, D. Duvenaud, J.-H. Jacobsen. *Invertible Residual
  Networks*. ICML, 2019 (invertibility of residual maps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal, Uniform

from pyro_diffvi.ops.hessian import check_states, energy_grad_with_graph, energy_hessian
from pyro_diffvi.ops.ode import check_method
from pyro_diffvi.ops.types import EnergyFn
from pyro_diffvi.samplers.gradient_flow import FlowLogProb, gradient_flow, gradient_flow_log_prob
from pyro_diffvi.util import check_positive_float, check_positive_int

__all__ = ["NoiseFreeSampler", "noise_free_langevin", "noise_free_langevin_log_prob"]


def noise_free_langevin(
    energy_fn: EnergyFn,
    init: Tensor,
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
    :param init: initial points ``(N, D)``.
    :param num_steps: :math:`K \ge 0`.
    :param step_size: :math:`h > 0`.
    :param create_graph: differentiate through the unrolled steps (Eq. 5.14's generator term);
        otherwise the output is detached.
    :param with_log_det: also return the summed log-determinants ``(N,)``.
    :return: :math:`x_K`, or ``(x_K, log_det)``.

    Example (:math:`E = \|x\|^2/2`: each step multiplies by :math:`1 - h`):

    >>> import torch
    >>> from pyro_diffvi.samplers import noise_free_langevin
    >>> x, log_det = noise_free_langevin(lambda x: 0.5 * x.pow(2).sum(-1), torch.ones(1, 2), num_steps=2,
    ...                                  step_size=0.5, with_log_det=True)
    >>> x.tolist(), round(log_det.item(), 4)  # 2 steps x 2 dims x log(1/2)
    ([[0.25, 0.25]], -2.7726)
    """
    x = check_states("init", init)
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
                _, grad = energy_grad_with_graph(energy_fn, x)
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
    :return: a :class:`FlowLogProb` (``stderr`` is ``None``: exact).
    :raises RuntimeError: naming ``step_size`` if a fixed-point iteration does not converge (the step
        is then not invertible by this iteration: lower ``step_size``).

    Example:

    >>> import math, torch
    >>> from torch.distributions import Independent, Normal
    >>> from pyro_diffvi.samplers import noise_free_langevin_log_prob
    >>> base = Independent(Normal(torch.zeros(1, dtype=torch.float64), 1.0), 1)
    >>> res = noise_free_langevin_log_prob(lambda x: 0.5 * x.pow(2).sum(-1), torch.zeros(1, 1, dtype=torch.float64),
    ...                                    base, num_steps=1, step_size=0.5)
    >>> round(res.log_prob.item() - (-0.5 * math.log(2 * math.pi) + math.log(2.0)), 8)  # N(0, 1/4)
    0.0
    """
    x = check_states("x", x).detach()
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
                _, grad = energy_grad_with_graph(energy_fn, z)
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
    :param base_distribution: the starting distribution :math:`p_0`: ``"normal"`` (:math:`\mathcal N(0, s^2 I)`, the
        dissertation's choice) or
        ``"uniform"`` (uniform on :math:`[-s, s]^D`).
    :param init_scale: :math:`s > 0`.

    Example (:math:`E = \|x\|^2/2`, :math:`T = 1`: samples are :math:`\mathcal N(0, e^{-2} I)`):

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
    base_distribution: str = "normal"
    init_scale: float = 1.0

    def __post_init__(self) -> None:
        check_positive_int("num_steps", self.num_steps)
        check_positive_float("step_size", self.step_size)
        check_method(self.method)
        if self.base_distribution not in ("normal", "uniform"):
            raise ValueError(f"base_distribution must be 'normal' or 'uniform', got {self.base_distribution!r}")
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
        if self.base_distribution == "normal":
            return Independent(Normal(zeros, self.init_scale), 1)
        return Independent(Uniform(zeros - self.init_scale, zeros + self.init_scale), 1)

    def run(self, energy_fn: EnergyFn, init: Tensor, *, create_graph: bool = False) -> Tensor:
        """Run the dynamics from given initial points ``init`` ``(N, D)``.

        :param energy_fn: maps ``(N, D)`` states to ``(N,)`` energies.
        :param init: initial points.
        :param create_graph: differentiate through the unrolled dynamics (Eq. 5.14).
        """
        if self.method == "euler":
            return noise_free_langevin(energy_fn, init, num_steps=self.num_steps, step_size=self.step_size,
                                       create_graph=create_graph)
        return gradient_flow(energy_fn, init, time=self.time, num_steps=self.num_steps, method="rk4",
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
        init = self.base(dim, dtype=dtype, device=device).sample((check_positive_int("num_samples", num_samples),))
        return self.run(energy_fn, init)

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
        if trace not in ("exact", "hutchinson"):
            raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}")
        x = check_states("x", x)
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
