"""Helpers: seeding, argument checks that name the argument, devices, partial tracing, module names."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_diffvi.util import (
    check_event_shape,
    check_finite,
    check_image_shape,
    check_module_name,
    check_positive_float,
    check_positive_int,
    check_probability,
    check_widths,
    resolve_device,
    set_seed,
    trace_until,
)


def test_set_seed_reproduces_every_generator():
    set_seed(3)
    a = (torch.rand(2), pyro.sample("x", dist.Normal(0.0, 1.0)))
    set_seed(3)
    b = (torch.rand(2), pyro.sample("x", dist.Normal(0.0, 1.0)))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="seed"):
        set_seed(-1)


def test_numeric_checks_name_the_argument():
    assert check_positive_int("n", 3) == 3 and check_positive_int("n", 0, minimum=0) == 0
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        check_positive_int("n", True)
    assert check_positive_float("h", 2) == 2.0 and check_positive_float("h", 0, allow_zero=True) == 0.0
    with pytest.raises(ValueError, match="h must be finite and > 0"):
        check_positive_float("h", 0.0)
    assert check_widths("hidden_dims", [4, 5]) == (4, 5) and check_widths("w", (), allow_empty=True) == ()
    with pytest.raises(ValueError, match="each width of hidden_dims"):
        check_widths("hidden_dims", [4, 0])
    assert check_image_shape("image_shape", [1, 28, 28]) == (1, 28, 28)
    with pytest.raises(ValueError, match=r"image_shape must be \(channels, height, width\), got \(28, 28\)"):
        check_image_shape("image_shape", (28, 28))
    with pytest.raises(ValueError, match="each size of image_shape"):
        check_image_shape("image_shape", (1, 0, 28))


def test_tensor_checks_name_the_argument():
    with pytest.raises(ValueError, match="x contains 1 non-finite"):
        check_finite("x", torch.tensor([1.0, float("inf")]))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        check_finite("x", [1.0])
    check_event_shape("z", torch.zeros(4, 2), (2,))
    with pytest.raises(ValueError, match=r"z must have trailing shape \(3,\)"):
        check_event_shape("z", torch.zeros(4, 2), (3,))


def test_devices_and_module_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type in ("cpu", "cuda")
    assert check_module_name(None, "Prior") == "Prior" and check_module_name("p", "Prior") == "p"
    with pytest.raises(ValueError, match="name must be a non-empty str"):
        check_module_name("", "Prior")


def test_trace_until_stops_at_the_sites_and_names_a_missing_one():
    def model():
        pyro.sample("a", dist.Normal(0.0, 1.0))
        pyro.sample("b", dist.Normal(0.0, 1.0))
        raise AssertionError("never reached")

    assert set(trace_until(model, ["a", "b"]).nodes) >= {"a", "b"}

    def short():
        pyro.sample("a", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"never sampled site\(s\) \['c'\]"):
        trace_until(short, ["a", "c"])


def test_check_probability_accepts_the_closed_unit_interval():
    assert check_probability("p", 0) == 0.0 and check_probability("p", 1) == 1.0
    for bad in (-0.1, 1.5, float("nan"), True, "0.5", None):
        with pytest.raises(ValueError, match="p must be a probability in \\[0, 1\\]"):
            check_probability("p", bad)
