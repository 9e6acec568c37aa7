"""Evaluating a trained run end to end: metrics, per-user tables, diagnostics and the audit, written as files."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from booktower.config import BooktowerConfig
from booktower.data.types import PreparedData
from booktower.evaluation.audit import recommendation_audit
from booktower.evaluation.data_check import (
    DATA_CHANGED,
    changed_inputs,
    data_changed_note,
    refuse_changed_data,
    split_change,
)
from booktower.evaluation.evaluator import EvaluationResult, Part, evaluate_split
from booktower.evaluation.ranking import ScoreFn, TopK
from booktower.evaluation.split_identity import split_identity, write_split_identity
from booktower.utils.atomic import atomic_write_json, atomic_write_parquet
from booktower.utils.scorings import model_file_sha256, read_test_scorings, record_test_scoring

log = logging.getLogger(__name__)

ScoreFnFactory = Callable[[Part], ScoreFn]


@dataclass
class RunEvaluation:
    validation: EvaluationResult
    test: EvaluationResult

    def metrics(self) -> dict[str, dict[str, float]]:
        return {"validation": self.validation.metrics, "test": self.test.metrics}


def evaluate_parts(score_fn_for_part: ScoreFnFactory, data: PreparedData, config: BooktowerConfig) -> RunEvaluation:
    results = {part: _full_ranking(score_fn_for_part(part), data, part, config) for part in ("validation", "test")}
    return RunEvaluation(results["validation"], results["test"])


def _full_ranking(score_fn: ScoreFn, data: PreparedData, part: Part, config: BooktowerConfig) -> EvaluationResult:
    """One split scored as a run's results are: every reader, the whole catalogue ranked."""
    ev = config.evaluation
    return evaluate_split(score_fn, data, part, ev.ks, chunk=ev.user_chunk, progress=config.training.progress,
                          full_rank=True)


def write_metrics(run_dir: Path, evaluation: RunEvaluation, data_changed: dict[str, Any] | None = None) -> None:
    """metrics.json keeps any other top-level keys the trainer wrote; validation/test are replaced, and so is
    the note of an evaluation on changed data (`data_changed`: kept only while these metrics come from one)."""
    path = run_dir / "metrics.json"
    existing = _readable_object(path)
    existing.update(evaluation.metrics())
    existing.pop(DATA_CHANGED, None)
    if data_changed:
        existing[DATA_CHANGED] = data_changed
    atomic_write_json(path, existing)
    atomic_write_parquet(evaluation.test.per_user, run_dir / "per_user_test.parquet")
    atomic_write_parquet(evaluation.validation.per_user, run_dir / "per_user_validation.parquet")


def _readable_object(path: Path) -> dict[str, Any]:
    """The earlier metrics.json's keys, to keep; a damaged one is replaced whole (what it held is rewritten)."""
    try:
        earlier = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as exc:
        log.warning("%s could not be read (%s): it is written anew", path, exc)
        return {}
    if not isinstance(earlier, dict):
        log.warning("%s held a %s where booktower writes an object: it is written anew", path, type(earlier).__name__)
        return {}
    return earlier


def top_k_frame(top_k: TopK, data: PreparedData, k: int | None = None) -> pl.DataFrame:
    """Long table of masked top-K lists with raw ids: user_id, rank (from 1), item_id, score.

    Masked entries (score -inf: the reader's known books, which fill the list's tail when fewer than K
    candidates remain) are left out, so a user may have fewer than K rows.
    """
    k = top_k.items.shape[1] if k is None else min(k, top_k.items.shape[1])
    n_users = len(top_k.users)
    frame = pl.DataFrame({
        "user_id": np.repeat(np.array(data.users.decode(top_k.users), dtype=object), k).tolist(),
        "rank": np.tile(np.arange(1, k + 1, dtype=np.int64), n_users),
        "item_id": data.items.decode(top_k.items[:, :k].reshape(-1)),
        "score": top_k.scores[:, :k].reshape(-1).astype(np.float64),
    }, schema={"user_id": pl.String, "rank": pl.Int64, "item_id": pl.String, "score": pl.Float64})
    return frame.filter(pl.col("score") > float("-inf"))


def model_vectors(model: Any, data: PreparedData, part: Part) -> dict[str, np.ndarray]:
    """p_u (history of `part`), p_v, and the DAT augmented tables a_u / a_v when the model has them."""
    import torch

    from booktower.models.encode import encode_items, encode_users
    from booktower.training.scoring import histories_for

    out = {
        "user": encode_users(model, data.user_features, np.arange(data.n_users), histories_for(data, part)).cpu().numpy(),
        "item": encode_items(model, data.item_features).cpu().numpy(),
    }
    for side, tower, n in (("user_aug", "user_tower", data.n_users), ("item_aug", "item_tower", data.n_items)):
        table = getattr(getattr(model, tower, None), "augment", None)
        if table is not None:
            with torch.no_grad():
                ids = torch.arange(n, device=next(model.parameters()).device)
                out[side] = table(ids).float().cpu().numpy()  # (n, d) a_u / a_v per ID row
    return out


