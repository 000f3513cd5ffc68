"""Common machinery of the structured priors: labelled mixtures with exact log densities.

Every structured prior :math:`p(z)` is a finite mixture over labelled components,

.. math::

    p(z) = \\sum_{l=1}^{K} \\pi_l \\, p(z \\mid l),

which is what the semi-supervised and clustering extensions of DDVI need (each class owns one
component, Sec. 4 and Appendix F of the DDVI paper).
The structure lives in the first two coordinates; for ``dim > 2`` the remaining coordinates are
independent standard normals, :math:`p(z) = p_{2D}(z_{1:2}) \\prod_{d>2} \\mathcal{N}(z_d; 0, 1)`,
in the mixture and in every component.

References: W. T. Piriyakulkij, Y. Wang, V. Kuleshov. *Denoising Diffusion Variational Inference: Diffusion
Models as Expressive Variational Posteriors*. arXiv:2401.02739, 2024.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from pyro.distributions import TorchDistribution, constraints

from pyro_diffvi.ops.constants import LOG_2PI
from pyro_diffvi.util import check_positive_int, tensor_device


def normal_log_prob(x: torch.Tensor, loc: float | torch.Tensor, scale: float) -> torch.Tensor:
    """Log density of the univariate :math:`\\mathcal{N}(x; \\mathrm{loc}, \\mathrm{scale}^2)`.

    Example:

    >>> import torch
    >>> from pyro_diffvi.priors.base import normal_log_prob
    >>> round(normal_log_prob(torch.tensor(0.0), 0.0, 1.0).item(), 4)  # -log(2 pi) / 2
    -0.9189
    """
    return -0.5 * ((x - loc) / scale) ** 2 - math.log(scale) - 0.5 * LOG_2PI


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """Numerically stable :math:`\\log(1 - e^{x})` for :math:`x < 0`.

    M. Mächler. *Accurately Computing log(1 - exp(-|a|)) Assessed by the Rmpfr package*. CRAN
    vignette, 2012.

    Example:

    >>> import torch
    >>> from pyro_diffvi.priors.base import log1mexp
    >>> round(log1mexp(torch.tensor(-1.0)).item(), 4)  # log(1 - 1/e)
    -0.4587
    """
    return torch.where(x > -math.log(2.0), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def log_ndtr_diff(hi: torch.Tensor, lo: torch.Tensor) -> torch.Tensor:
    """Stable :math:`\\log(\\Phi(hi) - \\Phi(lo))` for ``hi > lo`` (both tails handled).

    When both arguments lie in the right tail, :math:`\\Phi(hi) - \\Phi(lo) = \\Phi(-lo) - \\Phi(-hi)`
    is used instead, so that the smaller argument is always ``<= 0``.

    Example:

    >>> import torch
    >>> from pyro_diffvi.priors.base import log_ndtr_diff
    >>> round(log_ndtr_diff(torch.tensor(1.0), torch.tensor(-1.0)).exp().item(), 4)  # one-sigma mass
    0.6827
    """
    flip = lo > 0
    hi, lo = torch.where(flip, -lo, hi), torch.where(flip, -hi, lo)
    log_hi = torch.special.log_ndtr(hi)
    return log_hi + log1mexp(torch.special.log_ndtr(lo) - log_hi)


def safe_norm(z: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the last dimension with a finite (zero) gradient at the origin.

    Example:

    >>> import torch
    >>> from pyro_diffvi.priors.base import safe_norm
    >>> z = torch.zeros(2, requires_grad=True)
    >>> safe_norm(z).backward()
    >>> z.grad
    tensor([0., 0.])
    """
    sq = (z * z).sum(-1)
    return sq.clamp_min(torch.finfo(z.dtype).tiny).sqrt()


