"""`booktower ensemble`: finished runs of one dataset and split combined into a run of their ensemble.

The ensemble run is shaped like a trained run (config.yaml, run.json, vocab/, split.json, model/ and, for runs
refit on train + validation, checkpoints/best), so `evaluate`, `report`, `compare`, `export` and `recommend`
take it as they take any run. Its validation metrics come from the members' selected checkpoints and its test
metrics from their served models, as a single run's do; nothing is trained or selected on the test split here.
The first member's baselines (RUN/baselines) come along: they were fitted on the same split.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from booktower.config import BooktowerConfig
from booktower.data.errors import DataError
from booktower.models.ensemble import ensemble_of
from booktower.models.io import load_model, save_model
from booktower.training.run import VALIDATION_ONLY_FILE, run_config, selection_model
from booktower.utils.atomic import atomic_write_json, make_temp_dir
from booktower.utils.runinfo import finished_at, write_run_info

SHARED_FILES = ("vocab/users.parquet", "vocab/items.parquet", "split.json")
"""What members must hold byte for byte alike: one vocabulary (the model's rows) and one split."""
COPIED_FILES = (*SHARED_FILES, "data_summary.json")


@dataclass(frozen=True)
class Member:
    run_dir: Path
    config: BooktowerConfig
    info: dict[str, Any]


def read_member(run_dir: Path) -> Member:
    """A finished run, or a DataError saying why it cannot be a member and what to do."""
    run_dir = Path(run_dir)
    config = run_config(run_dir)
    if (run_dir / VALIDATION_ONLY_FILE).is_file() and not (run_dir / "model").is_dir():
        raise DataError("a `--validation-only` run has no served model yet", path=run_dir,
                        fix=f"complete it first (booktower train -o {run_dir} --resume)")
    if finished_at(run_dir) is None or not (run_dir / "model").is_dir():
        raise DataError("the run is not finished (no model, or run.json has no `finished`)", path=run_dir,
                        fix=f"let it finish, or resume it (booktower train -o {run_dir} --resume)")
    return Member(run_dir, config, json.loads((run_dir / "run.json").read_text()))


def check_same_data(members: list[Member]) -> None:
    """One dataset, one split, one evaluation protocol, one way of selecting: else the members' scores do not
    add up to an ensemble's, or its metrics are not comparable with theirs."""
    first = members[0]
    for member in members[1:]:
        for name in SHARED_FILES:
            if (member.run_dir / name).read_bytes() != (first.run_dir / name).read_bytes():
                raise DataError(f"{name} differs from {first.run_dir}'s: the runs were trained on other data or "
                                "another split", path=member.run_dir / name,
                                fix="ensemble runs trained from one config's data section on the same files")
        for section in ("data", "evaluation"):
            if getattr(member.config, section) != getattr(first.config, section):
                raise DataError(f"its `{section}` config section differs from {first.run_dir}'s",
                                path=member.run_dir / "config.yaml",
                                fix=f"ensemble runs whose `{section}` sections are the same")
        refit = member.config.training.refit_on_validation
        if refit != first.config.training.refit_on_validation:
            raise DataError(f"training.refit_on_validation is {refit} here and "
                            f"{first.config.training.refit_on_validation} in {first.run_dir}: the ensemble's test "
                            "model would mix models that saw validation with models that did not",
                            path=member.run_dir / "config.yaml", fix="ensemble runs that all refit, or none")


def assemble_ensemble(run_dirs: list[Path], output_dir: Path) -> Path:
    """Write the ensemble run of `run_dirs` into `output_dir` (new, or empty) atomically; returns it."""
    if len(run_dirs) < 2:
        raise DataError(f"an ensemble needs at least 2 runs, got {len(run_dirs)}", fix="name two or more runs")
    if output_dir.exists() and any(output_dir.iterdir()):
        raise DataError("the output folder is not empty", path=output_dir,
                        fix="name a new folder for the ensemble run (--output-dir)")
    members = [read_member(Path(run)) for run in run_dirs]
    check_same_data(members)
    first = members[0]
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(output_dir.parent, f".{output_dir.name}.new.")
    try:
        for name in COPIED_FILES:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(first.run_dir / name, tmp / name)
        served = [load_model(member.run_dir / "model") for member in members]
        save_model(ensemble_of(served), tmp / "model")
        if first.config.training.refit_on_validation:
            selected = [selection_model(m.run_dir, m.config, model) for m, model in zip(members, served)]
            save_model(ensemble_of(selected), tmp / "checkpoints" / "best")
        _write_run_files(tmp, members)
        if (first.run_dir / "baselines").is_dir():  # fitted on the same split (checked above): still comparable
            shutil.copytree(first.run_dir / "baselines", tmp / "baselines")
        if output_dir.exists():
            output_dir.rmdir()
        tmp.rename(output_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return output_dir


def _write_run_files(directory: Path, members: list[Member]) -> None:
    """config.yaml (the first member's: its data, evaluation and refit settings are every member's) and
    run.json (the first member's inputs and working folder, so `evaluate` checks the same files, and the
    members)."""
    first = members[0]
    write_run_info(directory, config_yaml=(first.run_dir / "config.yaml").read_text(), seed=first.config.seed,
                   inputs=[], timings={})
    info = json.loads((directory / "run.json").read_text())
    info.update({key: first.info[key] for key in ("inputs", "working_directory") if key in first.info})
    info["refit_on_validation"] = first.config.training.refit_on_validation
    info["ensemble"] = {"members": [str(m.run_dir) for m in members], "seeds": [m.config.seed for m in members],
                        "best_epochs": [m.info.get("best_epoch") for m in members],
                        # what the ensemble cost to train: each member's whole run (fit, refit, scoring)
                        "member_seconds": [round(sum((m.info.get("timings_seconds") or {}).values()), 1)
                                           for m in members]}
    info["finished"] = info["created"]
    atomic_write_json(directory / "run.json", info)
