"""The run folder around a training: who may write it (its lock), whether a `--resume` may continue what it
holds, and the order in which a new run replaces an earlier one's files.

The order is what keeps an interrupted folder honest. A new run removes the earlier run's config.yaml first and
writes its own last, after run.json's start record, the split and the vocabularies: a folder without a
config.yaml is refused by `--resume` (train it again), and one with a config.yaml holds that config's own start,
so a `--resume` continues the run that config describes and never an earlier one's checkpoints.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from booktower.config import BooktowerConfig, ConfigError
from booktower.data.errors import DataError
from booktower.data.types import PreparedData
from booktower.evaluation.split_identity import split_identity, write_split_identity
from booktower.training.distributed import DistContext
from booktower.training.run import VALIDATION_ONLY_FILE, config_as_files, run_config
from booktower.utils.atomic import atomic_write_json, atomic_write_text
from booktower.utils.folder_lock import RunInUse, run_lock
from booktower.utils.runinfo import finished_at, older_data_format, record_lost_history, record_start, run_json_problem
from booktower.utils.scorings import RECORD_FIX, TEST_SCORINGS, mark_earlier_run, record_problem
from booktower.utils.wording import counted

log = logging.getLogger(__name__)

TRAIN_FIX = "wait for it to end (or stop it), or train into another --output-dir"


@contextmanager
def hold_run_folder(run_dir: Path, dist: DistContext, doing: str) -> Iterator[None]:
    """The run folder's lock for the whole training (fit, refit, scoring, report). Rank 0 alone takes it, as it
    alone writes the folder (on a multi-node run the folder is rank 0's); a refusal reaches every rank, so that
    none waits in a collective for a rank that left."""
    with ExitStack() as held:
        holder = None
        if dist.is_main:
            try:
                held.enter_context(run_lock(run_dir, doing, TRAIN_FIX))
            except RunInUse as refused:
                holder = refused.holder
        holder = dist.broadcast(holder)
        if holder is not None:
            raise RunInUse(run_dir, doing, holder, TRAIN_FIX)
        yield


def _ensemble_members(run_dir: Path) -> str:
    """The members of an ensemble run (run.json's `ensemble`), named; "" for any other run."""
    try:
        ensemble = json.loads((run_dir / "run.json").read_text()).get("ensemble")
    except (OSError, ValueError, AttributeError):
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


RESUME_FREE_KEYS = ("training.progress", "tracking.", "data.cache_dir", "training.cuda_graph")
"""Keys a resumed run may change: they decide what is shown, mirrored or kept ready, or how fast a step runs, not
what is trained. (The cache's key is the data config and the input files' contents, so another cache folder
holds the same data. The graphed step trains as the eager one does, tests/training/test_graphed.py; and runs
saved before its `auto` default say `false`.)"""


def resume_config_changes(run_dir: Path, config: BooktowerConfig) -> list[str]:
    """What `config` changes that a resume of the run in `run_dir` may not ("key: was -> now"); none for a
    folder without a run."""
    if not (run_dir / "config.yaml").exists():
        return []
    was, now = config_as_files(run_config(run_dir)), config_as_files(config)
    return [f"{key}: {was.get(key)!r} -> {now.get(key)!r}" for key in sorted(was.keys() | now.keys())
            if was.get(key) != now.get(key) and not key.startswith(RESUME_FREE_KEYS)]


def _check_resume_config(run_dir: Path, config: BooktowerConfig) -> None:
    """Refuse to resume with a config that trains something else, or in a folder whose run never wrote its
    config. Data paths are compared as the files they name: the run's relative to the folder it started in,
    this one's relative to the current folder."""
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"--resume: {run_dir} holds no config.yaml: no run started there, or its start was "
                          "interrupted before the config was written, so there is nothing to continue. Fix: train "
                          "it without --resume (the same command, without the flag), or check the --output-dir path")
    changed = resume_config_changes(run_dir, config)
    if not changed:
        return
    raise ConfigError(f"--resume: {saved} differs from this config ({'; '.join(changed[:5])}"
                      f"{'; ...' if len(changed) > 5 else ''}). Fix: resume with that run's --config and --set "
                      "values, or train the new config into a new --output-dir")


def check_resumable(run_dir: Path, config: BooktowerConfig, dist: DistContext) -> None:
    """Before anything is prepared, trained or written: the run's config.yaml and the same training config, a
    readable run.json, and a run not yet finished. Rank 0 reads the folder (on a multi-node run, only its node
    has it) and every rank takes its answer: ranks that disagreed would wait for each other forever."""
    verdict = dist.broadcast(_resume_verdict(run_dir, config) if dist.is_main else None)
    if verdict is None:
        return
    kind, detail = verdict
    if kind == "config":
        raise ConfigError(detail)
    if kind == "run.json":
        raise DataError(f"--resume: run.json {detail}; it holds the run's history and the input files' sha256s "
                        "that a resume checks the data against", path=run_dir / "run.json",
                        fix="restore it (from a backup or a copy of the folder), or train the run again without "
                            "--resume")
    if kind == TEST_SCORINGS:
        raise DataError(f"--resume: {detail}; a resume scores the test split at its end, and that scoring would go "
                        "unrecorded", path=run_dir / TEST_SCORINGS,
                        fix=f"{RECORD_FIX}, then resume again")
    raise RunAlreadyFinished(run_dir, detail)


def _resume_verdict(run_dir: Path, config: BooktowerConfig) -> tuple[str, str] | None:
    """Why the run in `run_dir` cannot be resumed with `config`, as (kind, detail) to send to every rank; None
    when it can."""
    try:
        _check_resume_config(run_dir, config)
    except ConfigError as refused:
        return "config", str(refused)
    problem = run_json_problem(run_dir)
    if problem is not None:
        return "run.json", problem
    finished = finished_at(run_dir)
    if finished is not None:
        return "finished", finished  # nothing to continue: its record is not written either
    problem = record_problem(run_dir)  # refused now, not after the resume has trained and scored test
    return None if problem is None else (TEST_SCORINGS, problem)


EARLIER_RUN_OUTPUTS = ("config.yaml", "checkpoints", "refit", "model", "plots", "run.json", "metrics.json",
                       "report.md", "epochs.csv", "split.json", "per_user_validation.parquet",
                       "per_user_test.parquet", "diagnostics.json", "audit.json", VALIDATION_ONLY_FILE,
                       "data_summary.json", "vocab")
"""What a training run writes and a new run over it replaces, config.yaml first (removed in this order).
Baselines (RUN/baselines), the MLflow link and the record of the folder's test scorings (RUN/test_scorings.json,
its entries marked as an earlier run's) stay."""


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


def open_run_dir(run_dir: Path, config_yaml: str, data: PreparedData, resume: bool, inputs: list[Path]) -> None:
    """Rank 0's first writes: what the run trains on, before the first epoch (the input files' sha256s and the
    split among them, which a resume compares with what the config prepares then), config.yaml last."""
    if resume:
        _resume_record(run_dir, inputs)
    else:
        _replace_earlier_run(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        record_start(run_dir, inputs)  # an interrupted run's relative data paths resume from any folder
        write_split_identity(run_dir, split_identity(data))
    atomic_write_json(run_dir / "data_summary.json", data.summary)
    data.users.save(run_dir / "vocab" / "users.parquet")
    data.items.save(run_dir / "vocab" / "items.parquet")
    atomic_write_text(run_dir / "config.yaml", config_yaml)  # now the folder is this run's: --resume continues it


def _replace_earlier_run(run_dir: Path) -> None:
    earlier_scorings = mark_earlier_run(run_dir)
    if (run_dir / "metrics.json").exists():
        log.warning("%s already holds a %s: its files are being replaced (a new --output-dir keeps it)%s",
                    run_dir, "ensemble run" if _ensemble_members(run_dir) else "trained run",
                    f"; {TEST_SCORINGS} keeps its {counted(earlier_scorings, 'scoring')} of the test split, "
                    "marked as an earlier run's" if earlier_scorings else "")
    elif (run_dir / VALIDATION_ONLY_FILE).exists():
        log.warning("%s holds a --validation-only run, which `--resume` would have completed: it is being replaced "
                    "(a new --output-dir keeps it)", run_dir)
    _forget_earlier_run(run_dir)


def _resume_record(run_dir: Path, inputs: list[Path]) -> None:
    """A resume whose run.json is missing (check_resumable refused a damaged one): with no checkpoint the run
    starts over and records its start now; with one, the earlier segments and the input files' sha256s are lost,
    which a loud warning and run.json's `history_lost` say."""
    from booktower.training.checkpoint import find_resume_checkpoint

    if (run_dir / "run.json").exists():
        return
    if find_resume_checkpoint(run_dir / "checkpoints") is None:
        record_start(run_dir, inputs)
        return
    note = (f"run.json was missing when the run was resumed from {run_dir / 'checkpoints'}: the earlier segments, "
            "their timings and the input files' sha256s are lost, so this resume could not check that the input "
            "files are the ones the run started on")
    log.warning("%s. Restore run.json from a backup and resume again to keep them, or train the run again "
                "without --resume", note)
    record_lost_history(run_dir, note)


def refuse_other_data(run_dir: Path, data: PreparedData, dist: DistContext) -> None:
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

