"""`booktower train` and `booktower ensemble`."""

from __future__ import annotations

import logging
import os
import shlex
import signal
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from booktower.cli import _paths
from booktower.cli._errors import fail
from booktower.cli._common import (
    CONFIG_OPTION,
    SET_OPTION,
    cli_config,
    console,
    friendly_errors,
    setup_logging,
)

if TYPE_CHECKING:
    from booktower.config import BooktowerConfig


def train_command(
    config: Path | None = CONFIG_OPTION,
    set_: list[str] | None = SET_OPTION,
    output_dir: Path = typer.Option(..., "--output-dir", "-o", callback=_paths.output_dir,
                                    help="The run directory."),
    resume: bool = typer.Option(False, "--resume", help="Continue from RUN/checkpoints/last, with RUN/config.yaml "
                                                        "when --config is not given."),
    validation_only: bool = typer.Option(
        False, "--validation-only",
        help="Stop after the fit: RUN/validation.json holds the selected epoch's validation metrics; no refit, and "
             "the test split is not read. `--resume` without this flag later completes the run."),
) -> None:
    """Train the two-tower model; write the run (checkpoints, epochs.csv, model, metrics.json, report)."""
    from booktower.training.pipeline import RunAlreadyFinished, train_run

    setup_logging()
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 logs and reports
    if not main_rank:
        logging.getLogger().setLevel(logging.WARNING)
    # a disk error that names no file names the run folder
    with friendly_errors(writing=output_dir), _holding_run(output_dir, resume and config is None, main_rank):
        cfg = _train_config(config, set_, output_dir, resume)
        config_before = _file_identity(output_dir / "config.yaml")
        try:
            result = train_run(cfg, output_dir, resume=resume, validation_only=validation_only)
        except RunAlreadyFinished as done:  # every rank gets it; nothing to do, and that is no error
            if main_rank:
                console.print(str(done))
            return
        except (KeyboardInterrupt, SystemExit) as stop:
            code = 130 if isinstance(stop, KeyboardInterrupt) else stop.code
            if code not in (130, 128 + signal.SIGTERM):  # not a stop by the user or a scheduler
                raise
            if main_rank:
                console.print(_interrupted_hint(output_dir, validation_only, resume, config_before))
            raise typer.Exit(code) from None
        if not main_rank:
            return
        report = result.report
    if validation_only:
        console.print(f"validation (epoch {result.fit.best_epoch}) " + _headline(result.metrics["validation"]))
        # without training.refit_on_validation the resume goes straight to the test, with no refit to wait for
        then = "refit, then the test" if cfg.training.refit_on_validation else "the test"
        console.print(f"wrote {output_dir}; the test split was not read. `booktower train -o {output_dir} --resume` "
                      f"completes the run: {then}, scored once")
        return
    console.print("test " + _headline(result.metrics["test"]))
    console.print(f"wrote {output_dir}" + (f" and {report}" if report else ""))


def _holding_run(output_dir: Path, reads_run_config: bool, main_rank: bool) -> AbstractContextManager[None]:
    """A `--resume` that reads the run's own config.yaml takes the run folder's lock first, so that a folder
    another training writes is said to be in use (not to hold no config). Rank 0's, as train_run takes it (there
    nested: no second holder). Under a launch of several processes it is left to train_run, whose refusal
    reaches every rank: one refused here would leave the others waiting for it in the process group."""
    from booktower.training.run_folder import TRAIN_FIX
    from booktower.utils.folder_lock import run_lock

    alone = int(os.environ.get("WORLD_SIZE", "1")) == 1
    if not (reads_run_config and main_rank and alone):
        return nullcontext()
    return run_lock(output_dir, "train --resume", TRAIN_FIX)


def _train_config(config: Path | None, set_: list[str] | None, output_dir: Path, resume: bool) -> BooktowerConfig:
    """The config to train: `--resume` without --config reads the run's own, its relative paths (data, cache,
    MLflow store) read against the folder training started in."""
    if resume and config is None:
        if not (output_dir / "config.yaml").is_file():  # a mistyped path would train the built-in default
            fail(f"--resume: {output_dir} holds no config.yaml: no run started there, or its start was interrupted "
                 "before the config was written. Fix: check the --output-dir path, or train it without --resume "
                 "(with its --config)")
        config = output_dir / "config.yaml"  # the run's own config: resuming needs no copy of the command line
    cfg = cli_config(config, set_)
    if resume and config == output_dir / "config.yaml":
        from booktower.tracking import anchor_tracking_paths
        from booktower.training.run import anchor_data_paths
        from booktower.utils.runinfo import working_directory

        start = working_directory(output_dir)
        cfg = anchor_tracking_paths(anchor_data_paths(cfg, start), start)
    return cfg


