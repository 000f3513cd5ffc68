"""examples/langevin_ebm_toy2d.py at a tiny scale: the records it writes, the flow density's mass on the box
(a check of Eq. 5.7 on the trained network), the table and the plot."""

import json
import math

import pytest

from tests.common import load_example

TINY = ["--datasets", "grid9", "--methods", "ebm", "ebm_gen", "mle", "--iterations", "4", "--mle-iterations", "2",
        "--batch-size", "32", "--hidden", "16", "16", "--ode-steps", "4", "--train-size", "500", "--test-size", "100",
        "--grid", "60"]


@pytest.fixture(scope="module")
def example():
    return load_example("langevin_ebm_toy2d")


def test_tiny_run_writes_records_table_and_plot(example, tmp_path):
    records = example.main(TINY + ["--out", str(tmp_path)])
    assert [(r["dataset"], r["method"], r["seed"]) for r in records] == [
        ("grid9", "ebm", 0), ("grid9", "ebm_gen", 0), ("grid9", "mle", 0)
    ]
    assert json.loads((tmp_path / "results.json").read_text()) == records
    for r in records:
        assert all(math.isfinite(r[k]) for k in ("test_ll", "test_ll_se", "ebm_density_ll", "true_ll", "flow_mass"))
        # the flow's density integrates to the base's mass on [-3.5, 3.5]^2 (0.99907) up to the midpoint
        # rule's error on a 60 x 60 grid and the little mass the flow moves across the box's edge
        assert abs(r["flow_mass"] - 0.99907) < 0.01
        assert r["iterations"] == (2 if r["method"] == "mle" else 4)
    assert records[0]["dissertation"] == -1.95 and records[2]["dissertation"] == -1.47
    table = (tmp_path / "table.md").read_text()
    assert "| grid9 | mle |" in table and "-1.47" in table
    assert (tmp_path / "toy2d_grid9.png").stat().st_size > 0
