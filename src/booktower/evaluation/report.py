"""write_report(run_dir): RUN/report.md and RUN/plots/*.png, rendered purely from the run's files."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from booktower.config import EvaluationConfig, load_config
from booktower.evaluation import _plots
from booktower.evaluation.report_sections import (
    audit_section,
    comparison_section,
    data_section,
    diagnostics_section,
    headline_section,
    run_section,
    slices_section,
)
from booktower.evaluation.data_check import ALLOW_FLAG, DATA_CHANGED
from booktower.evaluation.split_identity import read_split_identity, split_mismatch
from booktower.utils.atomic import atomic_write_text
from booktower.utils.run_files import (
    RUN_JSON_SHAPE,
    baselines_fix,
    damaged,
    read_json_object,
    read_parquet,
    reading_run_file,
    rescore_fix,
    retrain_fix,
)

log = logging.getLogger(__name__)


@dataclass
class RunFiles:
    """Everything the report reads; missing files are None / empty and their sections say so."""

    run_dir: Path
    metrics: dict[str, Any]
    evaluation: EvaluationConfig
    seed: int
    config_text: str = ""
    epochs: pl.DataFrame | None = None
    per_user: pl.DataFrame | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    data_summary: dict[str, Any] = field(default_factory=dict)
    run_info: dict[str, Any] = field(default_factory=dict)  # run.json
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    baseline_per_user: dict[str, pl.DataFrame] = field(default_factory=dict)
    stale_baselines: str | None = None  # why RUN/baselines was left out (computed on another split)


METRICS_SHAPE = {DATA_CHANGED: dict}  # validation and test: _metrics_problem
AUDIT_SHAPE = {"rates": dict, "examples": list}
DATA_SUMMARY_SHAPE = {"n_items": int, "warnings": list}
PER_USER_COLUMNS = ("user_id", "item_id", "n_train", "rank")
"""The per-user table's columns the report reads beyond the metrics' (pairing, slices, the rank histogram)."""


def _metrics_problem(metrics: Any, where: str = "") -> str | None:
    """What in a metrics object ({"validation": {...}, "test": {...}}) is not as evaluation writes it (each
    metric a number, or null), in words; None when all is."""
    if not isinstance(metrics, dict):
        return f"its {where.rstrip('.')!r} is not an object of metrics"
    for part in ("validation", "test"):
        scores = metrics.get(part, {})
        if not isinstance(scores, dict):
            return f"its {where}{part} is not an object of metrics"
        for key, value in scores.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                return f"its {where}{part} {key} is {str(value)[:40]!r}, not a number"
    return None


def _json(path: Path, fix: str, shape: dict[str, type] | None = None) -> dict[str, Any]:
    """The file's JSON object; empty when it is missing (its section says so); a DataError when damaged."""
    return read_json_object(path, fix, shape) or {}


def _no_metrics(run_dir: Path) -> str:
    """Why a run has no metrics.json yet, with the fix for its kind (`evaluate` scores finished runs only)."""
    from booktower.training.run import unfinished_reason

    missing = f"{run_dir / 'metrics.json'} is missing"
    reason = unfinished_reason(run_dir) if (run_dir / "config.yaml").is_file() else None
    if reason:
        return f"{missing}: {reason}"
    return f"{missing}. Fix: score the run first (booktower evaluate --run {run_dir})"


def read_run(run_dir: Path) -> RunFiles:
    """The run's files; a damaged or hand-edited one raises a DataError naming it and how to replace it."""
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.json").exists():
        raise FileNotFoundError(_no_metrics(run_dir))
    config_path = run_dir / "config.yaml"
    config = load_config(config_path) if config_path.exists() else load_config(None)
    rescore, retrain = rescore_fix(run_dir), retrain_fix(run_dir)
    metrics_fix = rescore_fix(run_dir, move_aside=True)
    metrics = _json(run_dir / "metrics.json", metrics_fix, METRICS_SHAPE)
    if problem := _metrics_problem(metrics):
        raise damaged(run_dir / "metrics.json", metrics_fix, problem)
    files = RunFiles(run_dir, metrics, config.evaluation, config.seed,
                     config_path.read_text(encoding="utf-8") if config_path.exists() else "")
    if (run_dir / "epochs.csv").exists():
        with reading_run_file(run_dir / "epochs.csv", retrain):
            files.epochs = pl.read_csv(run_dir / "epochs.csv")
    if (run_dir / "per_user_test.parquet").exists():
        files.per_user = read_parquet(run_dir / "per_user_test.parquet", rescore, PER_USER_COLUMNS)
    files.diagnostics = _json(run_dir / "diagnostics.json", rescore)
    files.audit = _json(run_dir / "audit.json", rescore, AUDIT_SHAPE)
    if not all(isinstance(example, dict) for example in files.audit.get("examples", [])):
        raise damaged(run_dir / "audit.json", rescore, "its 'examples' are not all objects")
    files.data_summary = _json(run_dir / "data_summary.json", retrain, DATA_SUMMARY_SHAPE)
    files.run_info = _json(run_dir / "run.json", retrain, RUN_JSON_SHAPE)
    _read_baselines(files, config_path)
    return files


