r"""The diffusion posterior of DDVI: a Gaussian head followed by a learned reverse diffusion chain."""

from __future__ import annotations

import math

import torch
from torch.distributions import constraints

from pyro_diffvi.diffusion import REVERSE_VARIANCES, Denoiser, GaussianDiffusion
from pyro_diffvi.distributions.auxiliary import AuxiliaryBoundDistribution

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class DiffusionPosterior(AuxiliaryBoundDistribution):
    r"""DDVI's posterior :math:`q_\phi(z|x) = \int q_\phi(z, y_{1:T}|x)\, dy_{1:T}` (DDVI paper, Sec. 3.1).

    .. math::

        q_\phi(y_{0:T}|x) = q_\phi(y_T|x) \prod_{t=1}^{T} q_\phi(y_{t-1}|y_t, x), \qquad z = y_0,

    with :math:`q_\phi(y_T|x) = \mathcal N(\text{loc}, \text{diag}(\text{scale}^2))` from the encoder and
    :math:`q_\phi(y_{t-1}|y_t, x) = \mathcal N\big(\tfrac{1}{\sqrt{\alpha_t}}(y_t - \tfrac{\beta_t}{\sqrt{1-\bar\alpha_t}}
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
        variance: str = "beta",
        validate_args: bool | None = None,
    ) -> None:
        if variance not in REVERSE_VARIANCES:
            raise ValueError(f"variance must be one of {REVERSE_VARIANCES}, got {variance!r}")
        if (variance == "learned") != bool(denoiser.learn_variance):
            raise ValueError(
                f"variance={variance!r} needs a denoiser with learn_variance={variance == 'learned'}"
            )
        if loc.dim() < 1 or loc.shape[-1] != denoiser.latent_dim:
            raise ValueError(
                f"loc must have trailing dimension {denoiser.latent_dim} (the denoiser's latent_dim), "
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
        d = denoiser.latent_dim
        self.loc = loc.expand(batch_shape + (d,))
        self.scale = scale.expand(batch_shape + (d,))
        self.context = None if context is None else context.expand(batch_shape + context.shape[-1:])
        self.denoiser = denoiser
        self.process = process
        self.reverse_variance = variance
        super().__init__(batch_shape, torch.Size((d,)), validate_args=validate_args)

    @property
    def num_steps(self) -> int:
        return self.process.num_steps

    def expand(self, batch_shape, _instance=None) -> "DiffusionPosterior":
        batch_shape = torch.Size(batch_shape)
        d = self.event_shape
        context = None if self.context is None else self.context.expand(batch_shape + self.context.shape[-1:])
        return type(self)(
            self.loc.expand(batch_shape + d),
            self.scale.expand(batch_shape + d),
            self.denoiser,
            self.process,
            context,
            self.reverse_variance,
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
        :return: ``(z, log_density)`` with shapes ``sample_shape + batch_shape + (d,)`` and ``sample_shape + batch_shape``.
        """
        z, log_density, _ = self._run_chain(torch.Size(sample_shape), noise)
        return z, log_density

    def rsample_trajectory(
        self, sample_shape: torch.Size = torch.Size(), noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The whole trajectory stacked as ``(T + 1,) + sample_shape + batch_shape + (d,)`` with ``[t] = y_t``."""
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
        y = self.loc + self.scale * noise[0]
        # log q(y_T|x); the Gaussian normalisers of all steps are added once at the end.
        log_q = -0.5 * noise[0].pow(2).sum(-1) - self.scale.log().sum(-1)
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
        log_q = log_q - 0.5 * noise_sq - fixed_log_std - (T + 1) * d * _HALF_LOG_2PI
        trajectory = torch.stack(ys[::-1])
        log_r = process.log_forward_density(trajectory)
        return y, log_q - log_r, trajectory
