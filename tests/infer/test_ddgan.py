"""DDGANLoss against ground truth: the losses and the R1 penalty by hand, the generator's gradient at the optimal
discriminator of a 1-D Gaussian problem (Gauss-Hermite quadrature of its closed-form integrand), the EMA by
hand, resume bit for bit, the divergence guard and the input errors."""

import io
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from pyro_diffvi.diffusion import vp_beta_schedule
from pyro_diffvi.errors import DivergenceError
from pyro_diffvi.infer import DDGANLoss
from pyro_diffvi.nn import DenoisingDiscriminator, DenoisingGenerator
from pyro_diffvi.util import set_seed
from tests.common import flat_state, state_differences


def softplus(x: torch.Tensor) -> torch.Tensor:
    return torch.log1p(torch.exp(x))  # -log(1 - sigmoid(x)), written out (small |x| in these tests)


def hand_posterior(t: int, num_steps: int) -> tuple[float, float, float]:
    """q(x_{t-1} | x_t, x_0) = N(k0 x_0 + kt x_t, v) of the VP chain by Bayes' rule (t = 1: the point mass at x_0)."""
    betas = vp_beta_schedule(num_steps, dtype=torch.float64)
    if t == 1:
        return 1.0, 0.0, 0.0
    abar_prev, beta = torch.cumprod(1 - betas, 0)[t - 2].item(), betas[t - 1].item()
    v = 1 / (1 / (1 - abar_prev) + (1 - beta) / beta)
    return v * math.sqrt(abar_prev) / (1 - abar_prev), v * math.sqrt(1 - beta) / beta, v


# ---- the losses and the R1 penalty by hand -------------------------------------------------------------


class QuadraticLogit(nn.Module):
    """d(a, b, t) = t v.a + a.Q a / 2 + a.b, so grad_a d = t v + (Q + Q^T) a / 2 + b."""

    dim = 2

    def __init__(self):
        super().__init__()
        self.v = nn.Parameter(torch.tensor([0.3, -0.5], dtype=torch.float64))
        self.q = nn.Parameter(torch.tensor([[0.4, 0.2], [-0.1, 0.7]], dtype=torch.float64))

    def forward(self, a, b, t):
        t = torch.as_tensor(t, dtype=a.dtype).unsqueeze(-1)
        return (t * self.v * a).sum(-1) + 0.5 * (a * (a @ self.q.T)).sum(-1) + (a * b).sum(-1)


def test_losses_and_r1_penalty_equal_a_hand_computation():
    gamma = 0.7
    generator = DenoisingGenerator(2, noise_dim=3, hidden_dims=(8,)).double()
    d = QuadraticLogit()
    ddgan = DDGANLoss(generator, d, num_steps=4, r1_weight=gamma)
    pairs = ddgan.draw(torch.randn(256, 2, dtype=torch.float64))
    loss, terms = ddgan.discriminator_loss(pairs)
    a, b, t = pairs.x_prev, pairs.x_t, pairs.t.double().unsqueeze(-1)
    with torch.no_grad():
        grad = t * d.v + a @ (0.5 * (d.q + d.q.T)).T + b
        r1 = gamma / 2 * grad.pow(2).sum(-1).mean()
        real = softplus(-d(a, b, pairs.t)).mean()
        fake = softplus(d(pairs.fake, b, pairs.t)).mean()
        generator_term = softplus(-d(pairs.fake, b, pairs.t)).mean()
    assert torch.allclose(terms["r1"], r1, rtol=1e-12) and r1 > 0.1
    assert torch.allclose(terms["real"], real, rtol=1e-12) and torch.allclose(terms["fake"], fake, rtol=1e-12)
    assert torch.allclose(loss, real + fake + r1, rtol=1e-12)
    g_loss, g_terms = ddgan.generator_loss(pairs)
    assert torch.allclose(g_loss, generator_term, rtol=1e-12)
    # the discriminator loss reaches the discriminator only; the generator loss the generator only
    loss.backward()
    assert all(p.grad is None for p in generator.parameters()) and d.q.grad is not None
    d.zero_grad()
    g_loss.backward()
    assert d.v.grad is None and d.q.grad is None
    assert all(p.grad is not None for p in generator.parameters())
    # the real pairs follow the forward process: x_t | x_{t-1} ~ N(sqrt(1 - beta_t) x_{t-1}, beta_t)
    betas = vp_beta_schedule(4, dtype=torch.float64)
    z = (b - (1 - betas[pairs.t - 1]).sqrt().unsqueeze(-1) * a) / betas[pairs.t - 1].sqrt().unsqueeze(-1)
    assert abs(z.mean().item()) < 5 / math.sqrt(z.numel()) and abs(z.var().item() - 1) < 5 * math.sqrt(2 / z.numel())


