"""DiffusionPosterior: the bound term against step-by-step Gaussian log densities; shapes; errors."""


import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import JitTrace_ELBO

from pyro_diffvi.diffusion import Denoiser, GaussianDiffusion
from pyro_diffvi.distributions import DiffusionPosterior
from pyro_diffvi.guides import DiffusionGuide


def _posterior(variance="beta", context_dim=3, batch=(4,), T=4):
    torch.manual_seed(0)
    net = Denoiser(
        2, context_dim=context_dim, time_dim=8, hidden_dims=(16,), learn_variance=variance == "learned"
    ).double()
    process = GaussianDiffusion(T, schedule="cosine", dtype=torch.float64)
    loc = torch.randn(batch + (2,), dtype=torch.float64)
    scale = torch.rand(batch + (2,), dtype=torch.float64) + 0.5
    ctx = torch.randn(batch + (context_dim,), dtype=torch.float64) if context_dim else None
    return DiffusionPosterior(loc, scale, net, process, ctx, variance=variance), net, process


@pytest.mark.parametrize("variance", ["beta", "posterior", "learned"])
def test_log_density_equals_explicit_trajectory_density(variance):
    q, net, process = _posterior(variance)
    T = process.num_steps
    noise = torch.randn((T + 1, 5, 4, 2), dtype=torch.float64)
    z, log_density = q.rsample_and_log_density((5,), noise=noise)
    ys = q.rsample_trajectory((5,), noise=noise)
    assert torch.equal(ys[0], z)
    # log q(y_T) + sum_t log q(y_{t-1}|y_t) - sum_t log r(y_t|y_{t-1}), each from its own Normal
    expected = dist.Normal(q.loc, q.scale).log_prob(ys[T]).sum(-1)
    betas, abar = process.betas, process.alphas_cumprod
    for t in range(T, 0, -1):
        out = net(ys[t], t, q.context)
        eps_hat = out[..., :2]
        mean = (ys[t] - betas[t - 1] / (1 - abar[t - 1]).sqrt() * eps_hat) / (1 - betas[t - 1]).sqrt()
        if variance == "beta":
            var = betas[t - 1].expand_as(mean)
        elif variance == "posterior":
            tt = max(t, 2)  # tilde-beta_1 = 0 is replaced by tilde-beta_2
            var = ((1 - abar[tt - 2]) / (1 - abar[tt - 1]) * betas[tt - 1]).expand_as(mean)
        else:
            tilde = (1 - abar[max(t, 2) - 2]) / (1 - abar[max(t, 2) - 1]) * betas[max(t, 2) - 1]
            log_beta = betas[t - 1].log()
            var = torch.exp(log_beta + torch.tanh(out[..., 2:]) * (log_beta - tilde.log()))
        expected = expected + dist.Normal(mean, var.sqrt()).log_prob(ys[t - 1]).sum(-1)
        expected = expected - dist.Normal((1 - betas[t - 1]).sqrt() * ys[t - 1], betas[t - 1].sqrt()).log_prob(
            ys[t]
        ).sum(-1)
    assert torch.allclose(log_density, expected, atol=1e-9)


def test_cached_log_prob_expand_and_reparameterization():
    q, _, _ = _posterior()
    z = q.rsample((3,))
    assert z.shape == (3, 4, 2) and q.log_prob(z).shape == (3, 4)
    with pytest.raises(ValueError, match="only defined for the sample"):
        q.log_prob(z.clone())
    big = q.expand((6, 4))
    assert big.batch_shape == (6, 4) and big.event_shape == (2,)
    draws = big.rsample()
    assert draws.shape == (6, 4, 2) and not torch.allclose(draws[0], draws[1])  # independent per row
    loc = q.loc.clone().requires_grad_()
    q2 = DiffusionPosterior(loc, q.scale, q.denoiser, q.process, q.context)
    q2.rsample().sum().backward()
    assert loc.grad is not None and loc.grad.abs().sum() > 0


