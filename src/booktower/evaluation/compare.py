"""Paired comparison of two evaluated runs (or baselines) on the same split, from their per-user tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from booktower.evaluation.split_identity import read_split_identity, split_mismatch
from booktower.evaluation.stats import PairedComparison, paired_compare
from booktower.utils.folder_lock import writer_of
from booktower.utils.run_files import baselines_fix, read_parquet, rescore_fix
from booktower.utils.runinfo import is_sweep_trial


def per_user_table(path: Path, part: str = "test") -> pl.DataFrame:
    """A run directory, a baseline directory (DIR/<model>) or a parquet file -> its per-user table."""
    path = Path(path)
    candidate = path if path.suffix == ".parquet" else path / f"per_user_{part}.parquet"
    if not candidate.exists():
        raise FileNotFoundError(_why_no_table(path, candidate, part))
    return read_parquet(candidate, _rewrite_fix(candidate.parent), ("user_id", "item_id"))


def _rewrite_fix(folder: Path) -> str:
    """How a damaged per-user table is written again: a run's by `evaluate`, a baseline's (DIR/<model>) by
    `booktower baselines`."""
    if (folder / "config.yaml").is_file():
        return rescore_fix(folder)
    if (folder.parent / "metrics.json").is_file():
        config = folder.parent.parent / "config.yaml"
        return baselines_fix(folder.parent, config if config.is_file() else "CFG", folder.name)
    return "pass a per-user table written by `booktower evaluate` or `booktower baselines`"


def _why_no_table(path: Path, candidate: Path, part: str) -> str:
    """What the folder without a per-user table is, and the fix for that kind: only a trained run can be
    evaluated, so `booktower evaluate` is the fix for nothing else."""
    moved = sorted(path.parent.parent.glob(f"{path.parent.name}-other-split*/{path.name}")) if path.name else []
    if not path.exists() and moved:  # `booktower baselines` on another split moved this one aside
        return (f"{path} is missing: `booktower baselines` on another split moved the earlier baselines aside, "
                f"to {', '.join(str(m.parent) for m in moved)}. They were scored on another split than the folder's "
                f"new ones. Fix: recompute it (booktower baselines ... -o {path.parent} --models {path.name}), or "
                f"compare {moved[-1]} with a run of its own split")
    if path.suffix == ".parquet" or not path.is_dir():
        return f"{candidate} is missing. Fix: pass a run folder, a baseline folder or a per_user_{part}.parquet file"
    models = sorted(p.parent.name for p in path.glob(f"*/per_user_{part}.parquet"))
    if models:  # `baselines --output-dir` holds one folder per model and no table of its own
        return (f"{path} holds the baselines {', '.join(models)}, one folder each: compare one of them. "
                f"Fix: pass {path / models[0]} (or {path}/<model> for another of them)")
    if (path / "data_summary.json").exists() and not any((path / p).exists() for p in ("vocab", "model",
                                                                                         "checkpoints")):
        return (f"{path} holds prepared data only (written by `booktower prepare`): it has no model to score. "
                f"Fix: train a run on it (booktower train --config {path / 'config.yaml'} --output-dir RUN) "
                f"and compare RUN")
    if part == "test" and (path / "per_user_validation.parquet").exists() and not (path / "model").is_dir():
        return (f"{path} is a `--validation-only` run: its test split has not been scored. Fix: pair it on "
                f"validation (booktower compare ... --split validation), or complete the run you choose first "
                f"(booktower train -o {path} --resume scores its test, once)")
    if (path / "model").is_dir():
        return f"{candidate} is missing. Fix: evaluate the run first (booktower evaluate --run {path})"
    if is_sweep_trial(path):
        return (f"{path} is a sweep trial: it keeps its config and epochs.csv only (no model, no per-user table). "
                f"Fix: train its config as a run, e.g. booktower train --config {path / 'config.yaml'} -o RUN "
                "--validation-only, and compare RUN (--split validation)")
    if (path / "config.yaml").exists() and (writer := writer_of(path)) is not None:
        return f"{path} is being written right now by {writer}. Fix: wait for it to finish, then compare it"
    if (path / "config.yaml").exists():
        return (f"{path} is a run that has not finished training (no model/). "
                f"Fix: finish it (booktower train -o {path} --resume), then compare it")
    return (f"{path} is neither a run nor a baseline folder (no per_user_{part}.parquet, no config.yaml). "
            f"Fix: pass a folder written by `booktower train`, or RUN/baselines/<model>")


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
            raise ValueError(f"run {name} has no per-user column {metric!r}; choose from {_ranking_columns(table)}")
    if not is_ranking_metric(metric):
        raise ValueError(f"{metric!r} is not a ranking-quality metric: the comparison counts a user as better "
                         f"off in A when A's value is higher, which holds for {', '.join(RANKING_METRICS)} only "
                         f"(a lower popularity@K may be the better list). Fix: --metric one of "
                         f"{_ranking_columns(table_a)}")
    return paired_compare(table_a, table_b, metric, rng, samples)


RANKING_METRICS = ("HR", "Recall", "Precision", "NDCG", "MRR", "MAP")
"""The per-user metrics where higher is better, which is what "users A better / worse" counts."""


def is_ranking_metric(metric: str) -> bool:
    family, at, k = metric.partition("@")
    return bool(at) and family in RANKING_METRICS and k.isdigit()


def _ranking_columns(table: pl.DataFrame) -> str:
    return ", ".join(c for c in table.columns if is_ranking_metric(c))
