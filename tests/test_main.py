"""``python -m pyro_diffvi`` runs the demo's command line."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_module_entry_point_prints_help():
    result = subprocess.run([sys.executable, "-m", "pyro_diffvi", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "--epochs" in result.stdout
