"""examples/flow_prior_mnist.py on a tiny MNIST subset: the records, table and plot it writes."""

import json
import math

import pytest

from tests.common import load_example

TINY = ["--seeds", "0", "--train-size", "512", "--test-size", "100", "--epochs", "1", "--hidden", "32",
        "--batch-size", "128", "--num-transforms", "2", "--flow-hidden", "20"]


@pytest.fixture(scope="module")
def example():
    return load_example("flow_prior_mnist")


def test_tiny_run_writes_records_table_and_samples(example, tmp_path):
    records = example.main(TINY + ["--out", str(tmp_path)])
    assert [r["model"] for r in records] == ["vae", "vae_flow", "glf"]
    for r in records:
        assert 0 < r["recon_mse"] < 1  # pixels in [0, 1]
        assert r["mmd"] > 0 and math.isfinite(r["final_loss_per_image"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["records"] == records and saved["mmd_train_vs_test"] > 0
    assert "| glf |" in (tmp_path / "table.md").read_text()
    assert (tmp_path / "samples.png").stat().st_size > 0


def test_quick_settings(example):
    args = example.parse_args(["--quick"])
    assert (args.train_size, args.epochs, args.latent) == (10000, 4, 20)
