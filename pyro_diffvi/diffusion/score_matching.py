r"""Training a data-space score model: weighted denoising score matching with an exponential moving average.

The weighted DSM objective (ScoreVAE paper, Eq. 7; Vincent 2011; Song et al. 2020) is

.. math::

    \mathcal L_{DSM}(\theta, \lambda) = \tfrac12\, \mathbb E_{t \sim U(t_{\min}, T)}\, \mathbb E_{x_0, x_t}
        \big[\lambda(t)\, \|\nabla_{x_t}\log p_{0t}(x_t|x_0) - s_\theta(x_t, t)\|^2\big]
    = \tfrac12\, \mathbb E\big[\lambda(t)\sigma(t)^{-2}\, \|\epsilon - \hat\epsilon_\theta(x_t, t)\|^2\big],

with :math:`x_t = \alpha(t) x_0 + \sigma(t)\epsilon` and :math:`s_\theta = -\hat\epsilon_\theta/\sigma`. Two weightings:

* ``"simple"``, :math:`\lambda(t) = \sigma(t)^2`: the noise-prediction loss
  :math:`\tfrac12\|\epsilon - \hat\epsilon\|^2` of DDPM, with which the ScoreVAE paper pretrains its diffusion models
  (Appendix B.1);
* ``"likelihood"``, :math:`\lambda(t) = g(t)^2 = \beta(t)`: the weighting whose objective, plus
  :math:`\mathrm{KL}(p_T\|\pi)`, bounds :math:`\mathrm{KL}(p\|p_\theta^{SDE})` (Eq. 8; Song et al. 2021). Its
  integrand diverges as :math:`t \to 0`, so :math:`t` is importance-sampled uniformly in log-SNR
  (:meth:`~pyro_diffvi.diffusion.VPSDE.sample_time`); the expectation is the same.

:class:`ScoreModelTrainer` minimizes it with Adam and keeps an exponential moving average of the
parameters (rate 0.999 in the paper), the model to use afterwards (:attr:`ScoreModelTrainer.averaged_model`).

References:

- P. Vincent. *A Connection Between Score Matching and Denoising Autoencoders*. Neural Computation, 2011.
- Y. Song, C. Durkan, I. Murray, S. Ermon. *Maximum Likelihood Training of Score-Based Diffusion Models*.
  NeurIPS, 2021.
- G. Batzolis, J. Stanczuk, C.-B. Schönlieb. *Variational Diffusion Auto-encoder: Latent Space Extraction
  from Pre-trained Diffusion Models*. arXiv:2304.12141, 2023 (Eq. 7, Appendix B.1).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from pyro_diffvi.diffusion.score_model import ScoreModel
from pyro_diffvi.errors import DivergenceError
from pyro_diffvi.util import check_finite, check_positive_float, check_positive_int

WEIGHTINGS = ("simple", "likelihood")


class DenoisingScoreMatchingLoss:
    r"""The weighted DSM loss :math:`\mathcal L_{DSM}(\theta, \lambda)` of the module docstring, a batch mean.

    :param weighting: ``"simple"`` (:math:`\lambda = \sigma^2`, :math:`t` uniform) or ``"likelihood"``
        (:math:`\lambda = g^2`, :math:`t` uniform in log-SNR with importance weights).
    :param num_time_samples: draws of :math:`(t, \epsilon)` per data point.

    Example:

    >>> import torch
    >>> from pyro_diffvi.diffusion import DenoisingScoreMatchingLoss, ScoreModel
    >>> model = ScoreModel((2,), network_options={"global_hidden_dims": [16]})
    >>> loss = DenoisingScoreMatchingLoss(weighting="simple")(model, torch.randn(8, 2))
    >>> loss.shape, bool(loss > 0)
    (torch.Size([]), True)
    """

    def __init__(self, *, weighting: str = "simple", num_time_samples: int = 1) -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.weighting = weighting
        self.num_time_samples = check_positive_int("num_time_samples", num_time_samples)

    def __call__(self, score_model: ScoreModel, x0: Tensor, context: Tensor | None = None) -> Tensor:
        """The loss on data ``x0`` (``batch_shape + data_shape``).

        :param score_model: the model :math:`s_\\theta`.
        :param x0: a batch of data.
        :param context: the conditioning latents of a conditional model, ``batch_shape + (context_dim,)``.
        """
        sde, n = score_model.sde, score_model.event_dim
        batch_shape = x0.shape[: x0.dim() - n]
        proposal = "uniform" if self.weighting == "simple" else "likelihood"
        t, weight = sde.sample_time((self.num_time_samples,) + batch_shape, proposal=proposal, like=x0)
        noise = torch.randn((self.num_time_samples,) + x0.shape, dtype=x0.dtype, device=x0.device)
        x_t = sde.perturb(x0, t, noise)
        residual = (noise - score_model.noise(x_t, t, context)).pow(2).sum(tuple(range(-n, 0)))
        _, sigma = sde.marginal_coefficients(t)
        lam_over_sigma2 = torch.ones_like(t) if self.weighting == "simple" else sde.beta(t) / sigma**2
        # E_{t ~ U} = (1 / (T - t_min)) E_p[w(t) ...]: the same expectation for either proposal
        return 0.5 * (weight * lam_over_sigma2 * residual).mean() / (sde.t_max - sde.t_min)


class ScoreModelTrainer:
    r"""Train a :class:`~pyro_diffvi.diffusion.ScoreModel` by :class:`DenoisingScoreMatchingLoss` with Adam,
    keeping an exponential moving average (EMA) of its parameters,
    :math:`\bar\theta \leftarrow \text{rate}\,\bar\theta + (1 - \text{rate})\,\theta` after every step (torch's
    :class:`~torch.optim.swa_utils.AveragedModel`; the first step copies :math:`\theta`).

    Its :meth:`state_dict` holds the model, the average, the optimizer and the step count, so an
    interrupted training resumes exactly.

    :param score_model: the model to train (updated in place).
    :param lr: Adam's learning rate (the paper: :math:`2\cdot 10^{-4}` for CIFAR-10).
    :param weighting: the DSM weighting (the paper pretrains with ``"simple"``).
    :param ema_rate: the EMA rate (the paper: 0.999).
    :param clip_norm: the gradients' norm is clipped to this (``None``: no clipping).

    Example:

    >>> import torch
    >>> from pyro_diffvi.diffusion import ScoreModel, ScoreModelTrainer
    >>> _ = torch.manual_seed(0)
    >>> model = ScoreModel((2,), network_options={"global_hidden_dims": [32]})
    >>> trainer = ScoreModelTrainer(model, lr=1e-3, ema_rate=0.9)
    >>> losses = trainer.fit(torch.randn(256, 2), num_steps=50, batch_size=64)
    >>> len(losses), trainer.num_steps
    (50, 50)
    >>> prior = trainer.averaged_model   # the EMA weights, to save with prior.save(path)
    >>> prior(torch.zeros(1, 2), torch.tensor([0.5])).shape
    torch.Size([1, 2])
    """

    def __init__(
        self,
        score_model: ScoreModel,
        *,
        lr: float = 2e-4,
        weighting: str = "simple",
        ema_rate: float = 0.999,
        clip_norm: float | None = 1.0,
    ) -> None:
        if not isinstance(score_model, ScoreModel):
            raise TypeError(f"score_model must be a ScoreModel, got {type(score_model).__name__}")
        if not 0.0 <= ema_rate < 1.0:
            raise ValueError(f"ema_rate must be in [0, 1), got {ema_rate}")
        self.score_model = score_model
        self.loss = DenoisingScoreMatchingLoss(weighting=weighting)
        self.optimizer = torch.optim.Adam(score_model.parameters(), lr=check_positive_float("lr", lr))
        self.ema = AveragedModel(score_model, multi_avg_fn=get_ema_multi_avg_fn(ema_rate), use_buffers=True)
        self.clip_norm = None if clip_norm is None else check_positive_float("clip_norm", clip_norm)
        self.num_steps = 0

    @property
    def averaged_model(self) -> ScoreModel:
        """The model with the EMA parameters (a separate module, in evaluation mode)."""
        return self.ema.module.eval()

    def step(self, x0: Tensor, context: Tensor | None = None) -> float:
        """One optimizer step on the batch ``x0``; returns the loss. A non-finite loss or gradient raises
        :class:`~pyro_diffvi.errors.DivergenceError` before any parameter is updated.

        :param x0: a batch of data, ``batch_shape + data_shape``.
        :param context: latents of a conditional model.
        """
        self.score_model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.score_model, x0, context)
        if not torch.isfinite(loss):
            raise DivergenceError(f"DenoisingScoreMatchingLoss is {loss.item()} at step {self.num_steps}; "
                                     "no parameter was updated. Lower the learning rate or check the data.")
        loss.backward()
        grads = [p.grad for p in self.score_model.parameters() if p.grad is not None]
        if grads and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
            raise DivergenceError(f"non-finite gradient of the score model at step {self.num_steps}; "
                                     "no parameter was updated. Lower the learning rate or clip gradients.")
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.score_model.parameters(), self.clip_norm)
        self.optimizer.step()
        self.ema.update_parameters(self.score_model)
        self.num_steps += 1
        return loss.item()

    def fit(self, data: Tensor, *, num_steps: int, batch_size: int = 128, desc: str = "score model") -> list[float]:
        """Train ``num_steps`` steps on minibatches drawn with replacement from ``data`` (torch's global
        random generator); a progress bar shows when the output is a terminal.

        :param data: the training data, ``(N,) + data_shape``, finite.
        :param num_steps: the number of steps.
        :param batch_size: rows per step.
        :param desc: the progress bar's label.
        :return: the loss of every step.
        """
        shape = tuple(data.shape[1:])
        if data.dim() < 2 or shape != self.score_model.data_shape:
            raise ValueError(
                f"data must have shape (N,) + {self.score_model.data_shape} (the score model's data shape), "
                f"got {tuple(data.shape)}"
            )
        check_finite("data", data)
        check_positive_int("num_steps", num_steps)
        check_positive_int("batch_size", batch_size)
        losses = []
        for _ in tqdm(range(num_steps), desc=desc, leave=False, disable=None):
            rows = torch.randint(0, data.shape[0], (batch_size,), device=data.device)
            losses.append(self.step(data[rows]))
        return losses

    def state_dict(self) -> dict:
        """The training state: model, EMA, optimizer and step count."""
        return {"model": self.score_model.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(), "num_steps": self.num_steps}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output.

        :param state: the saved state.
        """
        self.score_model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_steps = int(state["num_steps"])

