"""Hyper-parameter sweeps with Optuna: sample config overrides, train on validation only, prune, resume.

The objective is a validation metric; a sweep never scores the test split. Trials are stored in the Optuna
storage (e.g. SQLite), so re-running the same command continues the study until it holds `trials` finished
trials.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import polars as pl
from pydantic import ValidationError

from booktower.config import BooktowerConfig, ConfigError, apply_overrides, dump_config
from booktower.config.loading import explain_errors, explain_validation_error
from booktower.config.evaluation import check_selection_metric
from booktower.config.sweep import ParamSpec
from booktower.training.sweep_retry import INTERRUPTED_ATTR, check_same_choices, queue_interrupted
from booktower.utils.atomic import atomic_write_json, atomic_write_parquet, atomic_write_text

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
    a metric validation does not report, a space key that is not a config key, takes no value drawn for it, or
    is not read per trial (the data is prepared once per sweep)."""
    sweep = base.sweep
    if not sweep.space:
        raise ConfigError("the config has no sweep.space: declare the searched keys (see configs/*-sweep.yaml)")
    try:
        check_selection_metric("sweep.metric", sweep.metric, base.evaluation.ks)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for key in sweep.space:
        _check_read_per_trial(key)
    for key, spec in sweep.space.items():
        for value in drawable_values(spec):
            _check_space_value(base, key, value)


_UNREAD = ("a trial never reads it (it trains and scores validation only), so every trial would score the same. "
           "Fix: set it in the base config (--set {key}=...)")
ONCE_PER_SWEEP = {
    "data": "the data is prepared once per sweep, from the base config, so every trial would train on the same "
            "data. Fix: run one sweep per data setting (--set {key}=..., each with its own --study and "
            "--output-dir)",
    **dict.fromkeys(("baselines", "serving", "tracking", "sweep", "evaluation.bootstrap_samples",
                     "evaluation.audit_users", "training.refit_on_validation"), _UNREAD),
}
"""Config sections (and keys) a trial cannot vary, and why: a value drawn for one would be applied to the trial's
config and written to best_config.yaml although no trial used it. (`seed`, `evaluation.ks` and the rest of the
model and training sections are read by every trial.)"""


def _check_read_per_trial(key: str) -> None:
    for section, why in ONCE_PER_SWEEP.items():
        if key == section or key.startswith(section + "."):
            raise ConfigError(f"sweep.space key {key!r} cannot be searched: {why.format(key=key)}")


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


FINISHED = ("COMPLETE", "PRUNED")
"""Trial states `--trials N` counts. A failed trial (interrupted, or an invalid sampled combination) does not:
a rerun after Ctrl-C makes up for the one that was cut short."""
BASE_ATTR = "booktower:base_config"
"""Study user attribute: the base config the study's trials trained (see `base_fingerprint`)."""
ID_ATTR = "booktower:study_id"
"""Study user attribute: a random id that `--output-dir`'s study.json names, to tell studies of one name apart."""
CONFIG_ATTR = "booktower:config"
"""Trial user attribute: the trial's resolved config, which best_config.yaml is written from."""
STUDY_FILE = "study.json"
FREE_KEYS = ("training.progress", "training.num_threads", "training.cuda_graph", "tracking.", "data.cache_dir",
             "sweep.")
"""Base-config keys a resumed study (or a second worker) may change: what is shown, mirrored, cached, how fast a
trial runs or how trials are drawn and pruned, not what a trial trains and scores. (`sweep.metric` is compared
as the trials' `training.early_stopping.metric`.)"""


def base_fingerprint(base: BooktowerConfig) -> dict[str, Any]:
    """The base config as every trial starts from it (early stopping on the sweep metric, data paths as the
    files they name from the current folder, symlinks resolved), flat, without the searched keys and FREE_KEYS."""
    from booktower.training.run import config_as_files

    flat = config_as_files(BooktowerConfig.model_validate(_merged(base, {})))
    return {key: value for key, value in sorted(flat.items())
            if not key.startswith(FREE_KEYS) and not any(_is_under(key, s) for s in base.sweep.space)}


def _is_under(key: str, searched: str) -> bool:
    return key == searched or key.startswith(searched + ".")


def open_study(base: BooktowerConfig, storage: str, study_name: str, output_dir: Path) -> Any:
    """Create or load the study, refusing what would mix two setups: a base config other than the one the
    study's trials trained, or an `output_dir` holding another study's trial folders. Cheap: the CLI calls it
    before the data is prepared."""
    import optuna

    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize",
                                load_if_exists=True, pruner=_pruner(base))
    fingerprint = base_fingerprint(base)
    recorded = study.user_attrs.get(BASE_ATTR)
    if recorded is not None and study.trials:
        _check_same_base(study_name, recorded, fingerprint)
        check_same_choices(study, study_name, base.sweep.space)
    elif recorded != fingerprint:
        # A new study, or one with no trial yet, takes this base. (A study begun before the base was recorded
        # has no record to compare with: its trials are taken as they are.)
        study.set_user_attr(BASE_ATTR, fingerprint)
    study_id = study.user_attrs.get(ID_ATTR)
    if study_id is None:
        study_id = uuid.uuid4().hex
        study.set_user_attr(ID_ATTR, study_id)
    _claim_output_dir(output_dir, study_name, study_id, resumed=bool(study.trials))
    return study


def _pruner(base: BooktowerConfig) -> Any:
    import optuna

    sweep = base.sweep
    if sweep.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=sweep.startup_trials, n_warmup_steps=sweep.warmup_epochs)


