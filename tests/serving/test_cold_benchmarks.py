"""The cold-item benchmark and its re-scoring run end to end on the checkerboard: a finished run scored again
without training gives the numbers it wrote (the same held-out books, the same model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _script(name: str, *args: str, cwd: Path = REPO) -> str:
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / name), *args], capture_output=True, text=True,
                         timeout=600, cwd=cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.parametrize("seeds", [[], ["--seeds", "1,2"]])
def test_a_rescored_run_gives_the_numbers_it_wrote(tmp_path, seeds) -> None:
    sys.path.insert(0, str(REPO / "tests" / "training"))
    from test_resume import write_dataset

    config = write_dataset(tmp_path / "data", 40)
    config.write_text(config.read_text().replace(f"{tmp_path}/", ""))  # data paths relative to tmp_path
    run = tmp_path / "run"
    _script("cold_items.py", "--config", str(config), "--output-dir", str(run), "--fraction", "0.2",
            "--set", "training.epochs=1", *seeds, cwd=tmp_path)  # the re-scoring below runs from another folder
    written = json.loads((run / "cold_items.json").read_text())
    assert written["split_seed"] == 42 and written["n_targets"] > 0

    printed = _script("rescore_cold_items.py", "--run", str(run), "--output", str(tmp_path / "again.json"))
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["cold"] == written["cold"] and again["n_targets"] == written["n_targets"]
    rows = [line.split("|") for line in printed.splitlines() if line.strip().startswith(("two-tower", "popularity"))]
    assert any(row[1].strip() == "cold" and row[2] == row[3] for row in rows), "run and now side by side"
