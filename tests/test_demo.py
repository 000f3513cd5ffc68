"""The main demo's pieces: the paper's decoder and VAE model, and its command line."""

import pyro
import pytest
import torch

from pyro_diffvi.demo import ENCODER_KWARGS, main, make_decoder, make_model
from pyro_diffvi.guides import GaussianGuide
from pyro_diffvi.priors import Pinwheel


def test_decoder_and_model():
    decoder = make_decoder(2, hidden_dims=(8,))
    assert decoder(torch.zeros(3, 2)).shape == (3, 784)
    model = make_model(decoder, Pinwheel(), name="demo_decoder")
    trace = pyro.poutine.trace(model).get_trace(torch.zeros(4, 784))
    assert trace.nodes["z"]["value"].shape == (4, 2) and trace.nodes["x"]["is_observed"]
    assert any(name.startswith("demo_decoder") for name, site in trace.nodes.items() if site["type"] == "param")


def test_the_demo_guides_take_the_encoder_settings():
    model = make_model(make_decoder(2, hidden_dims=(8,)), Pinwheel())
    guide = GaussianGuide(model, "z", "x", **dict(ENCODER_KWARGS, encoder_hidden_dims=(8,)))
    assert guide(torch.zeros(2, 784))["z"].shape == (2, 2)


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--epochs" in capsys.readouterr().out
