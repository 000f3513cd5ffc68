r"""The ScoreVAE objective (Batzolis, Stanczuk & Schönlieb 2023, Sec. 3.5 and Appendix A.1) and ScoreVAE+ (Sec. 3.6).

For a model :math:`z \sim p(z)`, :math:`x \sim p_{\theta,\phi}(x|z)` whose observed site is a
:class:`~pyro_diffvi.distributions.DiffusionLikelihood` (a frozen score model :math:`s_\theta` plus the score of
the time-dependent encoder) and the guide :math:`q_{0,\phi}(z|x)` of the same encoder, Appendix A.1 chains the
ELBO (Eq. 13) with Song et al.'s bound on :math:`\log p_{\theta,\phi}(x_0|z)` (Eq. 14):

.. math::

    \log p_{\theta,\phi}(x_0) \ge \mathbb E_{z \sim q_{0,\phi}(z|x_0)}\big[\mathcal L_{DSM}(x_0, z)\big]
        - \mathrm{KL}\big(q_{0,\phi}(z|x_0)\,\|\,p(z)\big),

with :math:`\mathcal L_{DSM}` the prior, divergence, DSM and truncation terms of
:func:`~pyro_diffvi.diffusion.sde_bound_terms`. The ScoreVAE loss weights the KL by :math:`\beta`,

.. math::

    \mathcal L_\beta(\phi) = \mathbb E_{x_0}\Big[\tfrac12\,\mathbb E_{t, x_t, z}\big[g(t)^2
        \|\nabla_{x_t}\log p_{0t}(x_t|x_0) - s_{\theta,\phi}(x_t, z, t)\|^2\big]
        + \beta\,\mathrm{KL}\big(q_{0,\phi}(z|x_0)\,\|\,p(z)\big)\Big],

which differs from minus the bound above only by terms that do not depend on :math:`\phi` (the prior,
divergence and truncation terms) and by :math:`\beta`. The appendix's final display writes
:math:`z \sim q_{0,\phi}(z|x_t)`; its derivation, followed here, draws :math:`z \sim q_{0,\phi}(z|x_0)`.

References:

- G. Batzolis, J. Stanczuk, C.-B. Schönlieb. *Variational Diffusion Auto-encoder: Latent Space Extraction
  from Pre-trained Diffusion Models*. arXiv:2304.12141, 2023.
- Y. Song, C. Durkan, I. Murray, S. Ermon. *Maximum Likelihood Training of Score-Based Diffusion Models*.
  NeurIPS, 2021 (Theorem 3).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer.util import torch_item
from pyro.poutine.util import prune_subsample_sites
from torch import Tensor

from pyro_diffvi.distributions import DiffusionLikelihood
from pyro_diffvi.guides import TimeDependentGaussianGuide
from pyro_diffvi.infer.guard import GuardedObjective, check_on_nonfinite
from pyro_diffvi.util import check_positive_float


def _sum(log_p: Tensor, site: dict) -> Tensor:
    return scale_and_mask(log_p, site["scale"], site["mask"]).sum()


class ScoreVAE_ELBO(GuardedObjective):
    r"""Minus the ScoreVAE bound with the KL weighted by ``kl_weight`` (the paper's :math:`\beta`; module docstring),
    for an ordinary ``SVI`` loop.

    .. math::

        \text{loss} = -\sum_n \Big[\widehat{\mathcal L}_{DSM}(x_n, z_n) + \sum_{\text{other obs.}} \log p(x_n|z_n)
            - \beta\,\big(\log q(z_n|x_n) - \log p(z_n)\big)\Big], \qquad z_n \sim q_{0,\phi}(z|x_n),

    summed over the data with the plates' scales, like :class:`~pyro.infer.Trace_ELBO`: the KL is estimated at
    the guide's draw, and each :class:`~pyro_diffvi.distributions.DiffusionLikelihood` site contributes its
    bound :meth:`~pyro_diffvi.distributions.DiffusionLikelihood.bound_terms` (other observed sites their
    ``log_prob``, so a Gaussian decoder gives the :math:`\beta`-VAE). With ``kl_weight=1`` the loss is an unbiased
    estimate of minus a lower bound on :math:`\log p(x)`, equal to ``Trace_ELBO``'s at the same draws; the
    bound itself is evaluated with :func:`pyro_diffvi.metrics.elbo` (with its standard error).

    ``kl_weight`` is the paper's :math:`\beta \in [0, 1]` (it trains with 0.01).

    What learns: the encoder (through the latent score and the reparameterized :math:`z`), and a conditional
    score model (DiffDecoder). A frozen score model never gets a gradient. ScoreVAE+ (Sec. 3.6) is a second
    stage with ``train_corrector=True``: the encoder, its draws and the KL are held fixed and only the
    likelihood's ``corrector`` learns, by the same objective; in the first stage (default) a corrector, if
    present, is held fixed.

    :param kl_weight: the KL weight :math:`\beta \ge 0`.
    :param train_corrector: train ScoreVAE+'s corrector only (the encoder frozen).
    :param on_nonfinite: ``"raise"`` a :class:`~pyro_diffvi.errors.DivergenceError` on a non-finite term or
        gradient, or ``"skip"`` the step (:mod:`pyro_diffvi.infer.guard`).

    Example:

    >>> import pyro, pyro.distributions as dist, torch
    >>> from pyro.infer import SVI
    >>> from pyro.optim import Adam
    >>> from pyro_diffvi.diffusion import ScoreModel
    >>> from pyro_diffvi.distributions import DiffusionLikelihood
    >>> from pyro_diffvi.guides import TimeDependentGaussianGuide
    >>> from pyro_diffvi.infer import ScoreVAE_ELBO
    >>> from pyro_diffvi.nn import GaussianTimeEncoder
    >>> score_model = ScoreModel((6,), network_options={"global_hidden_dims": [32]})    # a pretrained prior
    >>> encoder = GaussianTimeEncoder(6, 2, hidden_dims=(32,))
    >>> def model(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    ...         pyro.sample("x", DiffusionLikelihood(score_model, z, encoder=encoder), obs=x)
    >>> pyro.clear_param_store()
    >>> guide = TimeDependentGaussianGuide(model, "z", "x", encoder=encoder)
    >>> objective = ScoreVAE_ELBO(kl_weight=0.01)
    >>> svi = SVI(model, guide, Adam({"lr": 1e-3}), objective)
    >>> loss = svi.step(torch.randn(8, 6))
    >>> sorted(objective.last_terms)
    ['divergence', 'dsm', 'kl', 'likelihood', 'prior', 'truncation']
    """

    def __init__(self, *, kl_weight: float = 1.0, train_corrector: bool = False, on_nonfinite: str = "raise") -> None:
        super().__init__(num_particles=1)
        self.kl_weight = check_positive_float("kl_weight", kl_weight, allow_zero=True)
        if not isinstance(train_corrector, bool):
            raise TypeError(f"train_corrector must be a bool, got {type(train_corrector).__name__}")
        self.train_corrector = train_corrector
        self.on_nonfinite = check_on_nonfinite(on_nonfinite)
        self.last_terms: dict[str, float] = {}

    def terms(self, model, guide, *args, **kwargs) -> dict[str, Tensor]:
        r"""The loss's terms as tensors: ``"likelihood"`` (the likelihood bound, summed with the plates' scales),
        ``"kl"`` (:math:`\sum \log q - \log p` at the guide's draws) and, summed over the diffusion sites, the
        bound's parts ``"prior"``, ``"divergence"``, ``"dsm"``, ``"truncation"`` (included in ``"likelihood"``).

        :param model: the Pyro model.
        :param guide: its guide.
        """
        with torch.no_grad() if self.train_corrector else nullcontext():
            full_guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = prune_subsample_sites(
            poutine.trace(poutine.replay(model, trace=full_guide_trace)).get_trace(*args, **kwargs)
        )
        guide_trace = prune_subsample_sites(full_guide_trace)
        parts = dict.fromkeys(("prior", "divergence", "dsm", "truncation"), 0.0)
        likelihood, kl, diffusion_sites = 0.0, 0.0, []
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample":
                continue
            if site["is_observed"]:
                if isinstance(site["fn"], DiffusionLikelihood):
                    diffusion_sites.append(site["fn"])
                    self._check_encoder(name, site["fn"], guide)
                    bound = site["fn"].bound_terms(
                        site["value"], encoder_grad=not self.train_corrector, corrector_grad=self.train_corrector
                    )
                    for key, value in bound.items():
                        parts[key] = parts[key] + _sum(value, site)
                    likelihood = likelihood + _sum(sum(bound.values()), site)
                else:
                    likelihood = likelihood + _sum(site["fn"].log_prob(site["value"]), site)
                continue
            guide_site = guide_trace.nodes.get(name)
            if guide_site is None or guide_site["type"] != "sample":
                raise ValueError(f"ScoreVAE_ELBO: the model's latent site '{name}' is not sampled by the guide")
            log_q = _sum(guide_site["fn"].log_prob(guide_site["value"]), guide_site)
            kl = kl + log_q - _sum(site["fn"].log_prob(site["value"]), site)
        if self.train_corrector and not any(fn.corrector is not None for fn in diffusion_sites):
            raise ValueError(
                "train_corrector=True trains a DiffusionLikelihood's corrector, but the model's observed sites have "
                "none: pass corrector=ScoreModel(data_shape, context_dim=K, zero_init=True, gaussian_skip=False) "
                "to the likelihood"
            )
        return {k: torch.as_tensor(v) for k, v in {"likelihood": likelihood, "kl": kl, **parts}.items()}

    @staticmethod
    def _check_encoder(name: str, likelihood: DiffusionLikelihood, guide) -> None:
        if isinstance(guide, TimeDependentGaussianGuide) and likelihood.encoder is not None:
            if likelihood.encoder is not guide.encoder:
                raise ValueError(
                    f"ScoreVAE_ELBO: the DiffusionLikelihood at site '{name}' and the TimeDependentGaussianGuide use "
                    "different encoders; ScoreVAE's decoder and guide share one (pass the same encoder= to both)"
                )

    def _loss_and_terms(self, model, guide, args, kwargs) -> tuple[Tensor, dict[str, Tensor]]:
        nan = torch.tensor(float("nan"))
        names = ("likelihood", "kl", "prior", "divergence", "dsm", "truncation")
        terms = self._guarded("likelihood", self.terms, model, guide, *args, nan={k: nan for k in names}, **kwargs)
        self.last_terms = {k: torch_item(v) for k, v in terms.items()}
        loss = -(terms["likelihood"] - self.kl_weight * terms["kl"])
        return loss, {"likelihood": terms["likelihood"], "kl": terms["kl"]}

    def _get_trace(self, model, guide, args, kwargs):  # ELBO's abstract hook; not used by this objective
        raise NotImplementedError("ScoreVAE_ELBO computes its terms in terms()")
