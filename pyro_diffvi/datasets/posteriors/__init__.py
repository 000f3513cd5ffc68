"""Amortized posterior test problems with exact :math:`\\log p(x)` per observation, written as a declarative table
(:mod:`~pyro_diffvi.datasets.posteriors.table`, one :class:`ProblemSpec` row per problem).

Each problem is an ordinary Pyro model with one latent site ``"z"`` (event shape ``(d,)``) and one
observed site ``"x"`` (event shape ``(D,)``), both inside ``pyro.plate("data", N, dim=-1)``; its
parameters are fixed constants. The observations ``x`` are simulated from the model's own joint
(``poutine.uncondition``, ancestral sampling) with a seeded random stream, so a wake-sleep objective
that simulates :math:`(x, z) \\sim p(x, z)` sees the distribution the data came from. For every
observation the problem carries the exact log evidence

.. math::

    \\log p(x_n) = \\log \\int p(z)\\, p(x_n \\mid z)\\, dz,

in closed form where one exists, else by a float64 midpoint rule on a 2-D grid wide enough that
the integrand is negligible at its edges (:func:`posterior_quadrature`; the grid travels with the
problem so callers can refine it and check the edge mass). So the gap
:math:`\\log p(x) - \\text{ELBO}` of a guide is known exactly, and for multimodal posteriors the
exact posterior mass of each mode region (``mode_masses``) tells whether a guide covers every mode.

Amortized problems (``num_data`` observations; 2-D latent unless stated):

- ``four_modes``: equal mixture of 4 Gaussians at :math:`(\\pm1.5, \\pm1.5)`, sd 0.5, broad
  Gaussian likelihood; four posterior modes, one per quadrant. Closed form.
- ``sign_symmetric``: :math:`x_1 \\sim \\mathcal N(z_1^2, 0.1^2)` is symmetric under
  :math:`z_1 \\to -z_1`, so the posterior has two mirror modes of mass exactly 1/2. Quadrature.
- ``ring``: :math:`x_1 \\sim \\mathcal N(\\lVert z\\rVert, 0.1^2)`; a thin ring, tilted by a weak
  second observation. Quadrature on a polar grid.
- ``banana``: :math:`x_2 \\sim \\mathcal N(z_2 + z_1^2, 0.1^2)`; a curved ridge. Quadrature.
- ``mixture_overlapping``: 3 overlapping Gaussian components; a skewed unimodal posterior.
  Closed form.
- ``mixture_separated``: 3 well-separated components on a circle of radius 3 with unequal weights
  and a broad likelihood; several modes with non-negligible mass. Closed form.
- ``student_t``: Student-t (3 degrees of freedom) likelihood on 3 projections of ``z``.
  Quadrature.
- ``funnel``: a 2-D Neal funnel prior observed with noise; the posterior scale of :math:`z_2`
  changes with :math:`z_1`. Quadrature.
- ``positive``: Gamma latent with Poisson counts of rates :math:`(z_1, z_2, z_1 + z_2)`; a
  finite-sum closed form (and quadrature in :math:`\\log z`).
- ``linear_gaussian_5d``: 5-D latent, 8-D linear-Gaussian observation with anisotropic,
  correlated posterior. Closed form :math:`\\log\\mathcal N(x; b, AA^\\top + S)`.

Mode regions are the cells of the nearest component mean (quadrants for ``four_modes``, the sign
of :math:`z_1` for ``sign_symmetric``). Their masses are exact: for the Gaussian-mixture posteriors
(``four_modes``, ``mixture_separated``, ``gmm40``) each cell is a polygon, and the mass of an
isotropic Gaussian in a polygon is a sum of Owen's (1956) :math:`T` functions; for ``sign_symmetric``
they are 1/2 by symmetry.

Non-amortized sampling targets (``N = 1``): the latent's *prior* is the target density and a dummy
observation :math:`x \\sim \\mathcal N(0, 1)`, independent of ``z``, makes the posterior equal the
target, so :math:`\\log p(x) = \\log\\mathcal N(x; 0, 1)` exactly (the target's :math:`\\log Z = 0`).

- ``funnel_10d``: Neal's funnel (Neal, 2003) in 10 dimensions.
- ``gmm40``: the 40-component 2-D Gaussian mixture of the path integral sampler (Zhang & Chen,
  2022) and denoising diffusion sampler (Vargas et al., 2023) experiments.

The exact log evidence scores a guide (:func:`~pyro_diffvi.metrics.elbo_gap` is the ELBO minus it, per observation;
:func:`~pyro_diffvi.metrics.mode_mass_ratio` compares a guide's mode masses with the exact ones).

Example:

>>> from pyro_diffvi.datasets import make_problem
>>> problem = make_problem("four_modes", num_data=8)
>>> problem.x.shape, problem.log_px.dtype, problem.mode_masses.shape
(torch.Size([8, 2]), torch.float64, torch.Size([8, 4]))

References:

- R. M. Neal. *Slice sampling*. The Annals of Statistics 31(3):705-767, 2003.
- D. B. Owen. *Tables for computing bivariate normal probabilities*. The Annals of Mathematical
  Statistics 27(4):1075-1090, 1956.
- Q. Zhang, Y. Chen. *Path Integral Sampler: a stochastic control approach for sampling*.
  International Conference on Learning Representations (ICLR), 2022.
- F. Vargas, W. Grathwohl, A. Doucet. *Denoising Diffusion Samplers*. International Conference
  on Learning Representations (ICLR), 2023.
"""

from pyro_diffvi.datasets.posteriors.problem import PosteriorProblem, ProblemSpec, Quadrature, posterior_quadrature
from pyro_diffvi.datasets.posteriors.table import GMM40_MEANS, PROBLEMS, make_problem

__all__: list[str] = [
    "GMM40_MEANS",
    "PROBLEMS",
    "PosteriorProblem",
    "ProblemSpec",
    "Quadrature",
    "make_problem",
    "posterior_quadrature",
]
