"""Amortized Path Integral Sampler guide (Zhang and Chen, ICLR 2022): the PIS baseline of the DDVI paper."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyro_diffvi.diffusion import Denoiser
from pyro_diffvi.distributions.path import PathIntegralPosterior
from pyro_diffvi.guides.gaussian import GaussianGuide
from pyro_diffvi.util import check_positive_float, check_positive_int, check_widths


class PathIntegralGuide(GaussianGuide):
    r"""Amortized Path Integral Sampler posterior :math:`q_\phi(z|x)` for every latent site of a Pyro model.

    Each latent site gets a :class:`~pyro_diffvi.distributions.PathIntegralPosterior`: a drift network
    :math:`u_\phi(y, t, c)` of the encoder's context :math:`c` drives the Euler-Maruyama chain

    .. math::

        y_0 = 0, \qquad y_{k+1} = y_k + u_\phi(y_k, t_k, c)\, h + \sigma\sqrt h\, \epsilon_k, \qquad
        h = 1/K, \quad t_k = k h, \quad k = 0, \dots, K-1,

    whose end point is the site's (flattened, unconstrained) latent: :math:`z = y_K`, or with
    ``standardize=True`` :math:`z = \text{loc}_\phi(x) + \text{scale}_\phi(x) \odot y_K` with the Gaussian
    head of :class:`GaussianGuide`. The reference is the uncontrolled walk (:math:`u = 0`), whose end point is
    :math:`\mathcal N(0, \sigma^2 I)` and whose bridge :math:`r(y_{1:K-1}|y_K)` is exact. The site's density
    of its own draw is

    .. math::

        \log q_\phi(y_{1:K}|x) - \log r(y_{1:K-1}|y_K) = \sum_{k=0}^{K-1}\Big[\log\mathcal N(y_{k+1}; y_k + u_k h,
        \sigma^2 h I) - \log\mathcal N(y_{k+1}; y_k, \sigma^2 h I)\Big] + \log\mathcal N(y_K; 0, \sigma^2 I)

    (minus :math:`\sum_i\log\text{scale}_i` when standardized): the discretized Girsanov ratio plus the
    reference's terminal density. So plain :class:`~pyro.infer.Trace_ELBO` computes

    .. math::

        \mathbb E_{q_\phi}\big[\log p(x, z) - \log q_\phi(y_{1:K}|x) + \log r(y_{1:K-1}|y_K)\big] \le \log p(x),

    an auxiliary-variable bound that is valid for every number of steps :math:`K` (discretization changes
    its tightness, not its validity). Minimizing its negative is PIS's control objective, the control energy
    :math:`\sum_k \frac{h}{2\sigma^2}\lVert u_k\rVert^2` plus the terminal cost
    :math:`\log\mathcal N(y_K; 0, \sigma^2 I) - \log p(x, z)` (the term :math:`\frac{\sqrt h}{\sigma}u_k^\top\epsilon_k`
    has mean zero), amortized over :math:`x`. PIS's optional target-score term in the drift is not used:
    the drift sees only :math:`(y, t, c)`.

    Defaults:

    * ``standardize=True`` with ``sigma=1`` and a zero-initialized drift output: a new guide *is* its
      Gaussian head (the chain is the reference walk, whose end point is :math:`\mathcal N(0, I)`, and the
      reported density is exactly :math:`\log\mathcal N(z; \text{loc}, \text{scale}^2)`), and the drift is
      measured in posterior standard deviations whatever the prior's units;
    * ``path_gradient=True``: the path-derivative gradient (same value, unbiased, lower variance);
    * ``num_steps=20``, a drift of two hidden layers of 128 (SiLU), a 32-wide time embedding.

    ``standardize=False`` is the original sampler, :math:`z = y_K` from the fixed start (choose ``sigma``
    near the posterior's scale in the unconstrained coordinates).

    Reference: Q. Zhang, Y. Chen. *Path Integral Sampler: a Stochastic Control Approach for Sampling*.
    ICLR, 2022.

    Example:

    >>> import torch
    >>> from pyro_diffvi.datasets import make_problem
    >>> problem = make_problem("linear_gaussian_5d")   # a Pyro model (sites "z", "x") with exact log p(x)
    >>> model, x = problem.model, problem.x
    >>> from pyro.infer import SVI, Trace_ELBO
    >>> from pyro.optim import Adam
    >>> from pyro_diffvi.guides import PathIntegralGuide
    >>> guide = PathIntegralGuide(model, latent="z", observed="x", num_steps=5, drift_hidden_dims=(32,))
    >>> svi = SVI(model, guide, Adam({"lr": 1e-3}), Trace_ELBO())
    >>> losses = [svi.step(x) for _ in range(3)]
    >>> bound = -Trace_ELBO(num_particles=4).loss(model, guide, x)   # the PIS bound
    >>> bound < problem.log_px.sum().item()
    True

    :param num_steps: :math:`K`, the number of Euler-Maruyama steps.
    :param sigma: the diffusion coefficient :math:`\sigma > 0` of the chain and its reference.
    :param standardize: run the chain in the Gaussian head's standardized coordinates (see above).
    :param path_gradient: path-derivative gradients of the bound term (for ``Trace_ELBO``-type objectives;
        set ``False`` to train with an importance-weighted objective such as ``RenyiELBO``).
    :param drift_hidden_dims: hidden widths of each drift network.
    :param time_dim: width of the drift's sinusoidal time embedding (even).
    :param drift_activation: hidden activation of the drift network.

    The other parameters (``encoder``, ``encoder_hidden_dims``, ``encoder_activation``, ``observed_fn``, ``min_scale``,
    ``init_scale``, ``create_plates``, ``name``) are those of :class:`GaussianGuide` and
    :class:`AmortizedGuide`; the head's are unused when ``standardize=False``. Constrained latents are
    sampled in their unconstrained space.
    """

    def __init__(
        self,
        model,
        latent: str | Sequence[str],
        observed: str | Sequence[str],
        *,
        num_steps: int = 20,
        sigma: float = 1.0,
        standardize: bool = True,
        path_gradient: bool = True,
        drift_hidden_dims: Sequence[int] = (128, 128),
        time_dim: int = 32,
        drift_activation: str = "silu",
        **kwargs,
    ) -> None:
        check_positive_int("num_steps", num_steps)
        check_positive_float("sigma", sigma)
        check_widths("drift_hidden_dims", drift_hidden_dims)
        if check_positive_int("time_dim", time_dim) % 2:
            raise ValueError(f"time_dim must be even (sines and cosines), got {time_dim}")
        super().__init__(model, latent, observed, **kwargs)
        self.num_steps = num_steps
        self.sigma = float(sigma)
        self.standardize = bool(standardize)
        self.path_gradient = bool(path_gradient)
        self._drift_kwargs = dict(time_dim=time_dim, hidden_dims=tuple(drift_hidden_dims), activation=drift_activation)
        Denoiser(1, **self._drift_kwargs)  # validates the activation now rather than at the first call

    def _build_posteriors(self) -> None:
        if self.standardize:
            super()._build_posteriors()
        else:
            self.heads = None
        drifts = []
        for name in self.latent_names:
            d = self.latent_dims[name]
            drift = Denoiser(
                d, context_dim=2 * d if self.context_dim is None else self.context_dim, **self._drift_kwargs
            )
            last = drift.net.net[-1]
            with torch.no_grad():  # a new guide's chain is the reference walk
                last.weight.zero_()
                last.bias.zero_()
            drifts.append(drift)
        self.drifts = self._like_encoder(nn.ModuleList(drifts))

    def loc_scale(self, name: str, context) -> tuple[torch.Tensor, torch.Tensor]:
        """The Gaussian head's mean and standard deviation of latent ``name`` (``standardize=True`` only)."""
        if not self.standardize:
            raise ValueError("this PathIntegralGuide has no Gaussian head (standardize=False): z = y_K")
        return super().loc_scale(name, context)

    def drift_context(self, context) -> torch.Tensor:
        """What the drift networks read: the encoder's context, or ``[loc, scale]`` for a tuple encoder."""
        return torch.cat(context, dim=-1) if self.context_dim is None else context

    exact_density = False  # the site density is the path-space bound term

    def posterior(self, name: str, context) -> PathIntegralPosterior:
        loc = scale = None
        if self.standardize:
            loc, scale = self.loc_scale(name, context)
        return PathIntegralPosterior(
            self.drifts[self.latent_names.index(name)],
            self.drift_context(context),
            num_steps=self.num_steps,
            sigma=self.sigma,
            loc=loc,
            scale=scale,
            path_gradient=self.path_gradient,
        )
