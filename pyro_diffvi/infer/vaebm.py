r"""Stage 2 of VAEBM training: the energy by the contrastive gradient, the VAE frozen (Xiao (2022), Eq. 4.17).

With the VAE :math:`\phi` fixed, the gradient of :math:`L(\theta) = \mathbb E_{p_{data}}[-f_\theta(x) - \log
Z_{\theta,\phi}]` is

.. math::

    \partial_\theta L(\theta) = \mathbb E_{x \sim p_{data}}[-\partial_\theta f_\theta(x)]
        + \mathbb E_{x \sim p_{\theta,\phi}}[\partial_\theta f_\theta(x)] \quad (4.17),

a positive phase on data and a negative phase on model samples. :class:`VAEBMContrastiveLoss` minimizes the
surrogate :math:`\frac1N\sum_i f_\theta(x^+_i) - \frac1M\sum_j f_\theta(\bar x^-_j)` (stop-gradient on the
negatives), whose gradient is :math:`-\partial_\theta L`, with negatives :math:`\bar x^- = T(\epsilon)` from
Langevin chains on the noise-space energy :math:`U(\epsilon) = f_\theta(T(\epsilon)) + \frac12\lVert\epsilon
\rVert^2` (Eq. 4.19; :meth:`~pyro_diffvi.distributions.VAEBM.noise_energy`). The chains are those of
:class:`~pyro_diffvi.infer.ContrastiveDivergenceLoss` (short-run from :math:`\epsilon \sim \mathcal N(0, I)`, i.e.
from the VAE, or persistent through a :class:`~pyro_diffvi.samplers.ReplayBuffer` of noise states).

References

- Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation, University
  of Chicago, 2022 ("Xiao (2022)"), Sec. 4.3.
- Z. Xiao, K. Kreis, J. Kautz, A. Vahdat. *VAEBM: A Symbiosis between Variational Autoencoders and
  Energy-based Models*. ICLR, 2021.
- Y. Du, I. Mordatch. *Implicit Generation and Modeling with Energy-Based Models*. NeurIPS, 2019
  (replay buffer, energy regularization).
- E. Nijkamp, M. Hill, S.-C. Zhu, Y. N. Wu. *Learning Non-Convergent Non-Persistent Short-Run MCMC Toward
  Energy-Based Model*. NeurIPS, 2019 (short-run chains).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pyro_diffvi.distributions.vaebm import VAEBM
from pyro_diffvi.infer.prior_objectives.base import check_samples
from pyro_diffvi.infer.prior_objectives.contrastive import ContrastiveDivergenceLoss


class VAEBMContrastiveLoss(ContrastiveDivergenceLoss):
    r"""The VAEBM energy objective of Eq. 4.17 (see the module docstring): call ``loss(vaebm, x)`` on a data
    batch and step an optimizer over ``vaebm.energy_fn.parameters()`` only (the VAE stays as stage 1 left it).

    Loss :math:`\bar f(x^+) - \bar f(\bar x^-) + \alpha\,(\overline{f(x^+)^2} + \overline{f(\bar x^-)^2})`,
    :math:`\alpha` = ``energy_reg_weight`` (the dissertation uses 0.1). Its gradient in :math:`\theta` is exactly
    the difference of mean energy gradients of the two phases (for :math:`\alpha = 0`); no gradient reaches
    the decoder (the negatives are detached).

    The arguments are those of :class:`~pyro_diffvi.infer.ContrastiveDivergenceLoss`, applied to the chains on
    the noise :math:`\epsilon = (\epsilon_z, \epsilon_x)`: ``init_scale = 1`` (the default) starts them at
    :math:`\mathcal N(0, I)`, i.e. at VAE samples; with ``persistent=True`` the replay buffer stores the
    whole :math:`\epsilon` (the dissertation stores :math:`\epsilon_z` only and draws :math:`\epsilon_x`
    afresh) and ``reinit_prob`` is the probability of a fresh chain (the dissertation lowers it from 1 to
    0.4 over training; set ``self.buffer.reinit_prob`` for such a schedule).

    Example:

    >>> import torch
    >>> from torch import nn
    >>> from pyro_diffvi.distributions import VAEBM
    >>> from pyro_diffvi.infer import VAEBMContrastiveLoss
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> vaebm = VAEBM(nn.Linear(2, 4), nn.Sequential(nn.Linear(2, 8), nn.SiLU(), nn.Linear(8, 1)),
    ...               latent_dim=2, obs_dim=2)
    >>> objective = VAEBMContrastiveLoss(num_steps=5, step_size=0.01, energy_reg_weight=0.1)
    >>> loss = objective(vaebm, torch.randn(32, 2))
    >>> loss.backward()
    >>> sorted(objective.last_terms), vaebm.decoder.weight.grad is None
    (['cd_gap', 'energy_neg', 'energy_pos'], True)
    """

    def loss(self, prior: VAEBM, z: Tensor, log_q: Tensor | None = None) -> Tensor:
        r"""The surrogate loss on a data batch (the base class's, with the energy :math:`f_\theta` and
        negatives from :meth:`negative_samples`).

        :param prior: the :class:`~pyro_diffvi.distributions.VAEBM` (named ``prior`` as in the base class).
        :param z: the data batch :math:`x^+`, shape ``(N, obs_dim)`` (named ``z`` as in the base class).
        :param log_q: unused.
        """
        if not isinstance(prior, VAEBM):
            raise TypeError(f"VAEBMContrastiveLoss needs a VAEBM as its first argument, got {type(prior).__name__}")
        self._vaebm = prior
        try:
            return super().loss(prior.energy_of, z)
        finally:
            self._vaebm, self._fixed_negatives = None, None

    def loss_on_samples(self, vaebm: VAEBM, x_pos: Tensor, x_neg: Tensor) -> Tensor:
        r"""The surrogate loss on given positive (data) and negative (model) samples, no chains run.

        :param vaebm: the model whose energy is trained.
        :param x_pos: data points ``(N, obs_dim)``.
        :param x_neg: model samples ``(M, obs_dim)`` (detached).
        """
        self._fixed_negatives = check_samples("x_neg", x_neg).detach()
        return self.loss(vaebm, x_pos)

    def negative_samples(self, energy_fn, like: Tensor) -> Tensor:
        r"""Negatives :math:`x^- = T(\epsilon)` from the base class's (short-run or persistent) chains on
        the noise-space energy :math:`U(\epsilon)` of the VAEBM being trained (``energy_fn``, the energy in
        :math:`x`, is not used); the final noise is kept in ``self.last_noise``.

        :param energy_fn: unused (the chains run in the noise space).
        :param like: a data batch (its size, dtype and device are followed).
        """
        if getattr(self, "_fixed_negatives", None) is not None:
            return self._fixed_negatives
        vaebm = getattr(self, "_vaebm", None)
        if vaebm is None:
            raise RuntimeError("VAEBMContrastiveLoss.negative_samples runs inside loss(vaebm, x)")
        noise = like.new_zeros(like.shape[0], vaebm.latent_dim + vaebm.obs_dim)
        eps = super().negative_samples(vaebm.noise_energy, noise)
        with torch.no_grad():
            x_neg, _ = vaebm.transform(eps)
        self.last_noise = eps
        return x_neg

    def __repr__(self) -> str:
        kind = "persistent" if self.persistent else "short-run"
        return f"VAEBMContrastiveLoss({kind}, num_steps={self.num_steps}, step_size={self.step_size})"
