"""A posterior test problem: its description as a row of the table (:class:`ProblemSpec`), the problem it builds
(:class:`PosteriorProblem`: a Pyro model, simulated observations and their exact log evidence) and the quadrature
that checks (or supplies) the exact answers (:func:`posterior_quadrature`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine

from pyro_diffvi.datasets.files import check_float_dtype, data_device
from pyro_diffvi.datasets.posteriors.components import ProblemModel, dummy
from pyro_diffvi.datasets.posteriors.exact import target_log_px
from pyro_diffvi.ops.quadrature import QuadratureGrid
from pyro_diffvi.util import check_positive_int

__all__ = ["PosteriorProblem", "ProblemSpec", "Quadrature", "posterior_quadrature"]


@dataclass
class Quadrature:
    """Result of :func:`posterior_quadrature` (all float64).

    :ivar log_px: ``(N,)`` log evidence by the midpoint rule.
    :ivar mode_masses: ``(N, K)`` posterior mass of each mode region, or ``None`` when ``K == 1``.
    :ivar edge_mass: ``(N,)`` fraction of the posterior mass in the outermost ring of cells (a
        grid is wide enough when this is negligible, e.g. below ``1e-8``).

    Example:

    >>> from pyro_diffvi.datasets import make_problem
    >>> from pyro_diffvi.datasets import posterior_quadrature
    >>> quad = posterior_quadrature(make_problem("banana", num_data=4))
    >>> quad.log_px.shape, bool(quad.edge_mass.max() < 1e-8), quad.mode_masses is None
    (torch.Size([4]), True, True)
    """

    log_px: torch.Tensor
    mode_masses: torch.Tensor | None
    edge_mass: torch.Tensor


@dataclass
class PosteriorProblem:
    """A Pyro model with observations and their exact log evidence.

    :ivar name: key in :data:`PROBLEMS`.
    :ivar model: ``model(x)`` with ``x`` of shape ``(N, D)``; samples ``"z"`` (event shape ``(d,)``)
        and observes ``"x"`` (event shape ``(D,)``) inside ``pyro.plate("data", N)``. It creates
        every tensor on ``x``'s device and dtype and has no learnable parameters; it pickles.
    :ivar x: ``(N, D)`` observations simulated from the model's joint.
    :ivar log_px: ``(N,)`` float64 exact :math:`\\log p(x_n)`.
    :ivar latent_dim: ``d``.
    :ivar kind: ``"multimodal"``, ``"unimodal"`` or ``"curved"``.
    :ivar num_modes: ``K`` (1 unless multimodal).
    :ivar mode_of: maps ``z`` of shape ``(..., d)`` to a long mode index in ``0..K-1`` (``None``
        when ``K == 1``).
    :ivar mode_masses: ``(N, K)`` float64 exact posterior mass of each mode region (``None`` when
        ``K == 1``).
    :ivar description: one line.
    :ivar log_joint: ``log_joint(x, z)`` is :math:`\\log p(x, z)`, broadcasting the batch
        dimensions of ``x`` ``(..., D)`` and ``z`` ``(..., d)``; the exact posterior log density is
        ``log_joint(x, z) - log_px``.
    :ivar grid: the quadrature grid (2-D latents; ``None`` otherwise), covering ``x``'s posteriors.

    Example:

    >>> import torch
    >>> from pyro_diffvi.datasets import make_problem
    >>> problem = make_problem("sign_symmetric", num_data=4)
    >>> problem.kind, problem.num_modes, problem.mode_masses[0].tolist()
    ('multimodal', 2, [0.5, 0.5])
    >>> problem.mode_of(torch.tensor([[-1.0, 0.0], [1.0, 0.0]])).tolist()
    [0, 1]
    """

    name: str
    model: Callable
    x: torch.Tensor
    log_px: torch.Tensor
    latent_dim: int
    kind: str
    num_modes: int
    mode_of: Callable | None
    mode_masses: torch.Tensor | None
    description: str
    log_joint: Callable | None = None
    grid: QuadratureGrid | None = None


@dataclass(frozen=True)
class ProblemSpec:
    r"""One row of the table of posterior test problems: what :func:`~pyro_diffvi.datasets.make_problem` builds.

    Called (``spec(num_data=..., seed=..., device=..., dtype=...)``, the arguments of
    :func:`~pyro_diffvi.datasets.make_problem`), it simulates the observations from the model's joint (seeded,
    the global random state untouched) and computes the exact answers: ``log_px`` by ``closed_form`` where
    given, else by quadrature on ``grid(x64)``; the mode masses by ``exact_masses`` where given, else by
    quadrature.

    :ivar name: the key in :data:`~pyro_diffvi.datasets.PROBLEMS`.
    :ivar kind: ``"multimodal"``, ``"unimodal"`` or ``"curved"``.
    :ivar description: one line.
    :ivar prior: ``prior(ref)``, the latent's prior on ``ref``'s device and dtype.
    :ivar latent_dim: ``d``.
    :ivar likelihood: ``likelihood(z)``, batch shape ``z.shape[:-1] + (D,)`` (``None`` for a sampling target: a
        dummy observation independent of ``z``).
    :ivar obs_dim: ``D``.
    :ivar grid: ``grid(x64)``, the quadrature grid covering the observations' posteriors (2-D latents only).
    :ivar closed_form: ``closed_form(x64)``, the exact ``log p(x)``.
    :ivar num_modes: ``K``.
    :ivar mode_of: maps ``z`` to its mode index (``None`` when ``K == 1``).
    :ivar exact_masses: ``exact_masses(x64)``, the exact posterior mass of each mode region, ``(N, K)``.
    :ivar target: a sampling target: the latent's prior is the target, ``N = 1`` whatever ``num_data``, and
        :math:`\log p(x) = \log\mathcal N(x; 0, 1)` exactly.

    Example:

    >>> from pyro_diffvi.datasets import PROBLEMS
    >>> spec = PROBLEMS["banana"]
    >>> spec.kind, spec.latent_dim, spec(num_data=4).x.shape
    ('curved', 2, torch.Size([4, 2]))
    """

    name: str
    kind: str
    description: str
    prior: Callable[[torch.Tensor], object]
    latent_dim: int
    likelihood: Callable[[torch.Tensor], object] | None = None
    obs_dim: int = 1
    grid: Callable[[torch.Tensor], QuadratureGrid] | None = None
    closed_form: Callable[[torch.Tensor], torch.Tensor] | None = None
    num_modes: int = 1
    mode_of: Callable | None = None
    exact_masses: Callable[[torch.Tensor], torch.Tensor] | None = None
    target: bool = False

    def __call__(
        self, *, num_data: int = 64, seed: int = 0, device=None, dtype: torch.dtype = torch.float32
    ) -> PosteriorProblem:
        device, dtype = _check_args(num_data, seed, device, dtype)
        if self.target:
            model = ProblemModel(self.prior, dummy, latent_dim=self.latent_dim, obs_dim=1)
            closed_form, num_data = target_log_px, 1
        else:
            model = ProblemModel(self.prior, self.likelihood, latent_dim=self.latent_dim, obs_dim=self.obs_dim)
            closed_form = self.closed_form
        x = _simulate(model, num_data, seed).to(device=device, dtype=dtype)
        x64 = x.to(torch.float64)
        problem = PosteriorProblem(
            name=self.name,
            model=model,
            x=x,
            log_px=closed_form(x64) if closed_form is not None else torch.empty(0),
            latent_dim=model.latent_dim,
            kind=self.kind,
            num_modes=self.num_modes,
            mode_of=self.mode_of,
            mode_masses=self.exact_masses(x64) if self.exact_masses is not None else None,
            description=self.description,
            log_joint=model.log_joint,
            grid=self.grid(x64) if self.grid is not None else None,
        )
        needs_masses = self.mode_of is not None and self.exact_masses is None
        if closed_form is None or needs_masses:
            result = posterior_quadrature(problem)
            if closed_form is None:
                problem.log_px = result.log_px
            if needs_masses:
                problem.mode_masses = result.mode_masses
        return problem


def _check_args(num_data: int, seed: int, device, dtype) -> tuple[torch.device, torch.dtype]:
    check_positive_int("num_data", num_data)
    check_positive_int("seed", seed, minimum=0)
    return data_device(device), check_float_dtype(dtype)


def _simulate(model: ProblemModel, num_data: int, seed: int) -> torch.Tensor:
    """Draw ``x`` from the model's joint by running it unconditioned (float64, CPU), seeded
    without touching the global random state."""
    placeholder = torch.zeros(num_data, model.obs_dim, dtype=torch.float64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trace = poutine.trace(poutine.uncondition(model)).get_trace(placeholder)
    return trace.nodes["x"]["value"].detach()


def posterior_quadrature(
    problem: PosteriorProblem, *, x: torch.Tensor | None = None, grid: QuadratureGrid | None = None
) -> Quadrature:
    """Log evidence and mode masses of a 2-D-latent problem by the float64 midpoint rule.

    .. math::

        \\log p(x_n) \\approx \\log \\sum_g w_g\\, p(x_n, z_g), \\qquad
        P(\\text{mode } k \\mid x_n) \\approx \\frac{\\sum_{g:\\,\\mathrm{mode}(z_g) = k}
        w_g\\, p(x_n, z_g)}{\\sum_g w_g\\, p(x_n, z_g)}

    vectorized over the observations, the grid processed in chunks.

    :param problem: a problem with a ``grid`` (2-D latent).
    :param x: observations ``(N, D)`` (default: ``problem.x``); they must lie where ``grid``
        covers their posteriors (check ``edge_mass``).
    :param grid: default ``problem.grid``; pass ``problem.grid.refined(2)`` to check convergence.
    :return: a :class:`Quadrature`.

    Example:

    >>> from pyro_diffvi.datasets import make_problem
    >>> from pyro_diffvi.datasets import posterior_quadrature
    >>> problem = make_problem("four_modes", num_data=4)  # closed form, so the rule can be checked
    >>> quad = posterior_quadrature(problem)
    >>> bool((quad.log_px - problem.log_px).abs().max() < 1e-6)
    True
    """
    grid = problem.grid if grid is None else grid
    if grid is None or problem.log_joint is None:
        raise ValueError(f"problem {problem.name!r} has no quadrature grid (latent_dim != 2)")
    x = problem.x if x is None else x
    if not torch.is_tensor(x) or x.dim() != 2 or x.shape[-1] != problem.x.shape[-1]:
        raise ValueError(f"x must be a tensor of shape (N, {problem.x.shape[-1]})")
    x = x.to(torch.float64)
    nodes, log_weight, on_edge = grid.nodes(device=x.device)
    num_modes = problem.num_modes if problem.mode_of is not None else 1
    chunk = min(2**16, max(1024, 2**22 // (x.shape[0] * x.shape[1])))
    totals, edges, modes = [], [], []
    with pyro.validation_enabled(False):  # the support checks would dominate the cost
        for start in range(0, nodes.shape[0], chunk):
            z = nodes[start : start + chunk]
            log_f = problem.log_joint(x.unsqueeze(-2), z) + log_weight[start : start + chunk]  # (N, G)
            totals.append(log_f.logsumexp(-1))
            edges.append(log_f.masked_fill(~on_edge[start : start + chunk], -math.inf).logsumexp(-1))
            if num_modes > 1:
                peak = log_f.max(-1, keepdim=True).values
                onehot = torch.nn.functional.one_hot(problem.mode_of(z), num_modes).to(log_f.dtype)
                modes.append(((log_f - peak).exp() @ onehot).log() + peak)
    log_px = torch.stack(totals, -1).logsumexp(-1)
    edge_mass = (torch.stack(edges, -1).logsumexp(-1) - log_px).exp()
    mode_masses = None
    if num_modes > 1:
        mode_masses = (torch.stack(modes, -1).logsumexp(-1) - log_px.unsqueeze(-1)).exp()
    return Quadrature(log_px=log_px, mode_masses=mode_masses, edge_mass=edge_mass)
