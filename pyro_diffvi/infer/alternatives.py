r"""The terms of a :class:`~pyro_diffvi.guides.DiffusionGuide`'s posteriors that the guide does not emit: the model's
log joint at other draws of its latents (all of them in one vectorized model call), and from it the head's bound,
the chain's bound and importance weights, and the chain's lead over the head."""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

__all__ = ["AlternativeTerms", "alternative_terms", "local_log_joint", "plate_nesting"]

# The model's parameters get this fraction of the gradient of a term at a draw the guide did not emit, so that
# they learn from the emitted posterior alone; a power of two, so that rescaling the draws' gradient is exact.
MODEL_GRADIENT_SHARE = 2.0**-16


class _ScaleGradient(torch.autograd.Function):
    """The identity, whose backward pass multiplies the gradient by ``factor``."""

    @staticmethod
    def forward(ctx, value: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.factor, None


def plate_nesting(trace: poutine.Trace) -> int:
    """The number of batch dimensions the vectorized plates of ``trace``'s sample sites occupy."""
    dims = [-frame.dim for site in trace.nodes.values() if site["type"] == "sample"
            for frame in site["cond_indep_stack"] if frame.vectorized]
    return max(dims, default=0)


def local_log_joint(
    model, guide_trace: poutine.Trace, values: dict[str, torch.Tensor], args: tuple, kwargs: dict, *,
    max_plate_nesting: int, batch_shape: torch.Size,
) -> torch.Tensor:
    r""":math:`\log p(x, z_k, \text{rest})` per particle and per datum, for ``P`` alternative values :math:`z_k` of some
    latent sites (``values``, each with a leading particle dimension of size ``P``), the other latent sites
    held at their (detached) values in ``guide_trace``: one call of the model in a particle plate left of its
    plates, replayed against ``guide_trace`` (so a subsampled plate keeps its indices).

    Only the model sites inside every plate of the alternative sites enter (each summed over its other plates,
    unscaled: subsampling scales are the caller's); a site outside them must not depend on the alternative
    values, which is checked. The model's parameters receive :data:`MODEL_GRADIENT_SHARE` of this term's
    gradient; the gradient with respect to ``values`` is exact.

    :param model: the Pyro model.
    :param guide_trace: a trace of the guide for the same arguments (its sample sites give the other latents'
        values and the plates' subsample indices).
    :param values: alternative values of some latent sites, ``(P,) + batch_shape + event_shape`` each.
    :param args: the model's arguments.
    :param kwargs: the model's keyword arguments.
    :param max_plate_nesting: the model's plate nesting (the particle plate goes left of it).
    :param batch_shape: the alternative sites' batch shape (their plates' sizes).
    :return: a tensor of shape ``(P,) + batch_shape``.
    """
    share = MODEL_GRADIENT_SHARE
    num = next(iter(values.values())).shape[0]
    left = (1,) * (max_plate_nesting - len(batch_shape))  # the particle plate lies left of every model plate
    values = {name: value.reshape((num,) + left + value.shape[1:]) for name, value in values.items()}
    replayed = poutine.Trace()
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample":
            continue
        value = _ScaleGradient.apply(values[name], 1.0 / share) if name in values else site["value"].detach()
        replayed.add_node(name, **{**site, "value": value})
    with pyro.plate("_alternatives", num, dim=-(max_plate_nesting + 1)):
        trace = poutine.trace(poutine.replay(model, trace=replayed)).get_trace(*args, **kwargs)
    plates = {frame.name for frame in trace.nodes[next(iter(values))]["cond_indep_stack"] if frame.vectorized}
    plates.discard("_alternatives")
    total = 0.0
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        log_prob = site["fn"].log_prob(site["value"])
        if site["mask"] is not None and site["mask"] is not True:
            log_prob = log_prob * site["mask"]
        frames = {f.name: f.dim for f in site["cond_indep_stack"] if f.vectorized and f.name != "_alternatives"}
        if not plates <= set(frames):
            _check_constant(name, log_prob, num)
            continue
        log_prob = log_prob.reshape((1,) * (max_plate_nesting + 1 - log_prob.dim()) + log_prob.shape)
        for plate, dim in frames.items():
            if plate not in plates:
                log_prob = log_prob.sum(dim, keepdim=True)
        total = total + log_prob
    total = total.reshape((num,) + batch_shape)
    return share * total + (1.0 - share) * total.detach()


def _check_constant(name: str, log_prob: torch.Tensor, num: int) -> None:
    flat = log_prob.detach().reshape(num, -1) if log_prob.dim() and log_prob.shape[0] == num else None
    if flat is not None and not torch.allclose(flat, flat[:1].expand_as(flat)):
        raise ValueError(
            f"model site '{name}' lies outside the plates of the diffusion guide's latents but depends on them: "
            "the reweighted and comparison terms of DDVI_ELBO need the latents' children inside their plates; "
            "use DDVI_ELBO(rws_weight=0, chain_elbo_weight=0) and DiffusionGuide(selection='chain')"
        )


@dataclass
class AlternativeTerms:
    r"""A diffusion guide part's terms from its :class:`~pyro_diffvi.guides.Alternatives` (sums over the data, with
    the data plate's scale).

    :ivar head_elbo: the Gaussian head's ELBO estimate (differentiable unless the head is emitted).
    :ivar chain_elbo: the trained chain's Markovian ELBO estimate, the average over its ``K`` draws.
    :ivar reweighted_sleep: the chain's reweighted wake-sleep loss at its ``K`` draws.
    :ivar lead: the emitted chain's (averaged, if averaging) ELBO minus the head's, per data point (a float).
    :ivar effective_sample_size: of the ``K`` importance weights, averaged over the data (a float).
    """

    head_elbo: torch.Tensor
    chain_elbo: torch.Tensor
    reweighted_sleep: torch.Tensor
    lead: float
    effective_sample_size: float


def alternative_terms(model, guide_trace: poutine.Trace, part, alternatives, args: tuple, kwargs: dict, *,
                      max_plate_nesting: int) -> AlternativeTerms:
    r"""The terms of ``part`` (a :class:`~pyro_diffvi.guides.DiffusionGuide`) at its ``alternatives``: the model's
    log joint at the head's draw, the averaged chain's draw and the chain's ``K`` draws in one model call
    (:func:`local_log_joint`), then

    * the head's bound :math:`\log p(x, z_h) - \log q_h(z_h|x)`;
    * the chain's log weights :math:`\log w_k = \log p(x, z_k) - [\log q(y^k_{0:T}|x) - \log r(y^k_{1:T}|z_k)]`,
      whose average over :math:`k` is its Markovian bound and whose self-normalized exponentials weight the
      reweighted sleep loss;
    * the lead of the emitted chain over the head, per data point.
    """
    names = part.latent_names
    first = alternatives.chain[names[0]][0]
    num = first.shape[0]
    batch_shape = alternatives.chain[names[0]][1].shape[1:]
    groups = [("head", alternatives.head)]
    if alternatives.averaged is not None:
        groups.append(("averaged", alternatives.averaged))
    groups.append(("chain", alternatives.chain))
    values = {
        name: torch.cat([group[name][0] if key == "chain" else group[name][0].unsqueeze(0) for key, group in groups])
        for name in names
    }
    log_joint = local_log_joint(
        model, guide_trace, values, args, kwargs, max_plate_nesting=max_plate_nesting, batch_shape=batch_shape
    )
    scale = guide_trace.nodes[names[0]]["scale"]
    log_q = {key: sum(group[name][1] for name in names) for key, group in groups}
    head = log_joint[0] - log_q["head"]
    chain = log_joint[-num:] - log_q["chain"]
    emitted = log_joint[1].detach() - log_q["averaged"] if alternatives.averaged is not None else chain.mean(0)
    weights = torch.softmax(chain.detach(), dim=0)
    reweighted = part.reweighted_sleep_loss(
        {name: alternatives.chain[name][0] for name in names}, weights, alternatives.context, scale
    )
    effective = (1.0 / weights.pow(2).sum(0)).mean()
    lead = (emitted.detach() - head.detach()).mean()
    return AlternativeTerms(
        head_elbo=(head * scale).sum(),
        chain_elbo=(chain.mean(0) * scale).sum(),
        reweighted_sleep=reweighted,
        lead=float(lead),
        effective_sample_size=float(effective),
    )
