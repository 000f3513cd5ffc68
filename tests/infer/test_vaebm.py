"""VAEBM (Xiao (2022), Ch. 4): quadrature densities, Langevin in the noise space, the contrastive gradient.

Ground truth: a linear-Gaussian VAE (x = A z + b + s eps_x) tilted by a quadratic energy
f(x) = (x - m)^T K (x - m) / 2 is Gaussian in closed form:
p_vae = N(b, C), C = A A^T + s^2 I; Z = |I + C K|^{-1/2} exp(-(b - m)^T (C + K^{-1})^{-1} (b - m) / 2);
the tilted density is N(mu*, P^{-1}) with P = C^{-1} + K, mu* = P^{-1} (C^{-1} b + K m).
"""


import pytest
import torch
from torch import nn

from pyro_diffvi.distributions import VAEBM
from pyro_diffvi.infer import VAEBMContrastiveLoss
from tests.distributions.test_vaebm import vaebm


def test_contrastive_gradient_is_the_difference_of_mean_energy_gradients():
    torch.manual_seed(2)
    energy = nn.Sequential(nn.Linear(2, 8), nn.SiLU(), nn.Linear(8, 1)).double()
    model = vaebm(energy)
    x_pos = torch.randn(7, 2, dtype=torch.float64)
    x_neg = torch.randn(5, 2, dtype=torch.float64) + 1.0
    params = list(energy.parameters())
    loss = VAEBMContrastiveLoss(energy_reg_weight=0.0).loss_on_samples(model, x_pos, x_neg)
    got = torch.autograd.grad(loss, params)

    def mean_grad(xs):  # one sample at a time, by hand
        total = [torch.zeros_like(p) for p in params]
        for x in xs:
            for t, g in zip(total, torch.autograd.grad(energy(x[None]).squeeze(), params)):
                t += g / len(xs)
        return total

    expected = [gp - gn for gp, gn in zip(mean_grad(x_pos), mean_grad(x_neg))]  # minus Eq. 4.17
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, atol=1e-12)
    model.zero_grad()
    VAEBMContrastiveLoss(num_steps=3, step_size=0.01, energy_reg_weight=0.1)(model, x_pos).backward()
    assert all(p.grad is None for p in model.decoder.parameters())  # the VAE is frozen
    assert all(p.grad is not None for p in energy.parameters())


def test_persistent_chains_store_the_noise():
    model = vaebm()
    objective = VAEBMContrastiveLoss(num_steps=2, step_size=0.01, persistent=True, buffer_size=64)
    objective(model, torch.zeros(16, 2, dtype=torch.float64))
    assert len(objective.buffer) == 16 and objective.buffer.sample(3).shape == (3, 4)
    assert objective.last_noise.shape == (16, 4)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="latent_dim"):
        VAEBM(nn.Linear(2, 4), nn.Linear(2, 1), latent_dim=0, obs_dim=2)
    with pytest.raises(ValueError, match="decoder must map"):
        VAEBM(nn.Linear(2, 3), nn.Linear(2, 1), latent_dim=2, obs_dim=2).decode(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="latent_dim=3"):
        VAEBM(nn.Linear(3, 4), nn.Linear(2, 1), latent_dim=3, obs_dim=2).vae_log_prob(torch.zeros(1, 2))
    with pytest.raises(TypeError, match="needs a VAEBM"):
        VAEBMContrastiveLoss()(lambda x: x.sum(-1), torch.zeros(4, 2))
