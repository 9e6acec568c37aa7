"""`booktower ensemble`: finished runs of one dataset and split combined into a run of their ensemble.

The ensemble run is shaped like a trained run (config.yaml, run.json, vocab/, split.json, model/ and, for runs
refit on train + validation, checkpoints/best), so `evaluate`, `report`, `compare`, `export` and `recommend`
take it as they take any run. Its validation metrics come from the members' selected checkpoints and its test
metrics from their served models, as a single run's do; nothing is trained or selected on the test split here.
The first member's baselines (RUN/baselines) come along: they were fitted on the same split.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from booktower.config import BooktowerConfig
from booktower.data.errors import DataError
from booktower.data.vocab import Vocabulary
from booktower.models.ensemble import check_members, ensemble_of
from booktower.models.io import SPEC, WEIGHTS, load_model, save_model
from booktower.models.spec import ModelSpec
from booktower.training.run import VALIDATION_ONLY_FILE, config_as_files, run_config, selection_model
from booktower.utils.atomic import atomic_write_json, make_temp_dir
from booktower.utils.folder_lock import INSIDE_LOCK, has_run_files
from booktower.utils.runinfo import file_fingerprint, finished_at, write_run_info
from booktower.utils.scorings import record_test_scoring, weights_sha256

if TYPE_CHECKING:
    from booktower.data.types import PreparedData
    from booktower.evaluation.run_eval import RunEvaluation

log = logging.getLogger(__name__)

VOCABULARIES = ("vocab/users.parquet", "vocab/items.parquet")
COPIED_FILES = (*VOCABULARIES, "split.json", "data_summary.json")
FREE_DATA_KEYS = ("data.cache_dir", "data.source.interactions", "data.source.items", "data.source.users")
"""Data keys members may differ in: where the prepared arrays are kept, and where the input files are (a copy on
another machine is the same data: the files are compared by their recorded sha256 instead)."""


@dataclass(frozen=True)
class Member:
    run_dir: Path
    config: BooktowerConfig
    info: dict[str, Any]
    spec: ModelSpec


def read_member(run_dir: Path) -> Member:
    """A finished run of one model, or a DataError saying why it cannot be a member and what to do."""
    run_dir = Path(run_dir)
    config = run_config(run_dir)
    if (run_dir / VALIDATION_ONLY_FILE).is_file() and not (run_dir / "model").is_dir():
        raise DataError("a `--validation-only` run has no served model yet", path=run_dir,
                        fix=f"complete it first (booktower train -o {run_dir} --resume)")
    if finished_at(run_dir) is None or not (run_dir / "model" / SPEC).is_file():
        raise DataError("the run is not finished (no model, or run.json has no `finished`)", path=run_dir,
                        fix=f"let it finish, or resume it (booktower train -o {run_dir} --resume)")
    info = json.loads((run_dir / "run.json").read_text())
    if isinstance(info.get("ensemble"), dict):
        members = " ".join(str(m) for m in info["ensemble"].get("members") or [])
        raise DataError("the run is itself an ensemble", path=run_dir,
                        fix=f"name its members instead ({members}) beside the other runs")
    spec = ModelSpec.from_dict(json.loads((run_dir / "model" / SPEC).read_text()))
    return Member(run_dir, config, info, spec)


def check_members_fit(members: list[Member]) -> None:
    """One dataset, one split, one way of selecting, and models whose vectors can share one index: else the
    members' scores do not add up to an ensemble's, or its metrics are not comparable with theirs. The
    vocabularies and split are compared as what they hold, not as files (a Parquet footer names its writer)."""
    first = members[0]
    first_data = _data_keys(first.config)
    first_vocabularies = {name: Vocabulary.load(first.run_dir / name) for name in VOCABULARIES}
    first_split = json.loads((first.run_dir / "split.json").read_text())
    for member in members[1:]:
        for name, vocabulary in first_vocabularies.items():
            if Vocabulary.load(member.run_dir / name) != vocabulary:
                raise _other_data(member, first, f"{name} holds other ids or another order")
        if json.loads((member.run_dir / "split.json").read_text()) != first_split:
            raise _other_data(member, first, "split.json describes another split")
        changed = [f"{key}: {first_data.get(key)!r} -> {value!r}" for key, value in _data_keys(member.config).items()
                   if first_data.get(key) != value]
        if changed:
            raise _other_data(member, first, f"its data config differs ({'; '.join(changed[:3])})")
        if _input_hashes(member) != _input_hashes(first):
            raise _other_data(member, first, "its input files differ (run.json's sha256s)")
        refit = member.config.training.refit_on_validation
        if refit != first.config.training.refit_on_validation:
            raise DataError(f"training.refit_on_validation is {refit} here and "
                            f"{first.config.training.refit_on_validation} in {first.run_dir}: the ensemble's test "
                            "model would mix models that saw validation with models that did not",
                            path=member.run_dir / "config.yaml", fix="ensemble runs that all refit, or none")
    _refuse_repeats(members)
    try:
        check_members([member.spec for member in members])
    except ValueError as exc:
        named = ", ".join(f"member {number} = {m.run_dir}" for number, m in enumerate(members, start=1))
        raise DataError(f"{exc} ({named})", fix="ensemble runs of models that can share one index") from None


def _input_hashes(member: Member) -> list[str]:
    files = (member.info.get("inputs") or {}).get("files") or {}
    return sorted(str(entry.get("sha256")) for entry in files.values() if isinstance(entry, dict))


def _refuse_repeats(members: list[Member]) -> None:
    """Two members with the same weights (one run named twice, or two runs of one config and seed, which train
    byte for byte alike) add nothing but width: most likely a forgotten `--set seed=`."""
    seen: dict[str, Member] = {}
    for member in members:
        weights = member.run_dir / "model" / WEIGHTS
        digest = file_fingerprint([weights])["files"][str(weights)]["sha256"]  # streamed: tables can be GBs
        if digest in seen:
            raise DataError(f"the run holds the same model as {seen[digest].run_dir} (the same weights: the same run, "
                            f"or the same config and seed {member.config.seed})", path=member.run_dir,
                            fix="ensemble runs trained from different seeds (booktower train ... --set seed=S)")
        seen[digest] = member


def _data_keys(config: BooktowerConfig) -> dict[str, object]:
    return {key: value for key, value in config_as_files(config).items()
            if key.startswith("data.") and not key.startswith(FREE_DATA_KEYS)}


def _other_data(member: Member, first: Member, why: str) -> DataError:
    return DataError(f"{why} than {first.run_dir}: the runs were trained on other data or another split",
                     path=member.run_dir, fix="ensemble runs trained with one data section on the same files")


def train_members(config: BooktowerConfig, seeds: list[int], members_dir: Path, jobs: int = 1) -> list[Path]:
    """One run of `config` per seed in `members_dir/seed-S`: a finished one is kept as it is, an interrupted one
    resumed (refused, as `train --resume` is, if the config changed since), a missing one trained. So the command
    that trains an ensemble's members picks up where it stopped. With `jobs` > 1, that many train at once, each
    in its own process (training/member_processes.py)."""
    from booktower.training.member_processes import train_side_by_side
    from booktower.training.pipeline import RunAlreadyFinished, train_run

    if len(set(seeds)) != len(seeds) or len(seeds) < 2:
        raise DataError(f"--seeds {seeds}: an ensemble needs two or more different seeds (one config and seed "
                        "train the same model)", fix="e.g. --seeds 1,2,3")
    _refuse_members_of_another_config(config, seeds, members_dir)
    if jobs > 1:
        return train_side_by_side(config, seeds, members_dir, jobs)
    run_dirs = []
    for seed in seeds:
        run_dir = members_dir / f"seed-{seed}"
        member_config = config.model_copy(update={"seed": seed})
        started = (run_dir / "config.yaml").is_file()
        try:
            train_run(member_config, run_dir, resume=started)
        except RunAlreadyFinished:
            log.info("%s finished training already: kept as it is", run_dir)
        run_dirs.append(run_dir)
    return run_dirs


def _refuse_members_of_another_config(config: BooktowerConfig, seeds: list[int], members_dir: Path) -> None:
    """Before any member trains: members started under another config would each fail (or, finished, be kept
    and combined with new ones), so every such seed is named at once, with the change."""
    from booktower.training.pipeline import resume_config_changes

    changed = {seed: resume_config_changes(members_dir / f"seed-{seed}", config.model_copy(update={"seed": seed}))
               for seed in seeds}
    stale = {seed: changes for seed, changes in changed.items() if changes}
    if not stale:
        return
    named = ", ".join(str(seed) for seed in stale)
    first = next(iter(stale.values()))
    raise DataError(f"the members of seed{'s' if len(stale) > 1 else ''} {named} in {members_dir} were started "
                    f"with another config ({'; '.join(first[:3])}{'; ...' if len(first) > 3 else ''})",
                    fix="pass a new --members-dir for this config (or run the command again with "
                                          "the config those members started with, to continue them)")


def train_served_model(config: BooktowerConfig, run_dir: Path, data: PreparedData, seeds: list[int] | None = None,
                       ks: list[int] | None = None) -> tuple[Any, dict[str, float]]:
    """For the hold-out benchmarks: the served model trained on `data` (a run written into `run_dir`; with
    several `seeds`, one run each in `run_dir/seed-S`, combined as their ensemble, whose scoring is recorded in
    `run_dir`'s test_scorings.json with `folder_model: false`), and its test metrics."""
    from booktower.evaluation import evaluate_split
    from booktower.training.pipeline import train_run
    from booktower.training.scoring import score_fn_for

    if not seeds or len(seeds) == 1:
        result = train_run(config.model_copy(update={"seed": seeds[0]}) if seeds else config, run_dir, data=data)
        return result.model.cpu().eval(), result.metrics.get("test", {})
    members = [train_run(config.model_copy(update={"seed": seed}), run_dir / f"seed-{seed}", data=data)
               for seed in seeds]
    model = ensemble_of([member.model.cpu() for member in members]).eval()  # the served (refit) models
    ks = ks or [10, 20, 50]
    metrics = evaluate_split(score_fn_for(model, data, "test"), data, "test", ks).metrics
    # the members' scorings are in their folders' test_scorings.json; the ensemble's goes in the folder above them,
    # marked as no model of that folder's: it scored the same test split (a single-seed run there is compared with
    # it, which the record is for), but it is held only in memory, and RUN/model may be another model's
    record_test_scoring(run_dir, "ensemble (hold-out)", weights_sha256(model), metrics, ks, folder_model=False)
    return model, metrics


def build_ensemble_run(run_dirs: list[Path], output_dir: Path) -> RunEvaluation:
    """Write the ensemble run of `run_dirs` into `output_dir` (new, or empty), scored: validation and test
    metrics, per-user tables, diagnostics and audit. Built and scored in a temporary sibling that then takes
    the name, so a failure leaves no half-made run behind."""
    from booktower.evaluation.run_eval import reevaluate_run

    if len(run_dirs) < 2:
        raise DataError(f"an ensemble needs at least 2 runs, got {len(run_dirs)}", fix="name two or more runs")
    if output_dir.exists() and has_run_files(output_dir):
        raise DataError("the output folder is not empty", path=output_dir,
                        fix="name a new folder for the ensemble run (--output-dir)")
    members = [read_member(Path(run)) for run in run_dirs]
    check_members_fit(members)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(output_dir.parent, f".{output_dir.name}.new.")
    try:
        _assemble(members, tmp)
        _, evaluation = reevaluate_run(tmp, scored_by="ensemble")  # recorded in its test_scorings.json
        if output_dir.exists():
            (output_dir / INSIDE_LOCK).unlink(missing_ok=True)  # the folder is replaced whole, rename needs it empty
            output_dir.rmdir()
        tmp.rename(output_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return evaluation


def _assemble(members: list[Member], directory: Path) -> None:
    first = members[0]
    for name in COPIED_FILES:
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(first.run_dir / name, directory / name)
    served = [load_model(member.run_dir / "model") for member in members]
    save_model(ensemble_of(served), directory / "model")
    if first.config.training.refit_on_validation:
        selected = [selection_model(m.run_dir, m.config, model) for m, model in zip(members, served)]
        save_model(ensemble_of(selected), directory / "checkpoints" / "best")
    _write_run_files(directory, members)
    if (first.run_dir / "baselines").is_dir():  # fitted on the same split (checked): still comparable
        shutil.copytree(first.run_dir / "baselines", directory / "baselines")


def _write_run_files(directory: Path, members: list[Member]) -> None:
    """config.yaml (the first member's: its data and refit settings are every member's) and run.json (the first
    member's inputs and working folder, so `evaluate` checks the same files, and the members)."""
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