def evaluate_validation(run_dir: Path, model: Any, data: PreparedData, config: BooktowerConfig) -> EvaluationResult:
    """Score validation only (a `--validation-only` run: the test split is not read): every validation reader,
    full ranking, written as per_user_validation.parquet beside split.json, so `booktower compare --split
    validation` can pair two candidates before either is scored on test."""
    from booktower.training.scoring import score_fn_for

    result = _full_ranking(score_fn_for(model, data, "validation"), data, "validation", config)
    atomic_write_parquet(result.per_user, run_dir / "per_user_validation.parquet")
    write_split_identity(run_dir, split_identity(data))
    return result


def evaluate_trained(run_dir: Path, model: Any, data: PreparedData, config: BooktowerConfig,
                     test_model: Any | None = None, data_changed: dict[str, Any] | None = None, *,
                     scored_by: str) -> RunEvaluation:
    """Score validation with `model` and test with `test_model` (a refit on train + validation; default
    `model`); write metrics (with `data_changed`, the note of a scoring on changed data), per-user tables, and
    the test model's diagnostics and audit. The test scoring is recorded in RUN/test_scorings.json as done by
    the command `scored_by` (train, evaluate, ensemble, ...), with the sha256 of RUN/model/model.safetensors:
    `test_model` is that model (training saves it before scoring; `evaluate` loads it)."""
    from booktower.evaluation.diagnostics import embedding_diagnostics
    from booktower.training.scoring import score_fn_for

    test_model = model if test_model is None else test_model
    evaluation = evaluate_parts(lambda part: score_fn_for(test_model if part == "test" else model, data, part),
                                data, config)
    write_metrics(run_dir, evaluation, data_changed)
    record_test_scoring(run_dir, scored_by, model_file_sha256(run_dir), evaluation.test.metrics,
                        config.evaluation.ks)
    write_split_identity(run_dir, split_identity(data))
    rng = np.random.default_rng(config.seed)
    try:
        vectors = model_vectors(test_model, data, "test")
        diagnostics = embedding_diagnostics(vectors["user"], vectors["item"], data, rng,
                                            vectors.get("user_aug"), vectors.get("item_aug"))
        atomic_write_json(run_dir / "diagnostics.json", diagnostics)
    except (AttributeError, ImportError, RuntimeError, ValueError) as exc:  # diagnostics never block metrics
        log.warning("embedding diagnostics skipped: %s", exc)
    write_audit(run_dir, evaluation.test, data, config, rng)
    return evaluation


def write_audit(run_dir: Path, result: EvaluationResult, data: PreparedData, config: BooktowerConfig,
                rng: np.random.Generator) -> None:
    truth = data.items.encode(result.per_user["item_id"])
    audit = recommendation_audit(result.top_k, truth, data, result.part, rng, n_users=config.evaluation.audit_users)
    atomic_write_json(run_dir / "audit.json", audit)


def load_trained(run_dir: Path) -> tuple[BooktowerConfig, PreparedData, Any]:
    """(config, data, model) through the training package's `load_run` (the vocabularies are checked there)."""
    from booktower.training.run import load_run

    trained = load_run(run_dir)
    return trained.config, trained.data, trained.model


def reevaluate_run(run_dir: Path, allow_changed_data: bool = False,
                   scored_by: str = "evaluate") -> tuple[BooktowerConfig, RunEvaluation]:
    """Score a finished run again as training did: validation by the selected checkpoint, test by the served
    model (the refit one when the run was refit on train + validation). The test scoring is recorded in
    RUN/test_scorings.json, as done by `scored_by`.

    Refused (DataError) when the input files or the split differ from what the run recorded at training,
    unless `allow_changed_data`; then metrics.json records what changed."""
    from booktower.training.run import selection_model

    read_test_scorings(run_dir)  # a damaged record refuses now, not after the scoring
    changes = changed_inputs(run_dir)
    if changes and not allow_changed_data:  # before the data is prepared, which can take minutes
        raise refuse_changed_data(run_dir, changes)
    config, data, model = load_trained(run_dir)
    changes += split_change(run_dir, data)
    if changes and not allow_changed_data:
        raise refuse_changed_data(run_dir, changes)
    note = data_changed_note(run_dir, data, changes) if changes else None
    if note:
        log.warning("%s: scoring on changed data (%s); metrics.json records it under `%s`", run_dir,
                    "; ".join(changes), DATA_CHANGED)
    evaluation = evaluate_trained(run_dir, selection_model(run_dir, config, model), data, config, test_model=model,
                                  data_changed=note, scored_by=scored_by)
    return config, evaluation


def recommend_test(model: Any, data: PreparedData, k: int, user_ids: list[str] | None = None,
                   chunk: int = 4096) -> pl.DataFrame:
    """Masked test top-k (train + validation masked) of every test user, or of the given raw user ids."""
    from booktower.training.scoring import score_fn_for

    users = None if user_ids is None else data.users.encode(user_ids)
    k = min(k, data.n_items)  # a list cannot be longer than the catalogue
    result = evaluate_split(score_fn_for(model, data, "test"), data, "test", [k], chunk=chunk, users=users,
                            progress=True)
    return top_k_frame(result.top_k, data, k)
