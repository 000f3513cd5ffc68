r"""A pure-PyTorch reference of the DDVI objective for a VAE (no Pyro): the test oracle of
``tests/integration/test_reference.py`` and the baseline of ``benchmarks/bench_ddvi.py`` (not part of the library).

It implements the same mathematics as :class:`~pyro_diffvi.infer.DDVI_ELBO` with a
:class:`~pyro_diffvi.guides.DiffusionGuide` directly, step by step, with ``torch.distributions``:

* wake (Eq. 5): :math:`\mathcal L_{\mathrm{rec}} = \sum_i \log p(x_i|z_i)` and
  :math:`\mathcal L_{\mathrm{reg}} = \sum_i \log p(z_i) + \sum_t \log r(y_t|y_{t-1}) - \log q(y_T|x_i)
  - \sum_t \log q(y_{t-1}|y_t, x_i)` along one reverse chain per datum;
* sleep (Eq. 9, Sec. 3.4): :math:`\sum_i \|\epsilon_i - \epsilon_\phi(\sqrt{\bar\alpha_{t_i}} z_i
  + \sqrt{1-\bar\alpha_{t_i}}\epsilon_i, t_i, c_i)\|^2`
  (+ :math:`\mathrm{KL}(r(y_T|z_i)\|q(y_T|x_i))` in full wake-sleep) at :math:`z_i \sim p(z)` (and
  :math:`x_i \sim p(x|z_i)`).

Random draws are made in the same order as the Pyro path with one particle and no subsampling:
the chain noise ``randn(T + 1, B, d)``, then the prior draw, the simulated data (wake-sleep), the
times ``randint(1, T + 1, (B,))`` and the sleep noise ``randn(B, d)``; so the same seed gives the same loss.

References: W. T. Piriyakulkij, Y. Wang, V. Kuleshov. *Denoising Diffusion Variational Inference:
Diffusion Models as Expressive Variational Posteriors*. arXiv:2401.02739, 2024.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions import Normal

Tensor = torch.Tensor


def ddvi_loss(
    x: Tensor,
    *,
    encoder: Callable[[Tensor], Tensor],
    head: Callable[[Tensor], tuple[Tensor, Tensor]],
    denoiser: Callable[[Tensor, Tensor | int, Tensor | None], Tensor],
    log_likelihood: Callable[[Tensor, Tensor], Tensor],
    prior_log_prob: Callable[[Tensor], Tensor],
    sample_prior: Callable[[int], Tensor],
    betas: Tensor,
    sample_likelihood: Callable[[Tensor], Tensor] | None = None,
    variance: str = "beta",
    reg_weight: float = 1.0,
    sleep_weight: float = 1.0,
    sleep: str = "simplified",
    sleep_head: bool = True,
    conditional: bool = True,
    chain_stepper: Callable[[Tensor | None, int, Tensor], Callable[[Tensor, int], Tensor]] | None = None,
) -> dict[str, Tensor]:
    r"""The DDVI loss of a VAE batch ``x`` of shape ``(B, ...)``.

    :param encoder: ``x -> context`` of shape ``(B, C)``.
    :param head: ``context -> (loc, scale)`` of :math:`q(y_T|x)`, each ``(B, d)``.
    :param denoiser: ``(y_t, t, context or None) -> eps_hat`` (``t`` an int or a ``(B,)`` tensor).
    :param log_likelihood: ``(x, z) -> log p(x|z)`` of shape ``(B,)``.
    :param prior_log_prob: ``z -> log p(z)`` of shape ``(B,)``.
    :param sample_prior: ``n -> z`` of shape ``(n, d)``.
    :param betas: forward schedule ``(T,)``.
    :param sample_likelihood: ``z -> x ~ p(x|z)`` (needed for ``sleep="wake-sleep"``).
    :param variance: ``"beta"`` or ``"posterior"`` (clipped at t = 1 to :math:`\tilde\beta_2`).
    :param sleep: ``"simplified"``, ``"wake-sleep"`` or ``"none"``.
    :param conditional: whether the denoiser reads the context.
    :param chain_stepper: optional ``(context, T, like) -> step(y, t)`` giving the wake chain's noise
        predictions with the context bound once (e.g. :meth:`~pyro_diffvi.diffusion.Denoiser.stepper`),
        so that a speed comparison runs the same arithmetic as the Pyro path; by default every step calls
        ``denoiser(y, t, context)``, the plain form used as a test oracle.
    :return: dict of scalar tensors ``loss``, ``elbo``, ``rec``, ``reg``, ``sleep``.
    """
    T = betas.shape[0]
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    if variance == "beta":
        sigma2 = betas
    elif variance == "posterior":
        sigma2 = (1 - abar_prev) / (1 - abar) * betas
        sigma2 = torch.cat([sigma2[1:2] if T > 1 else betas[:1], sigma2[1:]])
    else:
        raise ValueError(f"variance must be 'beta' or 'posterior' in the reference, got {variance!r}")

    context = encoder(x)
    loc, scale = head(context)
    ctx = context if conditional else None
    B, d = loc.shape
    noise = torch.randn((T + 1, B, d), dtype=loc.dtype, device=loc.device)
    y = loc + scale * noise[0]
    log_q = Normal(loc, scale).log_prob(y).sum(-1)
    log_r = torch.zeros_like(log_q)
    step = chain_stepper(ctx, T, y) if chain_stepper is not None else (lambda y, t: denoiser(y, t, ctx))
    for k, t in enumerate(range(T, 0, -1), start=1):
        i = t - 1
        eps_hat = step(y, t)[..., :d]
        mean = (y - betas[i] / torch.sqrt(1 - abar[i]) * eps_hat) / torch.sqrt(alphas[i])
        y_prev = mean + torch.sqrt(sigma2[i]) * noise[k]
        log_q = log_q + Normal(mean, torch.sqrt(sigma2[i])).log_prob(y_prev).sum(-1)
        log_r = log_r + Normal(torch.sqrt(alphas[i]) * y_prev, torch.sqrt(betas[i])).log_prob(y).sum(-1)
        y = y_prev
    z = y
    rec = log_likelihood(x, z).sum()
    reg = (prior_log_prob(z) + log_r - log_q).sum()
    loss = -(rec + reg_weight * reg)

    sleep_loss = torch.zeros_like(loss)
    if sleep != "none" and sleep_weight > 0:
        z_s = sample_prior(B).detach()
        sleep_ctx = None
        if sleep == "wake-sleep":
            if sample_likelihood is None:
                raise ValueError("sample_likelihood is required for sleep='wake-sleep'")
            sleep_ctx = encoder(sample_likelihood(z_s).detach())
        t = torch.randint(1, T + 1, (B,), device=z_s.device)
        eps = torch.randn_like(z_s)
        a = abar[t - 1].unsqueeze(-1)
        y_t = a.sqrt() * z_s + (1 - a).sqrt() * eps
        if conditional:
            den_ctx = sleep_ctx if sleep_ctx is not None else z_s.new_zeros(B, context.shape[-1])
        else:
            den_ctx = None
        eps_hat = denoiser(y_t, t, den_ctx)[..., :d]
        per_datum = (eps - eps_hat).pow(2).sum(-1)
        if sleep == "wake-sleep" and sleep_head:
            loc_s, scale_s = head(sleep_ctx)
            r_T = Normal(abar[-1].sqrt() * z_s, (1 - abar[-1]).sqrt())
            per_datum = per_datum + torch.distributions.kl_divergence(r_T, Normal(loc_s, scale_s)).sum(-1)
        sleep_loss = per_datum.sum()
        loss = loss + sleep_weight * sleep_loss
    return {"loss": loss, "elbo": rec + reg, "rec": rec, "reg": reg, "sleep": sleep_loss}

