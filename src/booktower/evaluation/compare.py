"""Paired comparison of two evaluated runs (or baselines) on the same split, from their per-user tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from booktower.evaluation.split_identity import read_split_identity, split_mismatch
from booktower.evaluation.stats import PairedComparison, paired_compare


def per_user_table(path: Path, part: str = "test") -> pl.DataFrame:
    """A run directory, a baseline directory (DIR/<model>) or a parquet file -> its per-user table."""
    path = Path(path)
    candidate = path if path.suffix == ".parquet" else path / f"per_user_{part}.parquet"
    if not candidate.exists():
        raise FileNotFoundError(f"{candidate} is missing: evaluate the run first (booktower evaluate --run {path})")
    return pl.read_parquet(candidate)


def _identity_of(path: Path) -> dict | None:
    """The split a run (RUN/split.json) or one baseline (DIR/<model>, split.json in DIR) was scored on."""
    folder = path.parent if path.suffix == ".parquet" else path
    return read_split_identity(folder) or read_split_identity(folder.parent)


def compare_runs(a: Path, b: Path, metric: str, rng: np.random.Generator, samples: int = 2000,
                 part: str = "test") -> PairedComparison:
    if samples < 1:
        raise ValueError(f"samples must be at least 1 bootstrap resample, got {samples}")
    table_a, table_b = per_user_table(a, part), per_user_table(b, part)
    mismatch = split_mismatch(_identity_of(Path(a)), _identity_of(Path(b)))
    if mismatch:
        raise ValueError(f"{a} and {b} were scored on different splits ({mismatch}): a paired comparison needs "
                         "the same readers and held-out books; re-run one of them on the other's data")
    for name, table in (("A", table_a), ("B", table_b)):
        if metric not in table.columns:
            options = ", ".join(c for c in table.columns if "@" in c)
            raise ValueError(f"run {name} has no per-user column {metric!r}; choose from {options}")
    return paired_compare(table_a, table_b, metric, rng, samples)
