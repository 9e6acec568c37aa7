"""load_run: a finished run directory back as (config, data, model), checked against its vocabularies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from booktower.config import BooktowerConfig, ConfigError, dump_config, load_config
from booktower.data.errors import DataError
from booktower.data.ingest import PACKAGE_PREFIX
from booktower.data.prepare import SOURCE_PATHS, prepare
from booktower.data.types import PreparedData
from booktower.data.vocab import Vocabulary
from booktower.models.io import SPEC, load_model
from booktower.models.two_tower import TwoTower
from booktower.utils.folder_lock import writer_of
from booktower.utils.nested import flatten
from booktower.utils.runinfo import finished_at, is_sweep_trial, working_directory


@dataclass
class TrainedRun:
    config: BooktowerConfig
    data: PreparedData
    model: TwoTower


def run_config(run_dir: Path | str) -> BooktowerConfig:
    """RUN/config.yaml with its relative data paths and cache read from the folder the run was trained from, so
    that `export`, `evaluate`, `recommend --run` and `train --resume` find the data, and the data it prepared,
    from any folder."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(_bundle_not_run(run_dir) or
                                f"{run_dir}/config.yaml is missing: not a booktower run directory")
    try:
        config = load_config(run_dir / "config.yaml")
    except ConfigError as exc:  # booktower wrote this file: damaged, or edited by hand
        if "Fix:" in str(exc):
            raise
        raise ConfigError(f"{exc}. Fix: it is {run_dir}'s record of how the run trained: restore it (or the "
                          "run folder) from a copy, or train the run again") from exc
    return anchor_data_paths(config, working_directory(run_dir))


def _bundle_not_run(run_dir: Path) -> str | None:
    """The message for a serving bundle passed where a run is wanted (both are folders `booktower` wrote),
    naming the run it was exported from (the manifest's source.run) when it says; None for any other folder."""
    from booktower.serving.bundle import is_bundle_folder
    from booktower.serving.manifest import MANIFEST

    if not is_bundle_folder(run_dir):
        return None
    source = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8")).get("source")
    run = source.get("run") if isinstance(source, dict) and isinstance(source.get("run"), str) else None
    if not run:
        where = f"this bundle's {MANIFEST} does not name the run it was exported from"
    elif (Path(run) / "config.yaml").is_file():
        where = f"this bundle was exported from {run}: name {run} instead"
    else:
        where = f"this bundle was exported from {run}, which holds no run now: pass the folder it moved to"
    return (f"{run_dir} is a serving bundle (it holds a booktower {MANIFEST} and no config.yaml), not a training "
            "run. Fix: name the training run directory, the folder `booktower train -o` wrote (holding "
            f"config.yaml and model/); {where}")


def anchor_data_paths(config: BooktowerConfig, base: Path) -> BooktowerConfig:
    """`config` with its relative data.source paths and data.cache_dir made absolute against `base`, the folder
    they were written for; unchanged when that is the current folder, where they already mean the same files.
    (A cache read from elsewhere would prepare the data again, into a new cache there.)"""
    if base.resolve() == Path.cwd().resolve():
        return config
    return absolute_data_paths(config, base)


def absolute_data_paths(config: BooktowerConfig, base: Path) -> BooktowerConfig:
    """`config` with its relative data.source paths and data.cache_dir made absolute against `base`."""
    source = config.data.source
    anchored = {name: base / path for name in SOURCE_PATHS
                if (path := getattr(source, name)) is not None and not path.is_absolute()
                and not str(path).startswith(PACKAGE_PREFIX)}
    update: dict[str, object] = {"source": source.model_copy(update=anchored)} if anchored else {}
    cache = config.data.cache_dir
    if cache is not None and not cache.is_absolute():
        update["cache_dir"] = base / cache
    if not update:
        return config
    return config.model_copy(update={"data": config.data.model_copy(update=update)})


VALIDATION_ONLY_FILE = "validation.json"
"""A `--validation-only` run's result: the selected checkpoint's validation metrics, until `--resume` completes it."""


