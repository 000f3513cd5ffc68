r"""Gaussian-Bernoulli restricted Boltzmann machine (GRBM) prior, Eq. 12 of the unnormalized-priors paper
(after Liao et al., 2022).

Visible :math:`v \in \mathbb R^D`, hidden :math:`h \in \{0, 1\}^H`, per-visible mean :math:`\mu`, standard
deviation :math:`\sigma = e^{\log\sigma}` (parametrized by ``log_sigma``), weights :math:`W \in \mathbb R^{D\times H}`,
hidden bias :math:`b`. Joint energy (divisions elementwise)

.. math::

    E(v, h) = \tfrac12 \Big\| \frac{v - \mu}{\sigma} \Big\|^2 - \Big(\frac{v}{\sigma^2}\Big)^{\!\top} W h - b^\top h,

whose sum over :math:`h` gives the marginal (free) energy of Eq. 12,

.. math::

    F(v) = -\log \sum_h e^{-E(v, h)} = \tfrac12 \Big\| \frac{v - \mu}{\sigma} \Big\|^2
           - \mathbf 1^\top \operatorname{softplus}\Big(W^\top \frac{v}{\sigma^2} + b\Big).

Conditionals (block Gibbs): :math:`p(h_j = 1 \mid v) = \operatorname{sigmoid}((W^\top v/\sigma^2 + b)_j)`,
:math:`p(v \mid h) = \mathcal N(\mu + W h, \operatorname{diag}\sigma^2)`. Completing the square shows that the
marginal is a mixture of :math:`2^H` Gaussians :math:`\mathcal N(\mu + Wh, \operatorname{diag}\sigma^2)` with
log weights :math:`b^\top h + \sum_i (\mu_i m_i + m_i^2/2)/\sigma_i^2 + \sum_i \log(\sqrt{2\pi}\sigma_i)`,
:math:`m = Wh`, whose log-sum-exp is :math:`\log Z`.

References

- *Variational Inference with Unnormalized Priors*. Anonymous authors, manuscript under double-blind
  review ("the unnormalized-priors paper").
- R. Liao, S. Kornblith, M. Ren, D. J. Fleet, G. Hinton. *Gaussian-Bernoulli RBMs Without Tears*.
  arXiv:2210.10318, 2022.
- R. Salakhutdinov, I. Murray. *On the Quantitative Analysis of Deep Belief Networks*. ICML, 2008.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from pyro.distributions import Categorical, MixtureSameFamily, Normal, constraints
from torch import Tensor
from torch.distributions import Distribution

from pyro_diffvi.distributions.energy import (
    EnergyDistribution,
)
from pyro_diffvi.ops.constants import LOG_2PI
from pyro_diffvi.ops.log_mean_exp import log_mean_exp_with_se
from pyro_diffvi.samplers.ais import check_betas, sigmoid_schedule
from pyro_diffvi.samplers.gibbs import GibbsSampler
from pyro_diffvi.samplers.langevin import langevin
from pyro_diffvi.util import check_positive_int

MAX_ENUMERATED_HIDDEN = 20
_ENUM_CHUNK = 2**14


class GRBM(EnergyDistribution):
    r"""Gaussian-Bernoulli RBM over the visible units, with the marginal energy :math:`F(v)` of Eq. 12 of the
    unnormalized-priors paper.

    ``log_prob(v) = -F(v)`` is **unnormalized**; :meth:`exact_log_partition` gives :math:`\log Z` for
    ``num_hidden <= 20`` by enumeration, :func:`~pyro_diffvi.samplers.ais_log_partition` an estimate otherwise.
    Parameters are unbatched; use ``expand`` for a batch shape.

    :param mu: visible means, shape ``(D,)`` with ``D >= 1``.
    :param log_sigma: log standard deviations of the visible units, shape ``(D,)`` (:math:`\sigma = e^{\log\sigma}`).
        With validation on (``validate_args``, or Pyro's global validation), every entry must satisfy
        :math:`|\log\sigma| <` :func:`max_abs_log_sigma` ``(dtype)``, so that :math:`\sigma^2` and
        :math:`1/\sigma^2` are finite normal numbers of the dtype (43.67 for float32, 354.2 for float64).
    :param W: weights, shape ``(D, H)``.
    :param b: hidden biases, shape ``(H,)``.
    :param batch_shape: batch shape (the energy broadcasts over it).
    :param sampler: ``sampler(grbm, shape)``; default :class:`~pyro_diffvi.samplers.GibbsSampler`
        (block Gibbs).
    :param validate_args: check the parameters' values (finite, ``log_sigma`` in range); default: Pyro's
        global setting.
    :param parameter_source: see :class:`~pyro_diffvi.distributions.EnergyDistribution`.

    Example (with one hidden unit the marginal is a two-Gaussian mixture; :math:`\log Z` by enumeration):

    >>> import torch
    >>> from pyro_diffvi.distributions import GRBM
    >>> grbm = GRBM(torch.zeros(2), torch.zeros(2), torch.ones(2, 1), torch.zeros(1))
    >>> round(grbm.exact_log_partition().item(), 4)  # log(2 pi (1 + e))
    3.1511
    >>> tuple(grbm.sample((3,)).shape)  # approximate draws by block Gibbs
    (3, 2)
    """

    arg_constraints = {
        "mu": constraints.real_vector,
        "log_sigma": constraints.real_vector,
        "W": constraints.independent(constraints.real, 2),
        "b": constraints.real_vector,
    }

    def __init__(
        self,
        mu: Tensor,
        log_sigma: Tensor,
        W: Tensor,
        b: Tensor,
        *,
        batch_shape=(),
        sampler: Callable | None = None,
        validate_args: bool | None = None,
        parameter_source: Callable[[], GRBM] | None = None,
    ) -> None:
        _check_grbm_params(mu, log_sigma, W, b)
        if validate_args if validate_args is not None else Distribution._validate_args:
            _check_grbm_values(mu, log_sigma, W, b)
        self.mu, self.log_sigma, self.W, self.b = mu, log_sigma, W, b
        super().__init__(
            self.free_energy,
            (W.shape[0],),
            batch_shape=batch_shape,
            sampler=sampler if sampler is not None else GibbsSampler(),
            validate_args=validate_args,
            dtype=W.dtype,
            device=W.device,
            parameter_source=parameter_source,
        )

    @property
    def dim(self) -> int:
        """The number :math:`D` of visible units (the dimension of the GRBM's variable)."""
        return self.W.shape[0]

    @property
    def num_hidden(self) -> int:
        """The number :math:`H` of hidden units."""
        return self.W.shape[1]

    @property
    def sigma(self) -> Tensor:
        return self.log_sigma.exp()

    def expand(self, batch_shape, _instance=None) -> GRBM:
        new = self._get_checked_instance(GRBM, _instance)
        new.__dict__.update(self.__dict__)
        new.energy_fn = new.free_energy
        EnergyDistribution.__init__(
            new, new.free_energy, self.event_shape, batch_shape=torch.Size(batch_shape), sampler=self.sampler,
            validate_args=False, dtype=self.W.dtype, device=self.W.device, parameter_source=self.parameter_source,
        )
        new._validate_args = self._validate_args
        return new

    def hidden_logits(self, v: Tensor) -> Tensor:
        r""":math:`W^\top v/\sigma^2 + b`, shape ``v.shape[:-1] + (H,)``."""
        return (v / self.sigma.pow(2)) @ self.W + self.b

    def _quadratic(self, v: Tensor) -> Tensor:
        return 0.5 * ((v - self.mu) / self.sigma).pow(2).sum(-1)

    def free_energy(self, v: Tensor) -> Tensor:
        r"""Marginal energy :math:`F(v)` of Eq. 12, shape ``v.shape[:-1]``."""
        return self._quadratic(v) - F.softplus(self.hidden_logits(v)).sum(-1)

    def joint_energy(self, v: Tensor, h: Tensor) -> Tensor:
        r"""Joint energy :math:`E(v, h)`; ``v`` of shape ``(..., D)``, ``h`` of shape ``(..., H)`` (broadcast)."""
        if v.shape[-1:] != (self.dim,) or h.shape[-1:] != (self.num_hidden,):
            raise ValueError(
                f"v and h must have trailing sizes {self.dim} and "
                f"{self.num_hidden}, got {tuple(v.shape)} and {tuple(h.shape)}"
            )
        coupling = ((v / self.sigma.pow(2)) @ self.W * h).sum(-1)
        return self._quadratic(v) - coupling - (h * self.b).sum(-1)

    # ---- conditionals and samplers ------------------------------------------------------------
    def initial_visible(self, shape: torch.Size) -> Tensor:
        """Chain initialisation :math:`v_0 \\sim \\mathcal N(\\mu, \\operatorname{diag}\\sigma^2)`, shape ``shape``."""
        with torch.no_grad():
            return self.mu + self.sigma * torch.randn(shape, dtype=self.W.dtype, device=self.W.device)

    def sample_hidden(self, v: Tensor) -> Tensor:
        """:math:`h \\sim p(h \\mid v)` (independent Bernoullis), shape ``v.shape[:-1] + (H,)``."""
        with torch.no_grad():
            return torch.bernoulli(torch.sigmoid(self.hidden_logits(v)))

    def sample_visible(self, h: Tensor) -> Tensor:
        """:math:`v \\sim p(v \\mid h) = \\mathcal N(\\mu + W h, \\operatorname{diag}\\sigma^2)`, shape
        ``h.shape[:-1] + (D,)``."""
        with torch.no_grad():
            loc = self.mu + h @ self.W.T
            return loc + self.sigma * torch.randn_like(loc)

    def gibbs_step(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """One block-Gibbs sweep; returns ``(v_new, h)`` with ``h ~ p(h|v)``, ``v_new ~ p(v|h)``."""
        h = self.sample_hidden(v)
        return self.sample_visible(h), h

    def gibbs(self, init: Tensor, *, num_steps: int) -> Tensor:
        """``num_steps`` block-Gibbs sweeps of vectorized chains ``init`` of shape ``(..., D)``.

        :param init: initial visible states, shape ``(..., D)``.
        :param num_steps: number of sweeps (>= 0).
        """
        check_positive_int("num_steps", num_steps, minimum=0)
        self._check_visible("init", init)
        v = init.detach()
        for _ in range(num_steps):
            v, _ = self.gibbs_step(v)
        return v

    def gibbs_langevin(
        self,
        init: Tensor,
        *,
        num_steps: int,
        step_size: float,
        langevin_steps: int = 1,
        noise_scale: float = 1.0,
        metropolis: bool = False,
    ) -> Tensor:
        r"""Gibbs-Langevin sampling (Liao et al., 2022; the sampler of Sec. 4.1 of the unnormalized-priors
        paper).

        Each of ``num_steps`` iterations draws :math:`h \sim p(h \mid v)` exactly, then runs
        ``langevin_steps`` Langevin steps on :math:`v` with the joint energy :math:`E(v, h)` at fixed
        :math:`h` (the convention of :func:`~pyro_diffvi.samplers.langevin`; ``metropolis=True`` adds the
        MH correction, making each iteration leave the GRBM exactly invariant).

        :param init: initial visible states, shape ``(..., D)``.
        :param num_steps: number of Gibbs-Langevin iterations (>= 0).
        :param step_size: Langevin step size :math:`h`.
        :param langevin_steps: Langevin steps on :math:`v` per iteration.
        :param noise_scale: Langevin noise scale (1 = Langevin dynamics).
        :param metropolis: MALA instead of ULA.
        """
        check_positive_int("num_steps", num_steps, minimum=0)
        self._check_visible("init", init)
        v = init.detach()
        for _ in range(num_steps):
            h = self.sample_hidden(v)
            v, _ = langevin(
                lambda x: self.joint_energy(x, h),
                v,
                num_steps=langevin_steps,
                step_size=step_size,
                noise_scale=noise_scale,
                metropolis=metropolis,
            )
        return v

    def _check_visible(self, name: str, v: Tensor) -> None:
        if not torch.is_tensor(v) or v.dim() < 1 or v.shape[-1] != self.dim:
            raise ValueError(f"{name} must be a tensor of shape (..., {self.dim})")

    # ---- exact quantities by enumeration of the hidden states ---------------------------------
    def hidden_states(self) -> Tensor:
        """All :math:`2^H` hidden configurations, shape ``(2^H, H)`` (refused for ``H > 20``)."""
        if self.num_hidden > MAX_ENUMERATED_HIDDEN:
            raise ValueError(
                f"exact enumeration needs 2^num_hidden terms; num_hidden={self.num_hidden} exceeds the limit of "
                f"{MAX_ENUMERATED_HIDDEN}: estimate log Z with pyro_diffvi.samplers.ais_log_partition instead"
            )
        idx = torch.arange(2**self.num_hidden, device=self.W.device)
        bits = torch.arange(self.num_hidden, device=self.W.device)
        return ((idx[:, None] >> bits) & 1).to(self.W.dtype)

    def _mixture_log_weights(self, h: Tensor) -> Tensor:
        m = h @ self.W.T
        var = self.sigma.pow(2)
        gauss = 0.5 * self.dim * LOG_2PI + self.log_sigma.sum()
        return h @ self.b + ((self.mu * m + 0.5 * m.pow(2)) / var).sum(-1) + gauss

    def exact_log_partition(self) -> Tensor:
        r""":math:`\log Z = \log \sum_h \int e^{-E(v,h)} dv` by enumerating the hidden states (``H <= 20``).

        Each term is a Gaussian integral (see the module docstring). Differentiable in the parameters.
        """
        states = self.hidden_states()
        parts = [torch.logsumexp(self._mixture_log_weights(c), 0) for c in states.split(_ENUM_CHUNK)]
        return torch.logsumexp(torch.stack(parts), 0)

    def ais_log_partition(
        self, *, num_chains: int = 256, num_steps: int = 1000, gibbs_steps: int = 1, betas: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        r"""AIS estimate of :math:`\log Z` along the weight-scaled path of Salakhutdinov & Murray (2008).

        Intermediate GRBMs have weights :math:`\beta_k W` (same :math:`\mu, \sigma, b`); at :math:`\beta = 0`
        visible and hidden units are independent, :math:`v \sim \mathcal N(\mu, \sigma^2)` exactly and
        :math:`\log Z_0 = \sum_i \log(\sqrt{2\pi}\sigma_i) + \sum_j \operatorname{softplus}(b_j)`.
        Transitions are exact block-Gibbs sweeps at :math:`\beta_k W` (no step size to tune); weights
        :math:`\log w = \sum_k F_{\beta_{k-1}}(v_{k-1}) - F_{\beta_k}(v_{k-1})`. The estimate of :math:`Z`
        is unbiased, so the returned :math:`\log` is a stochastic **lower** bound on :math:`\log Z`
        in expectation; the standard error is by the delta method. Works for any number of hidden units.

        :param num_chains: ``N >= 2`` independent chains.
        :param num_steps: number of annealing steps ``K`` (ignored when ``betas`` is given).
        :param gibbs_steps: Gibbs sweeps per temperature.
        :param betas: optional schedule increasing from exactly 0 to exactly 1, validated by
            :func:`~pyro_diffvi.samplers.ais.check_betas`.
        :return: ``(log_Z_estimate, standard_error)``.
        """
        check_positive_int("num_chains", num_chains, minimum=2)  # two for a standard error
        check_positive_int("gibbs_steps", gibbs_steps, minimum=0)
        dtype, device = self.W.dtype, self.W.device
        if betas is None:
            betas = sigmoid_schedule(num_steps, dtype=dtype, device=device)
        else:
            betas = check_betas(torch.as_tensor(betas, dtype=dtype, device=device))
        with torch.no_grad():
            log_z0 = 0.5 * self.dim * LOG_2PI + self.log_sigma.sum() + F.softplus(self.b).sum()
            v = self.initial_visible(torch.Size([num_chains, self.dim]))
            log_w = torch.zeros(num_chains, dtype=dtype, device=device)
            for k in range(1, betas.shape[0]):
                scaled_prev, scaled = self._scaled(betas[k - 1]), self._scaled(betas[k])
                log_w += scaled_prev.free_energy(v) - scaled.free_energy(v)
                if k < betas.shape[0] - 1:
                    v = scaled.gibbs(v, num_steps=gibbs_steps)
            log_mean, se = log_mean_exp_with_se(log_w)
        return log_z0 + log_mean, se

    def _scaled(self, beta: Tensor) -> GRBM:
        return GRBM(self.mu, self.log_sigma, beta * self.W, self.b, validate_args=False)

    def exact_marginal(self) -> MixtureSameFamily:
        r"""The normalized marginal :math:`p(v)` as a mixture of :math:`2^H` Gaussians (``H <= 20``)."""
        states = self.hidden_states()
        logits = self._mixture_log_weights(states)
        loc = self.mu + states @ self.W.T
        scale = self.sigma.expand(loc.shape)
        mix = MixtureSameFamily(Categorical(logits=logits), Normal(loc, scale).to_event(1))
        return mix.expand(self.batch_shape) if self.batch_shape else mix


def _check_grbm_params(mu: Tensor, log_sigma: Tensor, W: Tensor, b: Tensor) -> None:
    for name, x in (("mu", mu), ("log_sigma", log_sigma), ("W", W), ("b", b)):
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(x).__name__}")
    if W.dim() != 2:
        raise ValueError(f"W must have shape (dim, num_hidden), got {tuple(W.shape)}")
    D, H = W.shape
    if D < 1:
        raise ValueError(f"W must have at least one visible unit (shape (dim >= 1, num_hidden)), got {tuple(W.shape)}")
    if mu.shape != (D,):
        raise ValueError(f"mu must have shape (dim,) = ({D},), got {tuple(mu.shape)}")
    if log_sigma.shape != (D,):
        raise ValueError(f"log_sigma must have shape (dim,) = ({D},), got {tuple(log_sigma.shape)}")
    if b.shape != (H,):
        raise ValueError(f"b must have shape (num_hidden,) = ({H},), got {tuple(b.shape)}")


def max_abs_log_sigma(dtype: torch.dtype) -> float:
    r"""The bound on :math:`|\log\sigma|` that :class:`GRBM` enforces: :math:`\sigma^2` and
    :math:`1/\sigma^2` stay finite normal numbers of ``dtype``, i.e.
    :math:`2|\log\sigma| < \min(\log \text{max}, -\log \text{tiny})` of ``torch.finfo(dtype)``.

    :param dtype: a floating-point dtype.

    Example:

    >>> import torch
    >>> from pyro_diffvi.distributions.grbm import max_abs_log_sigma
    >>> round(max_abs_log_sigma(torch.float32), 2)
    43.67
    """
    info = torch.finfo(dtype)
    return 0.5 * min(math.log(info.max), -math.log(info.tiny))


def _check_grbm_values(mu: Tensor, log_sigma: Tensor, W: Tensor, b: Tensor) -> None:
    named = (("mu", mu), ("log_sigma", log_sigma), ("W", W), ("b", b))
    with torch.no_grad():  # one host synchronization for all checks
        summary = torch.stack(
            [(~torch.isfinite(x)).sum().to(log_sigma.dtype) for _, x in named] + [log_sigma.abs().max()]
        ).tolist()
    for (name, _), bad in zip(named, summary):
        if bad:
            raise ValueError(f"{name} must be finite; it has {int(bad)} NaN or infinite entries")
    bound = max_abs_log_sigma(log_sigma.dtype)
    worst = summary[-1]
    if worst >= bound:
        raise ValueError(
            f"log_sigma must satisfy |log_sigma| < {bound:.4g} for {log_sigma.dtype} (so that sigma^2 and "
            f"1/sigma^2 are finite and nonzero), got an entry of magnitude {worst:.4g}"
        )
