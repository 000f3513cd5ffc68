"""The package's exceptions, at the bottom of the layers so that every layer can raise them."""

from __future__ import annotations

__all__ = ["DivergenceError"]


class DivergenceError(FloatingPointError):
    """Raised by an objective when a loss term or a gradient is NaN or infinite; no parameter has been
    updated when it is raised.

    Example:

    >>> import pyro, pyro.distributions as dist, torch
    >>> from pyro.infer import SVI
    >>> from pyro.optim import Adam
    >>> from pyro_diffvi.guides import DiffusionGuide
    >>> from pyro_diffvi.errors import DivergenceError
    >>> from pyro_diffvi.infer import DDVI_ELBO
    >>> def model(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    ...         pyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)
    ...         pyro.factor("bad", torch.full(x.shape[:1], float("nan")))  # a likelihood term gone NaN
    >>> svi = SVI(model, DiffusionGuide(model, "z", "x", num_steps=5), Adam({"lr": 1e-3}), DDVI_ELBO())
    >>> try:
    ...     svi.step(torch.randn(8, 2))
    ... except DivergenceError as error:
    ...     print(str(error).split(":")[0])
    DDVI_ELBO
    """
