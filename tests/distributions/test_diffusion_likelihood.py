"""DiffusionLikelihood: Bayes' rule for scores on a Gaussian case where all three scores are known, decoding draws
the exact conditional, the frozen score model gets no gradient, and bad input gets clear errors."""

import math

import pytest
import torch

from pyro_diffvi.diffusion import ScoreModel
from pyro_diffvi.distributions import DiffusionLikelihood
from pyro_diffvi.nn import GaussianTimeEncoder
from tests.score_vae_case import DTYPE, LinearGaussianCase


def test_combined_score_is_the_conditional_score_on_a_gaussian_case():
    # grad log p_t(x_t | z) = grad log p_t(x_t) + grad_{x_t} log p_t(z | x_t), each known in closed form
    case = LinearGaussianCase()
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(50, case.dim, generator=g, dtype=DTYPE)
    z = torch.randn(50, case.latent_dim, generator=g, dtype=DTYPE)
    t = torch.rand(50, generator=g, dtype=DTYPE).clamp(min=1e-3)
    likelihood = DiffusionLikelihood(case.score_model(), z, encoder=case.encoder())
    _, sigma = case.sde.marginal_coefficients(t)
    combined = -likelihood.noise_fn(z)(x_t, t) / sigma[:, None]
    exact = case.conditional_score(x_t, z, t)
    assert torch.allclose(combined, exact, rtol=1e-8, atol=1e-8)
    assert not torch.allclose(case.marginal_score(x_t, t), exact, atol=0.1)  # the encoder's term matters


@pytest.mark.parametrize("sampler", ["sde", "ode"])
def test_decoding_with_exact_scores_draws_the_conditional(sampler):
    # x | z ~ N(W z + b, sx^2 I) for the linear-Gaussian model, drawn through the combined score
    case = LinearGaussianCase()
    torch.manual_seed(0)
    z = torch.tensor([[0.7, -1.2]], dtype=DTYPE).expand(8000, -1)
    likelihood = DiffusionLikelihood(case.score_model(), z, encoder=case.encoder(), sampler=sampler, num_steps=300)
    x = likelihood.sample()
    mean = z[0] @ case.W.T + case.b
    n = x.shape[0]
    assert ((x.mean(0) - mean).abs() < 4 * case.sx / math.sqrt(n) + 0.01).all()
    assert ((x.std(0) - case.sx).abs() < 4 * case.sx / math.sqrt(2 * n) + 0.01).all()


def test_frozen_score_model_gets_no_gradient_and_the_encoder_does():
    torch.manual_seed(0)
    score_model = ScoreModel((6,), network_options={"global_hidden_dims": [16]})
    encoder = GaussianTimeEncoder(6, 2, hidden_dims=(16,))
    z = torch.randn(4, 2, requires_grad=True)
    DiffusionLikelihood(score_model, z, encoder=encoder).log_prob(torch.randn(4, 6)).sum().backward()
    assert all(p.grad is None for p in score_model.parameters())
    assert all(p.grad is not None for p in encoder.parameters()) and z.grad is not None
    # DiffDecoder: a conditional score model is trained
    conditional = ScoreModel((6,), context_dim=2, network_options={"global_hidden_dims": [16]})
    DiffusionLikelihood(conditional, z).log_prob(torch.randn(4, 6)).sum().backward()
    assert all(p.grad is not None for p in conditional.parameters())


def test_shapes_expand_and_particles():
    case = LinearGaussianCase()
    likelihood = DiffusionLikelihood(case.score_model(), torch.zeros(3, 5, 2, dtype=DTYPE), encoder=case.encoder(),
                                     num_steps=3)
    assert likelihood.batch_shape == (3, 5) and likelihood.event_shape == (4,)
    x = torch.randn(5, 4, dtype=DTYPE)  # data broadcast against particles of z
    assert likelihood.log_prob(x).shape == (3, 5)
    assert likelihood.sample((2,)).shape == (2, 3, 5, 4)
    assert likelihood.expand((7, 3, 5)).batch_shape == (7, 3, 5)
    assert set(likelihood.bound_terms(x)) == {"prior", "divergence", "dsm", "truncation"}


def test_bad_input_gets_clear_errors():
    score_model = ScoreModel((6,), network_options={"global_hidden_dims": [8]})
    encoder = GaussianTimeEncoder(6, 2, hidden_dims=(8,))
    likelihood = DiffusionLikelihood(score_model, torch.zeros(4, 2), encoder=encoder)
    with pytest.raises(ValueError, match=r"observed x must have shape batch_shape \+ \(6,\), the data shape"):
        likelihood.log_prob(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="non-finite"):
        likelihood.log_prob(torch.full((4, 6), float("inf")))
    with pytest.raises(ValueError, match="encoder is required with an unconditional score model"):
        DiffusionLikelihood(score_model, torch.zeros(4, 2))
    conditional = ScoreModel((6,), context_dim=2, network_options={"global_hidden_dims": [8]})
    with pytest.raises(ValueError, match="encoder must be None with a conditional score model"):
        DiffusionLikelihood(conditional, torch.zeros(4, 2), encoder=encoder)
    with pytest.raises(ValueError, match="context_dim=2, but z has width 3"):
        DiffusionLikelihood(conditional, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="gaussian_skip=False"):
        DiffusionLikelihood(score_model, torch.zeros(4, 2), encoder=encoder, corrector=conditional)
    with pytest.raises(TypeError, match="ScoreModel"):
        DiffusionLikelihood(torch.nn.Linear(6, 6), torch.zeros(4, 2), encoder=encoder)
    with pytest.raises(ValueError, match="sampler must be one of"):
        DiffusionLikelihood(score_model, torch.zeros(4, 2), encoder=encoder, sampler="ddim")