def _read_baselines(files: RunFiles, config_path: Path) -> None:
    """RUN/baselines: their metrics and per-user tables, left out when they were computed on another split."""
    folder, config = files.run_dir / "baselines", config_path if config_path.is_file() else "CFG"
    fix = baselines_fix(folder, config)
    files.baselines = _json(folder / "metrics.json", fix)
    for name, parts in files.baselines.items():
        if problem := _metrics_problem(parts, f"{name}."):
            raise damaged(folder / "metrics.json", fix, problem)
    # the baselines' counts first: the report's sentence names them before the run
    mismatch = split_mismatch(read_split_identity(folder), read_split_identity(files.run_dir))
    if files.baselines and mismatch:
        files.stale_baselines, files.baselines = mismatch, {}
    for name in files.baselines:
        path = folder / name / "per_user_test.parquet"
        if path.exists():
            files.baseline_per_user[name] = read_parquet(path, baselines_fix(folder, config, name),
                                                         ("user_id", "item_id"))


def _plots_for(files: RunFiles) -> dict[str, Path]:
    plots_dir = files.run_dir / "plots"
    ks = files.evaluation.ks
    rows = {"model": files.metrics.get("test", {})}
    rows.update({name: parts.get("test", {}) for name, parts in files.baselines.items()})
    made = {
        "training": _plots.training_curves(files.epochs, plots_dir / "training.png") if files.epochs is not None else None,
        "metric_at_k": _plots.metric_at_k(rows, ks, plots_dir / "metric_at_k.png"),
        "popularity": _plots.popularity_bars(rows, ks[0], plots_dir / "popularity.png"),
    }
    if files.per_user is not None:
        from booktower.evaluation.report_sections import slice_tables

        tables = slice_tables(files.per_user, ks)
        made["slices"] = _plots.slice_bars(tables, f"NDCG@{ks[0]}", plots_dir / "slices.png")
        n_items = int(files.data_summary.get("n_items", files.per_user["rank"].max() or 1))
        made["ranks"] = _plots.rank_histogram(files.per_user["rank"].to_numpy(), n_items, plots_dir / "ranks.png")
    return {name: path for name, path in made.items() if path is not None}


def _image(plots: dict[str, Path], name: str, caption: str) -> str:
    return f"![{caption}](plots/{plots[name].name})\n" if name in plots else f"_({caption}: no data)_\n"


def render(files: RunFiles, plots: dict[str, Path]) -> str:
    parts = [
        f"# booktower report: `{files.run_dir.name}`\n",
        ("Exact full-catalogue ranking (no sampled candidates). Validation masks train items; test masks train + "
         "validation items. Intervals are 95% percentile bootstrap intervals over users "
         f"({files.evaluation.bootstrap_samples} resamples).\n"),
        changed_data_note(files.metrics),
        ensemble_note(files.run_info),
        headline_section(files),
        comparison_section(files),
        "## Training curves\n", _image(plots, "training", "loss and validation metrics per epoch"),
        "## Metrics at K\n", _image(plots, "metric_at_k", "HR, NDCG, MRR against K"),
        slices_section(files), _image(plots, "slices", "NDCG by slice"),
        "## Where the held-out item ranks\n", _image(plots, "ranks", "rank histogram"),
        "## Popularity bias\n", _image(plots, "popularity", "popularity percentile and coverage"),
        diagnostics_section(files.diagnostics),
        audit_section(files.audit),
        data_section(files.data_summary),
        run_section(files.run_info, files.epochs),
        "## Resolved config\n", f"```yaml\n{files.config_text.strip()}\n```\n" if files.config_text else "_(none)_\n",
    ]
    return "\n".join(parts)


def ensemble_note(info: dict[str, Any]) -> str:
    """What an ensemble run (`booktower ensemble`, run.json's `ensemble`) is, above its numbers."""
    ensemble = info.get("ensemble")
    if not isinstance(ensemble, dict) or not ensemble.get("members"):
        return ""
    members = ensemble["members"]
    seeds = ", ".join(str(seed) for seed in ensemble.get("seeds") or [])
    return (f"_An ensemble of {len(members)} runs (seeds {seeds}: {', '.join(f'`{m}`' for m in members)}): its score "
            "is the sum of their logits. Each member's own report holds its training curves; the resolved config below "
            "is the first member's (the members share its data section, and its evaluation settings score the "
            "ensemble)._\n")


def changed_data_note(metrics: dict[str, Any]) -> str:
    """A warning above the numbers when `evaluate --allow-changed-data` scored them on data the run was not
    trained on (metrics.json's `data_changed`)."""
    note = metrics.get(DATA_CHANGED)
    if not isinstance(note, dict):
        return ""
    return (f"> **Scored on changed data** ({note.get('allowed_by', ALLOW_FLAG)}): "
            f"{'; '.join(note.get('changes', []))}. These are not the numbers of the data the run was trained "
            "and selected on.\n")


def write_report(run_dir: Path | str) -> Path:
    """Render RUN/report.md (and RUN/plots/*.png) from the files in `run_dir`; returns the report path."""
    files = read_run(Path(run_dir))
    plots = _plots_for(files)
    path = files.run_dir / "report.md"
    atomic_write_text(path, render(files, plots))
    return path
