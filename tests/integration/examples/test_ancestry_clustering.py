"""examples/ancestry_clustering.py: a tiny run on the real panel and a tiny simulation (records with exactly
the keys of issue 10, the latent maps, a rerun that recomputes nothing), the masked genotype likelihood by hand,
and the PCA baseline against scikit-learn."""

import json

import pyro
import pytest
import torch
from pyro import poutine

from tests.common import load_example

TINY = ["--data", "1000g", "simulated", "--methods", "ddvi", "aevb", "pca", "--seeds", "0", "--steps", "4",
        "--hidden", "16", "--ddvi-steps", "3", "--denoiser-hidden", "16", "--clusters", "4", "--sim-samples", "8",
        "--sim-length", "200000", "--missing-rate", "0.05"]
KEYS = {"data", "panel", "method", "seed", "level", "purity", "completeness", "nmi"}


@pytest.fixture(scope="module")
def example():
    return load_example("ancestry_clustering")


def test_tiny_run_writes_the_records_and_maps_and_resumes(example, tmp_path):
    records = example.main(TINY + ["--out", str(tmp_path)])
    assert json.loads((tmp_path / "results.json").read_text()) == records
    assert sorted((r["data"], r["panel"], r["method"], r["level"]) for r in records) == sorted(
        (d, p, m, level)
        for d, p in [("1000g", "seldin"), ("simulated", "OutOfAfrica_3G09")]
        for m in ("ddvi", "aevb", "pca")
        for level in ("population", "superpopulation")
    )
    for r in records:
        assert set(r) == KEYS and r["seed"] == 0
        assert 0 < r["purity"] <= 1 and 0 <= r["completeness"] <= 1 and 0 <= r["nmi"] <= 1
    for kind in ("1000g", "simulated"):
        assert (tmp_path / f"latents_{kind}.png").stat().st_size > 0
    cell = next((tmp_path / "cells").glob("1000g_seldin_binomial_ddvi_0.json"))
    mtime = cell.stat().st_mtime_ns
    assert example.main(TINY + ["--out", str(tmp_path)]) == records and cell.stat().st_mtime_ns == mtime


def test_missing_genotypes_drop_out_of_the_likelihood(example):
    args = example.parse_args(["--missing-rate", "0.3"])
    dosages = torch.randint(0, 3, (6, 5)).float()
    x = example.features(dosages, args)
    missing = x < 0
    assert missing.any() and torch.equal(x[~missing], dosages[~missing])
    pyro.clear_param_store()
    prior = example.LearnableMixture(3, dim=2)
    model = example.make_model("binomial", 5, prior, (8,))
    z = torch.randn(6, 2)
    trace = poutine.trace(poutine.condition(model, data={"z": z})).get_trace(x)
    logits = trace.nodes["x"]["fn"].base_dist.base_dist.logits
    p = torch.sigmoid(logits)
    by_hand = torch.where(missing, 0.0, torch.log(torch.tensor([1.0, 2.0, 1.0]))[x.clamp(min=0).long()]
                          + x * p.log() + (2 - x) * (1 - p).log()).sum(-1)
    assert torch.allclose(trace.nodes["x"]["fn"].log_prob(x), by_hand, atol=1e-4)


def test_pca_baseline_matches_scikit_learn(example):
    from sklearn.decomposition import PCA

    dosages = torch.randint(0, 3, (40, 7)).double()
    ours = example.principal_components(dosages, 2)
    theirs = torch.from_numpy(PCA(2).fit_transform(example.standardized_genotypes(dosages).numpy()))
    assert torch.allclose(ours.abs(), theirs.abs(), atol=1e-8)