def unfinished_reason(run_dir: Path) -> str | None:
    """Why a run has no model yet, with the fix for its kind (a `--validation-only` run, a sweep trial, an
    interrupted run), or None when it has one. A finished run without a model is damaged, and load_model's message
    says that. (An interruption while the model was being written leaves model/ without its spec: unfinished.)"""
    if (run_dir / "model" / SPEC).is_file():
        return None
    fix = f"Fix: complete it first (booktower train -o {run_dir} --resume)"
    if (run_dir / VALIDATION_ONLY_FILE).is_file():
        return f"{run_dir} is a `--validation-only` run: it has no model yet (no refit, test not scored). {fix}"
    if is_sweep_trial(run_dir):
        return (f"{run_dir} is a sweep trial: it keeps its config and epochs.csv, no model. Fix: train its config as "
                f"a run (booktower train --config {run_dir / 'config.yaml'} -o RUN) and use that run")
    if finished_at(run_dir) is None:
        if (writer := writer_of(run_dir)) is not None:
            return (f"{run_dir} is being written right now by {writer}: it has no model yet. Fix: wait for it to "
                    "finish, then run this again")
        return (f"{run_dir} has not finished training (interrupted, it seems: no process holds its lock): it has no "
                f"model yet. {fix}")
    return None


def _refuse_unfinished(run_dir: Path) -> None:
    reason = unfinished_reason(run_dir)
    if reason:
        raise FileNotFoundError(reason)


def config_as_files(config: BooktowerConfig) -> dict[str, object]:
    """The config's keys flattened, its data paths as the real files they name from the current folder (symlinks
    resolved): two configs that train alike compare equal however they name their files."""
    flat = flatten(yaml.safe_load(dump_config(absolute_data_paths(config, Path.cwd()))) or {})
    for name in SOURCE_PATHS:
        path = flat.get(f"data.source.{name}")
        if isinstance(path, str) and not path.startswith(PACKAGE_PREFIX):
            flat[f"data.source.{name}"] = str(Path(path).resolve())
    return flat


def load_run(run_dir: Path | str, device: torch.device | str = "cpu") -> TrainedRun:
    """Re-prepare the data from RUN/config.yaml (cached), check it matches RUN/vocab, load RUN/model."""
    run_dir = Path(run_dir)
    config = run_config(run_dir)
    _refuse_unfinished(run_dir)
    data, _ = prepare(config.data)
    for name, vocab in (("users", data.users), ("items", data.items)):
        saved = Vocabulary.load(run_dir / "vocab" / f"{name}.parquet")
        if saved != vocab:
            same_ids = len(saved) == len(vocab) and set(saved.ids.to_list()) == set(vocab.ids.to_list())
            how = (f"the same {len(vocab)} ids in another order (ids are numbered by first appearance in the prepared "
                   "training rows, reader by reader and each reader's in time order, so an added, removed or "
                   "re-timed row can renumber them), which the model's rows cannot follow" if same_ids
                   else f"{len(vocab)} ids now, {len(saved)} saved in vocab/{name}.parquet")
            raise _other_data(run_dir, f"the data that {run_dir}/config.yaml prepares now does not match the run's "
                                       f"{name} ({how})", run_dir / "vocab" / f"{name}.parquet")
    return TrainedRun(config, data, load_model(run_dir / "model", device))


def _other_data(run_dir: Path, what: str, path: Path) -> DataError:
    """The files changed since training, or (their sha256s the same) an older booktower prepared them."""
    from booktower.evaluation.data_check import changed_inputs
    from booktower.utils.runinfo import older_data_format

    older = older_data_format(run_dir) if not changed_inputs(run_dir) else None
    if older:
        return DataError(f"{what}: the input files are the ones it was trained on, but {older}", path=path,
                         fix="train a new run with this booktower, or use the version that trained this one")
    return DataError(f"{what}: the input files changed since training", path=path,
                     fix="point the run at the files it was trained on, or train a new run on these")


def selection_model(run_dir: Path | str, config: BooktowerConfig, model: TwoTower) -> TwoTower:
    """The checkpoint early stopping selected (RUN/checkpoints/best): validation metrics must come from it.
    It differs from `model` (RUN/model) only in a run refit on train + validation, whose served model has
    trained on the validation interactions and would score them too well."""
    if not config.training.refit_on_validation:
        return model
    from booktower.training.checkpoint import load_weights

    selected = load_model(Path(run_dir) / "model", next(model.parameters()).device)  # same architecture
    load_weights(Path(run_dir) / "checkpoints" / "best", selected)
    return selected
