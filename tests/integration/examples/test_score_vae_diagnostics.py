"""examples/score_vae_diagnostics.py on a tiny run of examples/score_vae.py: every diagnostic is written, and the
models it retrains are the run's own (the VAE's SSIM and the encoder's parameters at the run's budget)."""

import json
import math

from tests.common import load_example
from tests.integration.examples.test_score_vae import TINY


def test_diagnostics_of_a_tiny_run_retrain_the_runs_own_models(tmp_path):
    load_example("score_vae").main(TINY + ["--methods", "scorevae", "vae", "--out", str(tmp_path)])
    out = load_example("score_vae_diagnostics").main(TINY + ["--out", str(tmp_path), "--encoder-steps", "2", "4"])
    assert json.loads((tmp_path / "diagnostics.json").read_text()) == json.loads(json.dumps(out))
    assert out["vae"]["ssim_mean"] == out["vae"]["ssim_cell"]  # the VAE retrained is the cell's
    budget = {r["steps"]: r for r in out["encoder_budget"]}
    assert sorted(budget) == [2, 4] and budget[4]["equals_cell"]  # TINY trains the encoder 4 steps
    assert len(out["ssim_restored_from_t0"]) == 6 and len(out["noise_mse_by_t"]) == 7
    values = [v for row in out["noise_mse_by_t"].values() for v in row.values()]
    assert all(math.isfinite(v) and v >= 0 for v in values)
    assert "| noise error, vae decoder |" in (tmp_path / "diagnostics.md").read_text()
