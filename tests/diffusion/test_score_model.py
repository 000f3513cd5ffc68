"""ScoreModel: the score is minus the noise over sigma, checkpoints rebuilt in another process give identical
scores, the U-Net network, the Gaussian skip and zero start, and errors for data of another shape."""

import subprocess
import sys
import textwrap

import pytest
import torch

from pyro_diffvi.diffusion import VPSDE, ScoreModel


def test_score_is_minus_noise_over_sigma_with_the_gaussian_skip():
    model = ScoreModel((3,), network_options={"global_hidden_dims": [8]}, zero_init=True)
    x, t = torch.randn(5, 3), torch.rand(5)
    _, sigma = model.sde.marginal_coefficients(t)
    # zero network + skip: the exact score of N(0, I) data at every time, -x
    assert torch.allclose(model.noise(x, t), sigma[:, None] * x)
    assert torch.allclose(model(x, t), -x, atol=1e-6)
    plain = ScoreModel((3,), network_options={"global_hidden_dims": [8]}, zero_init=True, gaussian_skip=False)
    assert torch.equal(plain.noise(x, t), torch.zeros(5, 3))


def test_checkpoint_loaded_by_another_process_gives_identical_scores(tmp_path):
    torch.manual_seed(0)
    sde = VPSDE(beta_min=0.2, beta_max=15.0)
    model = ScoreModel((2, 3), context_dim=2, network_options={"global_hidden_dims": [16, 16], "time_dim": 8}, sde=sde)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # not the initialization: the file must carry the weights
    path, inputs, out = tmp_path / "prior.pt", tmp_path / "inputs.pt", tmp_path / "scores.pt"
    model.save(path)
    x, t, z = torch.randn(7, 2, 3), torch.rand(7), torch.randn(7, 2)
    torch.save({"x": x, "t": t, "z": z}, inputs)
    script = textwrap.dedent(f"""
        import torch
        from pyro_diffvi.diffusion import ScoreModel
        model = ScoreModel.load({str(path)!r})
        i = torch.load({str(inputs)!r})
        torch.save({{"score": model(i["x"], i["t"], i["z"]), "sde": model.sde.config()}}, {str(out)!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    result = torch.load(out)
    with torch.no_grad():
        assert torch.equal(result["score"], model.eval()(x, t, z))
    assert result["sde"] == sde.config()


def test_unet_score_model_and_config_roundtrip(tmp_path):
    options = {"image_shape": [1, 8, 8], "base_channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1,
               "attention_resolutions": [4]}
    model = ScoreModel((64,), network="unet", network_options=options)
    x, t = torch.randn(3, 64), torch.rand(3)
    assert model(x, t).shape == (3, 64)
    path = tmp_path / "unet.pt"
    model.save(path)
    loaded = ScoreModel.load(path)
    assert loaded.config() == model.config() and loaded.network_name == "unet"
    assert torch.equal(loaded(x, t), model.eval()(x, t))
    with pytest.raises(ValueError, match="image_shape"):
        ScoreModel((64,), network="unet", network_options={"image_shape": [1, 4, 4]})


def test_float64_and_batch_shapes():
    model = ScoreModel((4,), context_dim=2, network_options={"global_hidden_dims": [8]}).double()
    x, t, z = torch.randn(2, 3, 4, dtype=torch.float64), torch.rand(2, 3, dtype=torch.float64), torch.randn(3, 2)
    out = model(x, t, z.double())  # the context broadcast against the batch
    assert out.shape == (2, 3, 4) and out.dtype == torch.float64


def test_errors_name_the_argument():
    model = ScoreModel((4,), network_options={"global_hidden_dims": [8]})
    with pytest.raises(ValueError, match=r"x_t must have shape batch_shape \+ \(4,\)"):
        model(torch.zeros(2, 5), torch.zeros(2))
    with pytest.raises(ValueError, match="context must be None"):
        model(torch.zeros(2, 4), torch.zeros(2), torch.zeros(2, 3))
    conditional = ScoreModel((4,), context_dim=3, network_options={"global_hidden_dims": [8]})
    with pytest.raises(ValueError, match=r"context must have shape batch_shape \+ \(3,\)"):
        conditional(torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="network must be one of"):
        ScoreModel((4,), network="transformer")
    custom = ScoreModel((4,), network=torch.nn.Identity())
    with pytest.raises(TypeError, match="torch.save"):
        custom.config()


def test_load_refuses_other_files(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a ScoreModel checkpoint"):
        ScoreModel.load(tmp_path / "other.pt")