def _check_same_base(study_name: str, recorded: dict[str, Any], fingerprint: dict[str, Any]) -> None:
    """Keys in one record only are searched in the other run (a space may gain or lose a key: every trial's own
    config is stored) or new in this version of booktower: only keys in both are compared."""
    changed = [f"{key}: {recorded[key]!r} -> {fingerprint[key]!r}"
               for key in sorted(recorded.keys() & fingerprint.keys()) if recorded[key] != fingerprint[key]]
    if not changed:
        return
    raise ConfigError(
        f"study {study_name!r} in this --storage was started with another base config ({'; '.join(changed[:5])}"
        f"{'; ...' if len(changed) > 5 else ''}); its trials trained that one, so ranking them with this config's "
        "would mix two setups. Fix: a new --study name (or --storage) for this config, or resume with the "
        "study's original --config and --set values")


def _claim_output_dir(output_dir: Path, study_name: str, study_id: str, resumed: bool) -> None:
    """Trial folders are named by trial number, so a second study writing into the same folder would overwrite
    the first one's trial_0000, trials.parquet and best_config.yaml. The folder's study.json names its study."""
    marker = output_dir / STUDY_FILE
    earlier = sorted(path.name for path in output_dir.glob("trial_*")) if output_dir.is_dir() else []
    owner = json.loads(marker.read_text()) if marker.exists() else None
    if earlier and owner is not None and owner.get("id") != study_id:
        raise ConfigError(
            f"--output-dir {output_dir} holds the trials of another study ({owner.get('study')!r}, id "
            f"{owner.get('id')} in {marker}; this is study {study_name!r}, id {study_id}): its trial folders and "
            "best_config.yaml would be overwritten. Fix: a new --output-dir, or resume that study with its own "
            "--storage and --study")
    if earlier and owner is None and not resumed:  # a resumed study may own a folder written before study.json
        raise ConfigError(
            f"--output-dir {output_dir} holds trial folders of another sweep ({earlier[0]}, ... {len(earlier)} in "
            f"all) and study {study_name!r} has no trials yet: its trials would overwrite them. Fix: a new "
            "--output-dir, or resume the study that wrote them with its --storage and --study")
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, {"study": study_name, "id": study_id})


class _Stopped(KeyboardInterrupt):
    """A SystemExit raised in a trial (the CLI turns SIGTERM into one), carried through Optuna as an interrupt:
    Optuna marks a trial FAIL on KeyboardInterrupt but lets SystemExit through, leaving it RUNNING for ever."""

    def __init__(self, code: Any) -> None:
        super().__init__(code)
        self.code = code


def _stop_at(limit: int, running_at_start: set[int]) -> Callable[[Any, Any], None]:
    """After each trial: stop once the study's finished trials, with those other workers are running, reach
    `limit`, so workers sharing a storage hold `--trials` together (each would otherwise run its own
    `limit - done`). Trials already RUNNING when this worker started are not counted: a killed sweep's never
    finish."""

    def callback(study: Any, _trial: Any) -> None:
        trials = study.get_trials(deepcopy=False)
        finished = sum(t.state.name in FINISHED for t in trials)
        running = sum(t.state.name == "RUNNING" and t.number not in running_at_start for t in trials)
        if finished + running >= limit:
            study.stop()

    return callback


def run_sweep(base: BooktowerConfig, trials: int, storage: str, study_name: str, output_dir: Path,
              train_fn: TrainFn) -> SweepResult:
    import optuna

    sweep = base.sweep
    check_sweep(base)
    if base.tracking.mlflow:
        log.warning("tracking.mlflow is on, but a sweep does not log its trials to MLflow: they are in the Optuna "
                    "storage and in %s. Track the chosen setup by training %s with `booktower train`",
                    output_dir, output_dir / "best_config.yaml")
    study = open_study(base, storage, study_name, output_dir)
    # Seeded by the trials already stored: a resumed study (or a second worker on the same storage) draws new
    # points instead of repeating the first run's random start-up trials, and a given history still gives the
    # same draws.
    study.sampler = optuna.samplers.TPESampler(seed=base.seed + len(study.trials))
    done = sum(t.state.name in FINISHED for t in study.trials)
    remaining = max(0, trials - done)
    log.info("study %s: %d completed or pruned trials in storage, running %d more", study_name, done, remaining)

    def run_trial(trial: optuna.Trial) -> float:
        params = {key: suggest(trial, key, spec) for key, spec in sweep.space.items()}
        config = trial_config(base, params)
        trial.set_user_attr(CONFIG_ATTR, json.loads(config.model_dump_json()))

        def report(epoch: int, value: float) -> None:
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} with {sweep.metric} {value:.4f}")

        return train_fn(config, output_dir / f"trial_{trial.number:04d}", report)

    def objective(trial: optuna.Trial) -> float:
        try:
            return run_trial(trial)
        except SystemExit as exc:
            trial.set_user_attr(INTERRUPTED_ATTR, True)
            raise _Stopped(exc.code) from exc
        except KeyboardInterrupt:
            trial.set_user_attr(INTERRUPTED_ATTR, True)
            raise

    if remaining:
        queue_interrupted(study, remaining, sweep.space)
        running = {t.number for t in study.trials if t.state.name == "RUNNING"}
        optimize_log = logging.getLogger("optuna.study._optimize")
        optimize_log.addFilter(_no_interrupt_traceback)
        try:
            study.optimize(objective, n_trials=remaining, catch=(ConfigError,),
                           callbacks=[_stop_at(trials, running)])
        except _Stopped as exc:
            raise SystemExit(exc.code) from None
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
    trained = best.user_attrs.get(CONFIG_ATTR)  # absent from trials run before it was recorded
    best_config = BooktowerConfig.model_validate(trained) if trained else trial_config(base, best.params)
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