def test_bad_arguments():
    q, net, process = _posterior()
    with pytest.raises(ValueError, match="variance must be one of"):
        DiffusionPosterior(q.loc, q.scale, net, process, q.context, variance="fixed")
    with pytest.raises(ValueError, match="learn_variance"):
        DiffusionPosterior(q.loc, q.scale, net, process, q.context, variance="learned")
    with pytest.raises(ValueError, match="trailing dimension 2"):
        DiffusionPosterior(q.loc[..., :1], q.scale[..., :1], net, process, q.context)
    with pytest.raises(ValueError, match="context must have trailing dimension 3"):
        DiffusionPosterior(q.loc, q.scale, net, process, q.context[..., :2])
    with pytest.raises(ValueError, match="noise must have shape"):
        q.rsample_and_log_density(noise=torch.zeros(2, 4, 2))


def _standardized(variance="learned", T=6, batch=(3,), seed=0):
    torch.manual_seed(seed)
    process = GaussianDiffusion(T, schedule="cosine", dtype=torch.float64)
    net = Denoiser(2, context_dim=3, time_dim=8, hidden_dims=(16,), learn_variance=variance == "learned",
                   skip=process.sqrt_one_minus_alphas_cumprod).double()
    loc = torch.randn(batch + (2,), dtype=torch.float64)
    scale = torch.rand(batch + (2,), dtype=torch.float64) + 0.5
    ctx = torch.randn(batch + (3,), dtype=torch.float64)
    return DiffusionPosterior(loc, scale, net, process, ctx, variance=variance, standardize=True), net, process


def test_standardized_chain_at_initialization_is_exactly_the_gaussian_head():
    # With the skip s_t = sqrt(1 - abar_t) and a zero network, each reverse step is
    # u_{t-1} = sqrt(alpha_t) u_t + sqrt(beta_t) eps: the stationary AR(1) chain of N(0, I), which is
    # reversible, so log q(u_{0:T}) - log r(u_{1:T}|u_0) = log N(u_0; 0, I) for every trajectory and
    # the bound term is exactly log N(z; loc, scale^2): the guide starts as the Gaussian guide.
    q, _, process = _standardized()
    noise = torch.randn((process.num_steps + 1, 5) + q.batch_shape + (2,), dtype=torch.float64)
    z, log_density = q.rsample_and_log_density((5,), noise=noise)
    expected = dist.Normal(q.loc, q.scale).log_prob(z).sum(-1)
    assert torch.allclose(log_density, expected, atol=1e-10)
    u = q.rsample_trajectory((5,), noise=noise)
    assert torch.allclose(z, q.loc + q.scale * u[0], atol=1e-12)


def test_standardized_bound_term_is_the_change_of_variables_of_the_chain():
    q, net, process = _standardized("learned")
    for p in net.parameters():  # move away from the exact start
        p.data.normal_(0, 0.3)
    noise = torch.randn((process.num_steps + 1, 4) + q.batch_shape + (2,), dtype=torch.float64)
    z, log_density = q.rsample_and_log_density((4,), noise=noise)
    u = q.rsample_trajectory((4,), noise=noise)
    T = process.num_steps
    expected = dist.Normal(0.0, 1.0).log_prob(u[T]).sum(-1) - q.scale.log().sum(-1)
    for t in range(T, 0, -1):
        eps_hat, v = net(u[t], t, q.context).split(2, dim=-1)
        mean = process.mean_from_eps(u[t], t, eps_hat)
        std = (0.5 * process.learned_log_variance(t, v)).exp()
        expected = expected + dist.Normal(mean, std).log_prob(u[t - 1]).sum(-1)
        expected = expected - dist.Normal(process.sqrt_alphas[t - 1] * u[t - 1], process.betas[t - 1].sqrt()).log_prob(
            u[t]
        ).sum(-1)
    assert torch.allclose(log_density, expected, atol=1e-9)


