r"""Training a denoising diffusion GAN (Xiao 2022, Ch. 6): each reverse step a conditional GAN.

With a forward process of few large steps (``T = 4`` on the VP schedule, Eqs. 6.14-6.15), the true denoising
distribution :math:`q(x_{t-1}|x_t)` is multimodal, so it is matched by the implicit
:math:`p_\theta(x_{t-1}|x_t) = \int p(z)\, q(x_{t-1}|x_t, x_0 = G_\theta(x_t, z, t))\, dz` (Eq. 6.12) with an
adversarial loss per step. With :math:`D_\phi = \sigma(d_\phi)`, one training iteration (Alg. 1) draws, per data
point :math:`x_0`, a step :math:`t \sim U\{1..T\}` and

* a real pair: :math:`x_{t-1} \sim q(x_{t-1}|x_0)`, :math:`x_t \sim q(x_t|x_{t-1})` (Eq. 6.4);
* a fake :math:`x_{t-1}' \sim q(x_{t-1}|x_t, x_0 = G_\theta(x_t, z, t))`, :math:`z \sim \mathcal N(0, I)`;

then updates the discriminator on the non-saturating loss (Eq. 6.3) plus the R1 penalty (Eq. 6.16),

.. math::

    \mathcal L_D = \mathbb E\big[\mathrm{softplus}(-d_\phi(x_{t-1}, x_t, t))\big]
      + \mathbb E\big[\mathrm{softplus}(d_\phi(x_{t-1}', x_t, t))\big]
      + \frac{\gamma}{2}\,\mathbb E\big[\lVert\nabla_{x_{t-1}} d_\phi(x_{t-1}, x_t, t)\rVert^2\big],

(:math:`-\log D = \mathrm{softplus}(-d)`, :math:`-\log(1 - D) = \mathrm{softplus}(d)`; the penalty is on real
pairs and, as in Mescheder et al. 2018, on the logit :math:`d_\phi`), and then the generator, with the updated
discriminator, on the non-saturating loss :math:`\mathcal L_G = \mathbb E[\mathrm{softplus}(-d_\phi(x_{t-1}',
x_t, t))]` (Eq. 6.5) on the same draws; finally the generator's exponential moving average, which samples.

References

- Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation, University of
  Chicago, 2022, Ch. 6 (Z. Xiao, K. Kreis, A. Vahdat. *Tackling the Generative Learning Trilemma with
  Denoising Diffusion GANs*. ICLR, 2022).
- L. Mescheder, A. Geiger, S. Nowozin. *Which Training Methods for GANs do actually Converge?* ICML, 2018
  (the R1 penalty).
- I. Goodfellow et al. *Generative Adversarial Nets*. NeurIPS, 2014 (the non-saturating loss).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.functional import softplus

from pyro_diffvi.diffusion import posterior_sampling_step
from pyro_diffvi.distributions import ImplicitDiffusion
from pyro_diffvi.infer.generator_training import GeneratorTrainer, check_batch, first_parameter, guarded_update
from pyro_diffvi.util import check_positive_float, check_positive_int

__all__ = ["AdversarialPairs", "DDGANLoss"]


class AdversarialPairs(NamedTuple):
    """The draws of one training iteration (:meth:`DDGANLoss.draw`), each of batch shape ``(N,)``."""

    t: torch.Tensor
    """the steps, integers in ``1..T``"""
    x_prev: torch.Tensor
    r"""real :math:`x_{t-1} \sim q(x_{t-1}|x_0)`"""
    x_t: torch.Tensor
    r""":math:`x_t \sim q(x_t|x_{t-1})`"""
    fake: torch.Tensor
    r"""fake :math:`x_{t-1}' \sim q(x_{t-1}|x_t, x_0 = G(x_t, z, t))`, differentiable in the generator"""


class DDGANLoss(GeneratorTrainer):
    r"""The training objective of a denoising diffusion GAN (see the module docstring): the discriminator's
    non-saturating loss with the R1 penalty, the generator's non-saturating loss, the generator's EMA.

    Use it with two optimizers (the dissertation: Adam; its 25-Gaussians run: learning rate
    :math:`10^{-4}` for both, batch 512, 50,000 iterations, ``T = 4``)::

        ddgan = DDGANLoss(DenoisingGenerator(2), DenoisingDiscriminator(2), num_steps=4)
        g_opt = torch.optim.Adam(ddgan.generator.parameters(), lr=1e-4, betas=(0.5, 0.9))
        d_opt = torch.optim.Adam(ddgan.discriminator.parameters(), lr=1e-4, betas=(0.5, 0.9))
        for x in batches:
            ddgan.step(x, g_opt, d_opt)         # Alg. 1: the discriminator, then the generator, then the EMA
        samples = ddgan.distribution().sample((1000,))   # Alg. 2 with the EMA generator (4 evaluations)

    :meth:`draw`, :meth:`discriminator_loss` and :meth:`generator_loss` are the parts of :meth:`step`, for a
    loop of one's own.

    **Divergence guard**: each update is guarded as the other objectives are
    (:func:`~pyro_diffvi.infer.generator_training.guarded_update`): a NaN or infinite term (``"real"``,
    ``"fake"``, ``"r1"``; ``"generator"``) or gradient raises
    :class:`~pyro_diffvi.errors.DivergenceError` naming it before that update's optimizer step (with
    ``on_nonfinite="skip"``: a warning and the update is skipped). A divergence of the discriminator's update
    stops the iteration before any parameter changes; one of the generator's update leaves the generator and
    its EMA untouched, after the discriminator's update of that iteration.

    **Checkpoints**: :meth:`state_dict` holds the generator, the discriminator, the EMA generator and the
    update count; with the optimizers' ``state_dict()`` and torch's RNG state (the draws use the global RNG)
    a resumed run equals the uninterrupted one bit for bit.

    :param generator: :math:`G_\theta(x_t, z, t)` predicting :math:`x_0`, with attributes ``dim`` and
        ``noise_dim`` (a :class:`~pyro_diffvi.nn.DenoisingGenerator`).
    :param discriminator: the logit :math:`d_\phi(x_{t-1}, x_t, t)`, shape ``batch``
        (a :class:`~pyro_diffvi.nn.DenoisingDiscriminator`).
    :param num_steps: :math:`T \ge 1` (``T = 1`` is an unconditional GAN: :math:`x_1` is almost pure noise).
    :param schedule: the forward process's betas: ``"vp"`` (Eqs. 6.14-6.15, :math:`\beta_{\min} = 0.1`,
        :math:`\beta_{\max} = 20`), another name of :data:`~pyro_diffvi.diffusion.SCHEDULES` or ``num_steps``
        betas; checked to be representable in the generator's dtype.
    :param r1_weight: :math:`\gamma \ge 0` of Eq. 6.16 (the penalty is :math:`\gamma/2` times the mean squared
        gradient norm; the dissertation uses 0.05 on CIFAR-10 and StackedMNIST, 1 on 256-pixel images).
    :param ema_decay: decay :math:`\lambda \in [0, 1)` of the generator's EMA
        (:class:`~pyro_diffvi.nn.GeneratorEMA`; the dissertation: 0.9999 on CIFAR-10, 0.999 on 256-pixel images).
    :param on_nonfinite: ``"raise"`` (default) or ``"skip"``, see above.
    :raises ValueError: naming ``num_steps``, ``schedule``, ``r1_weight``, ``ema_decay`` or the networks'
        ``dim`` when out of range or inconsistent.

    Example:

    >>> import torch
    >>> from pyro_diffvi.infer import DDGANLoss
    >>> from pyro_diffvi.nn import DenoisingDiscriminator, DenoisingGenerator
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> ddgan = DDGANLoss(DenoisingGenerator(2, hidden_dims=(32,)), DenoisingDiscriminator(2, hidden_dims=(32,)))
    >>> g_opt = torch.optim.Adam(ddgan.generator.parameters(), lr=1e-4, betas=(0.5, 0.9))
    >>> d_opt = torch.optim.Adam(ddgan.discriminator.parameters(), lr=1e-4, betas=(0.5, 0.9))
    >>> terms = ddgan.step(torch.randn(64, 2), g_opt, d_opt)
    >>> sorted(terms), ddgan.num_updates
    (['fake', 'generator', 'r1', 'real'], 1)
    >>> ddgan.distribution().sample((5,)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        *,
        num_steps: int = 4,
        schedule: str | Sequence[float] | torch.Tensor = "vp",
        r1_weight: float = 0.05,
        ema_decay: float = 0.999,
        on_nonfinite: str = "raise",
    ) -> None:
        if not isinstance(generator, nn.Module) or not isinstance(discriminator, nn.Module):
            raise TypeError("generator and discriminator must be torch.nn.Modules")
        dim = getattr(generator, "dim", None)
        if not isinstance(dim, int) or not isinstance(getattr(generator, "noise_dim", None), int):
            raise TypeError("generator must have int attributes dim and noise_dim (see DenoisingGenerator)")
        if getattr(discriminator, "dim", dim) != dim:
            raise ValueError(f"discriminator.dim must equal generator.dim = {dim}, got {discriminator.dim}")
        check_positive_int("num_steps", num_steps)
        self.generator = generator
        self.discriminator = discriminator
        self.r1_weight = check_positive_float("r1_weight", r1_weight, allow_zero=True)
        super().__init__(
            generator, num_steps=num_steps, schedule=schedule, ema_decay=ema_decay, on_nonfinite=on_nonfinite
        )

    # ---- the parts of one iteration -------------------------------------------------------------------

    def draw(self, x0: torch.Tensor) -> AdversarialPairs:
        r"""The real pairs and the fakes of one iteration for the data batch ``x0`` (see the module docstring).

        :param x0: data, shape ``(N, dim)``.
        :return: :class:`AdversarialPairs` ``(t, x_prev, x_t, fake)``.
        """
        x0 = check_batch("x", x0, self.generator.dim, first_parameter(self.generator))
        t = torch.randint(1, self.num_steps + 1, x0.shape[:1], device=x0.device)
        abar = self.process.at("alphas_cumprod", t, x0)
        alpha = self.process.at("alphas", t, x0)
        abar_prev = abar / alpha  # exactly 1 at t = 1
        x_prev = abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * torch.randn_like(x0)
        x_t = alpha.sqrt() * x_prev + (1 - alpha).sqrt() * torch.randn_like(x0)
        fake = posterior_sampling_step(self.process, self.generator, x_t, t).x_prev
        return AdversarialPairs(t, x_prev, x_t, fake)

    def discriminator_loss(self, pairs: AdversarialPairs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        r""":math:`\mathcal L_D` (Eq. 6.3 with Eq. 6.16) on the draws, with no gradient to the generator.

        :param pairs: from :meth:`draw`.
        :return: ``(loss, terms)`` with terms ``"real"`` (:math:`\mathbb E\,\mathrm{softplus}(-d)` on real
            pairs), ``"fake"`` (:math:`\mathbb E\,\mathrm{softplus}(d)` on fakes) and ``"r1"`` (the penalty
            :math:`\frac{\gamma}{2}\mathbb E\lVert\nabla_{x_{t-1}} d\rVert^2`, already weighted).
        """
        d = self.discriminator
        x_prev = pairs.x_prev.detach().requires_grad_(self.r1_weight > 0)
        real_logits = d(x_prev, pairs.x_t, pairs.t)
        real = softplus(-real_logits).mean()
        fake = softplus(d(pairs.fake.detach(), pairs.x_t, pairs.t)).mean()
        if self.r1_weight > 0:
            (grad,) = torch.autograd.grad(real_logits.sum(), x_prev, create_graph=True)
            r1 = 0.5 * self.r1_weight * grad.pow(2).sum(-1).mean()
        else:
            r1 = real.new_zeros(())
        return real + fake + r1, {"real": real, "fake": fake, "r1": r1}

    def generator_loss(self, pairs: AdversarialPairs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        r""":math:`\mathcal L_G = \mathbb E[\mathrm{softplus}(-d_\phi(x_{t-1}', x_t, t))]` (Eq. 6.5, non-saturating),
        through a parameter-detached discriminator: gradients reach the generator only.

        :param pairs: from :meth:`draw`.
        :return: ``(loss, {"generator": loss})``.
        """
        d = self.discriminator
        frozen = {name: p.detach() for name, p in d.named_parameters()}
        frozen.update(dict(d.named_buffers()))
        loss = softplus(-functional_call(d, frozen, (pairs.fake, pairs.x_t, pairs.t))).mean()
        return loss, {"generator": loss}

    def update_ema(self) -> None:
        """One update of the generator's EMA (:meth:`step` calls it)."""
        self.ema.update(self.generator)

    def step(
        self,
        x0: torch.Tensor,
        generator_optimizer: torch.optim.Optimizer,
        discriminator_optimizer: torch.optim.Optimizer,
    ) -> dict[str, float]:
        """One training iteration (Alg. 1): draw, update the discriminator, then the generator (with the updated
        discriminator, on the same draws), then the EMA.

        :param x0: a data batch, shape ``(N, dim)``, on the networks' device and dtype (checked first).
        :param generator_optimizer: optimizer of the generator's parameters.
        :param discriminator_optimizer: optimizer of the discriminator's parameters.
        :return: the terms as floats (``"real"``, ``"fake"``, ``"r1"``, ``"generator"``).
        """
        pairs = self.draw(x0)
        name = type(self).__name__
        d_loss, d_terms = self.discriminator_loss(pairs)
        d_params = dict(self.discriminator.named_parameters())
        guarded_update(name, d_loss, d_terms, discriminator_optimizer, d_params, self.on_nonfinite)
        g_loss, g_terms = self.generator_loss(pairs)
        g_params = dict(self.generator.named_parameters())
        if guarded_update(name, g_loss, g_terms, generator_optimizer, g_params, self.on_nonfinite):
            self.update_ema()
        return {k: float(v.detach()) for k, v in {**d_terms, **g_terms}.items()}

    def distribution(self, *, ema: bool = True) -> ImplicitDiffusion:
        """The model's implicit distribution of :math:`x_0`, sampled by Alg. 2.

        :param ema: use the EMA generator (default; the dissertation samples with it) or the trained one.
        :return: an :class:`~pyro_diffvi.distributions.ImplicitDiffusion`.
        """
        return ImplicitDiffusion(self.ema.network if ema else self.generator, self.process)

    # ---- checkpoints ---------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The generator's, the discriminator's and the EMA generator's ``state_dict()`` and the update count."""
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "ema": self.ema.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved, into the networks in place.

        :param state: a dict from :meth:`state_dict` of an objective built with networks of the same shapes.
        """
        if not isinstance(state, dict) or set(state) != {"generator", "discriminator", "ema"}:
            raise ValueError(
                "state must be a dict with keys ['discriminator', 'ema', 'generator'] (from DDGANLoss.state_dict())"
            )
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.ema.load_state_dict(state["ema"])

    def __repr__(self) -> str:
        return (
            f"DDGANLoss(num_steps={self.num_steps}, r1_weight={self.r1_weight}, ema_decay={self.ema.decay}, "
            f"on_nonfinite={self.on_nonfinite!r})"
        )
