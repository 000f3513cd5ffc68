"""examples/ddvi_table1.py: the resumable runner (an interrupted run continues without recomputing
finished cells and gives the uninterrupted run's table) on a tiny synthetic configuration."""

import json
import os

import pytest

from tests.common import load_example


@pytest.fixture(scope="module")
def table1():
    return load_example("ddvi_table1")


TINY = ["--data", "synthetic", "--train-size", "32", "--test-size", "20", "--epochs", "0.5", "--hidden", "16",
        "--batch-size", "16", "--particles", "2", "--seeds", "0", "--priors", "square", "--methods", "aevb", "aaeb"]


def test_interrupted_run_resumes_and_gives_the_same_table(table1, tmp_path):
    full = table1.main(TINY + ["--out", str(tmp_path / "full"), "--no-plots"])
    assert full["complete"]

    out = tmp_path / "resumed"
    first = table1.main(TINY + ["--out", str(out), "--no-plots", "--max-cells", "1"])
    assert not first["complete"]
    cells = sorted(os.listdir(out / "cells"))
    assert cells == ["square_aevb_0.json", "square_aevb_0.pt"]  # one cell finished, nothing half-written
    done = out / "cells" / "square_aevb_0.json"
    stat, content = done.stat(), done.read_text()

    resumed = table1.main(TINY + ["--out", str(out)])
    assert resumed["complete"]
    assert done.stat().st_mtime_ns == stat.st_mtime_ns and done.read_text() == content  # not recomputed
    assert resumed["table"] == full["table"]
    assert (out / "table.md").read_text() == (tmp_path / "full" / "table.md").read_text()
    records = json.loads((out / "results.json").read_text())
    assert [(r["prior"], r["method"], r["seed"]) for r in records] == [("square", "aevb", 0), ("square", "aaeb", 0)]
    assert records[1]["elbo_nats"] is None and records[1]["elbo_nats_encoder"] is not None  # AAEB: not a bound
    assert all(set(r) >= {"prior", "method", "seed", "elbo_nats", "mmd", "latent_nll"} for r in records)
    assert (out / "plots" / "latents_all.png").exists() and (out / "plots" / "samples_square_aevb.png").exists()


def test_other_settings_in_the_same_out_dir_are_refused(table1, tmp_path):
    table1.main(TINY + ["--out", str(tmp_path), "--no-plots", "--methods", "aevb"])
    with pytest.raises(SystemExit, match="other settings"):
        table1.main(TINY + ["--out", str(tmp_path), "--no-plots", "--methods", "aevb", "--particles", "3"])


def test_ablation_cells_equal_to_the_defaults_are_shared(table1):
    names = {table1.ablation_cell("pinwheel", name, 0) for name in table1.ABLATIONS}
    assert len(table1.ABLATIONS) == 9 and len(names) == 7  # T=20, cosine, wake-sleep: the same run
    assert table1.t_interval([1.0, 2.0, 3.0])[1] == pytest.approx(4.302653 / 3**0.5, rel=1e-5)
