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


def test_the_withdraw_benchmark_times_both_ways_and_leaves_the_bundle_alone(trained) -> None:
    manifest = (trained[2] / "manifest.json").read_bytes()
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "withdraw.py"), "--bundle", str(trained[2]),
                          "--books", "100", "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [line.split("|")[1:-1] for line in out.stdout.splitlines()[2:]]
    assert [r[0].strip() for r in rows] == [f"{len(trained[0].items.ids):,}", "100"]
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows)
    assert (trained[2] / "manifest.json").read_bytes() == manifest
