"""Hyper-parameter sweeps with Optuna: sample config overrides, train on validation only, prune, resume.

The objective is a validation metric; a sweep never scores the test split. Trials are stored in the Optuna
storage (e.g. SQLite), so re-running the same command continues the study until it holds `trials` finished
trials.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import polars as pl
from pydantic import ValidationError

from booktower.config import BooktowerConfig, ConfigError, apply_overrides, dump_config
from booktower.config.loading import explain_errors, explain_validation_error
from booktower.config.evaluation import check_selection_metric
from booktower.config.sweep import ParamSpec
from booktower.utils.atomic import atomic_write_parquet, atomic_write_text

log = logging.getLogger(__name__)

TrainFn = Callable[[BooktowerConfig, Path, Callable[[int, float], None]], float]
"""(config, trial_dir, report(epoch, value)) -> best validation value. `report` may raise to prune."""


def suggest(trial: Any, key: str, spec: ParamSpec) -> Any:
    if spec.type == "categorical":
        return trial.suggest_categorical(key, spec.choices)
    if spec.type == "int":
        return trial.suggest_int(key, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log)
    return trial.suggest_float(key, float(spec.low), float(spec.high), step=spec.step, log=spec.log)


def trial_config(base: BooktowerConfig, params: dict[str, Any]) -> BooktowerConfig:
    """The base config with the sampled values applied; invalid combinations raise ConfigError.

    Early stopping watches the sweep's metric, so each trial selects its epoch by what the sweep ranks trials by;
    it is set here, so `best_config.yaml` is the very config the best trial trained."""
    try:
        return BooktowerConfig.model_validate(_merged(base, params))
    except ValidationError as exc:  # the sampled combination is not allowed
        raise explain_validation_error(exc, f"sampled parameters {params}") from None


def _merged(base: BooktowerConfig, params: dict[str, Any]) -> dict[str, Any]:
    overrides = [f"training.early_stopping.metric={base.sweep.metric}"]
    overrides += [f"{key}={_yaml_scalar(value)}" for key, value in params.items()]
    return apply_overrides(base.model_dump(mode="json"), overrides)


def check_sweep(base: BooktowerConfig) -> None:
    """What would fail every trial, refused before the first one (and before the data is prepared): no space,
    a metric validation does not report, a space key that is not a config key or takes no value drawn for it."""
    sweep = base.sweep
    if not sweep.space:
        raise ConfigError("the config has no sweep.space: declare the searched keys (see configs/*-sweep.yaml)")
    try:
        check_selection_metric("sweep.metric", sweep.metric, base.evaluation.ks)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for key, spec in sweep.space.items():
        for value in drawable_values(spec):
            _check_space_value(base, key, value)


def drawable_values(spec: ParamSpec) -> list[Any]:
    """Values of the kind the sampler draws for `spec`: every choice, both bounds, and for a continuous float
    one off the integer grid (a float range on an integer key fails only on such draws)."""
    if spec.type == "categorical":
        return list(spec.choices or [])
    if spec.type == "int":
        return [int(spec.low or 0), int(spec.high or 0)]
    low, high = float(spec.low or 0.0), float(spec.high or 0.0)
    if spec.step is not None:
        return [low, min(low + spec.step, high), high]
    middle = (low + high) / 2
    return [low, math.nextafter(middle, high) if middle.is_integer() and high > low else middle, high]


def _check_space_value(base: BooktowerConfig, key: str, value: Any) -> None:
    """Errors about `key` itself (unknown, wrong type, out of range) refuse the sweep; an error of a check across
    keys may come from the base config's other values and is left to the trials, which draw them together."""
    try:
        BooktowerConfig.model_validate(_merged(base, {key: value}))
        return
    except ValidationError as exc:
        path = tuple(p for p in key.split(".") if p)
        own = [err for err in exc.errors() if _related(tuple(str(p) for p in err["loc"]), path)]
    if own:
        hint = "; declare it with type: int" if any(err["type"] == "int_from_float" for err in own) else ""
        error = explain_errors(own, f"sweep.space key {key!r} (a value it draws: {value!r})")
        raise ConfigError(f"{error}{hint}") from None


def _related(loc: tuple[str, ...], path: tuple[str, ...]) -> bool:
    """Whether an error at `loc` is about the key at `path`: the key itself, a part of it, or what it is in."""
    shorter = min(len(loc), len(path))
    return shorter > 0 and loc[:shorter] == path[:shorter]


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class SweepResult:
    best_value: float
    best_params: dict[str, Any]
    best_config: BooktowerConfig
    table: pl.DataFrame


