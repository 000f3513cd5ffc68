r"""The denoising losses that train a diffusion guide's chain: DDVI's sleep term (Eq. 9) at the model's draws, and the
same loss at importance-weighted draws for the observed data (the wake-phase update of reweighted wake-sleep)."""

from __future__ import annotations

import torch
from pyro import poutine
from torch.distributions import Normal, kl_divergence

from pyro_diffvi.util import check_positive_int

__all__ = ["DenoisingLosses"]


class DenoisingLosses:
    r"""The chain's training losses, mixed into :class:`~pyro_diffvi.guides.DiffusionGuide`.

    Both are the forward KL of the chain's trajectories to the forward process's trajectories started at a
    draw :math:`z` of the posterior, :math:`\mathrm{KL}\big(p(z|x)\, r(y_{1:T}|z)\,\|\,q_\phi(y_{0:T}|x)\big)`, in
    the noise-prediction form of the DDVI paper (Sec. 3.4); they differ in where :math:`(x, z)` comes from:

    * :meth:`sleep_loss`: :math:`(x, z) \sim p_\theta(x, z)`, simulated by the model (DDVI's sleep term,
      :math:`-\mathcal L_{\mathrm{diff}}` of Eq. 9): it covers every mode the model puts in its posteriors, but
      amortized over simulated :math:`x`, it is imprecise at any given one;
    * :meth:`reweighted_sleep_loss`: the observed :math:`x` and :math:`K` draws :math:`z_k` of the chain itself,
      weighted by their self-normalized importance weights
      :math:`w_k \propto p(x, z_k)\, r(y^k_{1:T}|z_k) / q_\phi(y^k_{0:T}|x)` (the wake-phase update of
      :math:`q` in reweighted wake-sleep, Bornschein and Bengio 2015; Le et al. 2019): the same forward KL at
      the data, so the chain learns the posterior where it is used while keeping the modes its draws visit.

    The host class provides ``latent_names``, ``num_steps``, ``process``, ``variance``, ``standardize``,
    ``denoisers``, ``chain_loc_scale``, ``chain_context``, ``denoiser_context``, ``flatten_latent``,
    ``simulated_context`` and ``call_in_context``.
    """

    def sleep_loss(
        self, model_trace: poutine.Trace, *, use_observed: bool = True, head: bool = True, num_particles: int = 1
    ) -> torch.Tensor:
        r"""The sleep term :math:`-\mathcal L_{\mathrm{diff}}` (DDVI paper, Eq. 9) at the model's draws in
        ``model_trace``: the per-datum loss of :meth:`site_sleep_loss` at each of this guide's latent sites,
        summed over the data with the sites' (data-plate) scales. Its gradients reach the chain only (the
        draws are detached), and the networks used are registered with Pyro's param store, so ``SVI``
        optimizes them.

        :param model_trace: a trace of the model holding values of this guide's latent sites and, with
            ``use_observed``, of its observed sites (simulated by ``poutine.uncondition``).
        :param use_observed: encode the traced observed values into the denoiser's context (full
            wake-sleep) or use no context (the simplified sleep of the DDVI paper, Sec. 3.4).
        :param head: include the term of the chain's Gaussian head.
        :param num_particles: draws of the noise level and noise per model draw (see :meth:`site_sleep_loss`).
        :return: a scalar tensor.
        """
        return self.call_in_context(self._sleep_loss, model_trace, use_observed, head, num_particles)

    def _sleep_loss(
        self, model_trace: poutine.Trace, use_observed: bool, head: bool, num_particles: int
    ) -> torch.Tensor:
        sites = model_trace.nodes
        context = self.chain_context(self.simulated_context(model_trace)) if use_observed else None
        total = 0.0
        for name in self.latent_names:
            z = sites[name]["value"].detach()
            loss = self.site_sleep_loss(name, z, context, head=head, num_particles=num_particles)
            total = total + (loss * sites[name]["scale"]).sum()
        return torch.as_tensor(total)

    def reweighted_sleep_loss(
        self, values: dict[str, torch.Tensor], weights: torch.Tensor, context, scale: float | torch.Tensor = 1.0
    ) -> torch.Tensor:
        r"""The reweighted wake-sleep update of the chain,
        :math:`\sum_n \sum_k w_{kn}\, \ell(z_{kn}; x_n)`, with :math:`\ell` the per-datum loss of
        :meth:`site_sleep_loss` (head term included) at the chain's own draws for the observed data.

        :param values: this guide's latent values (model space, detached here), each of shape
            ``(K,) + batch_shape + event_shape``.
        :param weights: self-normalized importance weights of shape ``(K,) + batch_shape``, summing to one over
            the first dimension (detached here).
        :param context: the encoder's context of this call's observed values.
        :param scale: the data plate's scale (subsampling), multiplied into the sum.
        :return: a scalar tensor.
        """
        return self.call_in_context(self._reweighted_sleep_loss, values, weights, context, scale)

    def _reweighted_sleep_loss(self, values, weights, context, scale) -> torch.Tensor:
        weights = weights.detach()
        total = 0.0
        for name in self.latent_names:
            z = values[name].detach()
            expanded = _expand_context(context, z.shape[0])
            total = total + (weights * self.site_sleep_loss(name, z, expanded, head=True)).sum()
        return torch.as_tensor(total) * scale

    def site_sleep_loss(
        self, name: str, z: torch.Tensor, context=None, *, head: bool = True, num_particles: int = 1
    ) -> torch.Tensor:
        r"""Per-datum denoising loss :math:`-\mathcal L_{\mathrm{diff}}` of latent ``name`` at a posterior draw ``z``
        (Eq. 9).

        .. math::

            \|\epsilon - \epsilon_\phi(\sqrt{\bar\alpha_t} u_0 + \sqrt{1-\bar\alpha_t}\epsilon, t, c)\|^2
            \;+\; \text{head term},

        with :math:`t \sim \mathcal U\{1..T\}` and :math:`\epsilon \sim \mathcal N(0, I)` (the noise-prediction
        form of the sum of KL terms, Sec. 3.4), averaged over ``num_particles`` independent draws of
        :math:`(t, \epsilon)` per draw (one batched denoiser call), plus, for learned variances, the
        variance part of the trajectory forward KL (:meth:`_variance_loss`). Standardized chains denoise
        :math:`u_0 = (z - \text{loc})/\text{scale}` in the coordinates of the chain's head (detached) and their
        head term is :math:`-\log\mathcal N(z; \text{loc}, \text{scale}^2)` (the head learns the posterior's
        moments, a forward KL); the paper's chain denoises :math:`z` and its head term is
        :math:`\mathrm{KL}(r(y_T|z)\,\|\,q_\phi(y_T|x))`. The head term is added when ``head`` and a context
        (the encoding of ``x``) are given.

        :param name: latent site name.
        :param z: the value of the site (detached), shape ``batch_shape + event_shape``.
        :param context: encoder output for the observations that go with ``z``, or ``None`` (simplified
            wake-sleep: a conditional denoiser then reads a zero context).
        :param head: include the term of the chain's Gaussian head.
        :param num_particles: draws of :math:`(t, \epsilon)` per draw. The noise level is the main source of
            variance of a denoising loss; more draws per :math:`(x, z)` cost one denoiser evaluation each, no
            simulation or encoding.
        :return: tensor of shape ``batch_shape``.
        """
        y0 = self.flatten_latent(name, z)
        batch_shape = y0.shape[:-1]
        head_loss = None
        if self.standardize:
            if context is None:
                raise ValueError(
                    "a standardized chain (standardize=True) denoises z in the coordinates of the Gaussian head "
                    "of the simulated x: its sleep term needs the context of x (DDVI_ELBO(sleep='wake-sleep')); "
                    "for the simplified sleep of the paper use DiffusionGuide(..., standardize=False)"
                )
            loc, scale = self.chain_loc_scale(name, context)
            # the denoiser learns the standardized draws; the head their moments (a forward KL)
            u0 = (y0 - loc.detach()) / scale.detach()
            if head:
                head_loss = -Normal(loc, scale).log_prob(y0).sum(-1)
        else:
            u0 = y0
            if head and context is not None:
                head_loss = self._head_kl(name, y0, context)
        denoiser = self.denoisers[self.latent_names.index(name)]
        if context is None:
            ctx = u0.new_zeros(batch_shape + (denoiser.context_dim,)) if denoiser.context_dim else None
        else:
            ctx = self.denoiser_context(name, context)
        particles = (check_positive_int("num_particles", num_particles),)
        u0 = u0.expand(particles + u0.shape)
        ctx = None if ctx is None else ctx.expand(particles + ctx.shape)
        t = torch.randint(1, self.num_steps + 1, u0.shape[:-1], device=y0.device)
        eps = torch.randn_like(u0)
        u_t = self.process.q_sample(u0, t, eps)
        out = denoiser(u_t, t, ctx)
        eps_hat = out[..., : u0.shape[-1]]
        loss = (eps - eps_hat).pow(2).sum(-1)
        if self.variance == "learned":
            loss = loss + self._variance_loss(u0, u_t, t, eps_hat.detach(), out[..., u0.shape[-1] :])
        loss = loss.mean(0)
        return loss if head_loss is None else loss + head_loss

    def _variance_loss(self, u0, u_t, t, eps_hat, v) -> torch.Tensor:
        r""":math:`T\,\mathrm{KL}\big(r(u_{t-1}|u_t, u_0)\,\|\,q(u_{t-1}|u_t)\big)` (:math:`-T \log q(u_0|u_1)` at
        t = 1), the step's term of the trajectory forward KL, with the mean held fixed: it trains the learned
        variances (the hybrid loss of Nichol & Dhariwal 2021, Sec. 3.1), which the noise-prediction loss does
        not see."""
        process = self.process
        q = Normal(process.mean_from_eps(u_t, t, eps_hat), (0.5 * process.learned_log_variance(t, v)).exp())
        r = process.posterior(u_t, u0, t.clamp(min=2))  # r(u_{t-1}|u_t, u_0); a point mass at u_0 for t = 1
        per_coordinate = torch.where((t == 1).unsqueeze(-1), -q.log_prob(u0), kl_divergence(r, q))
        return self.num_steps * per_coordinate.sum(-1)

    def _head_kl(self, name: str, y0: torch.Tensor, context) -> torch.Tensor:
        r"""The head's KL term, :math:`\mathrm{KL}(r_T \,\|\, \mathcal N(\text{loc}, \text{scale}^2))` with
        :math:`r_T = \mathcal N(\sqrt{\bar\alpha_T} z, (1-\bar\alpha_T) I)`."""
        loc, scale = self.chain_loc_scale(name, context)
        r_T = Normal(self.process.sqrt_alphas_cumprod[-1] * y0, self.process.sqrt_one_minus_alphas_cumprod[-1])
        return kl_divergence(r_T, Normal(loc, scale)).sum(-1)


def _expand_context(context, num: int):
    """The context (a tensor or a ``(loc, scale)`` tuple) with a leading dimension of ``num`` particles."""
    if isinstance(context, tuple):
        return tuple(c.expand((num,) + c.shape) for c in context)
    return context.expand((num,) + context.shape)
