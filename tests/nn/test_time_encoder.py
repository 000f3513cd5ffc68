"""Time-dependent Gaussian encoders and the latent posterior score against finite differences."""

import pytest
import torch

from pyro_diffvi.nn import ConvGaussianTimeEncoder, GaussianTimeEncoder, encoder_score
from pyro_diffvi.nn.time_encoder import gaussian_log_prob


@pytest.mark.parametrize("make", [lambda: GaussianTimeEncoder(12, 3, hidden_dims=(16,)),
                                  lambda: ConvGaussianTimeEncoder((1, 4, 3), 3, channels=(4,))])
def test_encoder_score_equals_finite_differences(make):
    torch.manual_seed(0)
    encoder = make().double()
    f64 = torch.float64
    x, t, z = torch.rand(5, 12, dtype=f64), torch.rand(5, dtype=f64), torch.randn(5, 3, dtype=f64)
    score = encoder_score(encoder, z, x, t)
    h, fd = 1e-6, torch.zeros_like(x)
    for j in range(12):
        e = torch.zeros_like(x)
        e[:, j] = h
        fd[:, j] = (gaussian_log_prob(z, *encoder(x + e, t)) - gaussian_log_prob(z, *encoder(x - e, t))) / (2 * h)
    assert torch.allclose(score, fd, atol=1e-6)
    assert not score.requires_grad
    trained = encoder_score(encoder, z, x, t, create_graph=True)
    trained.pow(2).sum().backward()  # a loss of the score reaches the encoder's parameters
    assert all(p.grad is not None for p in encoder.parameters())


def test_time_matters_and_none_is_zero():
    encoder = GaussianTimeEncoder(6, 2, hidden_dims=(16,), init_scale=0.5)
    with torch.no_grad():
        encoder.net.net[-1].weight.normal_()
    x = torch.rand(4, 6)
    loc0, scale0 = encoder(x)
    assert torch.equal(loc0, encoder(x, 0.0)[0]) and not torch.allclose(loc0, encoder(x, 0.7)[0])
    fresh = GaussianTimeEncoder(6, 2, init_scale=0.5, min_scale=1e-3)
    assert torch.allclose(fresh(x)[1], torch.full((4, 2), 0.5), atol=0.1)  # the initial scale
    with pytest.raises(ValueError, match=r"x must have shape batch_shape \+ \(6,\)"):
        encoder(torch.rand(4, 5))
    with pytest.raises(ValueError, match="init_scale must exceed"):
        GaussianTimeEncoder(6, 2, init_scale=0.0)


def test_conv_encoder_reads_flat_images_of_any_batch_shape():
    encoder = ConvGaussianTimeEncoder((1, 28, 28), 5, channels=(4, 8, 8))
    loc, scale = encoder(torch.rand(2, 3, 784), torch.rand(2, 3))
    assert loc.shape == scale.shape == (2, 3, 5) and bool((scale > 0).all())
    with pytest.raises(ValueError, match="image_shape"):
        ConvGaussianTimeEncoder((28, 28), 5)


def test_encoder_ignoring_x_has_zero_score():
    z, x = torch.randn(3, 2), torch.randn(3, 4)
    assert torch.equal(encoder_score(lambda x, t: (torch.zeros(3, 2), torch.ones(3, 2)), z, x, torch.zeros(3)),
                       torch.zeros(3, 4))
