"""examples/score_vae.py on a tiny MNIST subset: the records (the issue's keys), the prior checkpoint file, the figure,
the table, and a rerun that recomputes nothing."""

import json
import math

import pytest

from tests.common import load_example

TINY = ["--seeds", "0", "--train-size", "256", "--test-size", "24", "--bound-size", "16", "--bound-particles", "2",
        "--latent", "4", "--prior-steps", "6", "--steps", "4", "--corrector-steps", "2", "--sample-steps", "3",
        "--score-hidden", "16", "--pixel-hidden", "4", "--hidden", "16", "--batch-size", "16", "--time-samples", "1"]


@pytest.fixture(scope="module")
def example():
    return load_example("score_vae")


def test_tiny_run_writes_records_checkpoint_figure_and_resumes(example, tmp_path):
    records = example.main(TINY + ["--out", str(tmp_path)])
    assert sorted((r["method"], r["beta"]) for r in records) == sorted(example.GRID)
    for r in records:
        assert {"method", "beta", "seed", "l2", "ssim", "bound_nats", "knn_acc", "seconds"} <= set(r)
        assert 0 <= r["l2"] <= 28 and -1 <= r["ssim"] <= 1 and 0 <= r["knn_acc"] <= 1 and r["seconds"] >= 0
        assert math.isfinite(r["bound_nats"]) and r["bound_se"] >= 0
        # a bound on the log density of dequantized images in [0, 1]^784: a density on the unit cube, so E log p
        # is at most 0 (the uniform's) for the true distribution; the untrained models here are far below it
        assert r["bound_nats"] < 0
        assert ("ssim_ode" in r) == (r["method"] != "vae")
    assert json.loads((tmp_path / "results.json").read_text()) == records
    assert (tmp_path / "prior_seed0.pt").stat().st_size > 0  # the pretrained prior is a file
    assert (tmp_path / "reconstructions.png").stat().st_size > 0
    assert "| scorevae+ | 0.01 |" in (tmp_path / "table.md").read_text()
    cell = tmp_path / "cells" / "scorevaeplus_beta0.01_seed0.json"
    mtime = cell.stat().st_mtime_ns
    assert example.main(TINY + ["--out", str(tmp_path)]) == records and cell.stat().st_mtime_ns == mtime


def test_tiny_run_of_the_paper_architecture(example, tmp_path):
    # the --device cuda networks at toy width on CPU: U-Net score models, the convolutional encoder, its mirror decoder
    args = TINY + ["--network", "unet", "--encoder", "conv", "--unet-channels", "4", "--unet-res-blocks", "1",
                   "--no-ode-metrics", "--prior-steps", "2", "--steps", "2", "--test-size", "8", "--bound-size", "4",
                   "--methods", "scorevae", "vae", "diffdecoder", "--out", str(tmp_path)]
    records = example.main(args)
    assert {r["method"] for r in records} == {"scorevae", "vae", "diffdecoder"}
    assert all(math.isfinite(r["bound_nats"]) and -1 <= r["ssim"] <= 1 for r in records)


def test_quick_and_device_settings(example):
    quick = example.parse_args(["--quick"])
    assert (quick.network, quick.encoder, quick.prior_steps, quick.steps, quick.diffdecoder_steps) == (
        "mlp", "mlp", 2000, 1000, 1000)
    assert (quick.sample_steps, quick.test_size, quick.ode_metrics) == (100, 256, False)
    # the quick scale is a set of defaults: an explicit option wins
    assert example.parse_args(["--quick", "--steps", "3000", "--ode-metrics"]).steps == 3000
    assert example.parse_args(["--quick", "--ode-metrics"]).ode_metrics
    paper = example.parse_args(["--device", "cuda"])
    assert (paper.network, paper.encoder, paper.sample_steps, paper.ode_metrics) == ("unet", "conv", 1000, True)
    assert paper.diffdecoder_steps == paper.prior_steps + paper.steps
    assert example.parse_args(["--device", "cuda", "--quick"]).network == "mlp"


def test_help_says_what_quick_reduces(example, capsys):
    with pytest.raises(SystemExit):
        example.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Against the paper's setting it reduces" in text and "100 reverse-SDE steps instead of 1,000" in text


def test_dequantization_stays_in_the_cells():
    import torch

    example = load_example("score_vae")
    k = torch.arange(256.0) / 256
    v = example.dequantize(k.expand(100, -1), torch.Generator().manual_seed(0))
    x = (v + 1) / 2
    assert bool(((x >= k) & (x < k + 1 / 256)).all())
