"""Amortized diffusion guide of DDVI (Piriyakulkij, Wang and Kuleshov, DDVI paper Sec. 3), with a Gaussian guide
inside it that it falls back to, by measurement, whenever its chain's bound is not ahead."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from torch import nn

from pyro_diffvi.diffusion import REVERSE_VARIANCES, Denoiser, GaussianDiffusion, make_schedule
from pyro_diffvi.distributions.diffusion import DiffusionPosterior
from pyro_diffvi.guides.denoising import DenoisingLosses
from pyro_diffvi.guides.gaussian import GaussianGuide
from pyro_diffvi.guides.selection import BoundSelector
from pyro_diffvi.guides.structure import constrained
from pyro_diffvi.nn import GeneratorEMA, loc_scale
from pyro_diffvi.nn import activation as make_activation
from pyro_diffvi.util import check_positive_int, check_widths

__all__ = ["SELECTIONS", "Alternatives", "DiffusionGuide"]

SELECTIONS = ("measured", "chain")
MEASURED_AVERAGING_DECAY = 0.995
"""The default ``averaging_decay`` of a measuring guide (``selection="measured"``)."""


@dataclass
class Alternatives:
    """Draws of a :class:`DiffusionGuide`'s posteriors in one call, for an objective that trains or compares
    them (:class:`~pyro_diffvi.infer.DDVI_ELBO`); each maps a latent site to ``(value, log_density)`` in the
    model's space.

    :ivar context: the encoder's context of the call.
    :ivar head: one draw of the Gaussian head (differentiable unless the head is the emitted posterior).
    :ivar averaged: one draw of the averaged chain (no gradient), or ``None`` without averaging.
    :ivar chain: ``K`` draws of the trained chain, stacked first (differentiable; the log density is the
        Markovian bound term).
    """

    context: object
    head: dict[str, tuple[torch.Tensor, torch.Tensor]]
    averaged: dict[str, tuple[torch.Tensor, torch.Tensor]] | None
    chain: dict[str, tuple[torch.Tensor, torch.Tensor]]


class DiffusionGuide(DenoisingLosses, GaussianGuide):
    r"""Amortized diffusion posterior :math:`q_\phi(z|x)` for every latent site of a Pyro model: DDVI's reverse
    diffusion chain (a :class:`~pyro_diffvi.distributions.DiffusionPosterior`), a Gaussian start and ``num_steps``
    learned Gaussian denoising steps with the noise predictor :math:`\epsilon_\phi(u_t, t, c)` on the encoder's
    context :math:`c = \mathrm{enc}_\phi(x)`; its site density is the bound term of the Markovian ELBO (Eq. 5),
    so ``Trace_ELBO`` on the guide is a lower bound on :math:`\log p(x)`.

    With ``selection="measured"`` the guide also holds a **Gaussian head**, the diagonal Gaussian
    :math:`\mathcal N(\mu_\phi(c), \sigma_\phi(c)^2)` of :class:`GaussianGuide` (same encoder, same linear head,
    same initialization), trained by its own ELBO, and the chain starts at a copy of it. The guide then
    *emits* one of the two (``choice``): the head, until the chain's bound is measurably higher, then the chain
    with its parameters averaged over the recent steps (``averaging_decay``, default 0.995 for a measuring
    guide; :class:`~pyro_diffvi.nn.GeneratorEMA`), and back to the head if the chain falls measurably behind.
    :class:`~pyro_diffvi.infer.DDVI_ELBO` measures both bounds on every training batch, decides by
    :class:`~pyro_diffvi.guides.BoundSelector` (an exponential average of the lead with hysteresis at two
    standard errors), and trains the chain by its sleep term, its reweighted wake-sleep term at the observed
    data and a share of its own bound (docs/guide.md, "Safe by default"). While the head is emitted the chain's
    terms read the encoder's context cut from its graph (:meth:`chain_context`), so the encoder and the head
    learn from the head's bound alone, as a :class:`GaussianGuide` does. Measured in docs/results.md; it is
    opt-in until measured on the VAEs of the examples. With other objectives than ``DDVI_ELBO``
    (``Trace_ELBO``, ``RenyiELBO``) only the emitted posterior learns.

    Defaults (measured on :mod:`pyro_diffvi.datasets.posteriors`, docs/results.md):

    * ``standardize=True``: the chain runs in the coordinates standardized by its start,
      :math:`z = \text{loc} + \text{scale}\odot u_0`, :math:`u_T \sim \mathcal N(0, I)`, so one schedule fits every
      posterior scale;
    * the denoiser has the skip :math:`\epsilon_\phi = \sqrt{1-\bar\alpha_t}\,u_t + \mathrm{net}` with a zero
      output layer, so a new chain *is* its Gaussian start exactly;
    * ``schedule="cosine"`` (:math:`\bar\alpha_T \approx 0`: the chain can build multimodality from noise),
      ``variance="learned"``;
    * ``path_gradient=True``: the path-derivative gradient of the chain's bound;
    * ``selection="chain"``: the chain is the posterior (no head, no averaging).

    The paper's guide is ``DiffusionGuide(..., schedule="linear", variance="beta", standardize=False,
    path_gradient=False)`` with ``DDVI_ELBO(sleep="simplified")``.

    Example:

    >>> import torch
    >>> from pyro_diffvi.datasets import make_problem
    >>> problem = make_problem("linear_gaussian_5d")   # a Pyro model (sites "z", "x") with exact log p(x)
    >>> model, x = problem.model, problem.x
    >>> from pyro.infer import SVI, Trace_ELBO
    >>> from pyro.optim import Adam
    >>> from pyro_diffvi.guides import DiffusionGuide
    >>> from pyro_diffvi.infer import DDVI_ELBO
    >>> guide = DiffusionGuide(model, latent="z", observed="x", num_steps=5, selection="measured")
    >>> svi = SVI(model, guide, Adam({"lr": 1e-3}), loss=DDVI_ELBO())
    >>> losses = [svi.step(x) for _ in range(3)]
    >>> guide.choice   # the Gaussian head, until the chain is measurably ahead
    'head'
    >>> bound = -Trace_ELBO(num_particles=4).loss(model, guide, x)   # the emitted posterior's ELBO
    >>> bound < problem.log_px.sum().item()
    True

    :param num_steps: :math:`T`, the number of denoising steps.
    :param schedule: forward-process schedule: ``"cosine"``, ``"linear"`` (:math:`10^{-4}..0.02`, the
        paper's) or explicit betas of shape ``(T,)``.
    :param variance: reverse variances: ``"learned"``, ``"beta"`` (:math:`\beta_t`) or ``"posterior"``
        (:math:`\tilde\beta_t`).
    :param standardize: diffuse in the coordinates standardized by the chain's start (see above).
    :param path_gradient: path-derivative gradients of the chain's bound term (set ``False`` to train the
        emitted chain with an importance-weighted objective such as ``RenyiELBO``).
    :param conditional: whether the denoiser reads the encoder's context.
    :param denoiser_hidden_dims: hidden widths of each denoiser (paper: four layers of 128).
    :param time_dim: width of the denoiser's time embedding.
    :param denoiser_activation: hidden activation of the denoiser.
    :param averaging_decay: decay of the average of the chain's parameters that is emitted (0: the chain
        itself is emitted, and the emitted chain is trainable by any objective); default 0.995 with
        ``selection="measured"``, else 0.
    :param selection: ``"chain"`` (the chain is the posterior; default) or ``"measured"`` (emit the Gaussian
        head or the chain by their measured bounds, see above).
    :param selection_decay: decay of the selector's average of the chain's lead (0.99: about 100 steps).
    :param selection_threshold: standard errors the averaged lead must clear to switch.

    The other parameters (``encoder``, ``encoder_hidden_dims``, ``encoder_activation``, ``observed_fn``,
    ``min_scale``, ``init_scale``, ...) are those of :class:`GaussianGuide` and :class:`AmortizedGuide`.
    Constrained latents are diffused in their unconstrained space. ``training_steps`` and the selector's
    state are part of the ``state_dict``.
    """

    def __init__(
        self,
        model,
        latent: str | Sequence[str],
        observed: str | Sequence[str],
        *,
        num_steps: int = 20,
        schedule: str | Sequence[float] | torch.Tensor = "cosine",
        variance: str = "learned",
        standardize: bool = True,
        path_gradient: bool = True,
        conditional: bool = True,
        denoiser_hidden_dims: Sequence[int] = (128, 128, 128, 128),
        time_dim: int = 32,
        denoiser_activation: str = "silu",
        averaging_decay: float | None = None,
        selection: str = "chain",
        selection_decay: float = 0.99,
        selection_threshold: float = 2.0,
        **kwargs,
    ) -> None:
        if variance not in REVERSE_VARIANCES:
            raise ValueError(f"variance must be one of {REVERSE_VARIANCES}, got {variance!r}")
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        if averaging_decay is None:
            averaging_decay = MEASURED_AVERAGING_DECAY if selection == "measured" else 0.0
        if not (isinstance(averaging_decay, (int, float)) and 0.0 <= averaging_decay < 1.0):
            raise ValueError(f"averaging_decay must be a number in [0, 1), got {averaging_decay!r}")
        check_positive_int("num_steps", num_steps)
        check_widths("denoiser_hidden_dims", denoiser_hidden_dims)
        make_activation(denoiser_activation, argument="denoiser_activation")  # now rather than at the first call
        check_positive_int("time_dim", time_dim)
        selector = BoundSelector(
            decay=selection_decay, threshold=selection_threshold, choice="head" if selection == "measured" else "chain"
        )
        super().__init__(model, latent, observed, **kwargs)
        make_schedule(schedule, num_steps)  # validates the schedule now (as GaussianDiffusion will)
        self._schedule = schedule
        self.num_steps = num_steps
        self.variance = variance
        self.conditional = bool(conditional)
        self.standardize = bool(standardize)
        self.path_gradient = bool(path_gradient)
        self.averaging_decay = float(averaging_decay)
        self.selection = selection
        self.selector = selector
        self.training_steps = 0  # gradient evaluations of a DDVI objective so far (saved in state_dict)
        self._denoiser_kwargs = dict(
            time_dim=time_dim, hidden_dims=tuple(denoiser_hidden_dims), activation=denoiser_activation
        )
        self._requested: int | None = None
        self._alternatives: Alternatives | None = None

    def _build_posteriors(self) -> None:
        super()._build_posteriors()
        # a measuring guide's chain starts at a copy of the Gaussian head; otherwise the chain starts at the head
        self.chain_heads = copy.deepcopy(self.heads) if self.selection == "measured" else None
        param = next(self.encoder.parameters())
        # built in the parameters' dtype from the float64 schedule (a cast would round twice)
        self.process = GaussianDiffusion(self.num_steps, schedule=self._schedule, dtype=param.dtype).to(param.device)
        denoisers = [
            Denoiser(
                self.latent_dims[name],
                context_dim=self._denoiser_context_dim(name),
                learn_variance=self.variance == "learned",
                skip=self.process.sqrt_one_minus_alphas_cumprod if self.standardize else None,
                **self._denoiser_kwargs,
            )
            for name in self.latent_names
        ]
        self.denoisers = self._like_encoder(nn.ModuleList(denoisers))
        self.averaged = (
            GeneratorEMA(self._chain_modules(), decay=self.averaging_decay) if self.averaging_decay > 0 else None
        )

    def _chain_modules(self) -> nn.ModuleDict:
        modules = {"denoisers": self.denoisers}
        heads = self.heads if self.chain_heads is None else self.chain_heads
        if heads is not None:
            modules["chain_heads"] = heads
        return nn.ModuleDict(modules)

    def _denoiser_context_dim(self, name: str) -> int:
        if not self.conditional:
            return 0
        return 2 * self.latent_dims[name] if self.context_dim is None else self.context_dim

    def denoiser_context(self, name: str, context) -> torch.Tensor | None:
        """What the denoiser of ``name`` reads: the context, ``[loc, scale]`` for a tuple encoder, or ``None``."""
        if not self.conditional:
            return None
        return torch.cat(context, dim=-1) if self.context_dim is None else context

    # ---- the two posteriors and the choice between them ----------------------------------------------

    @property
    def choice(self) -> str:
        """The emitted posterior: ``"head"`` or ``"chain"``."""
        return self.selector.choice

    @property
    def exact_density(self) -> bool:
        """Whether the emitted site density is exact (the Gaussian head) rather than the chain's bound term."""
        return self.choice == "head"

    def head_posterior(self, name: str, context) -> dist.TorchDistribution:
        """The Gaussian head :math:`\\mathcal N(\\mu_\\phi(c), \\sigma_\\phi(c)^2)` of latent ``name``."""
        loc, scale = self.loc_scale(name, context)
        return dist.Normal(loc, scale).to_event(1)

    def chain_loc_scale(self, name: str, context, *, averaged: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of the chain's Gaussian start for latent ``name`` (flattened)."""
        if not averaged and self.chain_heads is None:  # the chain starts at the head (or a (loc, scale) encoder)
            return self.loc_scale(name, context)
        if averaged and "chain_heads" not in self._averaged_network():  # an encoder returning (loc, scale)
            return self.loc_scale(name, context)
        heads = self._averaged_network()["chain_heads"] if averaged else self.chain_heads
        return loc_scale(heads[self.latent_names.index(name)](context), self.min_scale)

    def chain_posterior(self, name: str, context, *, averaged: bool = False) -> DiffusionPosterior:
        """The chain of latent ``name``: the trained one, or with ``averaged`` its averaged parameters."""
        denoisers = self._averaged_network()["denoisers"] if averaged else self.denoisers
        loc, scale = self.chain_loc_scale(name, context, averaged=averaged)
        return DiffusionPosterior(
            loc,
            scale,
            denoisers[self.latent_names.index(name)],
            self.process,
            self.denoiser_context(name, context),
            variance=self.variance,
            standardize=self.standardize,
            path_gradient=self.path_gradient,
        )

    def posterior(self, name: str, context) -> dist.TorchDistribution:
        """The emitted posterior of latent ``name``: the head, or the (averaged) chain (see the class docstring)."""
        if self.choice == "head":
            return self.head_posterior(name, context)
        if self.averaged is None:
            return self.chain_posterior(name, context)
        return self.chain_posterior(name, _detached(context), averaged=True)

    def chain_context(self, context):
        """The context the chain's training terms read: a measuring guide's, cut from the encoder's graph while its
        head is emitted, so that the encoder and the head then learn from the head's bound alone, as a
        :class:`GaussianGuide` does."""
        if self.selection == "measured" and self.choice == "head":
            return _detached(context)
        return context

    def _averaged_network(self) -> nn.ModuleDict:
        """The averaged chain modules, on the trained chain's device and dtype (the guide may have been moved)."""
        network, param = self.averaged.network, next(self.denoisers.parameters())
        if next(network.parameters()).device != param.device or next(network.parameters()).dtype != param.dtype:
            network.to(device=param.device, dtype=param.dtype)
        return network

    def update_average(self) -> None:
        """One step of the average of the chain's parameters (called by the objective after each training step)."""
        if self.averaged is not None:
            self.averaged.update(self._chain_modules())

    def record_lead(self, lead: float) -> str:
        """Record one estimate of the averaged chain's lead over the head (nats per data point); returns the choice.
        With ``selection="chain"`` the choice stays the chain."""
        if self.selection == "measured":
            return self.selector.record(lead)
        return self.choice

    # ---- what an objective reads of a call --------------------------------------------------------

    def request_alternatives(self, num_particles: int) -> None:
        """Ask the next call of the guide to also draw its :class:`Alternatives` (``num_particles`` chain draws)."""
        self._requested = check_positive_int("num_particles", num_particles)
        self._alternatives = None

    def take_alternatives(self) -> Alternatives | None:
        """The :class:`Alternatives` drawn in the call after :meth:`request_alternatives` (``None`` if none)."""
        alternatives, self._alternatives = self._alternatives, None
        return alternatives

    def _on_context(self, context) -> None:
        if self._requested is None:
            return
        num, self._requested = self._requested, None
        head_context, context = context, self.chain_context(context)
        head, averaged, chain = {}, ({} if self.averaged is not None else None), {}
        for name in self.latent_names:
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.choice != "head"):
                head[name] = self._draw(name, self.head_posterior(name, head_context))
            if averaged is not None:
                with torch.no_grad():
                    averaged[name] = self._draw(name, self.chain_posterior(name, context, averaged=True))
            chain[name] = self._draw(name, self.chain_posterior(name, context), (num,))
        self._alternatives = Alternatives(context, head, averaged, chain)

    def _draw(self, name: str, fn, sample_shape: tuple = ()) -> tuple[torch.Tensor, torch.Tensor]:
        fn = constrained(fn, self.latent_dims[name], self._unconstrained_shapes[name], self._latent_supports[name])
        value = fn.rsample(torch.Size(sample_shape))
        return value, fn.log_prob(value)

    def get_extra_state(self) -> dict:
        state = {"training_steps": self.training_steps, "selector": self.selector.state_dict()}
        if getattr(self, "averaged", None) is not None:
            state["averaged"] = self.averaged.state_dict()
        return state

    def set_extra_state(self, state: dict) -> None:
        self.training_steps = int(state["training_steps"])
        if "selector" in state:
            self.selector.load_state_dict(state["selector"])
        if "averaged" in state and getattr(self, "averaged", None) is not None:
            self.averaged.load_state_dict(state["averaged"])


def _detached(context):
    """The context (a tensor or a ``(loc, scale)`` tuple) cut from the encoder's graph."""
    return tuple(c.detach() for c in context) if isinstance(context, tuple) else context.detach()