def _file_identity(path: Path) -> tuple[int, int, int] | None:
    """Which file is at `path` (inode, modification time, size), or None: an atomic rewrite is another one."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _interrupted_hint(output_dir: Path, validation_only: bool, resume: bool,
                      config_before: tuple[int, int, int] | None) -> str:
    """What continues an interrupted run, from what the folder holds. A run writes its config.yaml after it
    replaced the earlier run's files: before that (while preparing), `--resume` would continue an earlier run or
    find nothing, and only the same command starts this one. Without `--validation-only` a resume would go on to
    the refit and score the test split."""
    from booktower.training.checkpoint import find_resume_checkpoint
    from booktower.utils.runinfo import finished_at

    config_now = _file_identity(output_dir / "config.yaml")
    if config_now is None or (not resume and config_now == config_before):
        held = ("still holds an earlier run's config.yaml, which `--resume` would continue instead"
                if config_now is not None else "holds no config.yaml of it, so `--resume` has nothing to continue")
        return (f"interrupted before the run was written to {output_dir}, which {held}: run the same command again "
                "to start it")
    finished = finished_at(output_dir)
    if finished is not None:
        return f"interrupted after {output_dir} finished training ({finished}): its files are complete"
    flag = " --validation-only" if validation_only else ""
    command = f"booktower train -o {shlex.quote(str(output_dir))} --resume{flag}"
    if find_resume_checkpoint(output_dir / "checkpoints") is None:
        return f"interrupted before the first epoch finished: `{command}` starts it again"
    return f"interrupted: `{command}` continues from the last finished epoch"


def _headline(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in ("HR@10", "NDCG@10", "HR@20", "NDCG@20", "HR@50", "NDCG@50")
                     if k in metrics)


def ensemble_command(
    runs: Optional[list[Path]] = typer.Argument(None, callback=_paths.run_dir,
                                                help="Two or more finished runs of one dataset and split (e.g. "
                                                     "seeds); or train them with --config and --seeds."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", callback=_paths.output_dir,
                                    help="The ensemble run's directory (new, or empty)."),
    config: Path | None = CONFIG_OPTION,
    set_: list[str] | None = SET_OPTION,
    seeds: Optional[str] = typer.Option(None, "--seeds", help="With --config: train one member per seed "
                                        "(comma-separated, e.g. 1,2,3) into --members-dir, then combine them."),
    members_dir: Optional[Path] = typer.Option(None, "--members-dir", callback=_paths.output_dir,
                                               help="Where --seeds trains the members (RUN/seed-S; default: "
                                                    "OUTPUT_DIR-members beside the ensemble). Finished members "
                                                    "are kept, interrupted ones resumed."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1,
                             help="With --seeds: members trained at once, each in its own process (log: "
                                  "MEMBERS_DIR/seed-S.log), the cores shared out between them."),
    report: bool = typer.Option(True, help="Render report.md."),
) -> None:
    """Combine finished runs into one ensemble run (scores summed: one index of their vectors side by side),
    scored as a run: validation by the members' selected checkpoints, test by their served models."""
    from booktower.evaluation.report import write_report
    from booktower.evaluation.tables import print_metric_table
    from booktower.training.ensemble_run import build_ensemble_run
    from booktower.training.run import run_config
    from booktower.utils.folder_lock import run_lock

    setup_logging()
    if bool(runs) == bool(seeds):
        fail("give the member runs (booktower ensemble RUN_1 RUN_2 ... -o OUT), or train them: --config C --seeds "
             "1,2,3 -o OUT")
    if not seeds and (config or set_ or members_dir or jobs > 1):
        fail("--config, --set, --members-dir and --jobs say how to train members, which only --seeds does. Fix: add "
             "--seeds 1,2,3, or leave them out to combine the runs as they were trained")
    # OUT's lock and its check come before any member trains (hours), and the lock is held through
    with friendly_errors(), run_lock(output_dir, "ensemble", fix="wait for it to end (or stop it), or pass "
                                                               "another --output-dir"):
        if seeds:
            _refuse_filled_output(output_dir)
            members = members_dir or output_dir.parent / f"{output_dir.name}-members"
            runs = _train_seed_members(cli_config(config, set_), _seed_list(seeds), members, jobs)
        evaluation = build_ensemble_run(list(runs or []), output_dir)
        print_metric_table({"validation": evaluation.validation.metrics, "test": evaluation.test.metrics},
                           run_config(output_dir).evaluation.ks, console, title=f"ensemble of {len(runs or [])} runs")
        written = write_report(output_dir) if report else None
    console.print(f"wrote {output_dir}" + (f" and {written}" if written else ""))


def _refuse_filled_output(output_dir: Path) -> None:
    """The ensemble's folder must be new or empty (as build_ensemble_run checks again at the end): said before
    the members train, not after."""
    from booktower.data.errors import DataError
    from booktower.utils.folder_lock import has_run_files

    if output_dir.is_dir() and has_run_files(output_dir):
        raise DataError("the output folder is not empty", path=output_dir,
                        fix="name a new folder for the ensemble run (--output-dir)")


def _train_seed_members(config: BooktowerConfig, seeds: list[int], members: Path, jobs: int) -> list[Path]:
    """train_members, with the hint that the same command continues when it is stopped."""
    from booktower.training.ensemble_run import train_members

    try:
        return train_members(config, seeds, members, jobs)
    except (KeyboardInterrupt, SystemExit) as stop:
        code = 130 if isinstance(stop, KeyboardInterrupt) else stop.code
        if code not in (130, 128 + signal.SIGTERM):
            raise
        console.print(f"interrupted: the same command continues (the members in {members} that finished are "
                      "kept, an interrupted one resumes from its last finished epoch)")
        raise typer.Exit(code) from None


def _seed_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        fail(f"--seeds {text!r} is not a comma-separated list of whole numbers. Fix: e.g. --seeds 1,2,3")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("ensemble")(ensemble_command)
