r"""Objectives that fit an energy-based prior :math:`p_\beta(z) \propto e^{-E_\beta(z)}` to samples.

The unnormalized-priors paper (Sec. 2.3) trains the encoder and decoder of a VAE on the partition-free
bound and fits the energy prior to the **aggregate posterior** :math:`q_\phi(z) = \int q_\phi(z|x) p(x) dx` with any
objective that matches an EBM to samples. Every objective here has the same interface::

    objective.loss(prior, z, log_q=None) -> scalar Tensor      # minimized
    objective.last_terms                                        # floats for logging

``prior`` is anything with an ``energy(z)`` method (an
:class:`~pyro_diffvi.distributions.EnergyDistribution`, a ``GRBM``, an ``EnergyPrior`` module) or a
plain callable ``z -> E(z)``; ``z`` has shape ``(N,) + event_shape`` and is treated as data (detached);
``log_q`` (shape ``(N,)``) is the proposal log density of ``z``, needed only by
:class:`ImportanceWeightedLogZ`. The returned tensor is a *surrogate*: its gradient with respect to the
energy's parameters is the objective's gradient (and, for :class:`AdversarialCD`, its gradient with
respect to the variational flow's parameters is the flow's objective); its value is documented per class.

The same objectives fit an energy directly to data (no VAE): pass data points as ``z``.

References

- *Variational Inference with Unnormalized Priors*. Anonymous authors, manuscript under double-blind
  review ("the unnormalized-priors paper").
- Y. Song, S. Garg, J. Shi, S. Ermon. *Sliced Score Matching: A Scalable Approach to Density and Score
  Estimation*. Conference on Uncertainty in Artificial Intelligence (UAI), 2019.
- Y. Du, I. Mordatch. *Implicit Generation and Modeling with Energy-Based Models*. NeurIPS, 2019.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyro
import torch
from torch import Tensor, nn

from pyro_diffvi.distributions.energy import prior_gradients
from pyro_diffvi.nn.flows import ConditionalFlow
from pyro_diffvi.ops.types import EnergyFn
from pyro_diffvi.util import check_finite, check_positive_float, check_positive_int, check_widths

__all__ = [
    "PriorObjective",
    "SlicedScoreMatching",
    "AdversarialCD",
    "ImportanceWeightedLogZ",
    "ContrastiveDivergence",
]


def energy_function(prior) -> EnergyFn:
    """Return the energy function ``z -> E(z)`` of ``prior`` (an object with ``.energy`` or a callable),
    with gradients to a learnable prior's parameters: a distribution from a prior module is replaced by
    its :meth:`~pyro_diffvi.distributions.EnergyDistribution.with_parameter_gradients` version, and a
    prior module's energy is evaluated inside
    :func:`~pyro_diffvi.distributions.prior_gradients` (a prior objective is the one place where
    the prior's parameters get gradients).

    :param prior: an object with an ``energy(z)`` method, or a callable ``z -> E(z)``.

    Example::

        >>> import torch
        >>> from pyro_diffvi.priors import GRBMPrior
        >>> from pyro_diffvi.infer.prior_objectives import energy_function
        >>> prior = GRBMPrior(2, 3)
        >>> energy_function(prior)(torch.zeros(4, 2)).requires_grad  # gradients to the prior's parameters
        True
        >>> prior.energy(torch.zeros(4, 2)).requires_grad  # outside a prior objective: none
        False
    """
    with_gradients = getattr(prior, "with_parameter_gradients", None)
    if callable(with_gradients):
        prior = with_gradients()
    energy = getattr(prior, "energy", None)
    if not callable(energy):
        energy = prior if callable(prior) else None
    if energy is None:
        raise TypeError(
            "prior must have an energy(z) method (EnergyDistribution, GRBM, EnergyPrior) or be a callable "
            f"z -> E(z); got {type(prior).__name__}"
        )
    if not isinstance(prior, nn.Module):
        return energy

    def module_energy(z: Tensor) -> Tensor:
        with prior_gradients():
            return energy(z)

    return module_energy


def energy_with_detached_parameters(energy_fn: EnergyFn, z: Tensor) -> Tensor:
    r""":math:`E(z)` with its value and its gradient in :math:`z` (and in whatever ``z`` depends on),
    but **zero** gradient for the energy's own parameters :math:`\beta`.

    Computed as :math:`E_\beta(z) - E_\beta(\bar z) + \overline{E_\beta(\bar z)}` with :math:`\bar\cdot`
    a stop-gradient: the two :math:`\beta`-gradients cancel exactly, the value is :math:`E_\beta(z)`.
    Works for any energy (modules, GRBM tensors, closures) without knowing where its parameters live.

    :param energy_fn: the energy ``z -> E(z)``.
    :param z: the states.

    Example::

        >>> import torch
        >>> from pyro_diffvi.infer.prior_objectives import energy_with_detached_parameters
        >>> scale = torch.tensor(2.0, requires_grad=True)
        >>> z = torch.ones(3, requires_grad=True)
        >>> e = energy_with_detached_parameters(lambda z: scale * z.pow(2).sum(-1), z)
        >>> torch.autograd.grad(e, [scale, z])  # no gradient to the energy's parameter scale
        (tensor(0.), tensor([4., 4., 4.]))
    """
    e_const = energy_fn(z.detach())
    return energy_fn(z) - e_const + e_const.detach()


def _check_samples(name: str, z: Tensor, min_dim: int = 2) -> Tensor:
    if not torch.is_tensor(z):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N,) + event_shape, got {type(z).__name__}")
    if z.dim() < min_dim or z.shape[0] < 1:
        raise ValueError(f"{name} must have shape (N,) + event_shape with N >= 1, got {tuple(z.shape)}")
    if not z.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {z.dtype}")
    return check_finite(name, z)


def _batched_energy(energy_fn: EnergyFn, z: Tensor) -> Tensor:
    energy = energy_fn(z)
    if energy.shape != z.shape[:1]:
        raise ValueError(
            f"the prior's energy must map z of shape {tuple(z.shape)} to shape {tuple(z.shape[:1])}, "
            f"got {tuple(energy.shape)}"
        )
    return energy


def _check_state_keys(owner: str, state, keys: set[str]) -> None:
    if not isinstance(state, dict) or set(state) != keys:
        raise ValueError(
            f"state must be a dict with keys {sorted(keys)} (from {owner}.state_dict()), got "
            f"{sorted(state) if isinstance(state, dict) else type(state).__name__}"
        )


def _flat_dot(a: Tensor, b: Tensor) -> Tensor:
    """Inner product over all but the leading dimension."""
    return (a * b).flatten(1).sum(-1)


class PriorObjective:
    """Base class: an objective that fits an energy to samples ``z`` (see the module docstring).

    Subclasses implement :meth:`loss` and fill ``self.last_terms``. ``needs_log_q`` tells the ELBO to
    pass the proposal log density of the samples. Objectives with modules of their own keep them in
    ``auxiliary_modules`` (an ``nn.ModuleDict``, so that an ``ELBOModule`` hands them to a torch
    optimizer); objectives with training state (a flow, a replay buffer) override :meth:`state_dict`
    and :meth:`load_state_dict`.

    Example (a new objective: the energy's mean on the samples plus a quadratic penalty)::

        >>> import torch
        >>> from pyro_diffvi.infer import PriorObjective
        >>> from pyro_diffvi.infer.prior_objectives import energy_function
        >>> class MeanEnergy(PriorObjective):
        ...     def loss(self, prior, z, log_q=None):
        ...         energy = energy_function(prior)(z)
        ...         loss = energy.mean() + 0.1 * energy.pow(2).mean()
        ...         self.last_terms = {"mean_energy": energy.mean().item()}
        ...         return loss
        >>> MeanEnergy()(lambda z: z.pow(2).sum(-1), torch.ones(5, 2))
        tensor(2.4000)
    """

    needs_log_q: bool = False

    def __init__(self) -> None:
        self.last_terms: dict[str, float] = {}
        self.auxiliary_modules = nn.ModuleDict()

    def state_dict(self) -> dict:
        """Everything besides the constructor's arguments that affects the next call (none here)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore the state saved by :meth:`state_dict` of an objective built with the same arguments.

        :param state: a dict from :meth:`state_dict`.
        """
        _check_state_keys(type(self).__name__, state, set())

    def loss(self, prior, z: Tensor, log_q: Tensor | None = None) -> Tensor:
        """The objective's surrogate loss, to be minimized.

        :param prior: an object with an ``energy(z)`` method, or a callable ``z -> E(z)``.
        :param z: samples, shape ``(N,) + event_shape`` (treated as data).
        :param log_q: their proposal log densities, shape ``(N,)`` (for objectives with ``needs_log_q``).
        """
        raise NotImplementedError

    def __call__(self, prior, z: Tensor, log_q: Tensor | None = None) -> Tensor:
        return self.loss(prior, z, log_q)

    def auxiliary_module_names(self) -> tuple[str, ...]:
        """Names under which the objective registers its own modules with ``pyro.module`` (if any)."""
        return ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SlicedScoreMatching(PriorObjective):
    r"""Sliced score matching (Song et al., 2019; Algorithm 1 of the unnormalized-priors paper).

    With the model score :math:`s_\beta(z) = -\nabla_z E_\beta(z)` and random projections :math:`v`
    (:math:`\mathbb E[vv^\top] = I`), the loss is

    .. math::
        J(\beta) = \mathbb E_{z}\,\mathbb E_{v}\big[v^\top \nabla_z s_\beta(z)\, v
            + \tfrac12 (v^\top s_\beta(z))^2\big]
        = \mathbb E\big[-v^\top \nabla_z^2 E_\beta(z)\, v + \tfrac12 (v^\top \nabla_z E_\beta(z))^2\big],

    which equals the Hyvärinen score-matching loss up to a constant, so it needs no partition function.
    With ``variance_reduction=True`` (SSM-VR) the second term is replaced by its expectation over
    :math:`v`, :math:`\tfrac12\|\nabla_z E_\beta(z)\|^2`. (Algorithm 1 of the unnormalized-priors paper prints
    the Hessian term with a plus sign; for :math:`p \propto e^{-E}` it is a minus, as derived above.)

    The value returned is :math:`J` (an unbiased estimate over ``v``), which can be negative.

    :param num_projections: number of projections :math:`v` per sample (>= 1).
    :param projection: ``"rademacher"`` or ``"gaussian"``.
    :param variance_reduction: use SSM-VR (closed-form :math:`\tfrac12\|s\|^2`).

    References: Y. Song, S. Garg, J. Shi, S. Ermon. *Sliced Score Matching: A Scalable Approach to
    Density and Score Estimation*. UAI, 2019 (Eqs. 7-8; SSM-VR, Sec. 3); A. Hyvärinen. *Estimation of
    Non-Normalized Statistical Models by Score Matching*. JMLR, 2005.

    Example (a standard Gaussian energy fits samples of a standard Gaussian: the loss is near
    :math:`-D/2`)::

        >>> import torch
        >>> from pyro_diffvi.infer import SlicedScoreMatching
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> z = torch.randn(4000, 2)
        >>> round(SlicedScoreMatching()(lambda z: 0.5 * z.pow(2).sum(-1), z).item(), 1)
        -1.0
    """

    def __init__(
        self, *, num_projections: int = 1, projection: str = "rademacher", variance_reduction: bool = True
    ) -> None:
        super().__init__()
        check_positive_int("num_projections", num_projections)
        if projection not in ("rademacher", "gaussian"):
            raise ValueError(f"projection must be 'rademacher' or 'gaussian', got {projection!r}")
        self.num_projections = num_projections
        self.projection = projection
        self.variance_reduction = bool(variance_reduction)

    def _projections(self, like: Tensor) -> Tensor:
        if self.projection == "gaussian":
            return torch.randn_like(like)
        return torch.randint(0, 2, like.shape, device=like.device).to(like.dtype) * 2 - 1

    def loss(self, prior, z: Tensor, log_q: Tensor | None = None) -> Tensor:
        energy_fn = energy_function(prior)
        z = _check_samples("z", z)
        n, m = z.shape[0], self.num_projections
        z_rep = z.detach().unsqueeze(0).expand((m,) + z.shape).reshape((m * n,) + z.shape[1:])
        with torch.enable_grad():
            z_rep = z_rep.clone().requires_grad_(True)
            energy = _batched_energy(energy_fn, z_rep)
            (grad_e,) = torch.autograd.grad(energy.sum(), z_rep, create_graph=True)
            v = self._projections(z_rep)
            grad_e_v = _flat_dot(grad_e, v)
            (hess_v,) = torch.autograd.grad(grad_e_v.sum(), z_rep, create_graph=True)
            hessian_term = -_flat_dot(v, hess_v)
            if self.variance_reduction:
                norm_term = 0.5 * grad_e.pow(2).flatten(1).sum(-1)
            else:
                norm_term = 0.5 * grad_e_v.pow(2)
            loss = (hessian_term + norm_term).mean()
        self.last_terms = {"ssm_loss": loss.item()}
        return loss

    def __repr__(self) -> str:
        return (
            f"SlicedScoreMatching(num_projections={self.num_projections}, projection={self.projection!r}, "
            f"variance_reduction={self.variance_reduction})"
        )


def importance_weighted_log_partition(
    energy, samples: Tensor, log_q: Tensor
) -> tuple[Tensor, Tensor]:
    r"""Importance-sampling estimate of :math:`\log Z = \log \int e^{-E(z)} dz` (Eq. 5 of the
    unnormalized-priors paper).

    :math:`\log \hat Z = \log \frac1N \sum_i e^{-E(z_i) - \log q(z_i)}` with :math:`z_i \sim q`.
    :math:`\hat Z` is unbiased, so :math:`\log \hat Z` is a consistent but (in expectation) downward-biased
    estimate; the standard error is by the delta method, :math:`\mathrm{sd}(w) / (\sqrt N \bar w)`.
    Samples may come from different proposals :math:`q_i` (e.g. :math:`q(z|x_i)` for a minibatch) as long
    as ``log_q[i]`` is the log density of the proposal that drew ``z_i``: each term is unbiased for Z.

    :param energy: object with ``energy(z)`` or a callable.
    :param samples: ``(N,) + event_shape`` proposal draws.
    :param log_q: ``(N,)`` their proposal log densities.
    :returns: ``(log_z_estimate, standard_error)``; differentiable in the energy's parameters.

    Example (:math:`E(z) = \|z\|^2/2` in 2-D has :math:`\log Z = \log 2\pi \approx 1.84`)::

        >>> import torch
        >>> import pyro.distributions as dist
        >>> from pyro_diffvi.infer.prior_objectives import importance_weighted_log_partition
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> proposal = dist.Normal(torch.zeros(2), 1.5).to_event(1)
        >>> z = proposal.sample((20000,))
        >>> log_z, se = importance_weighted_log_partition(lambda z: 0.5 * z.pow(2).sum(-1), z, proposal.log_prob(z))
        >>> round(log_z.item(), 1), se.item() < 0.01
        (1.8, True)
    """
    energy_fn = energy_function(energy)
    samples = _check_samples("samples", samples)
    if not torch.is_tensor(log_q) or log_q.shape != samples.shape[:1]:
        raise ValueError(
            f"log_q must be a tensor of shape {tuple(samples.shape[:1])} (one log density per sample), "
            f"got {getattr(log_q, 'shape', type(log_q).__name__)}"
        )
    log_w = -_batched_energy(energy_fn, samples) - log_q
    n = log_w.shape[0]
    log_z = torch.logsumexp(log_w, 0) - math.log(n)
    w = torch.exp(log_w.detach() - log_z.detach())  # normalized to mean 1
    stderr = w.std(unbiased=True) / math.sqrt(n) if n > 1 else torch.full_like(log_z, float("inf"))
    return log_z, stderr.detach()


class ImportanceWeightedLogZ(PriorObjective):
    r"""Maximum likelihood of the energy on the samples with the importance-weighted :math:`\log Z`
    (Eqs. 5 and 7 of the unnormalized-priors paper): loss :math:`\frac1N\sum_i E(z_i) + \log \hat Z`, with :math:`\hat Z`
    from :func:`importance_weighted_log_partition` using the same samples and their proposal densities
    (in a VAE: :math:`z_i \sim q(z|x_i)`, ``log_q`` from the guide, pooled over the minibatch).

    Its gradient is Eq. 7 (negated): the positive phase on the samples minus a self-normalized
    importance-weighted negative phase. Biased but consistent; the paper shows it fails in practice
    because :math:`q(z|x)` does not cover the prior. The value is the estimated negative average
    log-likelihood of the samples under the prior. Provided for comparison.

    Example (samples of a standard Gaussian under its own energy: the loss is near the Gaussian's
    negative log-likelihood, :math:`1 + \log 2\pi \approx 2.84`)::

        >>> import torch
        >>> import pyro.distributions as dist
        >>> from pyro_diffvi.infer import ImportanceWeightedLogZ
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> proposal = dist.Normal(torch.zeros(2), 1.0).to_event(1)
        >>> z = proposal.sample((4000,))
        >>> loss = ImportanceWeightedLogZ()(lambda z: 0.5 * z.pow(2).sum(-1), z, proposal.log_prob(z))
        >>> round(loss.item(), 1)
        2.8
    """

    needs_log_q = True

    def loss(self, prior, z: Tensor, log_q: Tensor | None = None) -> Tensor:
        if log_q is None:
            raise ValueError("ImportanceWeightedLogZ needs log_q, the proposal log density of each sample z")
        energy_fn = energy_function(prior)
        z = _check_samples("z", z).detach()
        log_z, stderr = importance_weighted_log_partition(energy_fn, z, log_q.detach())
        mean_energy = _batched_energy(energy_fn, z).mean()
        loss = mean_energy + log_z
        self.last_terms = {"iw_nll": loss.item(), "iw_log_z": log_z.item(), "iw_log_z_se": stderr.item()}
        return loss


def _unset_init_fn(n: int) -> Tensor:
    raise RuntimeError("the replay buffer's init function is set at the objective's next loss() call")


class ContrastiveDivergence(PriorObjective):
    r"""MCMC contrastive divergence: loss :math:`\frac1N\sum_i E(z_i) - \frac1M\sum_j E(\tilde z_j)` with
    negatives :math:`\tilde z_j` from Langevin chains on :math:`e^{-E}` (detached), i.e. the standard
    maximum-likelihood gradient estimate of Eq. 8 of the unnormalized-priors paper.

    * short-run (``persistent=False``): chains start from ``init_fn`` at every call;
    * persistent (``persistent=True``): chains restart from a
      :class:`~pyro_diffvi.samplers.ReplayBuffer` (re-initialized with probability ``reinit_prob``).

    The value is the energy gap (positive minus negative phase), plus the optional regularizer
    ``energy_reg * mean(E_pos^2 + E_neg^2)``.

    :param num_steps: Langevin (ULA) steps per call.
    :param step_size: Langevin step :math:`h` (see :func:`~pyro_diffvi.samplers.langevin`).
    :param num_samples: negatives per call (default: as many as samples ``z``).
    :param persistent: use a replay buffer.
    :param buffer_size: replay buffer capacity.
    :param reinit_prob: replay buffer re-initialization probability.
    :param init_scale: fresh chains start at ``init_scale * N(0, I)``.
    :param noise_scale: Langevin noise scale (1 = exact Langevin dynamics).
    :param energy_reg: weight of the energy-magnitude regularizer (0 = none).

    References: Y. Du, I. Mordatch. *Implicit Generation and Modeling with Energy-Based Models*.
    NeurIPS, 2019 (replay buffer); Xiao (2022): Z. Xiao. *Designing Deep Generative Models with Symbiotic
    Composition*. PhD dissertation, University of Chicago, 2022 (Sec. 2, short-run and persistent chains).

    Example::

        >>> import torch
        >>> from pyro_diffvi.infer import ContrastiveDivergence
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> cd = ContrastiveDivergence(num_steps=5, step_size=0.1, persistent=True, buffer_size=100)
        >>> loss = cd(lambda z: 0.5 * z.pow(2).sum(-1), torch.randn(32, 2))
        >>> sorted(cd.last_terms), len(cd.buffer)
        (['cd_gap', 'energy_neg', 'energy_pos'], 32)
    """

    def __init__(
        self,
        *,
        num_steps: int = 20,
        step_size: float = 0.01,
        num_samples: int | None = None,
        persistent: bool = False,
        buffer_size: int = 10000,
        reinit_prob: float = 0.05,
        init_scale: float = 1.0,
        noise_scale: float = 1.0,
        energy_reg: float = 0.0,
    ):
        super().__init__()
        self.num_steps = check_positive_int("num_steps", num_steps)
        self.step_size = check_positive_float("step_size", step_size)
        self.num_samples = None if num_samples is None else check_positive_int("num_samples", num_samples)
        self.persistent = bool(persistent)
        self.buffer_size = check_positive_int("buffer_size", buffer_size)
        self.reinit_prob = reinit_prob
        self.init_scale = check_positive_float("init_scale", init_scale)
        self.noise_scale = check_positive_float("noise_scale", noise_scale)
        self.energy_reg = check_positive_float("energy_reg", energy_reg, allow_zero=True)
        self.buffer = None

    def state_dict(self) -> dict:
        """The persistent chains' replay buffer (``ReplayBuffer.state_dict()``, or ``None`` before the
        first call and for short-run chains)."""
        return {"buffer": None if self.buffer is None else self.buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore the replay buffer saved by :meth:`state_dict`.

        :param state: a dict from :meth:`state_dict` of an objective with the same ``buffer_size``.
        """
        from pyro_diffvi.samplers.replay import ReplayBuffer

        _check_state_keys(type(self).__name__, state, {"buffer"})
        if state["buffer"] is None:
            self.buffer = None
            return
        if not self.persistent:
            raise ValueError("state holds a replay buffer but this ContrastiveDivergence has persistent=False")
        buffer = ReplayBuffer(self.buffer_size, _unset_init_fn, reinit_prob=self.reinit_prob)
        buffer.load_state_dict(state["buffer"])  # the init function follows the data at the next call
        self.buffer = buffer

    def _init_fn(self, like: Tensor) -> Callable[[int], Tensor]:
        event_shape, scale = like.shape[1:], self.init_scale

        def init(n: int) -> Tensor:
            return scale * torch.randn((n,) + event_shape, dtype=like.dtype, device=like.device)

        return init

    def negative_samples(self, energy_fn: EnergyFn, like: Tensor) -> Tensor:
        """Draw the (detached) negative samples by short-run or persistent Langevin chains."""
        from pyro_diffvi.samplers.replay import ReplayBuffer, persistent_langevin, short_run_langevin

        n = self.num_samples or like.shape[0]
        init_fn = self._init_fn(like)
        if not self.persistent:
            return short_run_langevin(
                energy_fn, init_fn, n, num_steps=self.num_steps, step_size=self.step_size, noise_scale=self.noise_scale
            )
        if self.buffer is None:
            self.buffer = ReplayBuffer(self.buffer_size, init_fn, reinit_prob=self.reinit_prob)
        self.buffer.init_fn = init_fn  # follow the data's device and dtype
        return persistent_langevin(
            energy_fn, self.buffer, n, num_steps=self.num_steps, step_size=self.step_size, noise_scale=self.noise_scale
        )

    def loss(self, prior, z: Tensor, log_q: Tensor | None = None) -> Tensor:
        energy_fn = energy_function(prior)
        z = _check_samples("z", z).detach()
        negatives = self.negative_samples(energy_fn, z).detach()
        e_pos = _batched_energy(energy_fn, z)
        e_neg = _batched_energy(energy_fn, negatives)
        gap = e_pos.mean() - e_neg.mean()
        loss = gap
        if self.energy_reg > 0:
            loss = loss + self.energy_reg * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
        self.last_terms = {"cd_gap": gap.item(), "energy_pos": e_pos.mean().item(), "energy_neg": e_neg.mean().item()}
        return loss

    def __repr__(self) -> str:
        kind = "persistent" if self.persistent else "short-run"
        return f"ContrastiveDivergence({kind}, num_steps={self.num_steps}, step_size={self.step_size})"


class AdversarialCD(PriorObjective):
    r"""Adversarial contrastive divergence with a variational flow prior :math:`q_\zeta` (the
    unnormalized-priors paper, Sec. 2.2, Eqs. 9-10, Algorithm 2).

    The flow maximizes the variational lower bound on the log partition function (Eq. 9),
    :math:`\log Z \ge \mathbb E_{q_\zeta}[-E_\beta(z)] + H(q_\zeta)` (Alg. 2, step 3), and the energy
    performs contrastive divergence against the flow's samples,
    :math:`\mathbb E_{\text{data}}[E_\beta] - \mathbb E_{q_\zeta}[E_\beta]` (Alg. 2, step 4). The surrogate
    returned combines both: its gradient in :math:`\beta` is the CD gradient only (the flow term uses
    :func:`energy_with_detached_parameters`), and its gradient in :math:`\zeta` is the flow objective
    only (the CD term uses detached flow samples). Its **value** is
    ``cd_gap - log_z_lower_bound``; ``last_terms`` reports ``cd_gap`` and ``log_z_lower_bound``
    (the Eq. 9 bound, a stochastic lower bound on :math:`\log Z`) separately.

    Parameters: the flow is registered with ``pyro.module(module_name, flow)`` at every call, so an
    ``SVI`` optimizer sees and updates it; outside SVI, optimize ``objective.flow.parameters()``.

    :param flow: an unconditional flow module, ``flow()`` returning a distribution over the flattened
        latent whose ``log_prob`` is exact for its own ``rsample``; default: built on the first call as
        :class:`~pyro_diffvi.nn.ConditionalFlow` ``(features, context_dim=0)``, a stable IAF, on the
        samples' feature size, device and dtype.
    :param num_samples: flow samples per call (default: as many as samples ``z``).
    :param num_transforms: transforms of the default flow (the paper uses a 4-layer IAF).
    :param hidden_dims: hidden widths of the default flow's networks.
    :param module_name: the ``pyro.module`` name of the flow.

    References: the unnormalized-priors paper; D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen,
    I. Sutskever, M. Welling. *Improved Variational Inference with Inverse Autoregressive Flow*.
    NeurIPS, 2016.

    Example::

        >>> import pyro, torch
        >>> from pyro_diffvi.infer import AdversarialCD
        >>> pyro.clear_param_store(); pyro.set_rng_seed(0)
        >>> objective = AdversarialCD(num_transforms=1, hidden_dims=(8,))
        >>> loss = objective(lambda z: 0.5 * z.pow(2).sum(-1), torch.randn(16, 2))
        >>> sorted(objective.last_terms)
        ['cd_gap', 'log_z_lower_bound']
        >>> z, log_q = objective.flow_sample(5)
        >>> tuple(z.shape), tuple(log_q.shape)
        ((5, 2), (5,))
    """

    def __init__(
        self,
        flow: nn.Module | None = None,
        *,
        num_samples: int | None = None,
        num_transforms: int = 4,
        hidden_dims: Sequence[int] = (64, 64),
        module_name: str = "adversarial_cd_flow",
    ) -> None:
        super().__init__()
        if flow is not None and not isinstance(flow, nn.Module):
            raise TypeError(f"flow must be a torch.nn.Module, got {type(flow).__name__}")
        if not isinstance(module_name, str) or not module_name:
            raise ValueError(f"module_name must be a non-empty str, got {module_name!r}")
        self.flow = flow
        self.num_samples = None if num_samples is None else check_positive_int("num_samples", num_samples)
        self.num_transforms = check_positive_int("num_transforms", num_transforms)
        self.hidden_dims = check_widths("hidden_dims", hidden_dims)
        self.module_name = module_name
        self.event_shape: torch.Size | None = None

    @property
    def flow(self) -> nn.Module | None:
        """The variational flow (``None`` until the first call builds the default one)."""
        return self.auxiliary_modules["flow"] if "flow" in self.auxiliary_modules else None

    @flow.setter
    def flow(self, module: nn.Module | None) -> None:
        if module is None:
            if "flow" in self.auxiliary_modules:
                del self.auxiliary_modules["flow"]
        else:
            self.auxiliary_modules["flow"] = module

    def auxiliary_module_names(self) -> tuple[str, ...]:
        return (self.module_name,)

    def state_dict(self) -> dict:
        """The samples' event shape (``None`` before the first call) and the flow's ``state_dict()``
        (parameters and buffers; ``None`` before the first call built the default flow)."""
        return {
            "event_shape": None if self.event_shape is None else tuple(self.event_shape),
            "flow": None if self.flow is None else self.flow.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the flow saved by :meth:`state_dict`, building the default flow first if needed (on
        the device and dtype of the saved tensors), so that the next call draws no initialization.

        :param state: a dict from :meth:`state_dict` of an objective built with the same arguments.
        """
        _check_state_keys(type(self).__name__, state, {"event_shape", "flow"})
        flow_state = state["flow"]
        if state["event_shape"] is not None:
            reference = next((t for t in (flow_state or {}).values() if t.is_floating_point()), None)
            if reference is None:
                raise ValueError("state['flow'] must hold the flow's floating-point tensors (its dtype and device)")
            like = torch.empty((1,) + tuple(state["event_shape"]), dtype=reference.dtype, device=reference.device)
            self._setup(like)
        if flow_state is not None:
            if self.flow is None:
                raise ValueError("state holds a flow's state_dict but this AdversarialCD has no flow")
            self.flow.load_state_dict(flow_state)

    def _setup(self, z: Tensor) -> None:
        if self.event_shape is None:
            self.event_shape = z.shape[1:]
        elif z.shape[1:] != self.event_shape:
            raise ValueError(f"z must have event shape {tuple(self.event_shape)}, got {tuple(z.shape[1:])}")
        if self.flow is None:
            features = int(math.prod(self.event_shape))
            hidden = tuple(max(h, features) for h in self.hidden_dims)  # autoregressive masks need >= features
            self.flow = ConditionalFlow(features, 0, num_transforms=self.num_transforms, flow="iaf", hidden_dims=hidden, stable=False)
            self.flow.to(device=z.device, dtype=z.dtype)

    def flow_sample(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` reparameterized flow samples, shape ``(n,) + event_shape``, and their log densities."""
        if self.flow is None or self.event_shape is None:
            raise RuntimeError("AdversarialCD.flow_sample: the flow is built on the first call to loss()")
        q = self.flow()
        flat = q.rsample((n,))
        log_q = q.log_prob(flat)  # exact and cheap for its own sample (transform caches)
        return flat.reshape((n,) + tuple(self.event_shape)), log_q

    def loss(self, prior, z: Tensor, log_q: Tensor | None = None) -> Tensor:
        energy_fn = energy_function(prior)
        z = _check_samples("z", z).detach()
        self._setup(z)
        # update_module_params: after ParamStore.set_state the flow adopts the store's tensors (resume)
        pyro.module(self.module_name, self.flow, update_module_params=True)
        z_flow, log_q_flow = self.flow_sample(self.num_samples or z.shape[0])
        # Alg. 2, step 3: the flow maximizes E_q[-E] + H(q) (energy parameters held fixed)
        log_z_bound = (-energy_with_detached_parameters(energy_fn, z_flow) - log_q_flow).mean()
        # Alg. 2, step 4: the energy minimizes E_data[E] - E_q[E] (flow samples held fixed)
        cd_gap = _batched_energy(energy_fn, z).mean() - _batched_energy(energy_fn, z_flow.detach()).mean()
        self.last_terms = {"cd_gap": cd_gap.item(), "log_z_lower_bound": log_z_bound.item()}
        return cd_gap - log_z_bound

    def __repr__(self) -> str:
        return f"AdversarialCD(num_transforms={self.num_transforms}, module_name={self.module_name!r})"