@pytest.mark.parametrize("standardize", [True, False])
def test_path_gradient_keeps_the_value_and_drops_only_the_score(standardize):
    torch.manual_seed(1)
    process = GaussianDiffusion(5, schedule="cosine", dtype=torch.float64)
    skip = process.sqrt_one_minus_alphas_cumprod if standardize else None
    net = Denoiser(2, context_dim=3, time_dim=8, hidden_dims=(16,), learn_variance=True, skip=skip).double()
    for p in net.parameters():
        p.data.normal_(0, 0.3)
    loc = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    scale = torch.rand(4, 2, dtype=torch.float64) + 0.5
    ctx = torch.randn(4, 3, dtype=torch.float64)
    noise = torch.randn(6, 4, 2, dtype=torch.float64)

    def bound_term(path_gradient):
        q = DiffusionPosterior(
            loc, scale, net, process, ctx, variance="learned", standardize=standardize, path_gradient=path_gradient
        )
        return q.rsample_and_log_density(noise=noise)

    (z, plain), (z2, path) = bound_term(False), bound_term(True)
    assert torch.equal(z, z2) and torch.allclose(plain, path, atol=1e-12)
    q = DiffusionPosterior(loc, scale, net, process, ctx, variance="learned", standardize=standardize)
    trajectory = q.rsample_trajectory(noise=noise)
    trajectory = trajectory.detach().requires_grad_()
    stopped = q._path_log_q(trajectory)  # the chain's density, differentiable in the trajectory only
    grads = torch.autograd.grad(stopped.sum(), [trajectory, *net.parameters()], allow_unused=True)
    assert grads[0] is not None and grads[0].abs().sum() > 0
    assert all(g is None for g in grads[1:])


def test_path_gradient_is_unbiased():
    # E_q[grad log p(z) - grad (log q - log r)] by both estimators, for a Gaussian target p: the
    # path-derivative estimator drops E_q[grad_phi log q_phi] = 0, so both means agree within their
    # Monte-Carlo error, and its variance is smaller.
    torch.manual_seed(2)
    process = GaussianDiffusion(4, schedule="cosine", dtype=torch.float64)
    net = Denoiser(2, context_dim=0, time_dim=8, hidden_dims=(16,), learn_variance=True,
                   skip=process.sqrt_one_minus_alphas_cumprod).double()
    for p in net.parameters():
        p.data.normal_(0, 0.2)
    params = list(net.parameters())
    loc, scale = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    target = dist.Normal(torch.tensor([0.5, -0.3], dtype=torch.float64), 0.8)
    n = 4000

    def batch_mean_gradients(path_gradient):
        """Gradients of the output layer's bias, each averaged over a batch of 500 draws (8 batches)."""
        torch.manual_seed(3)  # the same draws for both estimators
        rows = []
        for noise in torch.randn(n // 500, 5, 500, 2, dtype=torch.float64):
            q = DiffusionPosterior(
                loc, scale, net, process, None, variance="learned", standardize=True, path_gradient=path_gradient
            )
            z, log_density = q.rsample_and_log_density((500,), noise=noise)
            bound = target.log_prob(z).sum(-1) - log_density
            rows.append(torch.autograd.grad(bound.mean(), params[-1])[0])
        return torch.stack(rows)

    plain, path = batch_mean_gradients(False), batch_mean_gradients(True)
    diff = plain.mean(0) - path.mean(0)
    se = (plain.var(0) / plain.shape[0] + path.var(0) / path.shape[0]).sqrt()
    assert (diff.abs() < 4 * se + 1e-8).all(), (diff, se)
    assert path.var(0).sum() < plain.var(0).sum()


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning")  # Pyro's JitTrace_ELBO
def test_path_gradient_under_jit_names_the_option():
    # Issue 25 case 17: JitTrace_ELBO + DiffusionGuide raised torch's "The stateless API can't be used with Jitted
    # modules"; the path-derivative term is named with the fix, and path_gradient=False compiles.
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    x = torch.randn(5, 2)
    small = dict(num_steps=2, encoder_hidden_dims=(8,), denoiser_hidden_dims=(8,))
    guide = DiffusionGuide(model, "z", "x", **small)
    guide(x)
    message = "path_gradient=True .* cannot be compiled by torch.jit.* path_gradient=False"
    with pytest.raises(RuntimeError, match=message):
        JitTrace_ELBO().loss_and_grads(model, guide, x)
    pyro.clear_param_store()
    guide = DiffusionGuide(model, "z", "x", path_gradient=False, **small)
    guide(x)
    assert math.isfinite(JitTrace_ELBO().loss_and_grads(model, guide, x))
