r"""VAEBM: a VAE exponentially tilted by an energy, :math:`p(x, z) \propto p_\phi(x, z)\, e^{-f_\theta(x)}`.

The model of Xiao (2022), Ch. 4 (Eqs. 4.11-4.13), and of Xiao, Kreis, Kautz & Vahdat (2021):

.. math::

    p_{\theta,\phi}(x, z) = \frac{1}{Z_{\theta,\phi}}\, p_\phi(z)\, p_\phi(x \mid z)\, e^{-f_\theta(x)}, \qquad
    \log p_{\theta,\phi}(x) = \log p_\phi(x) - f_\theta(x) - \log Z_{\theta,\phi}
    \quad \text{(4.12, 4.13)},

with a standard normal prior :math:`p_\phi(z) = \mathcal N(0, I)` and a Gaussian decoder
:math:`p_\phi(x \mid z) = \mathcal N(\mu_\phi(z), \operatorname{diag} \sigma_\phi(z)^2)`. The tilt depends on
:math:`x` only, so the VAEBM's posterior :math:`p(z \mid x)` *is* the VAE's: a guide fitted to the VAE
serves the VAEBM unchanged.

**Reparameterized noise space** (Eqs. 4.18-4.29). With :math:`\epsilon = (\epsilon_z, \epsilon_x) \sim
\mathcal N(0, I)`, :math:`z = T^z(\epsilon_z) = \epsilon_z` and :math:`x = T^x(z, \epsilon_x) = \mu_\phi(z) +
\sigma_\phi(z) \odot \epsilon_x`; the VAEBM pulled back to :math:`\epsilon` is (4.19, 4.29)

.. math::

    h(\epsilon) \propto e^{-U(\epsilon)}, \qquad U(\epsilon) = f_\theta(T(\epsilon)) + \tfrac12 \lVert\epsilon\rVert^2,

which :meth:`VAEBM.sample` samples by Langevin dynamics (:func:`~pyro_diffvi.samplers.langevin`, one step
size for every coordinate since all have unit scale) and maps through :math:`T`.

**Likelihood on 2-D data** (Sec. 4.4: :math:`\log Z` by numerical integration). For a 2-D latent,
:meth:`VAEBM.vae_log_prob` computes :math:`\log p_\phi(x) = \log \int \mathcal N(z; 0, I)\, p_\phi(x \mid
z)\, dz` by the midpoint rule on a :class:`~pyro_diffvi.ops.QuadratureGrid` in
:math:`z`: exact up to the grid's discretization and truncation error (check by refining the grid),
unlike an IWAE bound, which is a lower bound. :meth:`VAEBM.log_partition` integrates the tilted density
:math:`p_\phi(x) e^{-f_\theta(x)}` over a grid in :math:`x` (nested quadrature: exact up to both grids),
and :meth:`VAEBM.log_partition_mc` estimates :math:`Z = \mathbb E_{x \sim p_\phi}[e^{-f_\theta(x)}]` by
Monte Carlo over ancestral VAE draws (unbiased for :math:`Z`, with a delta-method standard error for
:math:`\log Z`; much cheaper when the density is too sharp for a fine nested grid).

References

- Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation, University
  of Chicago, 2022 ("Xiao (2022)"), Ch. 4.
- Z. Xiao, K. Kreis, J. Kautz, A. Vahdat. *VAEBM: A Symbiosis between Variational Autoencoders and
  Energy-based Models*. ICLR, 2021.
- D. P. Kingma, M. Welling. *Auto-Encoding Variational Bayes*. ICLR, 2014.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn

from pyro_diffvi.nn.heads import loc_scale
from pyro_diffvi.ops.constants import LOG_2PI
from pyro_diffvi.ops.log_mean_exp import log_mean_exp_with_se
from pyro_diffvi.ops.quadrature import QuadratureGrid
from pyro_diffvi.samplers.langevin import langevin
from pyro_diffvi.util import check_positive_float, check_positive_int


def default_latent_grid(*, num_points: int = 400, half_width: float = 6.0) -> QuadratureGrid:
    r"""The default 2-D latent grid of :meth:`VAEBM.vae_log_prob`: ``num_points`` midpoint cells per axis on
    :math:`[-w, w]^2` (``w = half_width``). The standard normal prior puts mass
    :math:`1 - (1 - 2\Phi(-w))^2 \approx 4\Phi(-w)` outside it (:math:`4 \times 10^{-9}` for :math:`w = 6`).

    :param num_points: cells per axis.
    :param half_width: :math:`w > 0`.

    Example:

    >>> from pyro_diffvi.distributions.vaebm import default_latent_grid
    >>> default_latent_grid(num_points=100).num_points
    (100, 100)
    """
    n = check_positive_int("num_points", num_points)
    w = check_positive_float("half_width", half_width)
    return QuadratureGrid(low=(-w, -w), high=(w, w), num_points=(n, n))


class VAEBM(nn.Module):
    r"""A VAE :math:`p_\phi(z) p_\phi(x|z)` tilted by an energy :math:`f_\theta(x)` (Xiao (2022), Eq. 4.11).

    Called, it is the **VAE's** Pyro model (sites ``"z"`` and ``"x"`` in plate ``"data"``; the energy
    does not enter), so stage 1 of the two-stage training is ``SVI(vaebm, guide, optim, Trace_ELBO())``
    with any guide of this package (e.g. ``GaussianGuide(vaebm, latent="z", observed="x")``). Stage 2
    fits the energy with :class:`~pyro_diffvi.infer.VAEBMContrastiveLoss` (Eq. 4.17) with the VAE frozen.

    :param decoder: maps ``z`` of shape ``(..., latent_dim)`` to ``(..., 2 * obs_dim)``: the means, then
        raw scales (:math:`\sigma = \mathrm{softplus}(\cdot) + \sigma_{\min}`).
    :param energy_fn: maps ``x`` of shape ``(..., obs_dim)`` to energies ``(...)`` or ``(..., 1)``.
    :param latent_dim: size of :math:`z`.
    :param obs_dim: size of :math:`x`.
    :param min_scale: :math:`\sigma_{\min} > 0`, the decoder's scale floor.
    :param name: prefix of the decoder's parameters in Pyro's param store.

    Example (a linear decoder; Langevin in the noise space, 2-D log-likelihood by quadrature):

    >>> import torch
    >>> from torch import nn
    >>> from pyro_diffvi.distributions import VAEBM
    >>> from pyro_diffvi.distributions.vaebm import default_latent_grid
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> vaebm = VAEBM(nn.Linear(2, 4), nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)),
    ...               latent_dim=2, obs_dim=2)
    >>> x, z, eps = vaebm.sample(16, num_steps=10, step_size=0.05)
    >>> tuple(x.shape), tuple(z.shape), tuple(eps.shape)
    ((16, 2), (16, 2), (16, 4))
    >>> log_z = vaebm.log_partition_mc(20000)[0]
    >>> tuple(vaebm.log_prob(x, log_z, z_grid=default_latent_grid(num_points=100)).shape)
    (16,)
    """

    def __init__(
        self,
        decoder: nn.Module,
        energy_fn: nn.Module,
        *,
        latent_dim: int,
        obs_dim: int,
        min_scale: float = 1e-3,
        name: str = "vaebm",
    ) -> None:
        super().__init__()
        if not isinstance(decoder, nn.Module):
            raise TypeError(f"decoder must be a torch.nn.Module, got {type(decoder).__name__}")
        if not callable(energy_fn):
            raise TypeError(f"energy_fn must be callable (an nn.Module x -> f(x)), got {type(energy_fn).__name__}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.decoder = decoder
        self.energy_fn = energy_fn
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.obs_dim = check_positive_int("obs_dim", obs_dim)
        self.min_scale = check_positive_float("min_scale", min_scale)
        self.name = name

    # ----------------------------------------------------------------------------------- the VAE
    def _reference(self) -> Tensor:
        for p in self.decoder.parameters():
            return p
        return torch.zeros(())

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        r"""The decoder's mean :math:`\mu_\phi(z)` and standard deviation :math:`\sigma_\phi(z)`.

        :param z: latents, shape ``(..., latent_dim)``.
        :return: ``(loc, scale)``, each of shape ``(..., obs_dim)``.
        """
        if z.shape[-1:] != (self.latent_dim,):
            raise ValueError(f"z must have shape (..., {self.latent_dim}), got {tuple(z.shape)}")
        params = self.decoder(z)
        if params.shape != z.shape[:-1] + (2 * self.obs_dim,):
            raise ValueError(
                f"decoder must map z of shape {tuple(z.shape)} to {tuple(z.shape[:-1]) + (2 * self.obs_dim,)} "
                f"(means, then raw scales), got {tuple(params.shape)}"
            )
        return loc_scale(params, self.min_scale)

    def forward(self, x: Tensor | None = None, *, num_samples: int | None = None) -> Tensor:
        r"""The VAE's Pyro model :math:`z \sim \mathcal N(0, I)`, :math:`x \mid z \sim \mathcal N(\mu_\phi(z),
        \sigma_\phi(z)^2)` in plate ``"data"`` (the untilted base, Eq. 4.14's :math:`\mathcal L_{vae}`).

        :param x: observed data ``(N, obs_dim)``, or ``None`` to draw ``num_samples`` points.
        :param num_samples: number of points when ``x`` is ``None``.
        :return: the value of site ``"x"``.
        """
        if x is None and num_samples is None:
            raise ValueError("pass the data x or num_samples")
        if x is not None and (x.dim() != 2 or x.shape[1] != self.obs_dim):
            raise ValueError(f"x must have shape (N, {self.obs_dim}), got {tuple(x.shape)}")
        n = x.shape[0] if x is not None else check_positive_int("num_samples", num_samples)
        pyro.module(f"{self.name}.decoder", self.decoder)
        ref = self._reference() if x is None else x
        with pyro.plate("data", n):
            z = pyro.sample(
                "z", dist.Normal(ref.new_zeros(self.latent_dim), ref.new_ones(self.latent_dim)).to_event(1)
            )
            loc, scale = self.decode(z)
            return pyro.sample("x", dist.Normal(loc, scale).to_event(1), obs=x)

    # ----------------------------------------------------------------------------------- the tilt
    def energy_of(self, x: Tensor) -> Tensor:
        r"""The energy :math:`f_\theta(x)`, shape ``x.shape[:-1]``.

        :param x: points, shape ``(..., obs_dim)``.
        """
        if x.shape[-1:] != (self.obs_dim,):
            raise ValueError(f"x must have shape (..., {self.obs_dim}), got {tuple(x.shape)}")
        e = self.energy_fn(x)
        if e.shape == x.shape[:-1] + (1,):
            e = e.squeeze(-1)
        if e.shape != x.shape[:-1]:
            raise ValueError(
                f"energy_fn must map x of shape {tuple(x.shape)} to {tuple(x.shape[:-1])}, got {tuple(e.shape)}"
            )
        return e

    def transform(self, eps: Tensor) -> tuple[Tensor, Tensor]:
        r"""The reparameterization :math:`T(\epsilon_z, \epsilon_x) = (x, z)` of Eqs. 4.18 and 4.20:
        :math:`z = \epsilon_z` (standard normal prior), :math:`x = \mu_\phi(z) + \sigma_\phi(z) \odot \epsilon_x`.

        :param eps: noise ``(..., latent_dim + obs_dim)``, :math:`\epsilon_z` first.
        :return: ``(x, z)``.
        """
        if eps.shape[-1:] != (self.latent_dim + self.obs_dim,):
            raise ValueError(f"eps must have shape (..., {self.latent_dim + self.obs_dim}), got {tuple(eps.shape)}")
        z, eps_x = eps.split([self.latent_dim, self.obs_dim], dim=-1)
        loc, scale = self.decode(z)
        return loc + scale * eps_x, z

    def noise_energy(self, eps: Tensor) -> Tensor:
        r""":math:`U(\epsilon) = f_\theta(T^x(\epsilon)) + \tfrac12 \lVert \epsilon \rVert^2`, the energy of the
        VAEBM in the noise space (Eqs. 4.19, 4.29): :math:`h(\epsilon) \propto e^{-U(\epsilon)}`.

        :param eps: noise ``(..., latent_dim + obs_dim)``.
        """
        x, _ = self.transform(eps)
        return self.energy_of(x) + 0.5 * eps.pow(2).sum(-1)

    def sample(
        self,
        num_samples: int,
        *,
        num_steps: int = 100,
        step_size: float = 0.005,
        noise_scale: float = 1.0,
        metropolis: bool = False,
        init: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        r"""Draw from the VAEBM by Langevin dynamics in the noise space (Xiao (2022), Sec. 4.3.3):
        chains on :math:`e^{-U(\epsilon)}` (:func:`~pyro_diffvi.samplers.langevin`, update
        :math:`\epsilon' = \epsilon - h \nabla U + s\sqrt{2h}\,\omega`, i.e. the dissertation's
        :math:`\eta/2 = h`) started from the VAE (:math:`\epsilon \sim \mathcal N(0, I)`), then mapped
        through :math:`T` (Eq. 4.18).

        :param num_samples: number of chains.
        :param num_steps: Langevin steps (the dissertation: 60 in training, 100 at test).
        :param step_size: :math:`h`.
        :param noise_scale: :math:`s` (1 = Langevin dynamics).
        :param metropolis: Metropolis-adjusted steps (MALA: exactly invariant; needs ``noise_scale=1``).
        :param init: initial noise ``(num_samples, latent_dim + obs_dim)`` (default: standard normal).
        :return: ``(x, z, eps)``, detached.
        """
        n = check_positive_int("num_samples", num_samples)
        ref = self._reference()
        if init is None:
            init = torch.randn(n, self.latent_dim + self.obs_dim, dtype=ref.dtype, device=ref.device)
        elif init.shape != (n, self.latent_dim + self.obs_dim):
            raise ValueError(f"init must have shape {(n, self.latent_dim + self.obs_dim)}, got {tuple(init.shape)}")
        eps, _ = langevin(
            self.noise_energy, init, num_steps=num_steps, step_size=step_size, noise_scale=noise_scale,
            metropolis=metropolis,
        )
        with torch.no_grad():
            x, z = self.transform(eps)
        return x, z, eps

    # ----------------------------------------------------------------------------------- densities
    def vae_log_prob(self, x: Tensor, *, z_grid: QuadratureGrid | None = None, chunk_size: int = 2**22) -> Tensor:
        r""":math:`\log p_\phi(x) = \log \int \mathcal N(z; 0, I)\, \mathcal N(x; \mu_\phi(z), \sigma_\phi(z)^2)\, dz`
        by the midpoint rule on a 2-D latent grid, in float64 (exact up to the grid's error; the decoder
        is evaluated once per node).

        :param x: points ``(N, obs_dim)``.
        :param z_grid: the latent grid (default :func:`default_latent_grid`); needs ``latent_dim == 2``.
        :param chunk_size: at most this many (point, node) pairs are held at once.
        :return: ``(N,)`` float64.
        """
        if self.latent_dim != 2:
            raise ValueError(f"vae_log_prob integrates over a 2-D latent; this VAEBM has latent_dim={self.latent_dim}")
        if x.dim() != 2 or x.shape[1] != self.obs_dim:
            raise ValueError(f"x must have shape (N, {self.obs_dim}), got {tuple(x.shape)}")
        grid = z_grid if z_grid is not None else default_latent_grid()
        ref = self._reference()
        z, log_w, _ = grid.nodes(device=ref.device)
        with torch.no_grad():
            loc, scale = (t.double() for t in self.decode(z.to(ref.dtype)))
        prec = scale.pow(-2)
        const = (
            log_w - 0.5 * z.pow(2).sum(-1) - LOG_2PI  # standard normal prior in 2-D, times the cell area
            - scale.log().sum(-1) - 0.5 * self.obs_dim * LOG_2PI
            - 0.5 * (loc.pow(2) * prec).sum(-1)
        )
        # -0.5 sum_d (x_d - mu_d)^2 / s_d^2 = [x^2, x] @ [-0.5 / s^2, mu / s^2]^T + const: one matmul per chunk
        weights = torch.cat([-0.5 * prec, loc * prec], dim=-1).T
        x64 = x.detach().to(device=ref.device, dtype=torch.float64)
        rows = max(1, int(chunk_size) // z.shape[0])
        out = []
        for chunk in x64.split(rows):
            terms = torch.cat([chunk.pow(2), chunk], dim=-1) @ weights
            out.append(torch.logsumexp(terms + const, dim=1))
        return torch.cat(out)

    def unnormalized_log_prob(self, x: Tensor, *, z_grid: QuadratureGrid | None = None) -> Tensor:
        r""":math:`\log p_\phi(x) - f_\theta(x)` (Eq. 4.12 without :math:`\log Z`), float64.

        :param x: points ``(N, obs_dim)``.
        :param z_grid: the latent grid of :meth:`vae_log_prob`.
        """
        with torch.no_grad():
            f = self.energy_of(x.to(self._reference().dtype)).double()
        return self.vae_log_prob(x, z_grid=z_grid) - f

    def log_partition(self, x_grid: QuadratureGrid, *, z_grid: QuadratureGrid | None = None) -> tuple[float, float]:
        r""":math:`\log Z = \log \int p_\phi(x) e^{-f_\theta(x)} dx` by the midpoint rule on ``x_grid`` (2-D
        data), with :math:`p_\phi(x)` from :meth:`vae_log_prob` on ``z_grid`` (nested quadrature).

        :param x_grid: the grid over the data space (``obs_dim == 2``).
        :param z_grid: the latent grid.
        :return: ``(log_z, edge_fraction)``: the fraction of the integral on the grid's outermost cells
            (a truncation check: it should be negligible).
        """
        if self.obs_dim != 2:
            raise ValueError(f"log_partition integrates over 2-D data; this VAEBM has obs_dim={self.obs_dim}")
        x, log_w, on_edge = x_grid.nodes(device=self._reference().device)
        terms = self.unnormalized_log_prob(x, z_grid=z_grid) + log_w
        log_z = torch.logsumexp(terms, 0)
        edge = torch.logsumexp(terms[on_edge], 0) - log_z
        return log_z.item(), edge.exp().item()

    def log_partition_mc(self, num_samples: int, *, chunk_size: int = 65536) -> tuple[float, float]:
        r"""Monte Carlo :math:`\log \hat Z = \log \frac1N \sum_n e^{-f_\theta(x_n)}`, :math:`x_n \sim p_\phi`
        (ancestral VAE draws): :math:`\hat Z` is unbiased for :math:`Z = \mathbb E_{p_\phi}[e^{-f_\theta}]`
        (Eq. 4.12 integrated over :math:`x`); any dimension.

        :param num_samples: :math:`N`.
        :param chunk_size: draws per batch.
        :return: ``(log_z, standard_error)`` (delta method, :func:`~pyro_diffvi.ops.log_mean_exp_with_se`).
        """
        n = check_positive_int("num_samples", num_samples)
        ref = self._reference()
        neg_f = []
        with torch.no_grad():
            for start in range(0, n, chunk_size):
                m = min(chunk_size, n - start)
                eps = torch.randn(m, self.latent_dim + self.obs_dim, dtype=ref.dtype, device=ref.device)
                x, _ = self.transform(eps)
                neg_f.append(-self.energy_of(x).double())
        log_z, se = log_mean_exp_with_se(torch.cat(neg_f))
        return log_z.item(), se.item()

    def log_prob(self, x: Tensor, log_z: float, *, z_grid: QuadratureGrid | None = None) -> Tensor:
        r"""The VAEBM's normalized :math:`\log p_{\theta,\phi}(x) = \log p_\phi(x) - f_\theta(x) - \log Z`
        (Eq. 4.13), float64.

        :param x: points ``(N, obs_dim)``.
        :param log_z: :math:`\log Z` (from :meth:`log_partition` or :meth:`log_partition_mc`).
        :param z_grid: the latent grid of :meth:`vae_log_prob`.
        """
        return self.unnormalized_log_prob(x, z_grid=z_grid) - float(log_z)
