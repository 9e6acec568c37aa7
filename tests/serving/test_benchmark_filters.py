"""The serving benchmarks run end to end on a tiny bundle and print their table (their numbers are docs/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_filters_benchmark_prints_a_row_per_setting(trained) -> None:
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "filters.py"), "--bundle", str(trained[2]),
                          "--queries", "20"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.strip().endswith(tuple("0123456789n"))]
    assert out.stdout.splitlines()[1].split("|")[0].strip() == "withdrawn" and len(rows) >= 7
