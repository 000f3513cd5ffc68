r"""Sampling a VP-SDE model: the reverse-time SDE and the probability-flow ODE (Song et al. 2020, Eqs. 6 and 13).

For a score :math:`s(x, t) = -\hat\epsilon(x, t)/\sigma(t)` (a noise prediction, see
:mod:`pyro_diffvi.diffusion.sde_bound`) and the VP drift :math:`f = -\tfrac12\beta x`, :math:`g^2 = \beta`:

* reverse SDE, :math:`dx = [f(x, t) - g(t)^2 s(x, t)]\, dt + g(t)\, d\bar w` from :math:`T` to :math:`t_{\min}`, by
  Euler-Maruyama on a uniform grid of ``num_steps`` steps of :math:`\Delta = (T - t_{\min})/n`:
  :math:`x \leftarrow x + [\tfrac12\beta x + \beta s]\Delta + \sqrt{\beta\Delta}\,\xi`, the last step without noise
  (Song et al.'s denoised last step);
* probability-flow ODE, :math:`dx/dt = f(x, t) - \tfrac12 g(t)^2 s(x, t) = -\tfrac12\beta(t)(x + s(x, t))`, whose
  marginals equal the SDE's, by :func:`~pyro_diffvi.ops.odeint_fixed` (deterministic given
  :math:`x_T`).

Both end with the mean :math:`x_{t_{\min}}/\alpha(t_{\min})` of the decoder of the likelihood bound
(:func:`~pyro_diffvi.diffusion.sde_bound_terms`). They are discretizations of the model: their draws
approach the model's as ``num_steps`` grows.

References:

- Y. Song, J. Sohl-Dickstein, D. P. Kingma, A. Kumar, S. Ermon, B. Poole. *Score-Based Generative Modeling
  through Stochastic Differential Equations*. ICLR, 2021 (arXiv:2011.13456).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pyro_diffvi.diffusion.sde import VPSDE, _expand
from pyro_diffvi.diffusion.sde_bound import NoiseFn
from pyro_diffvi.ops import odeint_fixed
from pyro_diffvi.util import check_positive_int

ODE_METHODS = ("euler", "rk4")


def _times(t: float, batch_shape: torch.Size, like: Tensor) -> Tensor:
    return torch.full(batch_shape, t, dtype=like.dtype, device=like.device)


def _decoder_mean(sde: VPSDE, x: Tensor) -> Tensor:
    alpha, _ = sde.marginal_coefficients(torch.tensor(sde.t_min, dtype=torch.float64))
    return x / alpha.item()


def reverse_sde_sample(
    sde: VPSDE, noise_fn: NoiseFn, init: Tensor, *, event_dim: int, num_steps: int = 500, t_start: float | None = None
) -> Tensor:
    r"""Draw :math:`x_0` by the reverse-time SDE from ``init`` :math:`= x_T` (Euler-Maruyama, module docstring).

    With ``t_start`` :math:`= s < T` the SDE runs from ``init`` :math:`= x_s` instead: for a datum noised to time
    :math:`s`, :math:`x_s = \alpha(s) x_0 + \sigma(s)\epsilon`, the draw is a reconstruction of :math:`x_0` from
    that noise level (SDEdit, Meng et al. 2022), a probe of how much of a datum the score restores.

    :param sde: the forward SDE.
    :param noise_fn: ``noise_fn(x_t, t)``, the noise prediction :math:`-\sigma(t) s(x_t, t)` for states of shape
        ``batch_shape + event_shape`` and times of shape ``batch_shape``.
    :param init: :math:`x_T`, usually a draw of :math:`\pi = \mathcal N(0, I)`.
    :param event_dim: number of event dimensions of the states.
    :param num_steps: Euler-Maruyama steps.
    :param t_start: the time of ``init``, in :math:`(t_{\min}, T]` (default :math:`T`).
    :return: :math:`x_0`, the shape of ``init``.

    Example (standard-normal data, exact score :math:`-x`: the draws stay standard normal):

    >>> import torch
    >>> from pyro_diffvi.diffusion import VPSDE, reverse_sde_sample
    >>> sde = VPSDE()
    >>> _ = torch.manual_seed(0)
    >>> x = reverse_sde_sample(sde, lambda x, t: sde.marginal_coefficients(t)[1].unsqueeze(-1) * x,
    ...                        torch.randn(20000, 2), event_dim=1, num_steps=200)
    >>> round(x.std().item(), 1)
    1.0
    """
    num_steps = check_positive_int("num_steps", num_steps)
    t_start = sde.t_max if t_start is None else float(t_start)
    if not sde.t_min < t_start <= sde.t_max:
        raise ValueError(f"t_start must be in (t_min, t_max] = ({sde.t_min}, {sde.t_max}], got {t_start}")
    batch_shape = init.shape[: init.dim() - event_dim]
    dt = (t_start - sde.t_min) / num_steps
    x = init
    for i in range(num_steps):
        t = _times(t_start - i * dt, batch_shape, init)
        _, sigma = sde.marginal_coefficients(t)
        beta = _expand(sde.beta(t), x)
        score = -noise_fn(x, t) / _expand(sigma, x)
        x = x + (0.5 * beta * x + beta * score) * dt
        if i < num_steps - 1:
            x = x + torch.sqrt(beta * dt) * torch.randn_like(x)
    return _decoder_mean(sde, x)


def probability_flow_sample(
    sde: VPSDE, noise_fn: NoiseFn, init: Tensor, *, event_dim: int, num_steps: int = 100, method: str = "euler"
) -> Tensor:
    r"""Map ``init`` :math:`= x_T` to :math:`x_0` by the probability-flow ODE (module docstring).

    :param sde: the forward SDE.
    :param noise_fn: ``noise_fn(x_t, t)`` as for :func:`reverse_sde_sample`.
    :param init: :math:`x_T`.
    :param event_dim: number of event dimensions of the states.
    :param num_steps: solver steps.
    :param method: ``"euler"`` (one score evaluation per step) or ``"rk4"`` (four).
    :return: :math:`x_0`, the shape of ``init``.

    Example (standard-normal data: the exact flow is :math:`x_t = x_T`, the identity map):

    >>> import torch
    >>> from pyro_diffvi.diffusion import VPSDE, probability_flow_sample
    >>> sde = VPSDE()
    >>> x_T = torch.randn(5, 2, dtype=torch.float64)
    >>> x0 = probability_flow_sample(sde, lambda x, t: sde.marginal_coefficients(t)[1].unsqueeze(-1) * x,
    ...                              x_T, event_dim=1, num_steps=20, method="rk4")
    >>> torch.allclose(x0, x_T, atol=1e-4)
    True
    """
    if method not in ODE_METHODS:
        raise ValueError(f"method must be one of {ODE_METHODS}, got {method!r}")
    batch_shape = init.shape[: init.dim() - event_dim]

    def velocity(t: float, x: Tensor) -> Tensor:
        times = _times(t, batch_shape, init)
        _, sigma = sde.marginal_coefficients(times)
        score = -noise_fn(x, times) / _expand(sigma, x)
        return -0.5 * _expand(sde.beta(times), x) * (x + score)

    x = odeint_fixed(velocity, init, t0=sde.t_max, t1=sde.t_min, num_steps=check_positive_int("num_steps", num_steps),
                     method=method)
    return _decoder_mean(sde, x)

