"""Structure discovery: site names, where an observed value lies among the model's arguments (subsampled too), the
plates of the latent sites, encoder inputs, and the errors naming what is wrong."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoGuideList, AutoNormal
from torch.distributions import constraints

from pyro_diffvi.guides import GaussianGuide
from pyro_diffvi.guides.structure import (
    ObservedSource,
    as_names,
    check_observed_values,
    check_sites,
    constrained,
    encoder_features,
    find_source,
    plate_specs,
    select,
    user_plates,
)


def model(x, size=None):
    with pyro.plate("data", x.shape[0] if size is None else size, subsample_size=None if size is None else 2) as idx:
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x[idx] if size is not None else x)


def test_site_names():
    assert as_names("z", "latent") == ("z",) and as_names(["z", "w"], "latent") == ("z", "w")
    with pytest.raises(TypeError, match="latent must be a site name"):
        as_names([], "latent")
    with pytest.raises(ValueError, match="repeated site names"):
        as_names(["z", "z"], "latent")


def test_an_observed_value_is_found_among_the_arguments_and_along_subsampled_plates():
    x = torch.randn(5, 2)
    sites = poutine.trace(model).get_trace(x).nodes
    assert find_source(sites, "x", (x,), {}) == ObservedSource(0, ())
    sites = poutine.trace(model).get_trace(x, 5).nodes
    source = find_source(sites, "x", (x, 5), {})
    assert source.position == 0 and [plate for plate, _ in source.subsampled_dims] == ["data"]
    indices = {"data": sites["data"]["value"]}
    assert torch.equal(select(source, x, indices), x[indices["data"]])


def test_plates_of_the_latent_sites():
    x = torch.randn(5, 2)
    sites = poutine.trace(model).get_trace(x).nodes
    (spec,) = plate_specs(sites, ["z"], ["x"])
    assert (spec.name, spec.dim, spec.size, spec.subsample_size, spec.size_source) == ("data", -1, 5, None, (0, -2))

    def unplated(x):
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    with pytest.raises(ValueError, match="share no plate"):
        plate_specs(poutine.trace(unplated).get_trace(x).nodes, ["z"], ["x"])
    with pytest.raises(TypeError, match="create_plates must return a pyro.plate"):
        user_plates(lambda x: "data", (x,), {})


def test_encoder_inputs_and_observed_checks():
    shapes = {"x": torch.Size([2]), "y": torch.Size([])}
    features = encoder_features(["x", "y"], [torch.zeros(4, 2), torch.tensor([0, 2, 1, 0])], shapes,
                                {"x": None, "y": 3}, torch.float32)
    assert features.shape == (4, 5) and torch.equal(features[:, 2:].sum(-1), torch.ones(4))  # y one-hot
    with pytest.raises(ValueError, match=r"observed site 'x' has shape \(4, 3\)"):
        check_observed_values(["x"], [torch.zeros(4, 3)], shapes)
    with pytest.raises(ValueError, match="non-finite"):
        check_observed_values(["x"], [torch.full((4, 2), float("nan"))], shapes)


def test_constrained_sites_are_mapped_to_their_support():
    base = dist.Normal(torch.zeros(3), 1.0).to_event(1)
    assert constrained(base, 3, torch.Size([3]), constraints.real_vector) is base
    positive = constrained(base, 3, torch.Size([3]), constraints.independent(constraints.positive, 1))
    assert bool((positive.sample((10,)) > 0).all())


def test_a_sequential_plate_is_named_as_such_not_as_global():
    # Issue 25 case 15: a site of a `for i in pyro.plate(...)` loop was refused as "global" (outside every plate).
    def loop(x):
        for i in pyro.plate("data", x.shape[0]):
            z = pyro.sample(f"z_{i}", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample(f"x_{i}", dist.Normal(z, 1.0).to_event(1), obs=x[i])

    sites = poutine.trace(loop).get_trace(torch.zeros(3, 2)).nodes
    with pytest.raises(NotImplementedError, match=r"latent site 'z_0' is in the sequential plate\(s\) \['data'\]"):
        check_sites(sites, ["z_0"], ["x_0"])

    def global_model(x):
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    with pytest.raises(ValueError, match="latent site 'z' is global"):  # a truly global site is still named global
        check_sites(poutine.trace(global_model).get_trace(torch.zeros(3, 2)).nodes, ["z"], ["x"])


def test_a_list_plate_of_the_first_batch_size_is_named_when_the_batch_shrinks():
    # Issue 25 case 14: an AutoGuideList without create_plates, given a smaller last batch, raised Pyro's
    # "Shape mismatch inside plate('data') at site z dim -1, 8 vs 5".
    def global_local(x):
        scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, scale).to_event(1), obs=x)

    def make(create_plates=None):
        guide = AutoGuideList(global_local, create_plates=create_plates)
        guide.append(AutoNormal(poutine.block(global_local, expose=["scale"])))
        guide.append(GaussianGuide(global_local, "z", "x", encoder_hidden_dims=(8,)))
        return guide

    guide = make()
    Trace_ELBO().loss(global_local, guide, torch.randn(8, 2))
    with pytest.raises(ValueError, match=r"plate 'data' given to the guide has size 8, but this call's observed values "
                                         r"have 5 rows .* AutoGuideList\(model, create_plates="):
        Trace_ELBO().loss(global_local, guide, torch.randn(5, 2))
    pyro.clear_param_store()
    fixed = make(create_plates=lambda x: pyro.plate("data", x.shape[0]))  # the fix the message names
    for n in (8, 5):
        assert math.isfinite(Trace_ELBO().loss(global_local, fixed, torch.randn(n, 2)))
