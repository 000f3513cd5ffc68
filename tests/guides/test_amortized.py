"""The shared amortized-guide machinery, exercised through GaussianGuide (its simplest subclass)."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Predictive, RenyiELBO, Trace_ELBO
from pyro.optim import Adam, ClippedAdam
from torch import nn

from pyro_diffvi.guides import GaussianGuide
from tests.common import requires_cuda

A = torch.tensor([[1.0, 0.5], [-0.5, 1.0], [0.3, -0.2]])


def vae_model(x, subsample_size=None):
    with pyro.plate("data", x.shape[0], subsample_size=subsample_size) as ind:
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        pyro.sample("x", dist.Normal(z @ A.T.to(z), 0.5).to_event(1), obs=x[ind])


class Recorder(nn.Module):
    """A user encoder that remembers what it was shown."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 8)
        self.seen = []

    def forward(self, x):
        self.seen.append(x)
        return self.linear(x)


def test_subsampled_plate_feeds_the_encoder_the_model_s_rows():
    x = torch.randn(50, 3)
    encoder = Recorder()
    guide = GaussianGuide(vae_model, "z", "x", encoder=encoder)
    guide_trace = poutine.trace(guide).get_trace(x, 10)
    model_trace = poutine.trace(poutine.replay(vae_model, trace=guide_trace)).get_trace(x, 10)
    ind = guide_trace.nodes["data"]["value"]
    assert ind.shape == (10,)
    assert torch.equal(encoder.seen[-1], x[ind])
    assert torch.equal(model_trace.nodes["x"]["value"], x[ind])
    # the model's own subsample scale (N / B) reaches the guide's site too
    assert guide_trace.nodes["z"]["scale"] == pytest.approx(5.0)


def test_probing_the_model_s_plates_draws_no_random_numbers():
    x = torch.randn(50, 3)
    guide = GaussianGuide(vae_model, "z", "x")
    guide(x, 10)  # set-up (initializes networks)
    torch.manual_seed(3)
    indices = poutine.trace(guide).get_trace(x, 10).nodes["data"]["value"]
    torch.manual_seed(3)
    assert torch.equal(indices, torch.randperm(50)[:10])


def test_mixture_prior_latent_is_unconstrained():
    mixture = dist.MixtureSameFamily(
        dist.Categorical(logits=torch.zeros(2)), dist.Normal(torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), 1.0).to_event(1)
    )

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", mixture)
            pyro.sample("x", dist.Normal(z, 2.0).to_event(1), obs=x)

    trace = poutine.trace(GaussianGuide(model, "z", "x")).get_trace(torch.randn(3, 2))
    assert isinstance(trace.nodes["z"]["fn"], dist.Independent)  # emitted as is, no transform


def test_batch_size_and_subsampling_follow_each_call():
    guide = GaussianGuide(vae_model, "z", "x")
    guide(torch.randn(50, 3), 10)  # prototype: subsampled
    assert guide(torch.randn(7, 3))["z"].shape == (7, 2)  # later call: another size, no subsampling
    samples = Predictive(vae_model, guide=guide, num_samples=4)(torch.randn(9, 3))
    assert samples["z"].shape == (4, 9, 2)


def test_vectorized_particles_are_independent_draws():
    x = torch.randn(5, 3)
    guide = GaussianGuide(vae_model, "z", "x", init_scale=1.0)
    guide(x)
    with pyro.plate("particles", 100, dim=-2):
        z = guide(x)["z"]
    assert z.shape == (100, 5, 2)
    # independent N(loc, ~1) draws: the sample std over particles is ~1, never 0
    assert z.std(0).min() > 0.7


def closed_form_elbo(guide, x, weight, noise):
    """E_q[log p(x, z)] + H[q] for z ~ N(0, I), x ~ N(z W^T, noise^2 I) and a diagonal Gaussian q."""
    loc, scale = guide.loc_scale("z", guide.context(x))
    loc, scale = loc.detach().double(), scale.detach().double()
    x, weight = x.double(), weight.double()
    # E_q ||x - W z||^2 = ||x - W m||^2 + sum_j ||W_:j||^2 s_j^2
    sq = ((x - loc @ weight.T) ** 2).sum(-1) + (scale**2 * (weight**2).sum(0)).sum(-1)
    dim_x, dim_z = weight.shape
    loglik = -0.5 * sq / noise**2 - dim_x * (
        torch.log(torch.tensor(noise, dtype=x.dtype)) + 0.5 * torch.log(torch.tensor(2 * torch.pi))
    )
    logprior = -0.5 * (loc**2 + scale**2).sum(-1) - 0.5 * dim_z * torch.log(torch.tensor(2 * torch.pi))
    entropy = (0.5 * torch.log(2 * torch.pi * torch.e * scale**2)).sum(-1)
    return (loglik + logprior + entropy).sum()


