"""train_run: prepare -> build model -> fit -> evaluate best on validation and test once -> write the run."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from booktower.config import BooktowerConfig, ConfigError, dump_config
from booktower.data.errors import DataError
from booktower.data.prepare import prepare
from booktower.data.types import PreparedData
from booktower.models.io import save_model
from booktower.models.spec import spec_from_config
from booktower.models.two_tower import TwoTower
from booktower.training.checkpoint import load_weights
from booktower.training.distributed import DistContext, init_distributed, shutdown
from booktower.training.refit import refit
from booktower.training.run import VALIDATION_ONLY_FILE, config_as_files, run_config
from booktower.evaluation.run_eval import evaluate_trained, evaluate_validation
from booktower.evaluation.split_identity import split_identity, write_split_identity
from booktower.tracking import Tracker, check_local_store
from booktower.training.trainer import FitResult, Trainer, apply_thread_limit, resolve_device
from booktower.utils.atomic import atomic_write_json, atomic_write_text
from booktower.utils.runinfo import (
    RunSegment,
    Timings,
    finished_at,
    mark_finished,
    older_data_format,
    peak_memory_mb,
    record_start,
    write_run_info,
)
from booktower.utils.scorings import TEST_SCORINGS, mark_earlier_run
from booktower.utils.wording import counted

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, dict[str, float]]  # {"validation": {...}, "test": {...}}
    fit: FitResult
    model: TwoTower  # the run's model, RUN/model: the refit one under refit_on_validation (what a bundle serves)
    data: PreparedData
    report: Path | None = None
    selected: TwoTower | None = None  # the checkpoint early stopping chose (validation's model); None: `model`


def _ensemble_members(run_dir: Path) -> str:
    """The members of an ensemble run (run.json's `ensemble`), named; "" for any other run."""
    import json

    try:
        ensemble = json.loads((run_dir / "run.json").read_text()).get("ensemble")
    except (OSError, ValueError):
        return ""
    return ", ".join(str(m) for m in ensemble.get("members") or []) if isinstance(ensemble, dict) else ""


class RunAlreadyFinished(Exception):
    """`resume=True` on a run that finished: there is nothing to continue, and none of its files was touched.
    The message says where its metrics are."""

    def __init__(self, run_dir: Path, finished: str) -> None:
        self.run_dir, self.finished = run_dir, finished
        report = run_dir / "report.md"
        shown = f", report: {report}" if report.exists() else ""
        if _ensemble_members(run_dir):
            super().__init__(f"{run_dir} is an ensemble run (`booktower ensemble`, of {_ensemble_members(run_dir)}): "
                             f"it was not trained, so --resume has nothing to continue and left its files as they "
                             f"are. Metrics: {run_dir / 'metrics.json'}{shown}")
            return
        super().__init__(f"{run_dir} finished training at {finished}; --resume has nothing to continue and left "
                         f"its files as they are. Metrics: {run_dir / 'metrics.json'}{shown}. To train it again, "
                         "drop --resume (the run is replaced) or pass a new --output-dir")


def build_model(config: BooktowerConfig, data: PreparedData, device: torch.device) -> TwoTower:
    """Seeded construction: the same config and data give the same initial weights."""
    torch.manual_seed(config.seed)
    spec = spec_from_config(config.model, data.user_features, data.item_features, data.n_users, data.n_items)
    model = TwoTower(spec)
    model.fill_history_content(data.item_features)
    _init_id_tables(config, data, model)
    return model.to(device)


def _init_id_tables(config: BooktowerConfig, data: PreparedData, model: TwoTower) -> None:
    """model.*.id_init: svd starts the ID tables from the training interactions' factors (models/init.py); the
    refit's data is train + validation, so its tables start from those."""
    towers = {"user": (config.model.user, model.user_tower), "item": (config.model.item, model.item_tower)}
    chosen = {side: (tower_config, tower) for side, (tower_config, tower) in towers.items()
              if tower_config.id_init == "svd" and tower.ids is not None}
    if not chosen:
        return
    from booktower.evaluation.baselines.base import interaction_matrix
    from booktower.models.init import start_from, svd_factors

    dim = max(tower.ids.table.weight.shape[1] for _, tower in chosen.values())
    factors = dict(zip(("user", "item"), svd_factors(interaction_matrix(data.n_users, data.n_items, data.split.train),
                                                     dim, np.random.default_rng(config.seed))))
    for side, (tower_config, tower) in chosen.items():
        table = tower.ids.table.weight
        start_from(table, factors[side][:, : table.shape[1]], tower_config.id_init_std)


RESUME_FREE_KEYS = ("training.progress", "tracking.", "data.cache_dir")
"""Keys a resumed run may change: they decide what is shown, mirrored or kept ready, not what is trained. (The
cache's key is the data config and the input files' contents, so another cache folder holds the same data.)"""


def resume_config_changes(run_dir: Path, config: BooktowerConfig) -> list[str]:
    """What `config` changes that a resume of the run in `run_dir` may not ("key: was -> now"); none for a
    folder without a run."""
    if not (run_dir / "config.yaml").exists():
        return []
    was, now = config_as_files(run_config(run_dir)), config_as_files(config)
    return [f"{key}: {was.get(key)!r} -> {now.get(key)!r}" for key in sorted(was.keys() | now.keys())
            if was.get(key) != now.get(key) and not key.startswith(RESUME_FREE_KEYS)]


def _check_resume_config(run_dir: Path, config: BooktowerConfig) -> None:
    """Refuse to resume with a config that trains something else. Data paths are compared as the files they
    name: the run's relative to the folder it started in, this one's relative to the current folder."""
    saved = run_dir / "config.yaml"
    changed = resume_config_changes(run_dir, config)
    if not changed:
        return
    raise ConfigError(f"--resume: {saved} differs from this config ({'; '.join(changed[:5])}"
                      f"{'; ...' if len(changed) > 5 else ''}). Fix: resume with that run's --config and --set "
                      "values, or train the new config into a new --output-dir")


def _check_resumable(run_dir: Path, config: BooktowerConfig, dist: DistContext) -> None:
    """Before anything is prepared, trained or written: the same training config, and a run not yet finished."""
    _check_resume_config(run_dir, config)
    finished = _finished_run(run_dir, dist)
    if finished is not None:
        raise RunAlreadyFinished(run_dir, finished)


def _finished_run(run_dir: Path, dist: DistContext) -> str | None:
    """When the run in `run_dir` finished, or None. Rank 0 reads it and every rank takes its answer: ranks
    that disagreed would wait for each other forever (one in training, one gone)."""
    return dist.broadcast(finished_at(run_dir) if dist.is_main else None)


EARLIER_RUN_OUTPUTS = ("checkpoints", "refit", "model", "plots", "run.json", "metrics.json", "report.md",
                       "epochs.csv", "split.json", "per_user_validation.parquet", "per_user_test.parquet",
                       "diagnostics.json", "audit.json", VALIDATION_ONLY_FILE)
"""What a training run writes and a new run over it replaces. Baselines (RUN/baselines), the MLflow link and the
record of the folder's test scorings (RUN/test_scorings.json, its entries marked as an earlier run's) stay."""


def _forget_earlier_run(run_dir: Path) -> None:
    """A run trained from scratch over an earlier one removes the earlier run's outputs first. Interrupted, the
    folder would otherwise mix two runs: `export` would ship the old model beside the new config, and a
    `--resume` stopped in the first epoch would continue the old run's checkpoints (or find it finished)."""
    for name in EARLIER_RUN_OUTPUTS:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _open_run_dir(run_dir: Path, config_yaml: str, data: PreparedData, resume: bool, inputs: list[Path]) -> None:
    """Rank 0's first writes: what the run trains on, before the first epoch (the input files' sha256s and the
    split among them, which a resume compares with what the config prepares then)."""
    earlier_scorings = 0 if resume else mark_earlier_run(run_dir)
    if not resume and (run_dir / "metrics.json").exists():
        log.warning("%s already holds a %s: its files are being replaced (a new --output-dir keeps it)%s",
                    run_dir, "ensemble run" if _ensemble_members(run_dir) else "trained run",
                    f"; {TEST_SCORINGS} keeps its {counted(earlier_scorings, 'scoring')} of the test split, "
                    "marked as an earlier run's" if earlier_scorings else "")
    elif not resume and (run_dir / VALIDATION_ONLY_FILE).exists():
        log.warning("%s holds a --validation-only run, which `--resume` would have completed: it is being replaced "
                    "(a new --output-dir keeps it)", run_dir)
    if not resume:
        _forget_earlier_run(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        record_start(run_dir, inputs)  # an interrupted run's relative data paths resume from any folder
        write_split_identity(run_dir, split_identity(data))
    atomic_write_text(run_dir / "config.yaml", config_yaml)
    atomic_write_json(run_dir / "data_summary.json", data.summary)
    data.users.save(run_dir / "vocab" / "users.parquet")
    data.items.save(run_dir / "vocab" / "items.parquet")


def _refuse_other_data(run_dir: Path, data: PreparedData, dist: DistContext) -> None:
    """A resume must train and score on the data the run started on: a probe (`--validation-only`) may be
    completed days later, after the files changed. Compared: the ids (RUN/vocab, written before the first
    epoch), and where the run recorded them, the input files' sha256s and the split (a probe's run.json and
    split.json). Rank 0 looks and every rank takes its answer."""
    changes = dist.broadcast(_data_changes(run_dir, data) if dist.is_main else None)
    if changes:
        older = older_data_format(run_dir) if not any(c.startswith("input ") for c in changes) else None
        raise DataError(f"--resume: the data this config prepares now is not the data {run_dir} started on: "
                        f"{'; '.join(changes[:4])}" + (f"; the input files are the same, but {older}" if older else ""),
                        path=run_dir,
                        fix="point the config at the files the run started with, or train these files as a new run "
                            "(drop --resume, or pass a new --output-dir)")


def _data_changes(run_dir: Path, data: PreparedData) -> list[str]:
    from booktower.data.vocab import Vocabulary
    from booktower.evaluation.data_check import changed_inputs, split_change

    changes = list(changed_inputs(run_dir))
    for name, vocab in (("users", data.users), ("items", data.items)):
        saved_path = run_dir / "vocab" / f"{name}.parquet"
        if saved_path.is_file() and Vocabulary.load(saved_path) != vocab:
            changes.append(f"the {name} differ from vocab/{name}.parquet ({len(vocab)} ids now)")
    return changes + split_change(run_dir, data)


def _prepare_in_turn(config: BooktowerConfig, dist: DistContext) -> tuple[PreparedData, list[Path]]:
    """Rank 0 prepares (and fills the cache) first; the other ranks then read the cache."""
    if not dist.is_main:
        dist.barrier()
    data, inputs = prepare(config.data)
    if dist.is_main:
        dist.barrier()
    return data, inputs


def train_run(config: BooktowerConfig, run_dir: Path | str, resume: bool = False,
              data: PreparedData | None = None, validation_only: bool = False) -> TrainResult:
    """Train the configured model and write the whole run layout into `run_dir`. Under torchrun every rank
    trains and only rank 0 writes; the other ranks return a result with empty metrics.

    `validation_only` stops after the fit (early stopping on validation): RUN/validation.json holds the selected
    epoch's validation metrics, and neither the refit nor the test split is run. The run is left unfinished, so
    `resume=True` without the flag later completes it (refit, test scored once, model, report)."""
    if config.tracking.mlflow:
        check_local_store(config)  # before anything is prepared or written: a refused store leaves no half run
    dist = init_distributed(resolve_device(config.training.device).type)
    try:
        return _train_run(config, Path(run_dir), resume, data, dist, validation_only)
    finally:
        shutdown(dist)


@dataclass
class _Record:
    """What rank 0 records as the run goes: its step timings, its segment of run.json (timings added to the
    earlier segments'), its MLflow run."""

    timings: Timings
    segment: RunSegment
    tracker: Tracker

    def epoch(self, row: dict) -> None:
        self.segment.trained("epochs", row["epoch"], self.timings.so_far())
        self.tracker.log_epoch(row)

    def refit_epoch(self, row: dict) -> None:
        self.segment.trained("refit_epochs", row["epoch"], self.timings.so_far())
        self.tracker.log_refit_epoch(row)

    def total(self) -> dict[str, float]:
        return self.segment.total(self.timings.seconds)

    def stopped(self, exc: BaseException) -> None:
        how = "interrupted" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else f"failed: {type(exc).__name__}"
        try:
            self.segment.close(how, self.timings.so_far())
        except OSError as error:  # a full or read-only disk: the run's own error is the one to raise
            log.warning("run.json could not record how this segment ended (%s): %s", how, error)
        self.tracker.fail()


def _train_run(config: BooktowerConfig, run_dir: Path, resume: bool, data: PreparedData | None,
               dist: DistContext, validation_only: bool) -> TrainResult:
    timings = Timings()
    config_yaml = dump_config(config)
    if resume:
        _check_resumable(run_dir, config, dist)
    apply_thread_limit(config.training)
    inputs: list[Path] = []
    with timings.step("prepare"):
        if data is None:
            data, inputs = _prepare_in_turn(config, dist)
    if resume:
        _refuse_other_data(run_dir, data, dist)
    device = dist.device(resolve_device(config.training.device).type)
    model = build_model(config, data, device)
    trainer = Trainer(model, data, config.training, config.seed, config.evaluation.ks, run_dir,
                      config.evaluation.user_chunk, dist)
    if not dist.is_main:
        fit = trainer.fit(resume=resume)
        if config.training.refit_on_validation and not validation_only:
            refit(config, data, fit.best_epoch, run_dir, dist, resume=resume)
        dist.barrier()  # wait for rank 0's final evaluation and artefacts
        return TrainResult(run_dir, {}, fit, model, data)
    _open_run_dir(run_dir, config_yaml, data, resume, inputs)
    tracker = Tracker.start(config, run_dir, resume)  # first: a store that fails to start leaves no open segment
    segment = RunSegment(run_dir, dist.world_size, str(device))
    segment.open()
    record = _Record(timings, segment, tracker)
    try:
        with timings.step("fit"):
            fit = trainer.fit(resume=resume, on_epoch=record.epoch)
        if validation_only:
            return _stop_after_fit(config, run_dir, fit, model, data, inputs, record, dist)
        result = _complete(config, run_dir, fit, model, trainer, data, inputs, record, dist, resume)
    except BaseException as exc:
        record.stopped(exc)
        raise
    log.info("test: %s", ", ".join(f"{k} {v:.4f}" for k, v in result.metrics["test"].items()
                                  if k.split("@")[0] in ("HR", "NDCG") and "@" in k))
    dist.barrier()
    return result


def _complete(config: BooktowerConfig, run_dir: Path, fit: FitResult, model: TwoTower, trainer: Trainer,
              data: PreparedData, inputs: list[Path], record: _Record, dist: DistContext,
              resume: bool) -> TrainResult:
    """After the fit: the refit, the test scored once, run.json, the report, and `finished` written last (an
    interruption before it leaves a run to resume)."""
    timings = record.timings
    load_weights(fit.best_checkpoint, model)
    test_model = model
    if config.training.refit_on_validation:
        with timings.step("refit"):
            test_model = refit(config, data, fit.best_epoch, run_dir, dist, resume=resume,
                               on_epoch=record.refit_epoch)
    save_model(test_model, run_dir / "model")
    with timings.step("evaluate"):
        # the test split is scored here, once (by the refit model when there is one), and recorded in
        # test_scorings.json; validation by the selected checkpoint; diagnostics and audit beside them
        metrics = evaluate_trained(run_dir, model, data, config, test_model=test_model,
                                   scored_by="train --resume" if resume else "train").metrics()
    write_run_info(run_dir, config_yaml=dump_config(config), seed=config.seed, inputs=inputs, timings=record.total(),
                   extra={"device": record.segment.entry["device"], "best_epoch": fit.best_epoch,
                          "epochs_run": len(fit.rows), "stopped_early": fit.stopped_early,
                          "peak_rss_mb": round(peak_memory_mb(), 1), "world_size": dist.world_size,
                          "training_step": trainer.step_kind(),
                          "refit_on_validation": config.training.refit_on_validation})
    with timings.step("report"):
        report = maybe_write_report(run_dir)
    (run_dir / VALIDATION_ONLY_FILE).unlink(missing_ok=True)  # a completed probe: metrics.json says it all
    record.segment.close("finished", timings.seconds)
    mark_finished(run_dir, record.total())
    record.tracker.finish(metrics, run_dir)
    return TrainResult(run_dir, metrics, fit, test_model, data, report, selected=model)


def _stop_after_fit(config: BooktowerConfig, run_dir: Path, fit: FitResult, model: TwoTower, data: PreparedData,
                    inputs: list[Path], record: _Record, dist: DistContext) -> TrainResult:
    """A validation-only run's end: the selected checkpoint scored on every validation reader is its result.
    run.json records what ran but not `finished`, which is what lets a later `--resume` go on to the refit and
    the test."""
    load_weights(fit.best_checkpoint, model)
    with record.timings.step("evaluate"):
        validation = evaluate_validation(run_dir, model, data, config).metrics
    then = "refit, then the test" if config.training.refit_on_validation else "the test"
    atomic_write_json(run_dir / VALIDATION_ONLY_FILE, {
        "best_epoch": fit.best_epoch, "epochs_run": len(fit.rows), "stopped_early": fit.stopped_early,
        "selected_by": config.training.early_stopping.metric, "validation": validation,
        "test": f"not scored: `booktower train -o RUN --resume` completes the run ({then}, once)"})
    record.segment.close("validation_only", record.timings.seconds)
    write_run_info(run_dir, config_yaml=dump_config(config), seed=config.seed, inputs=inputs,
                   timings=record.total(), extra={"validation_only": True, "best_epoch": fit.best_epoch,
                                                  "epochs_run": len(fit.rows), "world_size": dist.world_size,
                                                  "peak_rss_mb": round(peak_memory_mb(), 1)})
    record.tracker.finish({"validation": validation}, run_dir)
    log.info("validation (epoch %d): %s; the test split was not read", fit.best_epoch,
             ", ".join(f"{k} {v:.4f}" for k, v in validation.items() if k.split("@")[0] in ("HR", "NDCG")))
    dist.barrier()
    return TrainResult(run_dir, {"validation": validation}, fit, model, data, selected=model)


def maybe_write_report(run_dir: Path) -> Path | None:
    """The evaluation owner's report, when that module is installed."""
    try:
        from booktower.evaluation.report import write_report
    except ImportError:
        return None
    return write_report(run_dir)
