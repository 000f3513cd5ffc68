r"""Data-space score models :math:`s_\theta(x_t, t)` and :math:`s_\theta(x_t, t, z)` on a VP SDE, saved as checkpoints.

A :class:`ScoreModel` holds a noise-prediction network :math:`\hat\epsilon_\theta` and the SDE it was trained on,
with the score :math:`s_\theta(x_t, t) = -\hat\epsilon_\theta(x_t, t)/\sigma(t)` (the parametrization of DDPM and of
Song et al.'s VP models). ``context_dim = 0`` gives the unconditional model of the data
:math:`\nabla_{x_t}\log p_t(x_t)` that ScoreVAE pretrains once and freezes; ``context_dim = K`` a conditional
model :math:`\nabla_{x_t}\log p_t(x_t|z)` (the DiffDecoder baseline, or ScoreVAE+'s corrector).

A checkpoint is the model's ``state_dict`` with its configuration (data shape, network and options, SDE),
so a pretrained prior is a file another process rebuilds with :meth:`ScoreModel.load`.

References:

- J. Ho, A. Jain, P. Abbeel. *Denoising Diffusion Probabilistic Models*. NeurIPS, 2020.
- Y. Song, J. Sohl-Dickstein, D. P. Kingma, A. Kumar, S. Ermon, B. Poole. *Score-Based Generative Modeling
  through Stochastic Differential Equations*. ICLR, 2021 (arXiv:2011.13456).
- G. Batzolis, J. Stanczuk, C.-B. Schönlieb. *Variational Diffusion Auto-encoder: Latent Space Extraction
  from Pre-trained Diffusion Models*. arXiv:2304.12141, 2023 (Sec. 3.3).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pyro_diffvi.diffusion.sde import VPSDE, _expand
from pyro_diffvi.nn import ConditionalMLP, ScoreMLP, UNet
from pyro_diffvi.nn.time_encoder import TIME_SCALE
from pyro_diffvi.util import check_positive_int

NETWORKS = ("mlp", "unet")
CHECKPOINT_FORMAT = "pyro_diffvi.ScoreModel/1"


def _build_network(network: str, data_shape: tuple[int, ...], context_dim: int, options: dict) -> nn.Module:
    if network == "mlp":
        return ScoreMLP(math.prod(data_shape), context_dim=context_dim, **options)
    if network == "unet":
        options = dict(options)
        image_shape = tuple(options.pop("image_shape", data_shape))
        if math.prod(image_shape) != math.prod(data_shape) or len(image_shape) != 3:
            raise ValueError(
                f"a U-Net needs network_options['image_shape'] = (C, H, W) with C * H * W = {math.prod(data_shape)} "
                f"(data_shape {data_shape}), got {image_shape}"
            )
        return UNet(image_shape, context_dim=context_dim, **options)
    raise ValueError(f"network must be one of {NETWORKS} or an nn.Module, got {network!r}")


def _output_layers(network: nn.Module) -> list[nn.Module]:
    if isinstance(network, ConditionalMLP):
        return [network.net[-1]]
    if hasattr(network, "output_layers"):
        return list(network.output_layers)
    if hasattr(network, "output_layer"):
        return [network.output_layer]
    raise TypeError(f"zero_init needs a network with an output_layer(s) attribute, got {type(network).__name__}")


class ScoreModel(nn.Module):
    r"""A score model :math:`s_\theta(x_t, t[, z]) = -\hat\epsilon_\theta(x_t, t[, z])/\sigma(t)` on data of shape
    ``data_shape``.

    The network reads the states batch-flattened, of shape ``(N, D)`` for ``"mlp"`` (a
    :class:`~pyro_diffvi.nn.ScoreMLP`; ``D`` the product of ``data_shape``) or ``(N,) + image_shape`` for
    ``"unet"`` (a :class:`~pyro_diffvi.nn.UNet`), the time as :math:`1000\,t`, and the context ``(N, K)``.

    :param data_shape: the event shape of the data, e.g. ``(784,)``.
    :param context_dim: width :math:`K` of the conditioning latent (0: unconditional).
    :param network: ``"mlp"``, ``"unet"``, or an ``nn.Module`` called as ``network(x, 1000 t, context)`` on
        states of shape ``(N,) + data_shape`` (such a model saves with ``torch.save(model)``, not :meth:`save`;
        ``gaussian_skip`` applies to it too).
    :param network_options: keyword arguments of the network: for ``"mlp"`` those of
        :class:`~pyro_diffvi.nn.ScoreMLP` (``global_hidden_dims``, default ``(512, 512, 512)``, ``pixel_hidden_dims``,
        default ``(32, 32)``, ``time_dim``, ``activation``); for ``"unet"`` ``image_shape``
        (``(C, H, W)``, required for flat data) and :class:`~pyro_diffvi.nn.UNet`'s options.
    :param sde: the forward SDE (default :class:`~pyro_diffvi.diffusion.VPSDE`'s defaults).
    :param zero_init: start the network's output layers at zero (a ScoreVAE+ corrector starts as no correction).
    :param gaussian_skip: (default) predict the noise as :math:`\hat\epsilon = \sigma(t)\, x_t + \text{network}`, the
        network learning the residual from :math:`\sigma(t) x_t`, the exact noise prediction for standard-normal data
        (the skip of :class:`~pyro_diffvi.diffusion.Denoiser`); with ``zero_init`` the untrained model is then the
        exact score of :math:`\mathcal N(0, I)`. Without it an MLP must learn the identity map of high noise
        levels through its hidden layers: measured on MNIST (3 x 512 units, 1,500 steps), its noise error at
        :math:`t = 1` stayed at 0.51 per pixel where :math:`\sigma x_t` has 0.0, and the reverse SDE diverged.

    Example (save a model and load it back, as another process would):

    >>> import os, tempfile, torch
    >>> from pyro_diffvi.diffusion import ScoreModel
    >>> model = ScoreModel((4,), network_options={"global_hidden_dims": [16]})
    >>> x_t, t = torch.randn(3, 4), torch.rand(3)
    >>> model(x_t, t).shape
    torch.Size([3, 4])
    >>> path = os.path.join(tempfile.mkdtemp(), "prior.pt")
    >>> model.save(path)
    >>> torch.equal(ScoreModel.load(path)(x_t, t), model(x_t, t))
    True
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        *,
        context_dim: int = 0,
        network: str | nn.Module = "mlp",
        network_options: dict | None = None,
        sde: VPSDE | None = None,
        zero_init: bool = False,
        gaussian_skip: bool = True,
    ) -> None:
        super().__init__()
        self.data_shape = tuple(check_positive_int("each entry of data_shape", int(s)) for s in data_shape)
        if not self.data_shape:
            raise ValueError("data_shape must have at least one dimension")
        if isinstance(context_dim, bool) or not isinstance(context_dim, int) or context_dim < 0:
            raise ValueError(f"context_dim must be a non-negative int, got {context_dim!r}")
        self.context_dim = context_dim
        self.sde = VPSDE() if sde is None else sde
        if not isinstance(self.sde, VPSDE):
            raise TypeError(f"sde must be a VPSDE, got {type(self.sde).__name__}")
        self.network_options = dict(network_options or {})
        if isinstance(network, nn.Module):
            self.network_name = None
            self.network = network
            self._input_shape = self.data_shape
        else:
            self.network_name = network
            self.network = _build_network(network, self.data_shape, context_dim, self.network_options)
            self._input_shape = (math.prod(self.data_shape),) if network == "mlp" else self.network.image_shape
        self.zero_init = bool(zero_init)
        self.gaussian_skip = bool(gaussian_skip)
        if self.zero_init:
            with torch.no_grad():
                for layer in _output_layers(self.network):
                    for param in layer.parameters():
                        param.zero_()

    @property
    def event_dim(self) -> int:
        """The number of event dimensions of the data."""
        return len(self.data_shape)

    def noise(self, x_t: Tensor, t: Tensor, context: Tensor | None = None) -> Tensor:
        r"""The noise prediction :math:`\hat\epsilon_\theta(x_t, t[, z])`.

        :param x_t: states, ``batch_shape + data_shape``.
        :param t: times in :math:`[0, T]`, broadcast against ``batch_shape``.
        :param context: the latent, ``batch_shape + (context_dim,)`` (broadcast); required iff ``context_dim > 0``.
        :return: the shape of ``x_t``.
        """
        n = self.event_dim
        if tuple(x_t.shape[x_t.dim() - n :]) != self.data_shape:
            raise ValueError(
                f"x_t must have shape batch_shape + {self.data_shape} (the score model's data shape), "
                f"got {tuple(x_t.shape)}"
            )
        batch_shape = x_t.shape[: x_t.dim() - n]
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device).expand(batch_shape).reshape(-1)
        flat = x_t.reshape((-1,) + self._input_shape)
        if self.context_dim:
            if context is None or context.shape[-1:] != (self.context_dim,):
                raise ValueError(
                    f"context must have shape batch_shape + ({self.context_dim},) for this conditional score model, "
                    f"got {None if context is None else tuple(context.shape)}"
                )
            context = context.expand(batch_shape + (self.context_dim,)).reshape(-1, self.context_dim)
            out = self.network(flat, TIME_SCALE * t, context)
        else:
            if context is not None:
                raise ValueError("context must be None: this score model is unconditional (context_dim = 0)")
            out = self.network(flat, TIME_SCALE * t, None)
        out = out.reshape(x_t.shape)
        if self.gaussian_skip:
            out = out + _expand(self.sde.marginal_coefficients(t.reshape(batch_shape))[1], x_t) * x_t
        return out

    def forward(self, x_t: Tensor, t: Tensor, context: Tensor | None = None) -> Tensor:
        r"""The score :math:`s_\theta(x_t, t[, z]) = -\hat\epsilon_\theta/\sigma(t)` (arguments of :meth:`noise`)."""
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device).expand(x_t.shape[: x_t.dim() - self.event_dim])
        _, sigma = self.sde.marginal_coefficients(t)
        return -self.noise(x_t, t, context) / _expand(sigma, x_t)

    # ---- checkpoints --------------------------------------------------------------------------------

    def config(self) -> dict:
        """The configuration that rebuilds this model (plain Python values)."""
        if self.network_name is None:
            raise TypeError(
                "this ScoreModel has a user network, which a configuration cannot rebuild: save it whole with "
                "torch.save(model) and load it with torch.load(path, weights_only=False)"
            )
        return {
            "data_shape": list(self.data_shape), "context_dim": self.context_dim, "network": self.network_name,
            "network_options": _plain(self.network_options), "sde": self.sde.config(), "zero_init": self.zero_init,
            "gaussian_skip": self.gaussian_skip,
        }

    @classmethod
    def from_config(cls, config: dict) -> ScoreModel:
        """A new (untrained) model of the configuration ``config`` (:meth:`config`'s output).

        :param config: the configuration.
        """
        config = dict(config)
        return cls(
            config.pop("data_shape"), sde=VPSDE(**config.pop("sde")), **config,
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the checkpoint ``{"format", "config", "state_dict"}`` to ``path`` (``torch.save``).

        :param path: the file.
        """
        torch.save({"format": CHECKPOINT_FORMAT, "config": self.config(), "state_dict": self.state_dict()}, path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, map_location: str | torch.device | None = None) -> ScoreModel:
        """The model saved by :meth:`save` at ``path``, in evaluation mode.

        :param path: the checkpoint file.
        :param map_location: where to put its tensors (``torch.load``'s argument), e.g. ``"cpu"``.
        """
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not a ScoreModel checkpoint (format {CHECKPOINT_FORMAT!r})")
        model = cls.from_config(checkpoint["config"])
        model.load_state_dict(checkpoint["state_dict"])
        if map_location is not None:
            model.to(map_location)
        return model.eval()


def _plain(value):
    """Tuples to lists, recursively: a configuration that ``torch.load(weights_only=True)`` reads back."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
