"""Square prior: uniform on a square's perimeter convolved with an isotropic Gaussian (erf form)."""

from __future__ import annotations

import math

import torch

from pyro_diffvi.priors.base import (
    StructuredPrior,
    log_ndtr_diff,
    normal_log_prob,
)
from pyro_diffvi.util import check_positive_float, check_positive_int


class Square(StructuredPrior):
    """Square prior of the DDVI paper (Sec. 5.1, Tables 1-2): noisy perimeter of a square.

    The perimeter of :math:`[-h, h]^2` (length :math:`P = 8h`) is traversed counter-clockwise from
    the corner :math:`(-h, -h)` with arc length :math:`s \\in [0, P)` and cut into ``K`` arcs of equal
    length :math:`P/K`; arc :math:`l` is component :math:`l` (it may turn a corner). Given the label,
    :math:`s \\sim U[lP/K, (l+1)P/K)` and :math:`z = c(s) + \\sigma \\varepsilon`,
    :math:`\\varepsilon \\sim \\mathcal{N}(0, I)`.

    Exact density: a Gaussian convolved with a uniform distribution on a straight segment
    :math:`\\{p_0 + s u: 0 \\le s \\le L\\}` (unit direction :math:`u`, normal :math:`n`) is

    .. math::

        \\int_0^L \\mathcal{N}(z; p_0 + s u, \\sigma^2 I)\\, ds
        = \\mathcal{N}(n^\\top (z - p_0); 0, \\sigma^2)
          \\Big[\\Phi\\big(\\tfrac{a}{\\sigma}\\big) - \\Phi\\big(\\tfrac{a - L}{\\sigma}\\big)\\Big],
        \\qquad a = u^\\top (z - p_0),

    so :math:`p(z \\mid l) = \\frac{K}{P} \\sum_{j \\in l} (\\text{above for straight piece } j)`,
    summed over the (one or two) straight pieces of arc :math:`l`, evaluated in log space with a
    stable :math:`\\log(\\Phi(x) - \\Phi(y))`.

    Defaults: ``K = 10`` (one arc per MNIST class), half-width 1 (a unit-scale latent like the
    pinwheel's unit radius) and noise std 0.1 (a tenth of the half-width, thin but
    well-resolved lines as in the DDVI figures). The DDVI paper's main text does not state its
    exact values.

    References: W. T. Piriyakulkij, Y. Wang, V. Kuleshov. *Denoising Diffusion Variational Inference: Diffusion
    Models as Expressive Variational Posteriors*. arXiv:2401.02739, 2024.

    :param num_components: number of arcs ``K >= 1``.
    :param half_width: :math:`h > 0`.
    :param scale: noise standard deviation :math:`\\sigma > 0`.
    :param dim: event size (coordinates beyond two are standard normal).

    Example:

    >>> import torch
    >>> from pyro_diffvi.priors import Square
    >>> prior = Square(num_components=4, half_width=1.0)
    >>> prior.perimeter_point(torch.tensor([0.0, 2.0, 4.0]))  # corners, counter-clockwise
    tensor([[-1., -1.],
            [ 1., -1.],
            [ 1.,  1.]])
    >>> prior.log_prob(torch.tensor([[0.0, -1.0], [0.0, 0.0]])) > -20  # on the edge, at the centre
    tensor([ True, False])
    """

    def __init__(
        self,
        *,
        num_components: int = 10,
        half_width: float = 1.0,
        scale: float = 0.1,
        dim: int = 2,
        **kwargs,
    ) -> None:
        self._k = check_positive_int("num_components", num_components)
        self.half_width = check_positive_float("half_width", half_width)
        self.scale = check_positive_float("scale", scale)
        super().__init__(dim=dim, **kwargs)
        h = self.half_width
        corners = torch.tensor([[-h, -h], [h, -h], [h, h], [-h, h]], dtype=torch.float64)
        directions = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
        self.perimeter = 8.0 * h
        self.arc_length = self.perimeter / self._k
        starts, dirs, lengths, owner = self._pieces(corners, directions)
        to = dict(dtype=self._dtype, device=self._device)
        self.corners, self.directions = corners.to(**to), directions.to(**to)
        self.piece_starts, self.piece_dirs, self.piece_lengths = starts.to(**to), dirs.to(**to), lengths.to(**to)
        self.piece_index, self.piece_pad = self._component_piece_table(owner)
        self.piece_pad = self.piece_pad.to(**to)
        self.piece_index = self.piece_index.to(device=self._device)

    def _pieces(self, corners: torch.Tensor, directions: torch.Tensor):
        """Straight pieces: each arc split at the square's corners (done once, at construction)."""
        side = 2.0 * self.half_width
        cuts = sorted({i * self.arc_length for i in range(self._k + 1)} | {j * side for j in range(5)})
        starts, dirs, lengths, owner = [], [], [], []
        for b0, b1 in zip(cuts[:-1], cuts[1:]):
            if b1 - b0 <= 1e-12 * self.perimeter:
                continue
            mid = 0.5 * (b0 + b1)
            j = min(int(mid // side), 3)
            starts.append(corners[j] + (b0 - j * side) * directions[j])
            dirs.append(directions[j])
            lengths.append(b1 - b0)
            owner.append(min(int(mid // self.arc_length), self._k - 1))
        return torch.stack(starts), torch.stack(dirs), torch.tensor(lengths, dtype=torch.float64), owner

    def _component_piece_table(self, owner: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(K, J)`` indices of each arc's straight pieces, padded; pad log weights 0 / -inf."""
        members = [[j for j, o in enumerate(owner) if o == k] for k in range(self._k)]
        width = max(len(m) for m in members)
        index = torch.tensor([m + [m[0]] * (width - len(m)) for m in members], dtype=torch.long)
        pad = torch.tensor(
            [[0.0] * len(m) + [-math.inf] * (width - len(m)) for m in members], dtype=torch.float64
        )
        return index, pad

    @property
    def num_components(self) -> int:
        return self._k

    def _buffers(self) -> dict[str, torch.Tensor]:
        return {
            "starts": self.piece_starts,
            "dirs": self.piece_dirs,
            "lengths": self.piece_lengths,
            "index": self.piece_index,
            "pad": self.piece_pad,
        }

    def _component_log_probs_2d(self, z2: torch.Tensor) -> torch.Tensor:
        b = self.buffers_like(z2)
        w = z2.unsqueeze(-2) - b["starts"]  # (..., S, 2)
        along = (w * b["dirs"]).sum(-1)
        perp = w[..., 1] * b["dirs"][:, 0] - w[..., 0] * b["dirs"][:, 1]
        sigma = self.scale
        piece = normal_log_prob(perp, 0.0, sigma) + log_ndtr_diff(along / sigma, (along - b["lengths"]) / sigma)
        comps = torch.logsumexp(piece[..., b["index"]] + b["pad"], dim=-1)  # (..., K)
        return comps - math.log(self.arc_length)

    def perimeter_point(self, s: torch.Tensor) -> torch.Tensor:
        """The point at arc length ``s`` (counter-clockwise from ``(-h, -h)``), shape ``s.shape + (2,)``."""
        side = 2.0 * self.half_width
        j = torch.clamp((s / side).floor().long(), 0, 3)
        offset = (s - j.to(s.dtype) * side).unsqueeze(-1)
        return self.corners.to(s)[j] + offset * self.directions.to(s)[j]

    def _sample_2d(self, labels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        u = torch.rand(labels.shape, dtype=self._dtype, device=self._device, generator=generator)
        s = (labels.to(self._dtype) + u) * self.arc_length
        eps = torch.randn(labels.shape + (2,), dtype=self._dtype, device=self._device, generator=generator)
        return self.perimeter_point(s) + self.scale * eps
