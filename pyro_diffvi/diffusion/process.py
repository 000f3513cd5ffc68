r"""The Gaussian forward process :math:`r` of DDVI and its closed-form marginals and posteriors.

:math:`r(y_t|y_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\, y_{t-1}, \beta_t I)` for :math:`t = 1..T`, with
:math:`y_0 = z` (DDVI paper, Sec. 3.1 and Sec. 3.4; Ho et al. 2020). Writing :math:`\alpha_t = 1 - \beta_t`
and :math:`\bar\alpha_t = \prod_{s \le t} \alpha_s`:

* marginal :math:`r(y_t|y_0) = \mathcal N(\sqrt{\bar\alpha_t}\, y_0, (1-\bar\alpha_t) I)`;
* posterior :math:`r(y_{t-1}|y_t, y_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I)` with

  .. math::

      \tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t} y_0
          + \frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t} y_t

  and :math:`\tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t` (the :math:`y_t` coefficient uses
  :math:`\sqrt{\alpha_t}`, see the erratum to Eq. 2.51 of Xiao (2022));
* noise-prediction mean
  :math:`\mu(y_t, \hat\epsilon) = \big(y_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\hat\epsilon\big)/\sqrt{\alpha_t}`,
  equal to :math:`\tilde\mu_t` when :math:`\hat\epsilon` is the true noise of
  :math:`y_t = \sqrt{\bar\alpha_t} y_0 + \sqrt{1-\bar\alpha_t}\epsilon`.

Time indices ``t`` run from 1 to T and may be Python ints or integer tensors (broadcast against the
batch dimensions of the values; the last dimension of every value is the event dimension).

References:

- W. T. Piriyakulkij, Y. Wang, V. Kuleshov. *Denoising Diffusion Variational Inference: Diffusion Models
  as Expressive Variational Posteriors*. arXiv:2401.02739, 2024.
- J. Ho, A. Jain, P. Abbeel. *Denoising Diffusion Probabilistic Models*. NeurIPS, 2020.
- A. Q. Nichol, P. Dhariwal. *Improved Denoising Diffusion Probabilistic Models*. ICML, 2021.
- Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation, University of
  Chicago, 2022.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch import nn

from pyro_diffvi.diffusion.schedules import check_betas_representable, make_schedule
from pyro_diffvi.ops.constants import LOG_2PI

REVERSE_VARIANCES = ("beta", "posterior", "learned")


class GaussianDiffusion(nn.Module):
    r"""Schedule tensors and closed forms of the Gaussian forward process.

    All tensors are buffers, so ``module.to(device)`` moves them and they are precomputed once.

    :param num_steps: :math:`T`.
    :param schedule: ``"linear"`` (DDPM, :math:`10^{-4}..0.02`), ``"cosine"``, ``"vp"`` or explicit betas.
    :param dtype: dtype of the buffers.
    :raises ValueError: naming ``schedule`` and ``dtype`` when a beta rounds to 0 or 1 in ``dtype``, or when
        :math:`\bar\alpha_t` underflows to 0 in it (the chain would divide by :math:`\sqrt{\bar\alpha_t}`).

    Example:

    >>> import pyro, torch
    >>> from pyro_diffvi.diffusion import GaussianDiffusion
    >>> pyro.set_rng_seed(0)
    >>> diffusion = GaussianDiffusion(20)
    >>> round(diffusion.alphas_cumprod[-1].item(), 3)  # the linear schedule keeps most of y_0
    0.817
    >>> y0 = torch.randn(4, 2)
    >>> diffusion.marginal(y0, 20).sample().shape
    torch.Size([4, 2])
    >>> noise = torch.randn(4, 2)
    >>> y_t = diffusion.q_sample(y0, 5, noise)
    >>> # the noise-prediction mean with the true noise is the forward posterior's mean
    >>> torch.allclose(diffusion.mean_from_eps(y_t, 5, noise), diffusion.posterior(y_t, y0, 5).mean, atol=1e-5)
    True
    """

    def __init__(
        self,
        num_steps: int,
        *,
        schedule: str | Sequence[float] | torch.Tensor = "linear",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        betas = make_schedule(schedule, num_steps, dtype=torch.float64)
        check_betas_representable(betas, dtype)
        alphas = 1 - betas
        abar = torch.cumprod(alphas, 0)
        if not (abar.to(dtype) > 0).all():
            t = int((abar.to(dtype) > 0).sum()) + 1
            raise ValueError(
                f"schedule's alpha_bar_t = prod(1 - beta_s, s <= t) underflows to 0 in {dtype} from t = {t} "
                f"(alpha_bar_{t} = {abar[t - 1].item():.3g}): the dtype cannot represent this schedule; use "
                "smaller betas, fewer steps or a wider dtype"
            )
        abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
        post_var = (1 - abar_prev) / (1 - abar) * betas
        # tilde-beta_1 = 0: the last reverse step borrows tilde-beta_2 (or beta_1 when T = 1) so that
        # q(z | y_1, x) keeps a density (Nichol & Dhariwal 2021 clip the log-variance the same way).
        post_var_clipped = post_var.clone()
        post_var_clipped[0] = post_var[1] if num_steps > 1 else betas[0]
        self.num_steps = num_steps
        buffers = {
            "betas": betas,
            "alphas": alphas,
            "alphas_cumprod": abar,
            "sqrt_alphas": alphas.sqrt(),
            "sqrt_alphas_cumprod": abar.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1 - abar).sqrt(),
            "eps_coef": betas / (1 - abar).sqrt(),
            "posterior_variance": post_var,
            "posterior_variance_clipped": post_var_clipped,
            "posterior_coef_y0": abar_prev.sqrt() * betas / (1 - abar),
            "posterior_coef_yt": alphas.sqrt() * (1 - abar_prev) / (1 - abar),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.to(dtype), persistent=False)

    def at(self, name: str, t: int | torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        """The schedule quantity ``name`` at time(s) ``t`` (1-based), with a trailing event dim of size 1.

        :param name: a buffer name, e.g. ``"betas"``, ``"alphas_cumprod"``.
        :param t: an int or an integer tensor of times in ``1..T``.
        :param like: if given, the result is cast to its device and dtype.

        Example:

        >>> import torch
        >>> from pyro_diffvi.diffusion import GaussianDiffusion
        >>> diffusion = GaussianDiffusion(3, schedule=[0.1, 0.2, 0.3])
        >>> diffusion.at("betas", 2)
        tensor([0.2000])
        >>> diffusion.at("betas", torch.tensor([1, 3])).shape  # one value per time, event dim kept
        torch.Size([2, 1])
        """
        table = getattr(self, name)
        if isinstance(t, int):
            if not 1 <= t <= self.num_steps:
                raise ValueError(f"t must be in 1..{self.num_steps}, got {t}")
            value = table[t - 1 : t]
        else:
            value = table[(t.long() - 1)].unsqueeze(-1)
        if like is not None:
            value = value.to(device=like.device, dtype=like.dtype)
        return value

    def marginal(self, y0: torch.Tensor, t: int | torch.Tensor) -> dist.Normal:
        r""":math:`r(y_t|y_0) = \mathcal N(\sqrt{\bar\alpha_t}\, y_0, (1-\bar\alpha_t) I)`."""
        return dist.Normal(
            self.at("sqrt_alphas_cumprod", t, y0) * y0,
            self.at("sqrt_one_minus_alphas_cumprod", t, y0).expand_as(y0),
        )

    def q_sample(self, y0: torch.Tensor, t: int | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        r""":math:`y_t = \sqrt{\bar\alpha_t}\, y_0 + \sqrt{1-\bar\alpha_t}\,\epsilon` (reparameterized draw of the
        marginal)."""
        return self.at("sqrt_alphas_cumprod", t, y0) * y0 + self.at("sqrt_one_minus_alphas_cumprod", t, y0) * noise

    def posterior(self, y_t: torch.Tensor, y0: torch.Tensor, t: int | torch.Tensor) -> dist.Normal:
        r""":math:`r(y_{t-1}|y_t, y_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I)` for :math:`t \ge 2` (:math:`t = 1` is
        a point mass at :math:`y_0`)."""
        if isinstance(t, int) and t < 2:
            raise ValueError("posterior r(y_{t-1}|y_t, y_0) needs t >= 2: at t = 1 it is a point mass at y_0")
        loc = self.at("posterior_coef_y0", t, y0) * y0 + self.at("posterior_coef_yt", t, y0) * y_t
        return dist.Normal(loc, self.at("posterior_variance", t, y0).sqrt().expand_as(loc))

    def posterior_sample(
        self, y_t: torch.Tensor, y0: torch.Tensor, t: int | torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        r"""A reparameterized draw :math:`\tilde\mu_t(y_t, y_0) + \sqrt{\tilde\beta_t}\,\epsilon` of the posterior
        :math:`r(y_{t-1}|y_t, y_0)` of :meth:`posterior`, for every :math:`t \ge 1`: at :math:`t = 1` the posterior
        is the point mass at :math:`y_0` (:math:`\tilde\beta_1 = 0`) and the draw is :math:`y_0`.

        :param y_t: the noisier state, ``batch + (d,)``.
        :param y0: the clean state (or a prediction of it), ``batch + (d,)``.
        :param t: an int or an integer tensor of times in ``1..T`` (broadcast against the batch).
        :param noise: standard normal draws :math:`\epsilon`, ``batch + (d,)``.
        :return: :math:`y_{t-1}`, ``batch + (d,)``.

        Example:

        >>> import torch
        >>> from pyro_diffvi.diffusion import GaussianDiffusion
        >>> diffusion = GaussianDiffusion(4, schedule="vp")
        >>> y_t, y0, noise = torch.randn(3, 2), torch.randn(3, 2), torch.randn(3, 2)
        >>> torch.equal(diffusion.posterior_sample(y_t, y0, 1, noise), y0)  # t = 1: the point mass at y_0
        True
        >>> q = diffusion.posterior(y_t, y0, 3)
        >>> torch.allclose(diffusion.posterior_sample(y_t, y0, 3, noise), q.loc + q.scale * noise)
        True
        """
        if isinstance(t, int) and t == 1:
            return y0 + 0 * y_t  # exactly y_0 (and the batch shape of both)
        loc = self.at("posterior_coef_y0", t, y0) * y0 + self.at("posterior_coef_yt", t, y0) * y_t
        out = loc + self.at("posterior_variance", t, y0).sqrt() * noise
        if isinstance(t, int):
            return out
        return torch.where((t == 1).unsqueeze(-1), y0 + 0 * y_t, out)

    def predict_y0(self, y_t: torch.Tensor, t: int | torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        r"""The clean state implied by a noise prediction, :math:`\hat y_0 = (y_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon)
        / \sqrt{\bar\alpha_t}` (Xiao 2022, Eq. 6.9; inverts :meth:`q_sample`).

        :param y_t: the noisy state, ``batch + (d,)``.
        :param t: an int or an integer tensor of times in ``1..T``.
        :param eps: the predicted noise :math:`\hat\epsilon`, ``batch + (d,)``.
        :return: :math:`\hat y_0`, ``batch + (d,)``.

        Example:

        >>> import torch
        >>> from pyro_diffvi.diffusion import GaussianDiffusion
        >>> diffusion = GaussianDiffusion(4, schedule="vp", dtype=torch.float64)
        >>> y0, eps = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
        >>> torch.allclose(diffusion.predict_y0(diffusion.q_sample(y0, 2, eps), 2, eps), y0)
        True
        """
        return (y_t - self.at("sqrt_one_minus_alphas_cumprod", t, y_t) * eps) / self.at("sqrt_alphas_cumprod", t, y_t)

    def mean_from_eps(self, y_t: torch.Tensor, t: int | torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        r"""The reverse mean :math:`\big(y_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\hat\epsilon\big)/\sqrt{\alpha_t}`
        (DDPM parametrization)."""
        return (y_t - self.at("eps_coef", t, y_t) * eps) / self.at("sqrt_alphas", t, y_t)

    def reverse_variance(self, kind: str, t: int | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        r"""Fixed reverse variance :math:`\sigma_t^2`: ``"beta"`` (:math:`\beta_t`) or ``"posterior"``
        (:math:`\tilde\beta_t`, clipped at t = 1)."""
        if kind == "beta":
            return self.at("betas", t, like)
        if kind == "posterior":
            return self.at("posterior_variance_clipped", t, like)
        raise ValueError(f"reverse variance must be 'beta' or 'posterior' here, got {kind!r}")

    def learned_log_variance(self, t: int | torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""Learned log-variance :math:`\log\beta_t + \tanh(v)\,(\log\beta_t - \log\tilde\beta_t)`.

        Like Nichol & Dhariwal (2021, Eq. 15) it moves in log space along the span between
        :math:`\tilde\beta_t` and :math:`\beta_t`; centred at :math:`\beta_t` instead of interpolating with
        a sigmoid, so that :math:`v = 0` gives exactly :math:`\beta_t` (the exact reverse variance of a
        stationary chain, where a standardized DDVI chain starts) with an unsaturated gradient, and
        bounded (:math:`\tilde\beta_t \le \sigma_t^2 \le \beta_t^2/\tilde\beta_t`) so an untrained chain
        cannot blow up."""
        log_beta = self.at("betas", t, v).log()
        log_tilde = self.at("posterior_variance_clipped", t, v).log()
        return log_beta + torch.tanh(v) * (log_beta - log_tilde)

    def log_forward_density(self, ys: torch.Tensor) -> torch.Tensor:
        r""":math:`\log r(y_{1:T}|y_0) = \sum_{t=1}^T \log\mathcal N(y_t; \sqrt{\alpha_t} y_{t-1}, \beta_t I)`, fused
        over all steps.

        :param ys: the trajectory stacked as ``(T + 1,) + batch_shape + (d,)``, ``ys[t] = y_t``.
        :return: tensor of shape ``batch_shape`` (summed over steps and the event dimension).
        """
        if ys.shape[0] != self.num_steps + 1:
            raise ValueError(f"ys must stack T + 1 = {self.num_steps + 1} states on dim 0, got {ys.shape[0]}")
        view = (self.num_steps,) + (1,) * (ys.dim() - 1)
        sqrt_a = self.sqrt_alphas.to(ys).view(view)
        betas = self.betas.to(ys).view(view)
        diff = ys[1:] - sqrt_a * ys[:-1]
        d = ys.shape[-1]
        quad = (diff.pow(2) / betas).sum(-1).sum(0)
        log_norm = d * (betas.log().sum() + self.num_steps * LOG_2PI)
        return -0.5 * (quad + log_norm)
