r"""ScoreVAE's time-dependent Gaussian encoder as an amortized guide (ScoreVAE paper, Secs. 3.4-3.5)."""

from __future__ import annotations

import pyro.distributions as dist
from torch import Tensor, nn

from pyro_diffvi.guides.gaussian import GaussianGuide


class TimeDependentGaussianGuide(GaussianGuide):
    r"""The guide :math:`q_{0,\phi}(z|x)` of a time-dependent Gaussian encoder
    :math:`q_{t,\phi}(z|x_t) = \mathcal N(\mu_\phi(x_t, t), \mathrm{diag}\,\sigma_\phi(x_t, t)^2)` (Eq. 12).

    At :math:`t = 0` it is an ordinary :class:`~pyro_diffvi.guides.GaussianGuide` of the latent site (its draws,
    ``Trace_ELBO``, ``Predictive`` and the other guides' conventions are unchanged); :meth:`time_posterior`
    gives :math:`q_{t,\phi}(z|x_t)` at any time, whose score in :math:`x_t` is the latent posterior score of
    ScoreVAE's Bayes' rule. The model's :class:`~pyro_diffvi.distributions.DiffusionLikelihood` holds the same
    encoder (the model :math:`p_{\theta,\phi}(x|z)` depends on it), which is why the encoder is built first and
    passed to both; it is registered in Pyro's param store by this guide. Train with
    :class:`~pyro_diffvi.infer.ScoreVAE_ELBO`.

    :param model: the Pyro model.
    :param latent: the latent site (one).
    :param observed: the observed site (one) the encoder reads.
    :param encoder: the time-dependent encoder, called ``encoder(x, t) -> (loc, scale)`` and ``encoder(x)`` at
        :math:`t = 0` (e.g. :class:`~pyro_diffvi.nn.GaussianTimeEncoder` or
        :class:`~pyro_diffvi.nn.ConvGaussianTimeEncoder`).

    The other keyword parameters are those of :class:`~pyro_diffvi.guides.amortized.AmortizedGuide`
    (``observed_fn``, ``create_plates``, ``name``).

    Example:

    >>> import pyro, pyro.distributions as dist, torch
    >>> from pyro_diffvi.diffusion import ScoreModel
    >>> from pyro_diffvi.distributions import DiffusionLikelihood
    >>> from pyro_diffvi.guides import TimeDependentGaussianGuide
    >>> from pyro_diffvi.nn import GaussianTimeEncoder
    >>> score_model = ScoreModel((6,), network_options={"global_hidden_dims": [32]})    # ScoreModel.load(path)
    >>> encoder = GaussianTimeEncoder(6, 2, hidden_dims=(32,))
    >>> def model(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    ...         pyro.sample("x", DiffusionLikelihood(score_model, z, encoder=encoder), obs=x)
    >>> pyro.clear_param_store()
    >>> guide = TimeDependentGaussianGuide(model, "z", "x", encoder=encoder)
    >>> x = torch.randn(4, 6)
    >>> guide(x)["z"].shape
    torch.Size([4, 2])
    >>> guide.time_posterior(x, torch.full((4,), 0.5)).batch_shape   # q_t(z | x_t) at t = 0.5
    torch.Size([4])
    """

    def __init__(self, model, latent: str, observed: str, *, encoder: nn.Module, **kwargs) -> None:
        if not isinstance(encoder, nn.Module):
            raise TypeError(
                "encoder must be the time-dependent encoder module (e.g. pyro_diffvi.nn.GaussianTimeEncoder), shared "
                f"with the model's DiffusionLikelihood; got {type(encoder).__name__}"
            )
        if not isinstance(latent, str) or not isinstance(observed, str):
            raise ValueError("TimeDependentGaussianGuide covers one latent site and reads one observed site")
        for option in ("encoder_hidden_dims", "encoder_activation", "min_scale", "init_scale", "condition_on"):
            if option in kwargs:
                raise TypeError(f"{option} belongs to the encoder (or is not supported) here, not to the guide")
        super().__init__(model, latent, observed, encoder=encoder, **kwargs)

    def _build_posteriors(self) -> None:
        if self.context_dim is not None:
            raise ValueError("encoder(x) must return (loc, scale): the time-dependent Gaussian's parameters at t = 0")
        super()._build_posteriors()

    def time_posterior(self, x_t: Tensor, t: Tensor) -> dist.Normal:
        r""":math:`q_{t,\phi}(z|x_t)` as ``Normal(loc, scale).to_event(1)`` (the flattened latent).

        :param x_t: the noisy observed value, shaped like the observed site's.
        :param t: the times in :math:`[0, T]`, broadcast against the batch shape.
        """
        if not self._is_setup:
            raise RuntimeError(
                "TimeDependentGaussianGuide.time_posterior: call the guide once (or guide.setup(...)) first"
            )
        loc, scale = self.loc_scale(self.latent_names[0], self.encoder(x_t, t))
        return dist.Normal(loc, scale).to_event(1)
