"""Numerics with no Pyro model in them: log-mean-exp with its standard error, quadrature grids, Gaussian masses of
polygons, fixed-step ODE solvers, energy gradients and Hessian traces, and the constants and type aliases the
package shares."""

from pyro_diffvi.ops.constants import LOG_2PI
from pyro_diffvi.ops.hessian import (
    check_states,
    energy_grad_and_hessian_trace,
    energy_grad_with_graph,
    energy_hessian,
    rademacher_probes,
)
from pyro_diffvi.ops.log_mean_exp import log_mean_exp_with_se
from pyro_diffvi.ops.ode import odeint_fixed
from pyro_diffvi.ops.polygons import clip_polygon, gaussian_polygon_mass, voronoi_cells, voronoi_masses
from pyro_diffvi.ops.quadrature import QuadratureGrid, make_grid
from pyro_diffvi.ops.types import EnergyFn

__all__ = [
    "LOG_2PI",
    "EnergyFn",
    "QuadratureGrid",
    "check_states",
    "clip_polygon",
    "energy_grad_and_hessian_trace",
    "energy_grad_with_graph",
    "energy_hessian",
    "gaussian_polygon_mass",
    "log_mean_exp_with_se",
    "make_grid",
    "odeint_fixed",
    "rademacher_probes",
    "voronoi_cells",
    "voronoi_masses",
]
