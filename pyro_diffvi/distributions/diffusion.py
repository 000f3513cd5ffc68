r"""The diffusion posterior of DDVI: a Gaussian head followed by a learned reverse diffusion chain."""

from __future__ import annotations

import torch
from torch.distributions import constraints

from pyro_diffvi.diffusion import REVERSE_VARIANCES, Denoiser, GaussianDiffusion
from pyro_diffvi.distributions.auxiliary import AuxiliaryBoundDistribution
from pyro_diffvi.ops.constants import LOG_2PI


class DiffusionPosterior(AuxiliaryBoundDistribution):
    r"""DDVI's posterior :math:`q_\phi(z|x) = \int q_\phi(z, y_{1:T}|x)\, dy_{1:T}` (DDVI paper, Sec. 3.1).

    .. math::

        q_\phi(y_{0:T}|x) = q_\phi(y_T|x) \prod_{t=1}^{T} q_\phi(y_{t-1}|y_t, x), \qquad z = y_0,

    with :math:`q_\phi(y_T|x) = \mathcal N(\text{loc}, \text{diag}(\text{scale}^2))` from the encoder and
    :math:`q_\phi(y_{t-1}|y_t, x) = \mathcal N\big(\tfrac{1}{\sqrt{\alpha_t}}(y_t -
    \tfrac{\beta_t}{\sqrt{1-\bar\alpha_t}}
    \epsilon_\phi(y_t, t, c)),\ \sigma_t^2 I\big)` (noise-prediction parametrization, Sec. 3.4). The
    variances are fixed (:math:`\sigma_t^2 = \beta_t` or the clipped posterior variance
    :math:`\tilde\beta_t`) or learned (log-variance interpolated between the two by a second head of
    the denoiser). The reported density of a drawn trajectory is the bound term of the Markovian ELBO
    (Eq. 5): :math:`\log q_\phi(y_{0:T}|x) - \log r(y_{1:T}|y_0)` with the forward process
    :math:`r(y_t|y_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\, y_{t-1}, \beta_t I)`.

    :param loc: mean of :math:`q(y_T|x)`, shape ``batch_shape + (d,)``.
    :param scale: standard deviation of :math:`q(y_T|x)`, same shape.
    :param denoiser: the noise predictor :math:`\epsilon_\phi`.
    :param process: the forward process (schedule tensors), with ``T`` steps.
    :param context: denoiser context, ``batch_shape + (context_dim,)``; ``None`` for an unconditional denoiser.
    :param variance: ``"beta"``, ``"posterior"`` or ``"learned"`` (needs ``denoiser.learn_variance``).
    :param standardize: run the chain in the coordinates standardized by the Gaussian head,
        :math:`u = (z - \text{loc}) / \text{scale}`: :math:`u_T \sim \mathcal N(0, I)`, the chain and the
        forward process act on :math:`u_{0:T}`, and :math:`z = \text{loc} + \text{scale} \odot u_0` (an affine
        bijection given :math:`x`). The reported density is then
        :math:`\log q(u_{0:T}|x) - \log r(u_{1:T}|u_0) - \sum_i \log \text{scale}_i`, the same Markovian bound
        with the change of variables, so one schedule fits every posterior scale. ``False`` is the
        paper's chain, :math:`y_T \sim \mathcal N(\text{loc}, \text{scale}^2)` and :math:`z = y_0`.
    :param path_gradient: differentiate the reported density by the path-derivative estimator
        (:meth:`_path_log_q`): the same value, an unbiased ELBO gradient (for ``Trace_ELBO``-type
        objectives; not for importance-weighted ones such as ``RenyiELBO``) with less variance.

    Example (a guide builds these; here the chain of an untrained, unconditional denoiser):

    >>> import torch
    >>> from pyro_diffvi.diffusion import Denoiser, GaussianDiffusion
    >>> from pyro_diffvi.distributions import DiffusionPosterior
    >>> process = GaussianDiffusion(10, schedule="cosine")
    >>> q = DiffusionPosterior(torch.zeros(4, 2), torch.ones(4, 2), Denoiser(2), process, variance="posterior")
    >>> z = q.rsample()
    >>> z.shape, q.log_prob(z).shape   # the density of its own draw: the bound term
    (torch.Size([4, 2]), torch.Size([4]))
    """

    arg_constraints = {
        "loc": constraints.real_vector,
        "scale": constraints.independent(constraints.positive, 1),
    }
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor,
        denoiser: Denoiser,
        process: GaussianDiffusion,
        context: torch.Tensor | None = None,
        *,
        variance: str = "beta",
        standardize: bool = False,
        path_gradient: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        if variance not in REVERSE_VARIANCES:
            raise ValueError(f"variance must be one of {REVERSE_VARIANCES}, got {variance!r}")
        if (variance == "learned") != bool(denoiser.learn_variance):
            raise ValueError(
                f"variance={variance!r} needs a denoiser with learn_variance={variance == 'learned'}"
            )
        if loc.dim() < 1 or loc.shape[-1] != denoiser.dim:
            raise ValueError(
                f"loc must have trailing dimension {denoiser.dim} (the denoiser's dim), "
                f"got shape {tuple(loc.shape)}"
            )
        batch_shape = torch.broadcast_shapes(loc.shape[:-1], scale.shape[:-1])
        if denoiser.context_dim:
            if context is None or context.shape[-1] != denoiser.context_dim:
                got = None if context is None else tuple(context.shape)
                raise ValueError(
                    f"context must have trailing dimension {denoiser.context_dim}, got {got}"
                )
            batch_shape = torch.broadcast_shapes(batch_shape, context.shape[:-1])
        else:
            context = None
        d = denoiser.dim
        self.loc = loc.expand(batch_shape + (d,))
        self.scale = scale.expand(batch_shape + (d,))
        self.context = None if context is None else context.expand(batch_shape + context.shape[-1:])
        self.denoiser = denoiser
        self.process = process
        self.reverse_variance = variance
        self.standardize = bool(standardize)
        self.path_gradient = bool(path_gradient)
        super().__init__(batch_shape, torch.Size((d,)), validate_args=validate_args)

    @property
    def num_steps(self) -> int:
        return self.process.num_steps

    def expand(self, batch_shape, _instance=None) -> DiffusionPosterior:
        batch_shape = torch.Size(batch_shape)
        d = self.event_shape
        context = None if self.context is None else self.context.expand(batch_shape + self.context.shape[-1:])
        return type(self)(
            self.loc.expand(batch_shape + d),
            self.scale.expand(batch_shape + d),
            self.denoiser,
            self.process,
            context,
            variance=self.reverse_variance,
            standardize=self.standardize,
            path_gradient=self.path_gradient,
            validate_args=False,
        )

    def rsample_and_log_density(
        self, sample_shape: torch.Size = torch.Size(), noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Run the reverse chain and return :math:`z = y_0` with :math:`\log q(y_{0:T}|x) - \log r(y_{1:T}|y_0)`.

        :param sample_shape: leading sample dimensions.
        :param noise: optional standard-normal draws of shape ``(T + 1,) + sample_shape + batch_shape + (d,)``;
            ``noise[0]`` draws :math:`y_T`, ``noise[k]`` the step from :math:`y_{T-k+1}` to :math:`y_{T-k}`.
            Drawn here in one call when omitted.
        :return: ``(z, log_density)`` with shapes ``sample_shape + batch_shape + (d,)`` and
            ``sample_shape + batch_shape``.
        """
        z, log_density, _ = self._run_chain(torch.Size(sample_shape), noise)
        return z, log_density

    def rsample_trajectory(
        self, sample_shape: torch.Size = torch.Size(), noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""The whole trajectory stacked as ``(T + 1,) + sample_shape + batch_shape + (d,)`` with ``[t] = y_t``
        (the standardized :math:`u_t` when ``standardize``; then :math:`z = \text{loc} + \text{scale}\, u_0`)."""
        return self._run_chain(torch.Size(sample_shape), noise)[2]

    def _run_chain(
        self, sample_shape: torch.Size, noise: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        T = self.num_steps
        shape = sample_shape + self.batch_shape + self.event_shape
        if noise is None:
            noise = torch.randn((T + 1,) + shape, dtype=self.loc.dtype, device=self.loc.device)
        elif noise.shape != (T + 1,) + shape:
            raise ValueError(f"noise must have shape {(T + 1,) + tuple(shape)}, got {tuple(noise.shape)}")
        process, d = self.process, self.event_shape[0]
        y = noise[0] if self.standardize else self.loc + self.scale * noise[0]
        log_scale = self.scale.log().sum(-1)  # log q(y_T|x)'s normaliser, or the Jacobian of z(u_0)
        log_q = -0.5 * noise[0].pow(2).sum(-1)  # step normalisers are added once at the end
        step = self.denoiser.stepper(self.context, T, y)
        learned = self.reverse_variance == "learned"
        fixed_log_std = 0.0
        if not learned:  # fixed variances: every step's std and their log-normaliser, once per chain
            times = torch.arange(1, T + 1, device=y.device)
            var = process.reverse_variance(self.reverse_variance, times, y)  # (T, 1)
            fixed_std = var.sqrt()
            fixed_log_std = 0.5 * d * var.log().sum()
        ys = [y]
        for k, t in enumerate(range(T, 0, -1), start=1):
            out = step(y, t)
            if learned:
                eps_hat, v = out.split(d, dim=-1)
                log_var = process.learned_log_variance(t, v)
                std = (0.5 * log_var).exp()
                log_q = log_q - 0.5 * log_var.sum(-1)
            else:
                eps_hat, std = out, fixed_std[t - 1]
            y = process.mean_from_eps(y, t, eps_hat) + std * noise[k]
            ys.append(y)
        noise_sq = noise[1:].pow(2).sum(-1).sum(0)
        log_q = log_q - 0.5 * noise_sq - fixed_log_std - (T + 1) * d * 0.5 * LOG_2PI
        trajectory = torch.stack(ys[::-1])
        if self.standardize:
            z = self.loc + self.scale * y
        else:
            z, log_q = y, log_q - log_scale
        if self.path_gradient and torch.is_grad_enabled():
            path = self._path_log_q(trajectory)
            log_q = path + (log_q - path).detach()  # the same value, the path-derivative gradient
        if self.standardize:
            log_q = log_q - log_scale
        log_r = process.log_forward_density(trajectory)
        return z, log_q - log_r, trajectory

    def _path_log_q(self, trajectory: torch.Tensor) -> torch.Tensor:
        r""":math:`\log q_{\bar\phi}(y_{0:T}|x)` with the chain's parameters :math:`\bar\phi` held fixed (detached),
        differentiable in the trajectory only: the path-derivative ("sticking the landing") form of Roeder et
        al. (2017). Its expected score :math:`\mathbb E_q[\nabla_\phi \log q_\phi]` is zero, so dropping it
        keeps the ELBO gradient unbiased and removes its variance, which vanishes as q approaches the
        target. All T steps are scored in one batched network call."""
        if torch.jit.is_tracing():
            raise RuntimeError(
                "path_gradient=True (the path-derivative log q, a torch.func.functional_call) cannot be compiled by "
                "torch.jit, as JitTrace_ELBO does: build the DiffusionGuide with path_gradient=False for a JIT "
                "objective, or use Trace_ELBO / DDVI_ELBO"
            )
        T, d, process = self.num_steps, self.event_shape[0], self.process
        params = {k: v.detach() for k, v in self.denoiser.named_parameters()}
        buffers = dict(self.denoiser.named_buffers())
        y_t, y_prev = trajectory[1:], trajectory[:-1]
        times = torch.arange(1, T + 1, device=y_t.device).view((T,) + (1,) * (y_t.dim() - 2))
        times = times.expand(y_t.shape[:-1])
        context = (
            None if self.context is None else self.context.detach().expand(y_t.shape[:-1] + self.context.shape[-1:])
        )
        out = torch.func.functional_call(self.denoiser, (params, buffers), (y_t, times, context))
        if self.reverse_variance == "learned":
            eps_hat, v = out.split(d, dim=-1)
            std = (0.5 * process.learned_log_variance(times, v)).exp()
        else:
            eps_hat, std = out, process.reverse_variance(self.reverse_variance, times, y_t).sqrt()
        mean = process.mean_from_eps(y_t, times, eps_hat)
        log_q = torch.distributions.Normal(mean, std).log_prob(y_prev).sum(-1).sum(0)
        y_T = trajectory[-1]
        if self.standardize:
            return log_q + torch.distributions.Normal(0.0, 1.0).log_prob(y_T).sum(-1)
        head = torch.distributions.Normal(self.loc.detach(), self.scale.detach())
        return log_q + head.log_prob(y_T).sum(-1)
