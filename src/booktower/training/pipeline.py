"""train_run: prepare -> build model -> fit -> evaluate best on validation and test once -> write the run."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from booktower.config import BooktowerConfig, dump_config
from booktower.data.prepare import prepare
from booktower.data.types import PreparedData
from booktower.models.io import save_model
from booktower.models.spec import spec_from_config
from booktower.models.two_tower import TwoTower
from booktower.training.checkpoint import load_weights
from booktower.training.distributed import DistContext, init_distributed, shutdown
from booktower.training.refit import refit
from booktower.training.run import VALIDATION_ONLY_FILE
from booktower.training.run_folder import (  # noqa: F401 (the first and last: imported from here too)
    RunAlreadyFinished,
    check_resumable,
    hold_run_folder,
    open_run_dir,
    refuse_other_data,
    resume_config_changes,
)
from booktower.evaluation.run_eval import evaluate_trained, evaluate_validation
from booktower.tracking import Tracker, check_local_store
from booktower.training.trainer import FitResult, Trainer, apply_thread_limit, resolve_device
from booktower.utils.atomic import atomic_write_json
from booktower.utils.runinfo import RunSegment, Timings, peak_memory_mb, write_run_info

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
    try:  # one writer at a time: a second training into the folder is refused before it reads or writes it
        with hold_run_folder(Path(run_dir), dist, "train --resume" if resume else "train"):
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
        check_resumable(run_dir, config, dist)
    apply_thread_limit(config.training)
    inputs: list[Path] = []
    with timings.step("prepare"):
        if data is None:
            data, inputs = _prepare_in_turn(config, dist)
    if resume:
        refuse_other_data(run_dir, data, dist)
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
    open_run_dir(run_dir, config_yaml, data, resume, inputs)
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
    record.segment.finish(timings.seconds)  # with `finished`, in one write
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
