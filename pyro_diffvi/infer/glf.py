r"""Generative Latent Flow (GLF; Xiao, Yan & Amit 2019; Ch. 3 of Xiao 2022): a deterministic auto-encoder
whose latent codes are modelled by a normalizing-flow prior.

With an encoder :math:`E_\phi`, a decoder :math:`G_\theta` and a flow prior :math:`p_\eta`
(:class:`~pyro_diffvi.priors.FlowPrior`, Eq. 3.3), the GLF loss of a data point is (Eq. 3.7)

.. math::

    \mathcal L^{\mathrm{GLF}}(x) = \beta\, \mathcal L_{\mathrm{recon}}(x, G_\theta(E_\phi(x)))
        + \mathcal L_{\mathrm{NLL}}(\mathrm{sg}[E_\phi(x)]),
    \qquad
    \mathcal L_{\mathrm{NLL}}(z) = -\log p_0(f_\eta(z)) - \log\Big|\det\frac{\partial f_\eta(z)}{\partial z}\Big|
    \;\; \text{(Eq. 3.6)},

with :math:`\mathrm{sg}` the stop-gradient. In Pyro terms :math:`\mathcal L_{\mathrm{recon}} = -\log p_\theta(x|z)`
is the negative log-likelihood of the model's observed sites at the code :math:`z = E_\phi(x)` (a
Gaussian likelihood gives the squared error up to a constant) and :math:`\mathcal L_{\mathrm{NLL}}` is
the negative log-density of the model's latent sites (the prior) at the **detached** code. The two
terms update disjoint parameters: the reconstruction trains the encoder and decoder, the NLL trains the
flow only (maximum likelihood on the current codes), so :math:`\beta` only rescales the auto-encoder's
gradient.

``stop_gradient=False`` gives the *regularized GLF* of Eq. 3.5, in which the NLL also reaches the
encoder. It is **unstable** (Sec. 3.3.2 and 3.4.2 of the dissertation): nothing fixes the codes' scale,
and shrinking them inflates :math:`\log|\det \partial f/\partial z|` without bound, so the NLL term
can dominate and drive the codes towards zero; it is provided for comparison only. With
``stop_gradient=False`` and a :class:`~pyro_diffvi.guides.EncoderGuide`, the loss is exactly the negative of
:class:`~pyro.infer.Trace_ELBO`'s MAP objective :math:`\beta \log p(x|z) + \log p(z)` at :math:`z = E_\phi(x)`.

Sampling the trained model: :math:`u \sim \mathcal N(0, I)`, :math:`z = f_\eta^{-1}(u)`, :math:`x = G_\theta(z)`,
i.e. ``prior().sample()`` and the decoder (or the model run with ``poutine.uncondition``).

References

- Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation, University
  of Chicago, 2022 (Ch. 3, Eqs. 3.3-3.7; the text's "Eq. 3.2/3.6" for the regularized GLF means Eq. 3.5).
- Z. Xiao, Q. Yan, Y. Amit. *Generative Latent Flow*. arXiv:1905.10485, 2019.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer.util import torch_item
from pyro.poutine.util import prune_subsample_sites
from torch import Tensor

from pyro_diffvi.infer.guard import GuardedObjective, check_on_nonfinite
from pyro_diffvi.util import check_positive_float

__all__ = ["GLFLoss"]


def _point_mass(fn) -> bool:
    """Whether a guide site's distribution is a point mass (a Delta, possibly wrapped)."""
    while True:
        if isinstance(fn, dist.Delta):
            return True
        base = getattr(fn, "base_dist", None)
        if base is None:
            return False
        fn = base


