"""examples/vaebm_toy2d.py: a tiny smoke run writes its table, results and plots with finite numbers."""

import json
import math

from tests.common import load_example


def test_tiny_run_writes_table_results_and_plots(tmp_path):
    example = load_example("vaebm_toy2d")
    out = example.main(["--seeds", "0", "--train-size", "256", "--test-size", "50", "--hidden", "8",
                        "--vae-steps", "6", "--ebm-steps", "3", "--batch-size", "32", "--langevin-steps", "2",
                        "--test-langevin-steps", "2", "--z-grid", "60", "--logz-samples", "2000",
                        "--iwae-particles", "8", "--out", str(tmp_path)])
    (record,) = out["records"]
    for key in ("vae_ll", "vae_iwae", "vaebm_ll", "log_z", "true_ll"):
        assert math.isfinite(record[key]), key
    assert record["vae_iwae"] <= record["vae_ll"] + 0.5  # a lower bound, up to the tiny run's noise
    assert abs(record["true_ll"] - 2.008) < 0.3  # the 25-Gaussians' own log density
    assert json.loads((tmp_path / "results.json").read_text())["records"][0]["seed"] == 0
    assert "VAEBM" in (tmp_path / "table.md").read_text()
    assert (tmp_path / "samples.png").exists() and (tmp_path / "densities.png").exists()
