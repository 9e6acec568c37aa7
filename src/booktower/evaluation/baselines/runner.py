"""The baseline protocol: validation metrics from a fit on train, test metrics from a fit on train + validation."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from booktower.config.evaluation import BaselineConfig
from booktower.data.types import PreparedData
from booktower.evaluation.baselines.base import Recommender, interaction_matrix
from booktower.evaluation.baselines.ease import EASE
from booktower.evaluation.baselines.implicit_models import ALS, BPR
from booktower.evaluation.baselines.itemknn import ItemKNN
from booktower.evaluation.baselines.popularity import MostPopular
from booktower.evaluation.evaluator import EvaluationResult, evaluate_split
from booktower.evaluation.split_identity import (
    read_split_identity, split_identity, split_mismatch, write_split_identity,
)
from booktower.utils.atomic import atomic_write_json, atomic_write_parquet

log = logging.getLogger(__name__)

Factory = Callable[[BaselineConfig, int], Recommender]
BASELINES: dict[str, Factory] = {
    "pop": lambda cfg, seed: MostPopular(),
    "itemknn": lambda cfg, seed: ItemKNN(cfg.itemknn_neighbors),
    "ease": lambda cfg, seed: EASE(cfg.ease_lambda, cfg.ease_max_items),
    "als": lambda cfg, seed: ALS(cfg.als_factors, cfg.als_regularization, cfg.als_alpha, cfg.als_iterations, seed),
    "bpr": lambda cfg, seed: BPR(cfg.bpr_factors, cfg.bpr_learning_rate, cfg.bpr_regularization,
                                 cfg.bpr_iterations, seed),
}


def make_baseline(name: str, config: BaselineConfig, seed: int) -> Recommender:
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    return BASELINES[name](config, seed)


@dataclass
class BaselineResult:
    name: str
    validation: EvaluationResult
    test: EvaluationResult
    seconds: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, dict[str, float]]:
        return {"validation": self.validation.metrics, "test": self.test.metrics}


def run_baseline(name: str, config: BaselineConfig, data: PreparedData, ks: list[int], seed: int,
                 chunk: int = 4096, progress: bool = True) -> BaselineResult:
    """Fit on train -> validation metrics; refit on train + validation -> test metrics (same evaluator)."""
    split, seconds = data.split, {}
    results = {}
    for part, parts in (("validation", (split.train,)), ("test", (split.train, split.valid))):
        model = make_baseline(name, config, seed)
        start = time.perf_counter()
        model.fit(interaction_matrix(data.n_users, data.n_items, *parts))
        seconds[f"fit_{part}"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        results[part] = evaluate_split(model.score, data, part, ks, chunk=chunk, progress=progress)
        seconds[f"evaluate_{part}"] = round(time.perf_counter() - start, 2)
        log.info("%s %s: %s (%.1fs fit)", name, part, _short(results[part].metrics), seconds[f"fit_{part}"])
    return BaselineResult(name, results["validation"], results["test"], seconds)


def _short(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith(("HR@", "NDCG@")))


def _earlier_results(output_dir: Path, ours: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics and timings already in `output_dir` for this very split, so baselines can be added one command
    at a time; results computed on another split are moved aside, never mixed in."""
    theirs = read_split_identity(output_dir)
    if theirs is None or theirs.get("sha256") != ours["sha256"]:
        _move_other_split_aside(output_dir, theirs, ours)
        return {}, {}
    earlier = [json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}
               for p in (output_dir / "metrics.json", output_dir / "timings.json")]
    return earlier[0], earlier[1]


_SPLIT_FILES = ("metrics.json", "timings.json", "split.json")


def _move_other_split_aside(output_dir: Path, theirs: dict[str, Any] | None, ours: dict[str, Any]) -> None:
    """Move another split's baselines (their per-model folders and metrics) into a sibling folder named after
    that split. Left in place, a model this command does not recompute would stay beside the new split's
    metrics, and `compare RUN DIR/<model>` would pair it as if it were of the new split."""
    if not output_dir.is_dir():
        return
    listed = set()
    try:
        listed = set(json.loads((output_dir / "metrics.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        pass
    models = sorted(p.name for p in output_dir.iterdir() if p.is_dir() and (p.name in BASELINES or p.name in listed))
    moved = [name for name in (*_SPLIT_FILES, *models) if (output_dir / name).exists()]
    if not moved or moved == ["split.json"]:
        return
    digest = str((theirs or {}).get("sha256") or "")[:8]
    aside = _free_name(output_dir.parent / f"{output_dir.name}-other-split{'-' + digest if digest else ''}")
    aside.mkdir(parents=True)
    for name in moved:
        shutil.move(str(output_dir / name), str(aside / name))
    log.warning("%s held baselines of another split (%s): this split's replace them, and the earlier ones (%s) "
                "were moved to %s", output_dir, split_mismatch(theirs, ours) or "no split.json",
                ", ".join(models) or "metrics only", aside)  # the folder's counts first


def _free_name(path: Path) -> Path:
    """`path`, or path-2, path-3, ... when it is taken."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}-{number}")
    return candidate


def run_baselines(names: list[str], config: BaselineConfig, data: PreparedData, ks: list[int], seed: int,
                  output_dir: Path, chunk: int = 4096, progress: bool = True) -> dict[str, dict[str, dict[str, float]]]:
    """Run each baseline, writing DIR/metrics.json (updated after every model) and DIR/<name>/per_user_test.parquet."""
    for name in names:
        make_baseline(name, config, seed)  # fail on a misspelt name before any long fit
    output_dir.mkdir(parents=True, exist_ok=True)
    identity = split_identity(data)
    table, timings = _earlier_results(output_dir, identity)
    write_split_identity(output_dir, identity)
    for name in names:
        result = run_baseline(name, config, data, ks, seed, chunk, progress)
        table[name] = result.metrics()
        timings[name] = result.seconds
        atomic_write_parquet(result.test.per_user, output_dir / name / "per_user_test.parquet")
        atomic_write_parquet(result.validation.per_user, output_dir / name / "per_user_validation.parquet")
        atomic_write_json(output_dir / "metrics.json", table)
        atomic_write_json(output_dir / "timings.json", timings)
    return table


