"""Posteriors with auxiliary latent variables whose density is known along a drawn trajectory."""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints


class AuxiliaryBoundDistribution(TorchDistribution):
    r"""Base class for a posterior :math:`q(z|x) = \int q(z, y|x)\, dy` with auxiliary latents :math:`y`.

    The marginal :math:`\log q(z|x)` is intractable, but for a pair :math:`(y, z)` drawn from
    :math:`q(y, z|x)` and any reverse model :math:`r(y|z, x)`,

    .. math::

        \log p(x) \ge \mathbb{E}_{q(y, z|x)}\left[\log p(x, z) - \big(\log q(y, z|x) - \log r(y|z, x)\big)\right]

    (Ranganath et al. 2016; the DDVI paper, Eqs. 3-5, where :math:`r` is the forward diffusion). So the
    quantity this distribution reports as ``log_prob`` of its own sample is
    :math:`\log q(y, z|x) - \log r(y|z, x)`, and plain :class:`~pyro.infer.Trace_ELBO` then computes
    this auxiliary-variable ELBO, a valid lower bound on :math:`\log p(x)`.

    Subclasses implement :meth:`rsample_and_log_density`. :meth:`rsample` caches the pair it draws
    and :meth:`log_prob` returns the cached bound term for exactly that tensor; asking for the density
    of any other value raises, because no exact marginal density exists.

    References: R. Ranganath, D. Tran, D. M. Blei. *Hierarchical Variational Models*. ICML, 2016;
    W. T. Piriyakulkij, Y. Wang, V. Kuleshov. *Denoising Diffusion Variational Inference: Diffusion
    Models as Expressive Variational Posteriors*. arXiv:2401.02739, 2024 ("the DDVI paper").

    A toy posterior :math:`y \sim \mathcal N(0, 1)`, :math:`z = y + \mathcal N(0, 1)`, with the exact reverse model
    :math:`r(y|z) = \mathcal N(z/2, 1/2)`, so the reported density is the exact marginal
    :math:`\mathcal N(z; 0, 2)`.

    Example:

    >>> import math, torch
    >>> import pyro.distributions as dist
    >>> from pyro_diffvi.distributions import AuxiliaryBoundDistribution
    >>> class Toy(AuxiliaryBoundDistribution):
    ...     def rsample_and_log_density(self, sample_shape=torch.Size()):
    ...         y = torch.randn(sample_shape + (1,))
    ...         z = y + torch.randn_like(y)
    ...         log_q = (dist.Normal(0.0, 1.0).log_prob(y) + dist.Normal(y, 1.0).log_prob(z)).sum(-1)
    ...         log_r = dist.Normal(z / 2, math.sqrt(0.5)).log_prob(y).sum(-1)
    ...         return z, log_q - log_r
    >>> q = Toy(event_shape=(1,))
    >>> z = q.rsample((3,))
    >>> torch.allclose(q.log_prob(z), dist.Normal(0.0, math.sqrt(2.0)).log_prob(z).sum(-1))
    True
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def rsample_and_log_density(
        self, sample_shape: torch.Size = torch.Size()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``z`` and return it with :math:`\\log q(y, z|x) - \\log r(y|z, x)` for the trajectory drawn.

        :return: ``(z, log_density)`` of shapes ``sample_shape + batch_shape + event_shape`` and
            ``sample_shape + batch_shape``.
        """
        raise NotImplementedError

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """Draw ``z`` (reparameterized), caching it with its density term for :meth:`log_prob`."""
        value, log_density = self.rsample_and_log_density(torch.Size(sample_shape))
        self._cached_sample = (value, log_density)
        return value

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """Draw ``z`` without gradients."""
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        r""":math:`\log q(y, z|x) - \log r(y|z, x)` of the sample just drawn (``value`` must be that very
        tensor)."""
        cached = getattr(self, "_cached_sample", None)
        if cached is None or value is not cached[0]:
            raise ValueError(
                f"{type(self).__name__}.log_prob is only defined for the sample it has just drawn: "
                "the marginal density of an auxiliary-variable posterior is intractable. "
                "Score a value by drawing it from this distribution (e.g. with Trace_ELBO)."
            )
        return cached[1]
