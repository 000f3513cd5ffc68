"""Amortized diagonal-Gaussian guide (AEVB, Kingma and Welling 2014)."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from pyro_diffvi.guides.amortized import AmortizedGuide
from pyro_diffvi.nn.heads import loc_scale


class GaussianGuide(AmortizedGuide):
    r"""Amortized mean-field Gaussian guide
    :math:`q_\phi(z|x) = \mathcal{N}(\mu_\phi(x), \mathrm{diag}\,\sigma^2_\phi(x))`.

    The AEVB baseline of the DDVI paper (Table 1). A linear head per latent site maps the encoder's
    context to :math:`(\mu, \sigma)` with :math:`\sigma = \mathrm{softplus}(\cdot) + \sigma_{\min}`.
    If the user's ``encoder`` returns a tuple ``(loc, scale)`` these are used directly (one latent site
    only), so that a :class:`~pyro_diffvi.priors.VampPrior` can share the encoder.

    Example:

    >>> import torch
    >>> from pyro_diffvi.datasets import make_problem
    >>> problem = make_problem("linear_gaussian_5d")   # a Pyro model (sites "z", "x") with exact log p(x)
    >>> model, x = problem.model, problem.x
    >>> from pyro.infer import SVI, Trace_ELBO
    >>> from pyro.optim import Adam
    >>> from pyro_diffvi.guides import GaussianGuide
    >>> guide = GaussianGuide(model, latent="z", observed="x")
    >>> svi = SVI(model, guide, Adam({"lr": 1e-3}), Trace_ELBO())
    >>> losses = [svi.step(x) for _ in range(3)]
    >>> loc, scale = guide.loc_scale("z", guide.context(x))
    >>> loc.shape, bool((scale > 0).all())
    (torch.Size([64, 5]), True)

    :param min_scale: lower bound :math:`\sigma_{\min}` on the posterior standard deviation.
    :param init_scale: posterior standard deviation at initialization (the head's bias is set so).

    The other parameters are those of :class:`~pyro_diffvi.guides.amortized.AmortizedGuide`.
    """

    def __init__(self, model, latent, observed, *, min_scale: float = 1e-4, init_scale: float = 1.0, **kwargs) -> None:
        if not min_scale >= 0:
            raise ValueError(f"min_scale must be >= 0, got {min_scale}")
        if not init_scale > min_scale:
            raise ValueError(f"init_scale must exceed min_scale={min_scale}, got {init_scale}")
        super().__init__(model, latent, observed, **kwargs)
        self.min_scale = min_scale
        self.init_scale = init_scale

    def _build_posteriors(self) -> None:
        if self.context_dim is None and len(self.latent_names) != 1:
            raise ValueError("an encoder returning (loc, scale) can serve only one latent site")
        self.heads = self._gaussian_heads()

    def _gaussian_heads(self) -> nn.ModuleList | None:
        """One linear head per latent site on the context, initialized to a standard deviation of ``init_scale``
        (``None`` for an encoder that returns ``(loc, scale)`` itself)."""
        if self.context_dim is None:
            return None
        heads = []
        for name in self.latent_names:
            head = nn.Linear(self.context_dim, 2 * self.latent_dims[name])
            with torch.no_grad():
                head.weight.mul_(0.1)
                head.bias.zero_()
                raw = torch.tensor(self.init_scale - self.min_scale).expm1().log()  # softplus^-1
                head.bias[self.latent_dims[name]:] = raw
            heads.append(self._like_encoder(head))
        return nn.ModuleList(heads)

    def loc_scale(self, name: str, context) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and standard deviation of latent ``name`` (flattened) given the context."""
        if self.heads is None:
            loc, scale = context
            if loc.shape[-1] != self.latent_dims[name] or scale.shape != loc.shape:
                raise ValueError(
                    f"encoder must return (loc, scale) of shape batch_shape + ({self.latent_dims[name]},), "
                    f"got {tuple(loc.shape)} and {tuple(scale.shape)}"
                )
            return loc, scale
        return loc_scale(self.heads[self.latent_names.index(name)](context), self.min_scale)

    exact_density = True

    def posterior(self, name: str, context) -> dist.TorchDistribution:
        loc, scale = self.loc_scale(name, context)
        return dist.Normal(loc, scale).to_event(1)
