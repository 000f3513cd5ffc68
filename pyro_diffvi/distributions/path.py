r"""The Path Integral Sampler's posterior: a controlled Euler-Maruyama chain from a fixed start."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import constraints

from pyro_diffvi.distributions.auxiliary import AuxiliaryBoundDistribution
from pyro_diffvi.ops.constants import LOG_2PI
from pyro_diffvi.util import check_positive_float, check_positive_int


class PathIntegralPosterior(AuxiliaryBoundDistribution):
    r"""The Path Integral Sampler (PIS; Zhang and Chen 2022) as a posterior with auxiliary latents.

    A drift :math:`u_\phi(y, t, c)` controls the Euler-Maruyama chain, from the fixed start :math:`y_0 = 0`,

    .. math::

        y_{k+1} = y_k + u_\phi(y_k, t_k, c)\, h + \sigma \sqrt h\, \epsilon_k, \qquad
        \epsilon_k \sim \mathcal N(0, I), \quad t_k = k h, \quad h = 1/K, \quad k = 0, \dots, K-1,

    and the posterior's draw is its end point, :math:`z = y_K` (or, standardized, :math:`z = \text{loc} +
    \text{scale} \odot y_K`). The reference process is the uncontrolled walk
    :math:`y_{k+1} = y_k + \sigma\sqrt h\,\epsilon_k`: its end point is :math:`\mathcal N(0, \sigma^2 I)`
    and its bridge :math:`r(y_{1:K-1}|y_K)` is known exactly, so the density this distribution reports
    for its own draw is the auxiliary bound term (see :class:`AuxiliaryBoundDistribution`)

    .. math::

        \log q_\phi(y_{1:K}|x) - \log r(y_{1:K-1}|y_K)
        = \sum_{k=0}^{K-1} \Big[\log\mathcal N(y_{k+1}; y_k + u_k h, \sigma^2 h I)
          - \log\mathcal N(y_{k+1}; y_k, \sigma^2 h I)\Big] + \log\mathcal N(y_K; 0, \sigma^2 I)

    .. math::

        \phantom{\log q_\phi(y_{1:K}|x) - \log r(y_{1:K-1}|y_K)}
        = \sum_{k=0}^{K-1} \Big[\frac{h}{2\sigma^2}\lVert u_k\rVert^2 + \frac{\sqrt h}{\sigma}\, u_k^\top\epsilon_k\Big]
          + \log\mathcal N(y_K; 0, \sigma^2 I),

    with :math:`u_k = u_\phi(y_k, t_k, c)`: the discretized Girsanov ratio of the controlled to the
    reference path, plus the reference's terminal density (PIS's terminal cost is the difference of this
    term and :math:`\log p(x, z)`). The bound
    :math:`\mathbb E_q[\log p(x, z) - \log q(y_{1:K}|x) + \log r(y_{1:K-1}|y_K)] \le \log p(x)` is an exact
    auxiliary-variable bound for every :math:`K` (the discretization changes its tightness, not its
    validity); it equals :math:`\log p(x)` when the chain's path law is the reference's bridge mixed over
    the exact posterior. Standardized, the reported density has the affine change of variables,
    :math:`-\sum_i \log \text{scale}_i`, added.

    Reference: Q. Zhang, Y. Chen. *Path Integral Sampler: a Stochastic Control Approach for Sampling*.
    ICLR, 2022.

    :param drift: the network :math:`u_\phi`, called as ``drift(y, t, context)`` with ``y`` of shape
        ``... + (d,)`` and ``t`` the step's index :math:`k + 1 \in 1..K` (an int or a tensor of ``y``'s batch
        shape), returning ``... + (d,)``; if it has a ``stepper(context, K, like)`` method (as
        :class:`~pyro_diffvi.diffusion.Denoiser` does) the chain uses it. It has ``dim`` :math:`d`
        (and ``context_dim``, 0 for none) attributes.
    :param context: the drift's context, shape ``batch_shape + (context_dim,)``, or ``None``.
    :param num_steps: :math:`K`.
    :param sigma: the diffusion coefficient :math:`\sigma > 0`.
    :param loc: with ``scale``, the affine map :math:`z = \text{loc} + \text{scale} \odot y_K`; ``None``
        for :math:`z = y_K`.
    :param scale: positive, the same shape as ``loc``.
    :param path_gradient: differentiate the reported density by the path-derivative estimator
        (:meth:`_path_log_ratio`): the same value, an unbiased gradient for ``Trace_ELBO``-type objectives
        (not for importance-weighted ones such as ``RenyiELBO``).
    :param batch_shape: the batch shape when neither ``context`` nor ``loc`` gives it.

    Example (an untrained, zero drift: the chain is the reference walk and :math:`z \sim \mathcal N(0, \sigma^2 I)`,
    whose density the distribution reports exactly):

    Example:

    >>> import torch
    >>> from torch.distributions import Normal
    >>> from pyro_diffvi.diffusion import Denoiser
    >>> from pyro_diffvi.distributions import PathIntegralPosterior
    >>> drift = Denoiser(2, hidden_dims=(16,))
    >>> for p in drift.net.net[-1].parameters():
    ...     _ = torch.nn.init.zeros_(p)
    >>> q = PathIntegralPosterior(drift, num_steps=10, sigma=2.0, batch_shape=(4,))
    >>> z = q.rsample()
    >>> z.shape, torch.allclose(q.log_prob(z), Normal(0.0, 2.0).log_prob(z).sum(-1))
    (torch.Size([4, 2]), True)
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        drift: nn.Module,
        context: torch.Tensor | None = None,
        *,
        num_steps: int = 20,
        sigma: float = 1.0,
        loc: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
        path_gradient: bool = False,
        batch_shape: torch.Size | tuple = (),
        validate_args: bool | None = None,
    ) -> None:
        check_positive_int("num_steps", num_steps)
        check_positive_float("sigma", sigma)
        d = getattr(drift, "dim", None)
        if not isinstance(d, int) or d < 1:
            raise ValueError("drift must have a positive int attribute dim (the latent width d)")
        if (loc is None) != (scale is None):
            raise ValueError("give both loc and scale (z = loc + scale * y_K) or neither (z = y_K)")
        shapes = [torch.Size(batch_shape)]
        if loc is not None:
            if loc.dim() < 1 or loc.shape[-1] != d or scale.shape[-1] != d:
                raise ValueError(
                    f"loc and scale must have trailing dimension {d} (the drift's dim), "
                    f"got shapes {tuple(loc.shape)} and {tuple(scale.shape)}"
                )
            shapes += [loc.shape[:-1], scale.shape[:-1]]
        context_dim = getattr(drift, "context_dim", 0)
        if context_dim:
            if context is None or context.shape[-1] != context_dim:
                got = None if context is None else tuple(context.shape)
                raise ValueError(f"context must have trailing dimension {context_dim}, got {got}")
            shapes.append(context.shape[:-1])
        else:
            context = None
        shape = torch.broadcast_shapes(*shapes)
        self.drift = drift
        self.context = None if context is None else context.expand(shape + context.shape[-1:])
        self.loc = None if loc is None else loc.expand(shape + (d,))
        self.scale = None if scale is None else scale.expand(shape + (d,))
        self.num_steps = num_steps
        self.sigma = float(sigma)
        self.path_gradient = bool(path_gradient)
        super().__init__(shape, torch.Size((d,)), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> PathIntegralPosterior:
        batch_shape = torch.Size(batch_shape)
        d = self.event_shape

        def grow(value, tail):
            return None if value is None else value.expand(batch_shape + tail)

        return type(self)(
            self.drift,
            grow(self.context, self.context.shape[-1:] if self.context is not None else ()),
            num_steps=self.num_steps,
            sigma=self.sigma,
            loc=grow(self.loc, d),
            scale=grow(self.scale, d),
            path_gradient=self.path_gradient,
            batch_shape=batch_shape,
            validate_args=False,
        )

    def rsample_and_log_density(
        self, sample_shape: torch.Size = torch.Size(), noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Run the controlled chain; return :math:`z` and :math:`\log q(y_{1:K}|x) - \log r(y_{1:K-1}|y_K)`
        (minus :math:`\sum_i \log\text{scale}_i` when standardized).

        :param sample_shape: leading sample dimensions.
        :param noise: optional standard-normal :math:`\epsilon_{0:K-1}`, shape
            ``(K,) + sample_shape + batch_shape + (d,)``; drawn here when omitted.
        :return: ``(z, log_density)`` of shapes ``sample_shape + batch_shape + (d,)`` and
            ``sample_shape + batch_shape``.
        """
        z, log_density, _ = self._run_chain(torch.Size(sample_shape), noise)
        return z, log_density

    def rsample_trajectory(
        self, sample_shape: torch.Size = torch.Size(), noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The chain ``y_0 .. y_K`` stacked as ``(K + 1,) + sample_shape + batch_shape + (d,)`` (before the
        affine map of a standardized posterior)."""
        return self._run_chain(torch.Size(sample_shape), noise)[2]

    def _like(self) -> torch.Tensor:
        for value in (self.loc, self.context):
            if value is not None:
                return value
        param = next(self.drift.parameters(), None)
        return param if param is not None else torch.zeros(())

    def _run_chain(
        self, sample_shape: torch.Size, noise: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        K, sigma = self.num_steps, self.sigma
        h = 1.0 / K
        shape = sample_shape + self.batch_shape + self.event_shape
        like = self._like()
        if noise is None:
            noise = torch.randn((K,) + shape, dtype=like.dtype, device=like.device)
        elif noise.shape != (K,) + shape:
            raise ValueError(f"noise must have shape {(K,) + tuple(shape)}, got {tuple(noise.shape)}")
        stepper = getattr(self.drift, "stepper", None)
        if callable(stepper):
            step = stepper(self.context, K, noise)
        else:
            def step(y, t):
                return self.drift(y, t, self.context)
        y = noise.new_zeros(shape)
        ys, log_ratio = [y], 0.0
        for k in range(K):
            u = step(y, k + 1)
            # log N(y_{k+1}; y_k + u h, s^2 h) - log N(y_{k+1}; y_k, s^2 h) in terms of eps_k
            log_ratio = (
                log_ratio + (0.5 * h / sigma**2) * u.pow(2).sum(-1) + (math.sqrt(h) / sigma) * (u * noise[k]).sum(-1)
            )
            y = y + h * u + sigma * math.sqrt(h) * noise[k]
            ys.append(y)
        trajectory = torch.stack(ys)
        terminal = -0.5 * (y / sigma).pow(2).sum(-1) - y.shape[-1] * (math.log(sigma) + 0.5 * LOG_2PI)
        log_density = log_ratio + terminal
        if self.path_gradient and torch.is_grad_enabled():
            path = self._path_log_ratio(trajectory) + terminal
            log_density = path + (log_density - path).detach()  # the same value, the path-derivative gradient
        if self.loc is None:
            return y, log_density, trajectory
        return self.loc + self.scale * y, log_density - self.scale.log().sum(-1), trajectory

    def _path_log_ratio(self, trajectory: torch.Tensor) -> torch.Tensor:
        r"""The Girsanov sum :math:`\sum_k [\log\mathcal N(y_{k+1}; y_k + \bar u_k h, \sigma^2 h) - \log\mathcal
        N(y_{k+1};
        y_k, \sigma^2 h)]` with the drift's parameters held fixed (:math:`\bar u`, detached) and the path
        differentiable: the path-derivative ("sticking the landing", Roeder et al. 2017) form, whose dropped
        score term has zero expectation. All K steps go through the drift in one batched call."""
        K, sigma = self.num_steps, self.sigma
        h = 1.0 / K
        y_prev, y_next = trajectory[:-1], trajectory[1:]
        params = {k: v.detach() for k, v in self.drift.named_parameters()}
        buffers = dict(self.drift.named_buffers())
        times = torch.arange(1, K + 1, device=y_prev.device).view((K,) + (1,) * (y_prev.dim() - 2))
        times = times.expand(y_prev.shape[:-1])
        context = (
            None if self.context is None else self.context.detach().expand(y_prev.shape[:-1] + self.context.shape[-1:])
        )
        u = torch.func.functional_call(self.drift, (params, buffers), (y_prev, times, context))
        delta = y_next - y_prev
        return ((delta.pow(2) - (delta - h * u).pow(2)).sum(-1) / (2 * sigma**2 * h)).sum(0)