def rotate(z: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate 2-D points ``z`` (``(..., 2)``) counter-clockwise by ``angle`` (``(...)``).

    Example:

    >>> import math, torch
    >>> from pyro_diffvi.priors.base import rotate
    >>> rotate(torch.tensor([1.0, 0.0]), torch.tensor(math.pi / 2)).round(decimals=4).abs()
    tensor([0., 1.])
    """
    c, s = torch.cos(angle), torch.sin(angle)
    x, y = z[..., 0], z[..., 1]
    return torch.stack([c * x - s * y, s * x + c * y], dim=-1)


class StructuredPrior(TorchDistribution):
    """Base class of the labelled-mixture priors (event shape ``(dim,)``, exact log density).

    Subclasses describe the 2-D structure through three hooks:

    - :meth:`_component_log_probs_2d` ``(z2) -> (..., K)``: :math:`\\log p(z_{1:2} \\mid l)` for all ``l``;
    - :meth:`_sample_2d` ``(labels, generator) -> labels.shape + (2,)``: a reparameterized draw of
      :math:`z_{1:2} \\mid l` (a differentiable function of standard noise);
    - :attr:`_log_weights`: the normalized log mixture weights, shape ``(K,)``.

    Constant tensors are created on the default (or given) device and dtype and are moved to the
    device and dtype of ``value`` inside :meth:`log_prob`, so the prior follows its inputs.

    :param dim: event size ``D >= 2``; coordinates beyond the first two are independent
        standard normals.
    :param batch_shape: batch shape (usually ``()``; Pyro plates expand it).
    :param device: device of samples drawn by :meth:`sample` (default: torch's default device).
    :param dtype: floating dtype of samples (default: torch's default dtype).

    Every subclass is used the same way; with the :class:`~pyro_diffvi.priors.Pinwheel`:

    Example:

    >>> import pyro
    >>> from pyro_diffvi.priors import Pinwheel
    >>> pyro.set_rng_seed(0)
    >>> prior = Pinwheel()
    >>> z, labels = prior.sample_with_labels((5,))
    >>> z.shape, labels.shape, prior.num_components
    (torch.Size([5, 2]), torch.Size([5]), 10)
    >>> prior.log_prob(z).shape
    torch.Size([5])
    >>> prior.label_log_posterior(z).exp().sum(-1)  # p(l | z) sums to one
    tensor([1., 1., 1., 1., 1.])
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(
        self,
        *,
        dim: int = 2,
        batch_shape: torch.Size | tuple = (),
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        validate_args: bool | None = None,
    ) -> None:
        self.dim = check_positive_int("dim", dim, minimum=2)
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        self._dtype = dtype or torch.get_default_dtype()
        self._device = tensor_device(device)
        self._cache: dict = {}
        super().__init__(torch.Size(batch_shape), torch.Size((self.dim,)), validate_args=validate_args)

    # ----- hooks for subclasses -------------------------------------------------------------
    def _buffers(self) -> dict[str, torch.Tensor]:
        """Constant tensors used by the hooks; returned on the requested device and dtype."""
        raise NotImplementedError

    def _component_log_probs_2d(self, z2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _sample_2d(self, labels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    @property
    def _log_weights(self) -> torch.Tensor:
        k = self.num_components
        return torch.full((k,), -math.log(k), dtype=self._dtype, device=self._device)

    # ----- buffers following the value's device ----------------------------------------------
    def buffers_like(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """The subclass's constant tensors on ``like``'s device and dtype (cached)."""
        key = (like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = {
                name: t.to(device=like.device, dtype=like.dtype if t.is_floating_point() else t.dtype)
                for name, t in self._buffers().items()
            }
        return self._cache[key]

    # ----- shared API --------------------------------------------------------------------------
    @property
    def num_components(self) -> int:
        """Number of labelled components ``K``."""
        raise NotImplementedError

    @property
    def mixture_logits(self) -> torch.Tensor:
        """Normalized log mixture weights :math:`\\log \\pi_l`, shape ``(K,)``."""
        return self._log_weights

    def _check_value(self, value: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(value) or not value.is_floating_point():
            raise TypeError(f"value must be a floating-point torch.Tensor, got {type(value).__name__}")
        if value.dim() < 1 or value.shape[-1] != self.dim:
            raise ValueError(
                f"value must have trailing dimension {self.dim} (event_shape {tuple(self.event_shape)}), "
                f"got shape {tuple(value.shape)}"
            )
        if self._validate_args and value.numel():
            self._validate_sample(value)
        return value

    def _extra_log_prob(self, value: torch.Tensor) -> torch.Tensor | float:
        if self.dim == 2:
            return 0.0
        rest = value[..., 2:]
        return -0.5 * (rest * rest).sum(-1) - 0.5 * (self.dim - 2) * LOG_2PI

    def component_log_probs(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(z \\mid l)` for every label, shape ``value.shape[:-1] + (K,)``."""
        value = self._check_value(value)
        extra = self._extra_log_prob(value)
        if torch.is_tensor(extra):
            extra = extra.unsqueeze(-1)
        return self._component_log_probs_2d(value[..., :2]) + extra

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Exact :math:`\\log p(z) = \\operatorname{logsumexp}_l (\\log \\pi_l + \\log p(z \\mid l))`."""
        comps = self.component_log_probs(value)
        lp = torch.logsumexp(comps + self.mixture_logits.to(comps), dim=-1)
        return lp.expand(torch.broadcast_shapes(lp.shape, self.batch_shape))

    def label_log_posterior(self, value: torch.Tensor) -> torch.Tensor:
        """Log posterior over labels by Bayes' rule,
        :math:`\\log p(l \\mid z) = \\log \\pi_l + \\log p(z \\mid l) - \\log p(z)`, shape ``(..., K)``."""
        comps = self.component_log_probs(value)
        return torch.log_softmax(comps + self.mixture_logits.to(comps), dim=-1)

    def _check_label(self, label: Any, like: torch.Tensor | None = None) -> torch.Tensor:
        if not torch.is_tensor(label):
            if isinstance(label, bool) or not isinstance(label, int):
                raise TypeError(f"label must be an integer tensor or int, got {type(label).__name__}")
            label = torch.tensor(label, device=self._device if like is None else like.device)
        if label.is_floating_point() or label.is_complex() or label.dtype == torch.bool:
            raise TypeError(f"label must be an integer tensor, got dtype {label.dtype}")
        label = label.long()
        if label.numel() and (label.min() < 0 or label.max() >= self.num_components):
            raise ValueError(
                f"label must lie in [0, {self.num_components - 1}] (num_components={self.num_components}), "
                f"got values in [{label.min().item()}, {label.max().item()}]"
            )
        return label

    def component_log_prob(self, value: torch.Tensor, label: torch.Tensor | int) -> torch.Tensor:
        """:math:`\\log p(z \\mid l)` with ``label`` broadcast against ``value.shape[:-1]``.

        :param value: points, shape ``(..., dim)``.
        :param label: integer labels in ``[0, K)``, any shape broadcastable with ``value.shape[:-1]``.
        """
        comps = self.component_log_probs(value)
        label = self._check_label(label, like=value).to(comps.device)
        shape = torch.broadcast_shapes(comps.shape[:-1], label.shape, self.batch_shape)
        comps = comps.expand(shape + comps.shape[-1:])
        return comps.gather(-1, label.expand(shape).unsqueeze(-1)).squeeze(-1)

    def component(self, label: torch.Tensor | int) -> MixtureComponent:
        """The conditional :math:`p(z \\mid l)` as a distribution with batch shape ``label.shape``
        (broadcast with this prior's batch shape); it has ``rsample``."""
        return MixtureComponent(self, self._check_label(label))

    def _sample_given_labels(
        self, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        z2 = self._sample_2d(labels.to(self._device), generator)
        if self.dim == 2:
            return z2
        rest = torch.randn(
            labels.shape + (self.dim - 2,), dtype=z2.dtype, device=z2.device, generator=generator
        )
        return torch.cat([z2, rest], dim=-1)

    def sample_labels(
        self, shape: torch.Size | tuple, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Labels :math:`l \\sim \\operatorname{Categorical}(\\pi)` of the given shape."""
        probs = self.mixture_logits.exp().to(device=self._device)
        n = math.prod(shape)
        flat = torch.multinomial(probs, max(n, 1), replacement=True, generator=generator)[:n]
        return flat.reshape(tuple(shape))

    def sample_with_labels(
        self, sample_shape: torch.Size | tuple = torch.Size(), *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``(z, labels)`` with ``z.shape == sample_shape + batch_shape + (dim,)``.

        :param sample_shape: the sample shape, a tuple or an int ``n`` (for ``(n,)``).
        :param generator: optional :class:`torch.Generator` (on this prior's device) for
            reproducible draws independent of the global seed.
        """
        shape = self._extended_shape(_as_sample_shape(sample_shape))[:-1]
        with torch.no_grad():
            labels = self.sample_labels(shape, generator=generator)
            return self._sample_given_labels(labels, generator), labels

    def sample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        return self.sample_with_labels(sample_shape)[0]

    def expand(self, batch_shape: torch.Size | tuple, _instance=None) -> StructuredPrior:
        new = copy.copy(self)
        new._batch_shape = torch.Size(batch_shape)
        return new

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_components={self.num_components}, dim={self.dim}, "
            f"batch_shape={tuple(self.batch_shape)})"
        )


def _as_sample_shape(sample_shape: torch.Size | tuple | int) -> torch.Size:
    """``sample_shape`` as a :class:`torch.Size`; an int ``n`` stands for ``(n,)``."""
    if isinstance(sample_shape, bool):
        raise TypeError(f"sample_shape must be a tuple of ints or an int, got {sample_shape!r}")
    if isinstance(sample_shape, int):
        sample_shape = (sample_shape,)
    try:
        shape = torch.Size(sample_shape)
    except TypeError:
        raise TypeError(f"sample_shape must be a tuple of ints or an int, got {sample_shape!r}") from None
    if any(n < 0 for n in shape):
        raise ValueError(f"sample_shape must have non-negative sizes, got {tuple(shape)}")
    return shape


class MixtureComponent(TorchDistribution):
    """The conditional :math:`p(z \\mid l)` of a :class:`StructuredPrior` for a tensor of labels.

    Batch shape is ``broadcast(label.shape, prior.batch_shape)``; ``rsample`` reparameterizes the
    component as a differentiable transform of standard noise (uniform noise for curve positions).

    :param prior: the parent structured prior.
    :param label: integer labels in ``[0, prior.num_components)``.

    Usually obtained from :meth:`StructuredPrior.component`:

    Example:

    >>> import torch
    >>> from pyro_diffvi.priors import Pinwheel
    >>> arm = Pinwheel().component(torch.tensor([0, 3]))
    >>> arm.batch_shape, arm.rsample((4,)).shape
    (torch.Size([2]), torch.Size([4, 2, 2]))
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, prior: StructuredPrior, label: torch.Tensor, *, validate_args=None) -> None:
        if not isinstance(prior, StructuredPrior):
            raise TypeError(f"prior must be a StructuredPrior, got {type(prior).__name__}")
        self.prior = prior
        self.label = prior._check_label(label)
        batch_shape = torch.broadcast_shapes(self.label.shape, prior.batch_shape)
        super().__init__(batch_shape, prior.event_shape, validate_args=validate_args)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        lp = self.prior.component_log_prob(value, self.label)
        return lp.expand(torch.broadcast_shapes(lp.shape, self.batch_shape))

    def rsample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)[:-1]
        return self.prior._sample_given_labels(self.label.expand(shape))

    def sample(self, sample_shape: torch.Size | tuple = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def expand(self, batch_shape: torch.Size | tuple, _instance=None) -> MixtureComponent:
        batch_shape = torch.Size(batch_shape)
        return MixtureComponent(
            self.prior.expand(batch_shape), self.label.expand(batch_shape), validate_args=False
        )