def test_elbo_matches_the_closed_form_gaussian_elbo():
    """Trace_ELBO with the guide equals E_q[log p(x, z)] + H[q], computed analytically."""
    x = torch.randn(6, 3)
    guide = GaussianGuide(vae_model, "z", "x")
    guide(x)
    exact = closed_form_elbo(guide, x, A, 0.5)
    estimates = torch.tensor([-Trace_ELBO().loss(vae_model, guide, x) for _ in range(200)])
    stderr = estimates.std() / 200**0.5
    assert abs(estimates.mean() - exact) < 4 * stderr


def test_trained_guide_closes_the_gap_on_a_linear_gaussian_model():
    """W has orthogonal columns, so the exact posterior is diagonal Gaussian with a mean linear in x:
    the family contains it and the closed-form ELBO must approach log p(x) from below."""
    torch.manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(3, 2))
    W = q * torch.tensor([2.0, 1.0])

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample("x", dist.Normal(z @ W.T, 0.5).to_event(1), obs=x)

    marginal = torch.distributions.MultivariateNormal(torch.zeros(3), W @ W.T + 0.25 * torch.eye(3))
    x = marginal.sample((64,))
    log_px = marginal.log_prob(x).double().sum()
    guide = GaussianGuide(model, "z", "x", encoder=nn.Linear(3, 16))
    optim = ClippedAdam({"lr": 0.05, "lrd": 0.995})  # decay to ~0.007 so the last steps average the noise
    svi = SVI(model, guide, optim, Trace_ELBO(num_particles=16, vectorize_particles=True))
    guide(x)
    gap_before = (log_px - closed_form_elbo(guide, x, W, 0.5)) / 64
    for _ in range(400):
        svi.step(x)
    gap = (log_px - closed_form_elbo(guide, x, W, 0.5)) / 64
    assert gap_before > 0.5
    assert -1e-4 < gap < 0.01  # a bound (float32 data), and tight after training


def test_a_new_guide_over_a_stale_param_store_raises():
    x = torch.randn(4, 3)
    GaussianGuide(vae_model, "z", "x")(x)
    with pytest.raises(ValueError, match="clear_param_store"):
        GaussianGuide(vae_model, "z", "x")(x)
    pyro.clear_param_store()
    guide = GaussianGuide(vae_model, "z", "x")
    guide(x)
    before = guide.heads[0].weight.detach().clone()
    SVI(vae_model, guide, Adam({"lr": 0.1}), Trace_ELBO()).step(x)
    assert not torch.equal(guide.heads[0].weight, before)  # a clean store: SVI trains this guide's tensors


def test_two_guides_of_one_class_keep_separate_parameters():
    x = torch.randn(4, 3)
    first, second = GaussianGuide(vae_model, "z", "x"), GaussianGuide(vae_model, "z", "x", name="second")
    first(x), second(x)
    names = set(pyro.get_param_store().keys())
    assert any(n.startswith("GaussianGuide.") for n in names) and any(n.startswith("second.") for n in names)


def test_renyi_and_every_parameter_moves():
    x = torch.randn(8, 3)
    guide = GaussianGuide(vae_model, "z", "x")
    guide(x)
    before = {k: v.detach().clone() for k, v in guide.named_parameters()}
    svi = SVI(vae_model, guide, Adam({"lr": 1e-2}), RenyiELBO(alpha=0, num_particles=3))
    svi.step(x)
    for name, param in guide.named_parameters():  # SVI zeroes .grad after the step: compare values
        assert not torch.equal(param, before[name]), name


def test_constrained_and_matrix_latents():
    def model(y):
        with pyro.plate("d", y.shape[0]):
            s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
            w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([2, 3]).to_event(2))
            pyro.sample("y", dist.Normal(s * w.sum((-1, -2)), 1.0), obs=y)

    y = torch.randn(7)
    guide = GaussianGuide(model, ["s", "w"], "y")
    trace = poutine.trace(guide).get_trace(y)
    s = trace.nodes["s"]["value"]
    assert (s > 0).all() and trace.nodes["w"]["value"].shape == (7, 2, 3)
    # change of variables: log q(s) = log N(log s; loc, scale) - log s
    loc, scale = guide.loc_scale("s", guide.context(y))
    expected = dist.Normal(loc, scale).log_prob(s.log().unsqueeze(-1)).sum(-1) - s.log()
    assert torch.allclose(trace.nodes["s"]["fn"].log_prob(s), expected, atol=1e-5)


