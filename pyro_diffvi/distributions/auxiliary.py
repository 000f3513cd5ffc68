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

    (Ranganath et al. 2016; DDVI paper Eqs. 3-5, where :math:`r` is the forward diffusion). So the
    quantity this distribution reports as ``log_prob`` of its own sample is
    :math:`\log q(y, z|x) - \log r(y|z, x)`, and plain :class:`~pyro.infer.Trace_ELBO` then computes
    this auxiliary-variable ELBO, a valid lower bound on :math:`\log p(x)`.

    Subclasses implement :meth:`rsample_and_log_density`. :meth:`rsample` caches the pair it draws
    and :meth:`log_prob` returns the cached bound term for exactly that tensor; asking for the density
    of any other value raises, because no exact marginal density exists.
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
        value, log_density = self.rsample_and_log_density(torch.Size(sample_shape))
        self._cached_sample = (value, log_density)
        return value

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        cached = getattr(self, "_cached_sample", None)
        if cached is None or value is not cached[0]:
            raise ValueError(
                f"{type(self).__name__}.log_prob is only defined for the sample it has just drawn: "
                "the marginal density of an auxiliary-variable posterior is intractable. "
                "Score a value by drawing it from this distribution (e.g. with Trace_ELBO)."
            )
        return cached[1]
