"""The DDVI paper's second clustering strategy (Sec. 4.2): a cluster site c the model never observes,
enumerated exactly with a ClassifierGuide q(c|x) and a diffusion guide q(z|x, c) (condition_on="c") under
DDVI_ELBO; its bound against the sum over clusters by hand (float64) and against the model's exact log p(x),
and the trained q(c|x) against the exact cluster posterior p(c|x)."""

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI
from pyro.infer.autoguide import AutoGuideList
from pyro.optim import Adam

from pyro_diffvi.guides import ClassifierGuide, DiffusionGuide
from pyro_diffvi.infer import DDVI_ELBO
from pyro_diffvi.util import set_seed
from tests.guides.test_classifier import (
    LOGITS,
    MU,
    NOISE,
    SMALL,
    A,
    assert_enumerated_bound_equals_sum_by_hand,
    data,
    enumerated_bound,
    exact_log_px,
)


def clustering(x):
    """c ~ Cat(softmax(LOGITS)) (never observed), z | c ~ N(MU[c], I), x | z ~ N(A z, NOISE^2 I)."""
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Categorical(logits=LOGITS))
        z = pyro.sample("z", dist.Normal(MU[c], 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ A.T, NOISE).to_event(1), obs=x)


def exact_cluster_posterior(x):
    """p(c | x) by Bayes' rule on the closed-form marginals N(x; A mu_c, A A^T + NOISE^2 I), shape (N, K)."""
    cov = A @ A.T + NOISE**2 * torch.eye(3, dtype=torch.float64)
    components = torch.distributions.MultivariateNormal(MU @ A.T, cov).log_prob(x.unsqueeze(-2))
    return (components + LOGITS.log_softmax(-1)).softmax(-1)


def clustering_guide():
    guide = AutoGuideList(clustering)
    guide.append(ClassifierGuide(clustering, "c", "x", **SMALL))
    guide.append(
        DiffusionGuide(clustering, "z", "x", condition_on="c", num_steps=4, denoiser_hidden_dims=(32, 32), **SMALL)
    )
    return guide


def test_the_enumerated_clustering_bound_equals_the_sum_over_clusters_by_hand():
    set_seed(0)
    pyro.clear_param_store()
    x, _ = data()
    guide = clustering_guide()
    svi = SVI(clustering, guide, Adam({"lr": 1e-2}), DDVI_ELBO())
    for _ in range(20):  # a classifier and a diffusion guide away from their start
        svi.step(x)
    assert guide[0].enumerates(x)
    assert_enumerated_bound_equals_sum_by_hand(clustering, guide, x)  # z: the chain's auxiliary bound term


def test_trained_clustering_bound_is_below_exact_log_px_and_its_classifier_is_the_exact_posterior():
    set_seed(0)
    pyro.clear_param_store()
    x, c = data(48)
    guide = clustering_guide()
    exact = exact_log_px(x).sum().item()
    before, se_before = enumerated_bound(clustering, guide, x)
    svi = SVI(clustering, guide, Adam({"lr": 1e-2}), DDVI_ELBO())
    for _ in range(400):
        svi.step(x)
    after, se_after = enumerated_bound(clustering, guide, x)
    assert before < exact + 3 * se_before and after < exact + 3 * se_after
    assert after > before + 50  # training closed most of the gap
    assert after > exact - 0.5 * x.shape[0]  # within half a nat per point of the exact log p(x)
    with torch.no_grad():
        q, p = guide[0].probs(x), exact_cluster_posterior(x)
    total_variation = 0.5 * (q - p).abs().sum(-1).mean().item()
    assert total_variation < 0.1
    # the exact posterior itself recovers the true clusters well (the components overlap a little)
    assert (p.argmax(-1) == c).double().mean().item() > 0.8
