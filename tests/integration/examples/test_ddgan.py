"""examples/ddgan.py on its --quick path at tiny size: every cell's record (the keys of issue 24), the data rows'
exact metrics, the figures, the MNIST classifier, and a rerun that recomputes nothing."""

import json
import math

import pytest

from tests.common import load_example

TINY = ["--quick", "--seeds", "0", "--iterations", "3", "--batch-size", "16", "--hidden", "8", "--noise-dim", "2",
        "--num-samples", "400", "--train-size", "200", "--ddpm-steps", "4", "20", "--classifier-epochs", "1"]
KEYS = {"data", "method", "num_steps", "seed", "modes", "kl", "high_quality", "nfe", "seconds"}


@pytest.fixture(scope="module")
def example():
    return load_example("ddgan")


def test_tiny_quick_run_writes_records_figures_and_resumes(example, tmp_path):
    records = example.main(TINY + ["--out", str(tmp_path)])
    runs = sorted((r["data"], r["method"], r["num_steps"]) for r in records)
    expected = [(d, m, t) for d in ("25gaussians", "stackedmnist")
                for m, t in (("data", 0), ("ddgan", 4), ("ddpm", 4), ("ddpm", 20))]
    assert runs == sorted(expected)
    assert json.loads((tmp_path / "results.json").read_text()) == records
    for r in records:
        assert KEYS <= set(r) and r["seed"] == 0 and math.isfinite(r["kl"]) and r["kl"] >= 0
        assert r["nfe"] == r["num_steps"] and r["seconds"] > 0
        if r["data"] == "25gaussians":
            assert 0 <= r["modes"] <= 25 and 0 <= r["high_quality"] <= 1
        else:
            assert 0 <= r["modes"] <= 1000 and r["high_quality"] is None
    by_run = {(r["data"], r["method"]): r for r in records}
    # 400 draws of the mixture itself: every mode (P(a mode gets no high-quality draw) = (1 - 0.989/25)^400 < 1e-6)
    # and a high-quality share near P(chi_2 <= 9) = 0.9889 (SE 0.005)
    data = by_run[("25gaussians", "data")]
    assert data["modes"] == 25 and abs(data["high_quality"] - (1 - math.exp(-4.5))) < 0.03
    # 400 real stacks read by a 1-epoch classifier: nearly one mode per stack (400 draws of ~1000 modes)
    assert 300 < by_run[("stackedmnist", "data")]["modes"] <= 400
    table = (tmp_path / "table.md").read_text()
    assert "MNIST classifier (reads StackedMNIST modes): test accuracy 0.9" in table and "Table 6.3" in table
    for name in ("samples_25gaussians.png", "samples_stackedmnist.png"):
        assert (tmp_path / name).stat().st_size > 0
    cell = tmp_path / "cells" / "25gaussians_ddgan4_0.json"
    mtime = cell.stat().st_mtime_ns
    again = example.main(TINY + ["--out", str(tmp_path), "--no-plots"])
    assert again == records and cell.stat().st_mtime_ns == mtime  # finished cells are not recomputed


def test_quick_settings_and_overrides(example):
    args = example.parse_args(["--quick", "--iterations", "7"])
    s = example.settings(args, "25gaussians")
    assert s["iterations"] == 7 and s["hidden"] == [128, 128, 128] and s["batch_size"] == 256
    full = example.settings(example.parse_args([]), "25gaussians")
    # the dissertation's 25-Gaussians setting: 3 x 512, Adam 1e-4, batch 512, 50k iterations
    assert (full["hidden"], full["lr"], full["batch_size"], full["iterations"]) == ([512] * 3, 1e-4, 512, 50_000)
