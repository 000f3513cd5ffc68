"""The guide protocols, the AutoGuideList walker (nested lists included) and the label channel kept on the list."""

import copy
import pickle

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoGuideList, AutoNormal

from pyro_diffvi.guides import (
    ClassifierGuide,
    DiffusionGuide,
    GaussianGuide,
    LabelGuide,
    WakeSleepGuide,
    guide_parts,
)
from pyro_diffvi.guides.protocols import publish_label, published_labels


def model(x):
    mu = pyro.sample("mu", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(mu + z, 0.5).to_event(1), obs=x)


def test_parts_are_found_in_nested_lists():
    local = poutine.block(model, hide=["mu"])
    inner = AutoGuideList(model)
    inner.append(DiffusionGuide(local, "z", "x", num_steps=2, name="diffusion"))
    guide = AutoGuideList(model)
    guide.append(AutoNormal(poutine.block(model, expose=["mu"])))
    guide.append(inner)
    assert [type(p).__name__ for p in guide_parts(guide)] == ["AutoNormal", "DiffusionGuide"]
    assert guide_parts(guide, protocol=WakeSleepGuide) == [inner[0]]
    assert guide_parts(guide, protocol=LabelGuide) == []
    single = GaussianGuide(local, "z", "x", name="gaussian")
    assert guide_parts(single) == [single] and guide_parts(single, protocol=WakeSleepGuide) == []


def test_protocols_are_followed_by_the_package_guides():
    def labelled(x, y=None):
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(logits=torch.zeros(3)), obs=y)
            pyro.sample("x", dist.Normal(y.float().unsqueeze(-1), 1.0).to_event(1), obs=x)

    assert isinstance(DiffusionGuide(model, "z", "x"), WakeSleepGuide)
    assert isinstance(ClassifierGuide(labelled, "y", "x"), LabelGuide)
    assert not isinstance(GaussianGuide(model, "z", "x"), WakeSleepGuide)


def test_labels_are_published_on_the_list_and_never_saved():
    first, second = AutoGuideList(model), AutoGuideList(model)
    assert published_labels(first) == {}
    publish_label(first, "y", torch.tensor([1, 0]))
    assert torch.equal(published_labels(first)["y"], torch.tensor([1, 0]))
    assert published_labels(second) == {}  # one channel per list
    assert published_labels(copy.deepcopy(first)) == {}
    assert published_labels(pickle.loads(pickle.dumps(first))) == {}