class GLFLoss(GuardedObjective):
    r"""The Generative Latent Flow objective (dissertation Eq. 3.7; Xiao, Yan & Amit 2019, Eq. 4):

    .. math::

        \mathcal L^{\mathrm{GLF}} = \sum_n \Big[-\beta \log p_\theta(x_n | z_n)
            - \log p_\eta(\mathrm{sg}[z_n])\Big], \qquad z_n = E_\phi(x_n),

    where :math:`-\log p_\eta` is :math:`\mathcal L_{\mathrm{NLL}}` of Eq. 3.6 (for a
    :class:`~pyro_diffvi.priors.FlowPrior`) and the sum carries the plates' scales (minibatches are
    scaled to the full data set as in Pyro's ELBOs). ``stop_gradient=False`` is the regularized GLF of
    Eq. 3.5 (**unstable**: the codes may shrink to inflate the flow's log-determinant; see the module
    docstring).

    The guide must emit every latent site as a point mass (:class:`~pyro_diffvi.guides.EncoderGuide`, or any guide whose
    sites are :class:`~pyro.distributions.Delta`); the model's observed sites form the reconstruction
    term and its latent sites (the prior) the NLL term. The prior may be any distribution with a
    normalized ``log_prob``; with a fixed :math:`\mathcal N(0, I)` prior the loss is that of a
    regularized auto-encoder. The value of :meth:`loss` is the objective (not a negative ELBO); its
    terms of the last call are in :attr:`last_terms` (``"reconstruction"``
    :math:`= \sum -\log p(x|z)` unweighted, and ``"nll"``).

    :param reconstruction_weight: weight :math:`\beta > 0` of the reconstruction term.
    :param stop_gradient: detach the codes in the NLL term (Eq. 3.7, default) or not (Eq. 3.5).
    :param on_nonfinite: ``"raise"`` a :class:`~pyro_diffvi.infer.DivergenceError` on a non-finite term
        or gradient, or ``"skip"`` the step (see :mod:`pyro_diffvi.infer.guard`).

    Example:

    >>> import pyro, pyro.distributions as dist, torch
    >>> from pyro.infer import SVI
    >>> from pyro.optim import Adam
    >>> from pyro_diffvi.priors import FlowPrior
    >>> from pyro_diffvi.guides import EncoderGuide
    >>> from pyro_diffvi.infer import GLFLoss
    >>> pyro.clear_param_store()
    >>> prior = FlowPrior(2, num_transforms=2, hidden_dims=(16, 16))
    >>> decoder = torch.nn.Linear(2, 3)
    >>> def model(x):
    ...     pyro.module("decoder", decoder)
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", prior())
    ...         pyro.sample("x", dist.Normal(decoder(z), 0.1).to_event(1), obs=x)
    >>> guide = EncoderGuide(model, "z", "x", encoder_hidden_dims=(16,))
    >>> objective = GLFLoss(reconstruction_weight=1.0)
    >>> svi = SVI(model, guide, Adam({"lr": 1e-2}), objective)
    >>> loss = svi.step(torch.randn(8, 3))
    >>> sorted(objective.last_terms)
    ['nll', 'reconstruction']
    """

    def __init__(
        self, *, reconstruction_weight: float = 1.0, stop_gradient: bool = True, on_nonfinite: str = "raise"
    ) -> None:
        super().__init__(num_particles=1)
        self.reconstruction_weight = check_positive_float("reconstruction_weight", reconstruction_weight)
        if not isinstance(stop_gradient, bool):
            raise TypeError(f"stop_gradient must be a bool, got {type(stop_gradient).__name__}")
        self.stop_gradient = stop_gradient
        self.on_nonfinite = check_on_nonfinite(on_nonfinite)
        self.last_terms: dict[str, float] = {}

    def terms(self, model: Callable, guide: Callable, *args, **kwargs) -> dict[str, Tensor]:
        r"""The two terms as differentiable tensors: ``"reconstruction"`` :math:`\sum_n -\log p_\theta(x_n|z_n)`
        (unweighted) and ``"nll"`` :math:`\sum_n -\log p_\eta(z_n)` (at the detached codes when
        ``stop_gradient``); the loss is ``reconstruction_weight * reconstruction + nll``.

        :param model: the Pyro model.
        :param guide: a guide emitting point masses (:class:`~pyro_diffvi.guides.EncoderGuide`).
        """
        full_guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)  # replays subsample indices too
        model_trace = prune_subsample_sites(
            poutine.trace(poutine.replay(model, trace=full_guide_trace)).get_trace(*args, **kwargs)
        )
        guide_trace = prune_subsample_sites(full_guide_trace)
        latent = []
        for name, site in guide_trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"] or site["infer"].get("is_auxiliary"):
                continue
            if not _point_mass(site["fn"]):
                raise ValueError(
                    f"GLFLoss needs a deterministic encoder: the guide's site '{name}' is a "
                    f"{type(site['fn']).__name__}, not a point mass (use pyro_diffvi.guides.EncoderGuide)"
                )
            latent.append(name)
        reconstruction, nll = 0.0, 0.0
        observed = False
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample":
                continue
            if site["is_observed"]:
                observed = True
                log_p = site["fn"].log_prob(site["value"])
                reconstruction = reconstruction - scale_and_mask(log_p, site["scale"], site["mask"]).sum()
            elif name in latent:
                value = site["value"].detach() if self.stop_gradient else site["value"]
                log_p = site["fn"].log_prob(value)
                nll = nll - scale_and_mask(log_p, site["scale"], site["mask"]).sum()
            else:
                raise ValueError(f"GLFLoss: the model's latent site '{name}' is not sampled by the guide")
        if not observed:
            raise ValueError("GLFLoss: the model has no observed sample site: nothing to reconstruct")
        return {"reconstruction": torch.as_tensor(reconstruction), "nll": torch.as_tensor(nll)}

    def _loss_and_terms(self, model, guide, args, kwargs) -> tuple[Tensor, dict[str, Tensor]]:
        nan = torch.tensor(float("nan"))
        terms = self._guarded("nll", self.terms, model, guide, *args, nan={"reconstruction": nan, "nll": nan}, **kwargs)
        self.last_terms = {k: torch_item(v) for k, v in terms.items()}
        return self.reconstruction_weight * terms["reconstruction"] + terms["nll"], terms

    def _get_trace(self, model, guide, args, kwargs):  # ELBO's abstract hook; not used by this objective
        raise NotImplementedError("GLFLoss computes its terms in terms()")