# ---- the generator's gradient at the optimal discriminator ---------------------------------------------

M_DATA, S_DATA, T_STEPS = 0.5, 0.8, 2
THETA = {"w": 0.3, "b": -0.2, "c": 0.6}


class LinearGenerator(nn.Module):
    """G(x_t, z, t) = w x_t + b + c z (1-D)."""

    dim, noise_dim = 1, 1

    def __init__(self):
        super().__init__()
        for name, value in THETA.items():
            setattr(self, name, nn.Parameter(torch.tensor(value, dtype=torch.float64)))

    def forward(self, x_t, z, t):
        return self.w * x_t + self.b + self.c * z


def gaussian_moments(t: int):
    """The real q(x_{t-1} | x_t) = N(mr0 + mr1 x_t, vr), the fake p_theta(x_{t-1} | x_t) = N(mg0 + mg1 x_t, vg) and
    q(x_t) = N(mt, vt), for data N(M_DATA, S_DATA^2) and the generator at THETA."""
    abar = torch.cumprod(1 - vp_beta_schedule(T_STEPS, dtype=torch.float64), 0).tolist()
    abar_prev = 1.0 if t == 1 else abar[t - 2]
    alpha = abar[t - 1] / abar_prev
    var_prev, mean_prev = abar_prev * S_DATA**2 + 1 - abar_prev, math.sqrt(abar_prev) * M_DATA
    gain = math.sqrt(alpha) * var_prev / (alpha * var_prev + 1 - alpha)
    mr1, mr0 = gain, mean_prev - gain * math.sqrt(alpha) * mean_prev
    vr = var_prev * (1 - alpha) / (alpha * var_prev + 1 - alpha)
    k0, kt, v = hand_posterior(t, T_STEPS)
    mg1, mg0, vg = k0 * THETA["w"] + kt, k0 * THETA["b"], k0**2 * THETA["c"] ** 2 + v
    mt, vt = math.sqrt(abar[t - 1]) * M_DATA, abar[t - 1] * S_DATA**2 + 1 - abar[t - 1]
    return (mr0, mr1, vr), (mg0, mg1, vg), (mt, vt), k0


class OptimalLogit(nn.Module):
    """d*(a, b, t) = log q(a | b) - log p_theta(a | b): the optimal discriminator's logit, p_r / (p_r + p_g) =
    sigmoid(d*), since the real and fake pairs share the marginal q(x_t). No parameters (it is held fixed)."""

    dim = 1

    def forward(self, a, b, t):
        out = torch.zeros_like(a[..., 0])
        for step in range(1, T_STEPS + 1):
            (mr0, mr1, vr), (mg0, mg1, vg), _, _ = gaussian_moments(step)
            log_r = -0.5 * (a - mr0 - mr1 * b) ** 2 / vr - 0.5 * math.log(vr)
            log_g = -0.5 * (a - mg0 - mg1 * b) ** 2 / vg - 0.5 * math.log(vg)
            out = torch.where(t == step, (log_r - log_g)[..., 0], out)
        return out


