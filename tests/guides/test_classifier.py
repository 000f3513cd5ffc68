"""Semi-supervised models: ClassifierGuide for a label that is observed or latent, continuous guides that
condition on it (condition_on=), the enumerated bound of unlabelled data against brute force and exact
log p(x), the M2 classification term and the label-conditioned sleep term of DDVI_ELBO."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, TraceEnum_ELBO
from pyro.infer.autoguide import AutoGuideList
from pyro.optim import Adam

from pyro_diffvi.guides import ClassifierGuide, DiffusionGuide, GaussianGuide, LabelGuide
from pyro_diffvi.infer import DDVI_ELBO
from pyro_diffvi.priors import Pinwheel
from pyro_diffvi.util import set_seed

K, NOISE = 3, 0.5
LOGITS = torch.tensor([0.2, -0.3, 0.1], dtype=torch.float64)
MU = torch.tensor([[2.0, 0.0], [-1.0, 1.5], [-1.0, -1.5]], dtype=torch.float64)
A = torch.tensor([[1.0, 0.5], [-0.5, 1.0], [0.3, -0.2]], dtype=torch.float64)
SMALL = {"encoder_hidden_dims": (32,)}


def model(x, y=None):
    """y ~ Cat(softmax(LOGITS)), z | y ~ N(MU[y], I), x | z ~ N(A z, NOISE^2 I)."""
    with pyro.plate("data", x.shape[0]):
        y = pyro.sample("y", dist.Categorical(logits=LOGITS), obs=y)
        z = pyro.sample("z", dist.Normal(MU[y], 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ A.T, NOISE).to_event(1), obs=x)


def exact_log_px(x: torch.Tensor) -> torch.Tensor:
    """Per point: log sum_k p(k) N(x; A mu_k, A A^T + NOISE^2 I)."""
    cov = A @ A.T + NOISE**2 * torch.eye(3, dtype=torch.float64)
    components = torch.distributions.MultivariateNormal(MU @ A.T, cov).log_prob(x.unsqueeze(-2))
    return torch.logsumexp(components + LOGITS.log_softmax(-1), dim=-1)


def data(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, K, (n,), generator=g)
    z = MU[y] + torch.randn(n, 2, generator=g, dtype=torch.float64)
    x = z @ A.T + NOISE * torch.randn(n, 3, generator=g, dtype=torch.float64)
    return x, y


def semi_supervised_guide(latent_guide=GaussianGuide, **kwargs):
    guide = AutoGuideList(model)
    guide.append(ClassifierGuide(model, "y", "x", **SMALL))
    guide.append(latent_guide(model, "z", "x", condition_on="y", **SMALL, **kwargs))
    return guide


def train(guide, loss, x, y, steps, lr=1e-2):
    svi = SVI(model, guide, Adam({"lr": lr}), loss)
    for _ in range(steps):
        svi.step(x, y)
        svi.step(x)


def assert_enumerated_bound_equals_sum_by_hand(model, guide, x):
    """TraceEnum_ELBO's and DDVI_ELBO's bound of an unlabelled batch against sum_l q(l|x) (log p(x, z_l, l)
    - log q(z_l|x, l) - log q(l|x)) by hand, at the same draws (the models of this file: y or c, then z, x)."""
    elbos = {}
    for name, objective in [
        ("traceenum", TraceEnum_ELBO(max_plate_nesting=1)),
        ("ddvi", DDVI_ELBO(sleep="none", max_plate_nesting=1)),
    ]:
        pyro.set_rng_seed(1)
        elbos[name] = -objective.differentiable_loss(model, guide, x).item()
    pyro.set_rng_seed(1)
    trace = poutine.trace(poutine.enum(guide, first_available_dim=-2)).get_trace(x)
    z = trace.nodes["z"]["value"]  # (K, N, 2): one draw per label and point
    assert z.shape == (K, x.shape[0], 2)
    log_q_z = trace.nodes["z"]["fn"].log_prob(z)  # (K, N)
    q_y = guide[0].probs(x).T  # (K, N)
    labels = torch.arange(K).unsqueeze(-1)
    log_joint = (
        LOGITS.log_softmax(-1)[labels]
        + dist.Normal(MU[labels], 1.0).to_event(1).log_prob(z)
        + dist.Normal(z @ A.T, NOISE).to_event(1).log_prob(x)
    )
    by_hand = (q_y * (log_joint - log_q_z - q_y.log())).sum().item()
    assert elbos["traceenum"] == pytest.approx(by_hand, abs=1e-6)
    assert elbos["ddvi"] == pytest.approx(by_hand, abs=1e-6)


def enumerated_bound(model, guide, x, num=100):
    """The enumerated bound of an unlabelled batch (TraceEnum_ELBO): mean over ``num`` draws and its SE."""
    objective = TraceEnum_ELBO(max_plate_nesting=1)
    with torch.no_grad():
        values = torch.tensor([-objective.loss(model, guide, x) for _ in range(num)])
    return values.mean().item(), values.std().item() / math.sqrt(num)


def test_the_enumerated_unlabelled_bound_equals_the_sum_over_labels_by_hand():
    set_seed(0)
    pyro.clear_param_store()
    x, y = data()
    guide = semi_supervised_guide()
    train(guide, DDVI_ELBO(sleep="none"), x, y, steps=20)  # a classifier and guide away from their start
    assert_enumerated_bound_equals_sum_by_hand(model, guide, x)


def test_the_unlabelled_bound_is_below_exact_log_px_and_tight_after_training():
    set_seed(0)
    pyro.clear_param_store()
    x, y = data(48)
    guide = semi_supervised_guide()
    exact = exact_log_px(x).sum().item()
    before, se_before = enumerated_bound(model, guide, x)
    train(guide, DDVI_ELBO(sleep="none", classification_weight=1.0), x, y, steps=300)
    after, se_after = enumerated_bound(model, guide, x)
    assert before < exact + 3 * se_before and after < exact + 3 * se_after
    assert after > before + 50  # training closed most of the gap (about 150 nats here at the start)
    assert after > exact - 0.5 * x.shape[0]  # within half a nat per point of the exact value


def test_classification_loss_is_the_scaled_negative_log_likelihood_of_the_labels():
    set_seed(0)
    pyro.clear_param_store()
    x, y = data(30)

    def subsampled(x, y=None):
        with pyro.plate("data", x.shape[0], subsample_size=10) as idx:
            y = pyro.sample("y", dist.Categorical(logits=LOGITS), obs=None if y is None else y[idx])
            z = pyro.sample("z", dist.Normal(MU[y], 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ A.T, NOISE).to_event(1), obs=x[idx])

    classifier = ClassifierGuide(subsampled, "y", "x", **SMALL)
    with poutine.trace() as tracer:
        poutine.block(classifier)(x, y)
    pyro.set_rng_seed(3)
    loss = classifier.classification_loss(x, y)
    pyro.set_rng_seed(3)
    idx = torch.randperm(30)[:10]  # the indices the guide's plate draws with this seed
    by_hand = -(30 / 10) * classifier.probs(x[idx]).log().gather(-1, y[idx].unsqueeze(-1)).sum()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-9)
    assert classifier.classification_loss(x).item() == 0.0
    assert classifier.enumerates(x) and not classifier.enumerates(x, y)
    assert isinstance(classifier, LabelGuide)
    assert "y" not in tracer.trace.nodes  # a labelled call emits no label site


def test_labelled_latents_land_in_their_own_arm_of_the_pinwheel():
    set_seed(0)
    pyro.clear_param_store()
    prior = Pinwheel(num_components=3)

    def pinwheel_model(x, y=None):
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(logits=torch.zeros(3)), obs=y)
            z = pyro.sample("z", prior.component(y))
            pyro.sample("x", dist.Normal(z, 0.1).to_event(1), obs=x)

    y = torch.arange(3).repeat(40)
    z = prior.component(y).sample()
    x = z + 0.1 * torch.randn_like(z)
    guide = AutoGuideList(pinwheel_model)
    guide.append(ClassifierGuide(pinwheel_model, "y", "x", **SMALL))
    guide.append(DiffusionGuide(pinwheel_model, "z", "x", condition_on="y", num_steps=5, **SMALL))
    svi = SVI(pinwheel_model, guide, Adam({"lr": 3e-3}), DDVI_ELBO())
    for _ in range(300):
        svi.step(x, y)
    with torch.no_grad():
        draws = torch.stack([poutine.trace(guide).get_trace(x, y).nodes["z"]["value"] for _ in range(10)])
        in_own_arm = (prior.label_log_posterior(draws).argmax(-1) == y).double().mean().item()
        # the same read-out on exact draws from p(z | y): the arms overlap near the centre, so this is its ceiling
        exact = prior.component(y.repeat(30)).sample()
        ceiling = (prior.label_log_posterior(exact).argmax(-1) == y.repeat(30)).double().mean().item()
    assert ceiling > 0.9
    assert in_own_arm > ceiling - 0.1  # SE of either fraction < 0.015 (>= 1200 draws)


def test_the_sleep_term_draws_labels_and_trains_the_label_conditioned_denoiser():
    set_seed(0)
    pyro.clear_param_store()
    x, y = data()
    guide = semi_supervised_guide(DiffusionGuide, num_steps=4)
    loss = DDVI_ELBO(warmup_steps=1)  # the first step is the sleep term alone
    svi = SVI(model, guide, Adam({"lr": 1e-2}), loss)
    svi.step(x)  # builds both parts (unlabelled call: the label is enumerated)
    before = {k: v.detach().clone() for k, v in guide[1].denoisers.state_dict().items()}
    guide[1].training_steps = 0
    svi.step(x)
    assert math.isnan(loss.last_terms["elbo"]) and math.isfinite(loss.last_terms["sleep"])
    assert all(not torch.equal(v, guide[1].denoisers.state_dict()[k]) for k, v in before.items())
    one_hot_matters = guide[1].context(x, torch.zeros(x.shape[0], dtype=torch.long))
    assert not torch.allclose(one_hot_matters, guide[1].context(x, torch.ones(x.shape[0], dtype=torch.long)))
    svi.step(x)
    assert math.isfinite(loss.last_terms["elbo"])


def test_bad_semi_supervised_set_ups_are_named():
    x, y = data(6)
    with pytest.raises(ValueError, match="AutoGuideList"):
        GaussianGuide(model, "z", "x", condition_on="y", **SMALL)(x, y)
    with pytest.raises(ValueError, match="Categorical"):
        ClassifierGuide(model, "z", "x", **SMALL)(x, y)

    def two_optional(x, y=None, w=None):
        model(x, y)

    with pytest.raises(ValueError, match="label_fn"):
        ClassifierGuide(two_optional, "y", "x", **SMALL)(x)
    labelled = ClassifierGuide(two_optional, "y", "x", label_fn=lambda x, y=None, w=None: y, **SMALL)
    assert labelled(x, y) == {} and labelled(x)["y"].shape == (6,)


def test_a_label_the_model_never_observes_is_enumerated_on_every_call():
    def clustering(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(logits=LOGITS))
            z = pyro.sample("z", dist.Normal(MU[c], 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ A.T, NOISE).to_event(1), obs=x)

    x, _ = data(10)
    guide = AutoGuideList(clustering)
    guide.append(ClassifierGuide(clustering, "c", "x", **SMALL))
    guide.append(GaussianGuide(clustering, "z", "x", condition_on="c", **SMALL))
    assert guide[0].enumerates(x)
    bound = -TraceEnum_ELBO(max_plate_nesting=1).loss(clustering, guide, x)
    assert bound < exact_log_px(x).sum().item()  # the mixture's exact log p(x) is the same as the model's


def test_a_label_out_of_range_is_named_with_the_site_and_num_classes():
    # Issue 25 case 13: a label of 7 in a 3-class model failed inside the model (torch's one_hot / index error).
    x, y = data(6)
    elbo = DDVI_ELBO(sleep="none")
    bad = y.clone()
    bad[2] = 7
    message = r"labels of site 'y' must be classes in \[0, 3\) \(num_classes=3 .*\), got 1 value\(s\) .* e\.g\. 7"
    with pytest.raises(ValueError, match=message):  # on the first call, before the model's full trace
        elbo.loss(model, semi_supervised_guide(), x, bad)
    guide = semi_supervised_guide()
    elbo.loss(model, guide, x, y)  # set up on good labels: later calls are checked by the guide too
    with pytest.raises(ValueError, match=message):
        elbo.loss(model, guide, x, bad)
    with pytest.raises(ValueError, match=r"e\.g\. -1"):
        elbo.loss(model, guide, x, torch.full_like(y, -1))
    with pytest.raises(TypeError, match="labels of site 'y' must be an integer tensor"):
        guide[0].labels(x, y.bool())
