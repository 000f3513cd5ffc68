r"""The continuous-time variance-preserving SDE with the beta-linear schedule (Song et al. 2020, Eq. 11).

.. math::

    dx_t = -\tfrac12 \beta(t)\, x_t\, dt + \sqrt{\beta(t)}\, dw_t, \qquad
    \beta(t) = \beta_{\min} + t(\beta_{\max} - \beta_{\min}), \quad t \in [0, T],

the continuous limit of the discrete DDPM chain of :class:`~pyro_diffvi.diffusion.GaussianDiffusion`
(:math:`\beta_t \approx \beta(t/N)/N` for :math:`N` steps). With :math:`B(t) = \int_0^t \beta(s)\, ds =
\beta_{\min} t + \tfrac12(\beta_{\max} - \beta_{\min}) t^2` its perturbation kernel is

.. math::

    p_{0t}(x_t | x_0) = \mathcal N\big(\alpha(t) x_0, \sigma(t)^2 I\big), \qquad
    \alpha(t) = e^{-B(t)/2}, \quad \sigma(t)^2 = 1 - e^{-B(t)},

with drift :math:`f(x, t) = -\tfrac12\beta(t) x` (divergence :math:`-\tfrac12 \beta(t) d`), diffusion
coefficient :math:`g(t) = \sqrt{\beta(t)}` and prior :math:`\pi = \mathcal N(0, I)`. The log
signal-to-noise ratio :math:`\lambda(t) = \log(\alpha^2/\sigma^2) = -\log(e^{B(t)} - 1)` decreases
strictly, and :math:`-\lambda'(t) = \beta(t)/\sigma(t)^2 = g(t)^2/\sigma(t)^2`: drawing :math:`t` uniformly
in :math:`\lambda` is the importance sampling of the likelihood weighting of Song et al. (2021, Sec. 5),
which :meth:`VPSDE.sample_time` provides.

The defaults are those of Song et al. (2020) used by the ScoreVAE paper (Batzolis, Stanczuk &
Schönlieb 2023, Appendix B.1): :math:`\beta_{\min} = 0.1`, :math:`\beta_{\max} = 20`, :math:`T = 1`, and
the time interval truncated at :math:`t_{\min} = 10^{-5}` (Song et al.'s likelihood evaluation).

References:

- Y. Song, J. Sohl-Dickstein, D. P. Kingma, A. Kumar, S. Ermon, B. Poole. *Score-Based Generative Modeling
  through Stochastic Differential Equations*. ICLR, 2021 (arXiv:2011.13456, 2020).
- Y. Song, C. Durkan, I. Murray, S. Ermon. *Maximum Likelihood Training of Score-Based Diffusion Models*.
  NeurIPS, 2021.
- G. Batzolis, J. Stanczuk, C.-B. Schönlieb. *Variational Diffusion Auto-encoder: Latent Space Extraction
  from Pre-trained Diffusion Models*. arXiv:2304.12141, 2023.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pyro_diffvi.ops import LOG_2PI
from pyro_diffvi.util import check_positive_float

TIME_PROPOSALS = ("likelihood", "uniform")


class VPSDE:
    r"""The variance-preserving SDE :math:`dx = -\tfrac12\beta(t) x\, dt + \sqrt{\beta(t)}\, dw` with a linear
    :math:`\beta(t)` on :math:`[t_{\min}, t_{\max}]` (see the module docstring for every closed form).

    All methods take times as tensors and return tensors of their device and dtype.

    :param beta_min: :math:`\beta(0) > 0`.
    :param beta_max: :math:`\beta(1) \ge \beta_{\min}`.
    :param t_min: the truncation :math:`t_{\min} > 0` of the time interval (the SDE's likelihood bound
        and samplers stop there; :math:`\sigma(t_{\min}) \approx 10^{-3}` for the default).
    :param t_max: the horizon :math:`T > t_{\min}`.

    Example:

    >>> import torch
    >>> from pyro_diffvi.diffusion import VPSDE
    >>> sde = VPSDE()
    >>> t = torch.tensor([1e-5, 0.5, 1.0])
    >>> alpha, sigma = sde.marginal_coefficients(t)
    >>> torch.allclose(alpha**2 + sigma**2, torch.ones(3))   # variance preserving
    True
    >>> round(alpha[-1].item() ** 2, 7)   # almost nothing of x_0 is left at T = 1
    4.32e-05
    >>> torch.allclose(sde.time_from_log_snr(sde.log_snr(t)), t)
    True
    """

    def __init__(
        self, *, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-5, t_max: float = 1.0
    ) -> None:
        self.beta_min = check_positive_float("beta_min", beta_min)
        self.beta_max = check_positive_float("beta_max", beta_max)
        if self.beta_max < self.beta_min:
            raise ValueError(f"beta_max must be >= beta_min={beta_min}, got {beta_max}")
        self.t_min = check_positive_float("t_min", t_min)
        self.t_max = check_positive_float("t_max", t_max)
        if not self.t_min < self.t_max:
            raise ValueError(f"t_min must be < t_max, got t_min={t_min}, t_max={t_max}")

    def config(self) -> dict:
        """The constructor's arguments (what a checkpoint stores to rebuild the SDE)."""
        return {"beta_min": self.beta_min, "beta_max": self.beta_max, "t_min": self.t_min, "t_max": self.t_max}

    def __repr__(self) -> str:
        return "VPSDE(" + ", ".join(f"{k}={v!r}" for k, v in self.config().items()) + ")"

    def __eq__(self, other) -> bool:
        return isinstance(other, VPSDE) and self.config() == other.config()

    __hash__ = None  # mutable attributes: not hashable

    # ---- schedule ---------------------------------------------------------------------------------

    def beta(self, t: Tensor) -> Tensor:
        r""":math:`\beta(t) = g(t)^2`.

        :param t: times.
        """
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integral_beta(self, t: Tensor) -> Tensor:
        r""":math:`B(t) = \int_0^t \beta(s)\, ds = \beta_{\min} t + \tfrac12(\beta_{\max} - \beta_{\min}) t^2`.

        :param t: times.
        """
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t

    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`(\alpha(t), \sigma(t))` of the perturbation kernel :math:`\mathcal N(\alpha(t) x_0, \sigma(t)^2 I)`,
        :math:`\alpha = e^{-B/2}`, :math:`\sigma = \sqrt{1 - e^{-B}}` (computed with ``expm1``, accurate at
        small :math:`t`).

        :param t: times.
        :return: ``(alpha, sigma)``, each of the shape of ``t``.
        """
        b = self.integral_beta(t)
        return torch.exp(-0.5 * b), torch.sqrt(-torch.expm1(-b))

    def log_snr(self, t: Tensor) -> Tensor:
        r""":math:`\lambda(t) = \log(\alpha(t)^2/\sigma(t)^2) = -\log(e^{B(t)} - 1)`, strictly decreasing.

        :param t: times.
        """
        return -torch.log(torch.expm1(self.integral_beta(t)))

    def time_from_log_snr(self, log_snr: Tensor) -> Tensor:
        r"""The inverse of :meth:`log_snr`: :math:`B = \log(1 + e^{-\lambda})`, then the positive root of
        :math:`\tfrac12(\beta_{\max} - \beta_{\min}) t^2 + \beta_{\min} t - B = 0`,
        :math:`t = 2B / (\beta_{\min} + \sqrt{\beta_{\min}^2 + 2(\beta_{\max} - \beta_{\min}) B})`.

        :param log_snr: values :math:`\lambda`.
        """
        b = torch.log1p(torch.exp(-log_snr))
        return 2 * b / (self.beta_min + torch.sqrt(self.beta_min**2 + 2 * (self.beta_max - self.beta_min) * b))

    # ---- the SDE ------------------------------------------------------------------------------------

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        r""":math:`f(x, t) = -\tfrac12\beta(t) x`; ``t`` has the batch shape of ``x`` (without its event dims)
        or broadcasts against it after a trailing dimension is added per event dimension.

        :param x: states, ``batch_shape + event_shape``.
        :param t: times, ``batch_shape``.
        """
        return -0.5 * _expand(self.beta(t), x) * x

    def perturb(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        r""":math:`x_t = \alpha(t) x_0 + \sigma(t)\epsilon`, a reparameterized draw of :math:`p_{0t}(x_t|x_0)`.

        :param x0: data, ``batch_shape + event_shape`` (broadcast against ``noise``).
        :param t: times, ``batch_shape``.
        :param noise: :math:`\epsilon \sim \mathcal N(0, I)`, ``batch_shape + event_shape``.
        """
        alpha, sigma = self.marginal_coefficients(t)
        return _expand(alpha, noise) * x0 + _expand(sigma, noise) * noise

    def prior_log_prob(self, x: Tensor, event_dim: int) -> Tensor:
        r""":math:`\log \pi(x) = \log \mathcal N(x; 0, I)`, summed over the last ``event_dim`` dims.

        :param x: states.
        :param event_dim: number of event dimensions.
        """
        dims = tuple(range(x.dim() - event_dim, x.dim()))
        d = math.prod(x.shape[x.dim() - event_dim :])
        return -0.5 * x.pow(2).sum(dims) - 0.5 * d * LOG_2PI

    # ---- time sampling ------------------------------------------------------------------------------

    def sample_time(
        self, shape: torch.Size | tuple[int, ...], *, proposal: str = "likelihood", like: Tensor
    ) -> tuple[Tensor, Tensor]:
        r"""Times :math:`t \sim p(t)` on :math:`[t_{\min}, t_{\max}]` and weights :math:`w(t) = 1/p(t)`, so that
        :math:`\mathbb E_p[w(t) h(t)] = \int_{t_{\min}}^{t_{\max}} h(t)\, dt` for any :math:`h`.

        ``proposal="likelihood"``: :math:`p(t) \propto g(t)^2/\sigma(t)^2 = -\lambda'(t)`, i.e. :math:`\lambda(t)`
        uniform on :math:`[\lambda(t_{\max}), \lambda(t_{\min})]`, with :math:`w(t) = Z\sigma(t)^2/\beta(t)`,
        :math:`Z = \lambda(t_{\min}) - \lambda(t_{\max})`: the likelihood-weighted integrand
        :math:`g^2 \|\epsilon/\sigma - \ldots\|^2` times :math:`w` is :math:`Z \|\epsilon - \ldots\|^2`, bounded
        as :math:`t \to t_{\min}` (Song et al. 2021, Sec. 5). ``proposal="uniform"``: :math:`w = t_{\max} - t_{\min}`.

        :param shape: shape of the draws.
        :param proposal: ``"likelihood"`` or ``"uniform"``.
        :param like: a tensor giving device and dtype.
        :return: ``(t, weight)``, each of shape ``shape``.

        Example:

        >>> import torch
        >>> from pyro_diffvi.diffusion import VPSDE
        >>> sde = VPSDE()
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> t, w = sde.sample_time((200000,), like=torch.zeros((), dtype=torch.float64))
        >>> bool(t.min() >= sde.t_min) and bool(t.max() <= sde.t_max)
        True
        >>> round((w * 2 * t).mean().item(), 2)   # the integral of 2 t over [t_min, 1]
        1.0
        """
        if proposal not in TIME_PROPOSALS:
            raise ValueError(f"proposal must be one of {TIME_PROPOSALS}, got {proposal!r}")
        u = torch.rand(shape, device=like.device, dtype=like.dtype)
        lo, hi = (torch.tensor(v, dtype=torch.float64) for v in (self.t_min, self.t_max))
        if proposal == "uniform":
            t = self.t_min + u * (self.t_max - self.t_min)
            return t, torch.full_like(t, self.t_max - self.t_min)
        lam_max, lam_min = self.log_snr(lo).item(), self.log_snr(hi).item()
        t = self.time_from_log_snr(lam_max - u * (lam_max - lam_min)).clamp(self.t_min, self.t_max)
        _, sigma = self.marginal_coefficients(t)
        return t, (lam_max - lam_min) * sigma**2 / self.beta(t)

    def log_snr_range(self) -> float:
        r""":math:`Z = \lambda(t_{\min}) - \lambda(t_{\max})`, the total log-SNR span (computed in float64)."""
        lo, hi = (torch.tensor(v, dtype=torch.float64) for v in (self.t_min, self.t_max))
        return (self.log_snr(lo) - self.log_snr(hi)).item()


def _expand(coef: Tensor, like: Tensor) -> Tensor:
    """``coef`` (batch shape) with trailing singleton dims so that it broadcasts against ``like``."""
    return coef.reshape(coef.shape + (1,) * (like.dim() - coef.dim()))