def quadrature_gradient(num_nodes: int = 80) -> dict[str, float]:
    """(1/T) sum_t E_{x_t ~ q(x_t), eta ~ N(0, 1)} of the gradient of softplus(-d*(a, x_t, t)) with
    a = mg0 + mg1 x_t + sqrt(vg) eta (the reparameterized fake): -sigmoid(-d*) d'(a) da/dtheta, with
    d'(a) = -(a - mr)/vr + (a - mg)/vg, da/dw = k0 x_t, da/db = k0, da/dc = k0^2 c eta / sqrt(vg)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(num_nodes)
    weights = weights / math.sqrt(2 * math.pi)
    u, e = np.meshgrid(nodes, nodes, indexing="ij")
    weight = np.outer(weights, weights)
    total = {"w": 0.0, "b": 0.0, "c": 0.0}
    for t in range(1, T_STEPS + 1):
        (mr0, mr1, vr), (mg0, mg1, vg), (mt, vt), k0 = gaussian_moments(t)
        x_t = mt + math.sqrt(vt) * u
        mr, mg = mr0 + mr1 * x_t, mg0 + mg1 * x_t
        a = mg + math.sqrt(vg) * e
        logit = (-0.5 * (a - mr) ** 2 / vr - 0.5 * math.log(vr)) - (-0.5 * (a - mg) ** 2 / vg - 0.5 * math.log(vg))
        outer = -1 / (1 + np.exp(logit)) * (-(a - mr) / vr + (a - mg) / vg)
        for name, da in (("w", k0 * x_t), ("b", k0 + 0 * x_t), ("c", k0**2 * THETA["c"] * e / math.sqrt(vg))):
            total[name] += float((weight * outer * da).sum()) / T_STEPS
    return total


def test_generator_gradient_at_the_optimal_discriminator_is_the_closed_form_one():
    truth = quadrature_gradient()
    assert quadrature_gradient(120) == pytest.approx(truth, rel=1e-9)  # the quadrature has converged
    generator = LinearGenerator()
    ddgan = DDGANLoss(generator, OptimalLogit(), num_steps=T_STEPS, ema_decay=0.0)
    estimates = []
    for _ in range(10):
        x0 = M_DATA + S_DATA * torch.randn(50_000, 1, dtype=torch.float64)
        generator.zero_grad()
        ddgan.generator_loss(ddgan.draw(x0))[0].backward()
        estimates.append([generator.w.grad.item(), generator.b.grad.item(), generator.c.grad.item()])
    estimates = torch.tensor(estimates, dtype=torch.float64)
    mean, se = estimates.mean(0), estimates.std(0) / math.sqrt(len(estimates))
    expected = torch.tensor([truth["w"], truth["b"], truth["c"]], dtype=torch.float64)
    assert (expected.abs() > 20 * se).all()  # every component is resolved, not zero within noise
    assert ((mean - expected).abs() < 5 * se).all(), (mean, expected, se)


# ---- EMA, resume, guard, errors ------------------------------------------------------------------------


def build(init_seed: int, **kwargs):
    set_seed(init_seed)
    g = DenoisingGenerator(2, noise_dim=3, hidden_dims=(16, 16))
    d = DenoisingDiscriminator(2, hidden_dims=(16, 16))
    ddgan = DDGANLoss(g, d, num_steps=4, **kwargs)
    g_opt = torch.optim.Adam(g.parameters(), lr=1e-2, betas=(0.5, 0.9))
    d_opt = torch.optim.Adam(d.parameters(), lr=1e-2, betas=(0.5, 0.9))
    return ddgan, g_opt, d_opt


def data(n: int = 64) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(5)) * torch.tensor([1.0, 0.3])


def test_the_ema_follows_its_recursion():
    ddgan, g_opt, d_opt = build(0, ema_decay=0.6)
    x = data()
    expected = [p.detach().clone() for p in ddgan.generator.parameters()]
    for n in range(5):
        ddgan.step(x, g_opt, d_opt)
        decay = min(0.6, (1 + n) / (10 + n))
        expected = [decay * e + (1 - decay) * p.detach() for e, p in zip(expected, ddgan.generator.parameters())]
    assert ddgan.num_updates == 5
    for e, p in zip(expected, ddgan.ema.network.parameters()):
        assert torch.allclose(e, p, atol=1e-6)
    assert not any(p.requires_grad for p in ddgan.ema.network.parameters())


def everything(ddgan, g_opt, d_opt) -> dict:
    return flat_state({"loss": ddgan.state_dict(), "g_opt": g_opt.state_dict(), "d_opt": d_opt.state_dict()})


def test_a_resumed_run_equals_the_uninterrupted_run_bit_for_bit():
    steps, x = 4, data()
    ddgan, g_opt, d_opt = build(0)
    set_seed(1)
    reference_terms = [ddgan.step(x, g_opt, d_opt) for _ in range(2 * steps)]
    reference = everything(ddgan, g_opt, d_opt)

    ddgan, g_opt, d_opt = build(0)
    set_seed(1)
    terms = [ddgan.step(x, g_opt, d_opt) for _ in range(steps)]
    buffer = io.BytesIO()
    torch.save({"loss": ddgan.state_dict(), "g_opt": g_opt.state_dict(), "d_opt": d_opt.state_dict(),
                "rng": torch.get_rng_state()}, buffer)
    ddgan.step(x, g_opt, d_opt)  # the checkpoint must not follow the live objects
    del ddgan, g_opt, d_opt

    ddgan, g_opt, d_opt = build(123)  # different initial values
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=False)
    ddgan.load_state_dict(checkpoint["loss"])
    g_opt.load_state_dict(checkpoint["g_opt"])
    d_opt.load_state_dict(checkpoint["d_opt"])
    torch.set_rng_state(checkpoint["rng"])
    terms += [ddgan.step(x, g_opt, d_opt) for _ in range(steps)]

    assert terms == reference_terms
    assert state_differences(reference, everything(ddgan, g_opt, d_opt)) == []
    assert reference["loss.ema.num_updates"] == 2 * steps


def frozen(ddgan) -> list[torch.Tensor]:
    modules = (ddgan.generator, ddgan.discriminator, ddgan.ema.network)
    return [p.detach().clone() for m in modules for p in m.parameters()]


def unchanged(before, after) -> bool:
    return all(torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0)) for a, b in zip(before, after))


def test_a_diverged_generator_stops_training_before_any_parameter_moves():
    ddgan, g_opt, d_opt = build(0)
    with torch.no_grad():
        ddgan.generator.net.net[-1].bias[0] = float("nan")
    before = frozen(ddgan)
    with pytest.raises(DivergenceError, match=r"DDGANLoss: non-finite loss term\(s\) \['fake'\]"):
        ddgan.step(data(), g_opt, d_opt)
    assert unchanged(before, frozen(ddgan)) and ddgan.num_updates == 0
    skipping, g_opt, d_opt = build(0, on_nonfinite="skip")
    with torch.no_grad():
        skipping.generator.net.net[-1].bias[0] = float("nan")
    before = frozen(skipping)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        skipping.step(data(), g_opt, d_opt)
    assert {str(w.message).split(":")[0] for w in caught} == {"DDGANLoss"} and len(caught) == 2
    assert unchanged(before, frozen(skipping)) and skipping.num_updates == 0


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda g, d: DDGANLoss(g, d, num_steps=0), "num_steps must be an integer >= 1, got 0"),
        (lambda g, d: DDGANLoss(g, d, num_steps=1, schedule=vp_beta_schedule(1, beta_max=40.0, dtype=torch.float64)),
         r"schedule betas must lie in \(0, 1\) in torch.float32"),
        (lambda g, d: DDGANLoss(g, d, num_steps=1, schedule="vp"), None),
        (lambda g, d: DDGANLoss(g, DenoisingDiscriminator(3, hidden_dims=(8,))),
         "discriminator.dim must equal generator.dim = 2"),
        (lambda g, d: DDGANLoss(g, d, r1_weight=-1.0), "r1_weight must be finite and >= 0"),
        (lambda g, d: DDGANLoss(g, d, ema_decay=1.0), r"ema_decay must be a number in \[0, 1\)"),
        (lambda g, d: DDGANLoss(g, d, on_nonfinite="ignore"), "on_nonfinite must be one of"),
    ],
)
def test_bad_settings_are_named_at_construction(make, match):
    g, d = DenoisingGenerator(2, hidden_dims=(8,)), DenoisingDiscriminator(2, hidden_dims=(8,))
    if match is None:
        assert make(g, d).num_steps == 1  # one VP step of the default beta_max fits float32
    else:
        with pytest.raises(ValueError, match=match):
            make(g, d)


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.randn(8, 3), r"x must have shape \(N, 2\) \(the generator's dim\), got \(8, 3\)"),
        (torch.randn(8), r"x must have shape \(N, 2\)"),
        (torch.randn(8, 2, dtype=torch.float64), r"x is a torch.float64 tensor on cpu but the networks' parameters"),
        (torch.tensor([[0.0, float("nan")]]), r"x contains 1 non-finite value"),
    ],
)
def test_bad_data_is_named_before_any_training_step(x, match):
    ddgan, g_opt, d_opt = build(0)
    before = frozen(ddgan)
    with pytest.raises(ValueError, match=match):
        ddgan.step(x, g_opt, d_opt)
    assert unchanged(before, frozen(ddgan)) and ddgan.num_updates == 0


def test_state_dicts_are_checked():
    ddgan, _, _ = build(0)
    with pytest.raises(ValueError, match=r"state must be a dict with keys \['discriminator', 'ema', 'generator'\]"):
        ddgan.load_state_dict({"generator": {}})
