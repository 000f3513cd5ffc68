"""pyro-diffvi: expressive variational inference for Pyro models.

Diffusion and flow posteriors as amortized guides, energy-based and structured priors, and the
objectives that train them, all usable in an ordinary :class:`pyro.infer.SVI` loop.
"""

from pyro_diffvi.util import set_seed

__version__ = "0.1.0"
__all__ = ["set_seed", "__version__"]