def _no_interrupt_traceback(record: logging.LogRecord) -> bool:
    """Optuna logs a trial cut short by Ctrl-C, or one whose sampled combination is not a valid config, with its
    whole traceback; the message already says it all (the interrupt is the user's own doing; a ConfigError names
    the keys), so keep it and drop the stack."""
    if record.exc_info and isinstance(record.exc_info[1], (KeyboardInterrupt, ConfigError)):
        record.exc_info, record.exc_text = None, None
    return True


def run_sweep(base: BooktowerConfig, trials: int, storage: str, study_name: str, output_dir: Path,
              train_fn: TrainFn) -> SweepResult:
    import optuna

    sweep = base.sweep
    check_sweep(base)
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=sweep.startup_trials, n_warmup_steps=sweep.warmup_epochs)
        if sweep.pruner == "median" else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize",
                                load_if_exists=True, pruner=pruner)
    # Seeded by the trials already stored: a resumed study (or a second worker on the same storage) draws new
    # points instead of repeating the first run's random start-up trials, and a given history still gives the
    # same draws.
    study.sampler = optuna.samplers.TPESampler(seed=base.seed + len(study.trials))
    # A failed trial (interrupted, or an invalid sampled combination) does not count: `--trials N` means N
    # trials that completed or were pruned, so a rerun after Ctrl-C makes up for the one that was cut short.
    done = sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    remaining = max(0, trials - done)
    log.info("study %s: %d completed or pruned trials in storage, running %d more", study_name, done, remaining)

    def objective(trial: optuna.Trial) -> float:
        params = {key: suggest(trial, key, spec) for key, spec in sweep.space.items()}
        config = trial_config(base, params)

        def report(epoch: int, value: float) -> None:
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} with {sweep.metric} {value:.4f}")

        return train_fn(config, output_dir / f"trial_{trial.number:04d}", report)

    if remaining:
        optimize_log = logging.getLogger("optuna.study._optimize")
        optimize_log.addFilter(_no_interrupt_traceback)
        try:
            study.optimize(objective, n_trials=remaining, catch=(ConfigError,))
        finally:
            optimize_log.removeFilter(_no_interrupt_traceback)
    return summarise(study, base, output_dir)


def summarise(study: Any, base: BooktowerConfig, output_dir: Path) -> SweepResult:
    rows = [
        {"trial": t.number, "state": t.state.name, "value": t.value, **{f"param:{k}": v for k, v in t.params.items()}}
        for t in study.trials
    ]
    table = pl.DataFrame(rows).sort("value", descending=True, nulls_last=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_parquet(table, output_dir / "trials.parquet")
    completed = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not completed:
        raise RuntimeError("no trial completed; see the log for the failures")
    best = study.best_trial
    best_config = trial_config(base, best.params)
    atomic_write_text(output_dir / "best_config.yaml", dump_config(best_config))
    return SweepResult(float(best.value), dict(best.params), best_config, table)


def validation_trial(data: Any) -> TrainFn:
    """A TrainFn that trains on the prepared data and returns the best validation value (test never scored)."""

    def train(config: BooktowerConfig, trial_dir: Path, report: Callable[[int, float], None]) -> float:
        from booktower.training.pipeline import build_model
        from booktower.training.trainer import Trainer, apply_thread_limit, resolve_device

        metric = f"val_{config.sweep.metric}"  # early stopping watches it too (trial_config)
        trial_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(trial_dir / "config.yaml", dump_config(config))
        apply_thread_limit(config.training)
        model = build_model(config, data, resolve_device(config.training.device))
        trainer = Trainer(model, data, config.training, config.seed, config.evaluation.ks, trial_dir,
                          config.evaluation.user_chunk)

        def on_epoch(row: dict[str, Any]) -> None:
            if metric in row:
                report(int(row["epoch"]), float(row[metric]))

        try:
            fit = trainer.fit(on_epoch=on_epoch)
        finally:
            # A trial is never resumed (a cut-short one is rerun) and best_config.yaml is retrained, so its
            # checkpoints (weights plus optimiser state, twice) would only fill the disk; epochs.csv stays.
            shutil.rmtree(trial_dir / "checkpoints", ignore_errors=True)
        values = [row[metric] for row in fit.rows if metric in row]
        return max(values) if values else float("nan")

    return train
