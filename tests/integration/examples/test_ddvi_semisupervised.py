"""examples/ddvi_semisupervised.py on a tiny MNIST subset: the records it writes (keys of issue 9, null ELBO
and classifier for AAEB), the unlabelled ELBO as a bound, the plot, and a rerun that recomputes nothing."""

import json
import math

import pytest

from tests.common import load_example

TINY = ["--priors", "square", "--guides", "ddvi", "aevb", "aaeb", "--seeds", "0", "--labels", "20",
        "--unlabelled", "64", "--test-size", "40", "--epochs", "1", "--hidden", "16", "--batch-size", "32",
        "--eval-repeats", "2"]


@pytest.fixture(scope="module")
def example():
    return load_example("ddvi_semisupervised")


def test_tiny_run_writes_the_records_plot_and_resumes(example, tmp_path):
    records = example.main(TINY + ["--out", str(tmp_path)])
    assert [(r["prior"], r["guide"], r["seed"]) for r in records] == [
        ("square", "aaeb", 0), ("square", "aevb", 0), ("square", "ddvi", 0)
    ]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == records
    for r in records:
        assert {"prior", "guide", "seed", "elbo_nats", "knn_acc", "latent_nll", "classifier_acc"} <= set(r)
        assert 0 <= r["knn_acc"] <= 1 and math.isfinite(r["latent_nll"])
        if r["guide"] == "aaeb":
            assert r["elbo_nats"] is None and r["classifier_acc"] is None
        else:  # a log-likelihood bound of binary images: negative, at most 784 log 2 nats from zero
            assert -784 * math.log(2) - 1e3 < r["elbo_nats"] < 0 and 0 <= r["classifier_acc"] <= 1
    assert (tmp_path / "latents_square.png").stat().st_size > 0
    cell = tmp_path / "cells" / "square_ddvi_0.json"
    mtime = cell.stat().st_mtime_ns
    again = example.main(TINY + ["--out", str(tmp_path)])
    assert again == records and cell.stat().st_mtime_ns == mtime  # finished cells are not recomputed


def test_labelled_subset_is_balanced_and_seeded(example):
    import torch

    y = torch.arange(1000) % 10
    picks = example.split_labels(y, 100, seed=3)
    assert torch.bincount(y[picks], minlength=10).tolist() == [10] * 10
    assert torch.equal(picks, example.split_labels(y, 100, seed=3))
    assert not torch.equal(picks, example.split_labels(y, 100, seed=4))
