r"""A deterministic amortized encoder as a guide, :math:`z = E_\phi(x)` (a point mass per latent site): the encoder of
the Generative Latent Flow (Xiao, Yan & Amit 2019; Ch. 3 of Xiao 2022), trained with
:class:`~pyro_diffvi.infer.GLFLoss`.

References: Z. Xiao. *Designing Deep Generative Models with Symbiotic Composition*. PhD dissertation, University of
Chicago, 2022 (Ch. 3). Z. Xiao, Q. Yan, Y. Amit. *Generative Latent Flow*. arXiv:1905.10485, 2019.
"""

from __future__ import annotations

import pyro.distributions as dist
from torch import Tensor, nn

from pyro_diffvi.guides.amortized import AmortizedGuide
from pyro_diffvi.guides.structure import is_unconstrained

__all__ = ["EncoderGuide"]


class EncoderGuide(AmortizedGuide):
    r"""Deterministic amortized encoder :math:`z = E_\phi(x)`: each latent site is a point mass
    :math:`q_\phi(z|x) = \delta(z - E_\phi(x))` (a :class:`~pyro.distributions.Delta`), the encoder of
    the Generative Latent Flow (dissertation Sec. 3.3.2, Eqs. 3.5 and 3.7).

    A linear head per latent site maps the encoder's context to the code. It is an
    :class:`~pyro_diffvi.guides.amortized.AmortizedGuide` rather than Pyro's ``AutoDelta``: ``AutoDelta``
    learns one free point per data point (not amortized, no code for a new image), while GLF needs an
    encoder network that maps any :math:`x` to its code; the amortized machinery (plates, subsampling,
    default MLP encoder, ``AutoGuideList``) is shared with every guide of :mod:`pyro_diffvi.guides`.

    Its ``log_prob`` is zero at the code, so with :class:`~pyro.infer.Trace_ELBO` it gives the
    MAP/regularized objective :math:`\log p(x|z) + \log p(z)` (Eq. 3.5 with :math:`\beta = 1`, not a bound on
    :math:`\log p(x)`); train it with :class:`~pyro_diffvi.infer.GLFLoss`. Latent sites must be unconstrained
    (real-valued).

    Example:

    >>> import pyro, pyro.distributions as dist, torch
    >>> from pyro_diffvi.guides import EncoderGuide
    >>> def model(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    ...         pyro.sample("x", dist.Normal(z @ torch.ones(2, 3), 0.5).to_event(1), obs=x)
    >>> pyro.clear_param_store()
    >>> guide = EncoderGuide(model, "z", "x", encoder_hidden_dims=(16,))
    >>> x = torch.randn(4, 3)
    >>> torch.equal(guide(x)["z"], guide(x)["z"])   # deterministic
    True
    >>> guide.encode(x).shape
    torch.Size([4, 2])

    :param model: the Pyro model.
    :param latent: name(s) of the latent sample site(s).
    :param observed: name(s) of the observed site(s) the encoder reads.

    The other (keyword) parameters are those of :class:`~pyro_diffvi.guides.amortized.AmortizedGuide`.
    """

    def _build_posteriors(self) -> None:
        self._require_context_tensor()
        for name in self.latent_names:
            if not is_unconstrained(self._latent_supports[name]):
                raise ValueError(
                    f"EncoderGuide: latent site '{name}' is constrained (support {self._latent_supports[name]}); "
                    "a deterministic encoder emits real-valued codes: give the site a real support"
                )
        self.heads = nn.ModuleList(
            self._like_encoder(nn.Linear(self.context_dim, self.latent_dims[name])) for name in self.latent_names
        )

    def posterior(self, name: str, context: Tensor) -> dist.Delta:
        """The point mass at the code of latent ``name``: ``Delta(head(context), event_dim=1)``."""
        return dist.Delta(self.heads[self.latent_names.index(name)](context), event_dim=1)

    def encode(self, *observed_values: Tensor, name: str | None = None) -> Tensor:
        r"""The code :math:`E_\phi(x)` of latent ``name`` (default: the only latent site), flattened, for
        observed values of shapes ``batch_shape + event_shape`` (the guide must be set up: call it once).

        :param observed_values: the observed values, in the order of ``observed``.
        :param name: the latent site.
        """
        if not self._is_setup:
            raise RuntimeError("EncoderGuide.encode: call the guide once (or guide.setup(*model_args)) first")
        if name is None:
            if len(self.latent_names) != 1:
                raise ValueError(f"name is required: the guide has latent sites {self.latent_names}")
            name = self.latent_names[0]
        if name not in self.latent_names:
            raise ValueError(f"name must be one of the latent sites {self.latent_names}, got {name!r}")
        return self.posterior(name, self.context(*observed_values)).mean
