r"""The Gaussian-step baseline of denoising diffusion GANs: DDPM's noise-prediction loss (Ho et al. 2020).

A network :math:`\epsilon_\theta(x_t, t)` is trained on

.. math::

    \mathcal L = \mathbb E_{t \sim U\{1..T\},\, x_0,\, \epsilon \sim \mathcal N(0, I)}
        \big\lVert \epsilon - \epsilon_\theta(x_t, t) \big\rVert^2, \qquad
        x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon

(the "simple" loss, Ho et al. 2020, Eq. 14) and sampled with Gaussian steps
:math:`q(x_{t-1}|x_t, x_0 = \hat x_0)`, :math:`\hat x_0` from Eq. 6.9 of Xiao (2022) (the DDPM sampler with
the posterior variance; Eqs. 6.6-6.11 show the two readings agree). With ``prediction="x0"`` the network predicts
:math:`\hat x_0 = f_\theta(x_t, t)` itself (Eq. 6.6) on the loss :math:`\mathbb E\lVert x_0 - f_\theta(x_t,
t)\rVert^2`, whose minimizer :math:`\mathbb E[x_0|x_t]` is the same Gaussian step; an MLP narrower than its input
cannot pass a noise of the input's width through (it can predict the structured :math:`x_0`), so this is the
reading for wide data such as images. The network is a
:class:`~pyro_diffvi.nn.DenoisingGenerator` with ``noise_dim=0``: the generator of a denoising diffusion GAN
without its latent, so that the comparison of the two isolates the multimodal denoiser (Xiao 2022, Sec. 6.1:
a Gaussian step is accurate only for small steps).

References: J. Ho, A. Jain, P. Abbeel. *Denoising Diffusion Probabilistic Models*. NeurIPS, 2020; Z. Xiao.
*Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation, University of Chicago, 2022,
Sec. 6.3.1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyro_diffvi.diffusion import PREDICTIONS
from pyro_diffvi.distributions import ImplicitDiffusion
from pyro_diffvi.infer.generator_training import GeneratorTrainer, check_batch, first_parameter, guarded_update
from pyro_diffvi.util import check_positive_int

__all__ = ["DDPMLoss"]


class DDPMLoss(GeneratorTrainer):
    r"""DDPM's noise-prediction loss for a network ``eps(x_t, z, t)`` without latent (``noise_dim = 0``),
    with an EMA of the network for sampling (see the module docstring).

    Loop::

        ddpm = DDPMLoss(DenoisingGenerator(2, noise_dim=0), num_steps=1000)
        opt = torch.optim.Adam(ddpm.network.parameters(), lr=1e-4)
        for x in batches:
            ddpm.step(x, opt)
        samples = ddpm.distribution().sample((1000,))   # T network evaluations per draw

    **Divergence guard** and **checkpoints** as :class:`~pyro_diffvi.infer.DDGANLoss` (term ``"ddpm"``;
    :meth:`state_dict` holds the network, its EMA and the update count).

    :param network: :math:`\epsilon_\theta(x_t, z, t)` with ``dim`` and ``noise_dim = 0`` attributes.
    :param num_steps: :math:`T \ge 1`.
    :param schedule: betas: ``"vp"`` (Eqs. 6.14-6.15 of Xiao 2022), another name or ``num_steps`` betas.
    :param prediction: the network's output: ``"eps"`` (the noise, Ho et al.'s loss) or ``"x0"`` (the clean state).
    :param ema_decay: decay of the network's EMA (:class:`~pyro_diffvi.nn.GeneratorEMA`).
    :param on_nonfinite: ``"raise"`` or ``"skip"``.

    Example:

    >>> import torch
    >>> from pyro_diffvi.infer import DDPMLoss
    >>> from pyro_diffvi.nn import DenoisingGenerator
    >>> ddpm = DDPMLoss(DenoisingGenerator(2, noise_dim=0, hidden_dims=(32,)), num_steps=4)
    >>> opt = torch.optim.Adam(ddpm.network.parameters(), lr=1e-3)
    >>> sorted(ddpm.step(torch.randn(64, 2), opt)), ddpm.distribution().sample((3,)).shape
    (['ddpm'], torch.Size([3, 2]))
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        num_steps: int = 1000,
        schedule: str | Sequence[float] | torch.Tensor = "vp",
        prediction: str = "eps",
        ema_decay: float = 0.999,
        on_nonfinite: str = "raise",
    ) -> None:
        if not isinstance(network, nn.Module) or not isinstance(getattr(network, "dim", None), int):
            raise TypeError("network must be a torch.nn.Module with an int attribute dim (see DenoisingGenerator)")
        if getattr(network, "noise_dim", 0) != 0:
            raise ValueError(f"network.noise_dim must be 0 (a deterministic noise predictor), got {network.noise_dim}")
        check_positive_int("num_steps", num_steps)
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.prediction = prediction
        self.network = network
        super().__init__(
            network, num_steps=num_steps, schedule=schedule, ema_decay=ema_decay, on_nonfinite=on_nonfinite
        )

    def loss(self, x0: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        r"""The loss on a data batch: the batch mean of :math:`\lVert\epsilon - \hat\epsilon\rVert^2` (or of
        :math:`\lVert x_0 - \hat x_0\rVert^2` with ``prediction="x0"``).

        :param x0: data, shape ``(N, dim)``.
        :return: ``(loss, {"ddpm": loss})``.
        """
        x0 = check_batch("x", x0, self.network.dim, first_parameter(self.network))
        t = torch.randint(1, self.num_steps + 1, x0.shape[:1], device=x0.device)
        eps = torch.randn_like(x0)
        x_t = self.process.q_sample(x0, t, eps)
        pred = self.network(x_t, x0.new_zeros(x0.shape[:1] + (0,)), t)
        target = eps if self.prediction == "eps" else x0
        loss = (target - pred).pow(2).sum(-1).mean()
        return loss, {"ddpm": loss}

    def step(self, x0: torch.Tensor, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """One guarded update on the batch ``x0``, then one EMA update.

        :param x0: data, shape ``(N, dim)``.
        :param optimizer: optimizer of the network's parameters.
        :return: ``{"ddpm": value}``.
        """
        loss, terms = self.loss(x0)
        params = dict(self.network.named_parameters())
        if guarded_update(type(self).__name__, loss, terms, optimizer, params, self.on_nonfinite):
            self.ema.update(self.network)
        return {k: float(v.detach()) for k, v in terms.items()}

    def distribution(self, *, ema: bool = True) -> ImplicitDiffusion:
        """The model's distribution of :math:`x_0` (Gaussian steps, ``T`` network evaluations per draw).

        :param ema: use the EMA network (default) or the trained one.
        """
        return ImplicitDiffusion(self.ema.network if ema else self.network, self.process, prediction=self.prediction)

    def state_dict(self) -> dict:
        """The network's and its EMA's ``state_dict()`` and the update count."""
        return {"network": self.network.state_dict(), "ema": self.ema.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved.

        :param state: a dict from :meth:`state_dict`.
        """
        if not isinstance(state, dict) or set(state) != {"network", "ema"}:
            raise ValueError("state must be a dict with keys ['ema', 'network'] (from DDPMLoss.state_dict())")
        self.network.load_state_dict(state["network"])
        self.ema.load_state_dict(state["ema"])

    def __repr__(self) -> str:
        return (f"DDPMLoss(num_steps={self.num_steps}, prediction={self.prediction!r}, ema_decay={self.ema.decay}, "
                f"on_nonfinite={self.on_nonfinite!r})")