def test_categorical_observation_is_one_hot_encoded():
    def model(x, label):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample("label", dist.Categorical(logits=torch.zeros(4)), obs=label)
            pyro.sample("x", dist.Normal(z @ A.T, 1.0).to_event(1), obs=x)

    guide = GaussianGuide(model, "z", ["x", "label"])
    guide(torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 0]))
    assert guide.encoder[0][0].in_features == 3 + 4


def test_observed_fn_for_transformed_arguments():
    def model(images):
        x = images.reshape(images.shape[0], -1)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).expand([x.shape[0], 4]).to_event(1), obs=x)

    images = torch.randn(5, 2, 2)
    with pytest.raises(ValueError, match="observed_fn"):
        GaussianGuide(model, "z", "x")(images)
    guide = GaussianGuide(model, "z", "x", observed_fn=lambda images: images.reshape(images.shape[0], -1))
    assert guide(images)["z"].shape == (5, 2)


@pytest.mark.parametrize(
    "latent, observed, match",
    [("w", "x", "latent site 'w' is not a sample site"), ("x", "z", "latent site 'x' is observed"),
     ("z", "q", "observed site 'q' is not an observed sample site")],
)
def test_unknown_or_misplaced_site_names(latent, observed, match):
    with pytest.raises(ValueError, match=match):
        GaussianGuide(vae_model, latent, observed)(torch.randn(4, 3))


def test_discrete_and_global_latents_are_refused():
    def discrete(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(logits=torch.zeros(3)))
            pyro.sample("x", dist.Normal(c.float(), 1.0), obs=x)

    def global_latent(x):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(w, 1.0), obs=x)

    with pytest.raises(ValueError, match="discrete"):
        GaussianGuide(discrete, "c", "x")(torch.randn(4))
    with pytest.raises(ValueError, match="global"):
        GaussianGuide(global_latent, "w", "x")(torch.randn(4))


def test_bad_inputs_raise_before_training():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="non-finite"):
        GaussianGuide(vae_model, "z", "x")(torch.full((4, 3), float("nan")))
    with pytest.raises(ValueError, match="batch_shape"):
        GaussianGuide(vae_model, "z", "x", encoder=nn.Sequential(nn.Flatten(0), nn.Linear(12, 5)))(x)
    with pytest.raises(ValueError, match="activation"):
        GaussianGuide(vae_model, "z", "x", encoder_activation="bogus")
    with pytest.raises(TypeError, match="encoder"):
        GaussianGuide(vae_model, "z", "x", encoder=lambda x: x)
    with pytest.raises(ValueError, match="loc, scale"):
        GaussianGuide(vae_model, "z", "x", encoder=_TupleEncoder(3))(x)


class _TupleEncoder(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.linear = nn.Linear(3, 2 * dim)

    def forward(self, x):
        loc, raw = self.linear(x).chunk(2, -1)
        return loc, nn.functional.softplus(raw)


def test_encoder_returning_loc_scale_is_used_directly():
    x = torch.randn(4, 3)
    encoder = _TupleEncoder(2)
    guide = GaussianGuide(vae_model, "z", "x", encoder=encoder)
    trace = poutine.trace(guide).get_trace(x)
    loc, scale = encoder(x)
    assert torch.allclose(trace.nodes["z"]["fn"].base_dist.loc, loc)
    assert torch.allclose(trace.nodes["z"]["fn"].base_dist.scale, scale)


@requires_cuda
def test_runs_on_cuda():
    x = torch.randn(16, 3, device="cuda")
    guide = GaussianGuide(vae_model, "z", "x")
    svi = SVI(vae_model, guide, Adam({"lr": 1e-3}), Trace_ELBO())
    svi.step(x)
    assert all(p.device.type == "cuda" for p in guide.parameters())


@pytest.mark.filterwarnings("ignore:Singular sample detected")  # torch's Wishart sampler, in the model's trace
def test_a_latent_without_a_bijection_to_its_support_is_named():
    # Issue 25 case 16: a Wishart (positive-definite) latent raised torch's "Cannot transform _PositiveDefinite
    # constraints" without the site's name.
    def model(y):
        with pyro.plate("d", y.shape[0]):
            cov = pyro.sample("cov", dist.Wishart(y.new_tensor(5.0), torch.eye(2, dtype=y.dtype)))
            pyro.sample("y", dist.MultivariateNormal(y.new_zeros(2), cov), obs=y)

    with pytest.raises(ValueError, match=r"latent site 'cov' has support PositiveDefinite\(\), which .*biject_to"):
        GaussianGuide(model, "cov", "y")(torch.randn(4, 2, dtype=torch.float64))
