"""`booktower sweep`: Optuna search over the config's `sweep.space`, on validation data only."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from booktower.cli import _paths
from booktower.cli._common import CONFIG_OPTION, SET_OPTION, cli_config, console, fail, friendly_errors
from booktower.cli._common import setup_logging
from booktower.cli._ranges import at_least

SQLITE = "sqlite:///"


def storage_url(value: str) -> str:
    """Optuna takes an SQLAlchemy URL; a bare path, or an SQLite file whose folder is missing, would otherwise
    fail only after the data is prepared, with SQLAlchemy's traceback."""
    if "://" not in value:
        fail(f"--storage {value!r} is not a database URL. Fix: pass e.g. sqlite:///{value or 'sweep.db'}")
    if value.startswith(SQLITE) and value != SQLITE + ":memory:":
        folder = Path(value[len(SQLITE):]).absolute().parent
        if not folder.is_dir():
            fail(f"--storage {value}: the folder {folder} does not exist (SQLite creates the file, not its "
                 f"folder). Fix: create the folder, or point to a file in an existing one")
    return value


def sweep_command(
    config: Optional[Path] = CONFIG_OPTION,
    set_: Optional[list[str]] = SET_OPTION,
    trials: int = typer.Option(20, "--trials", callback=at_least(1),
                               help="Finished (completed or pruned) trials the study should hold, counted across "
                                    "all workers sharing the storage (1 or more)."),
    storage: str = typer.Option(..., "--storage", callback=storage_url,
                                help="Optuna storage, e.g. sqlite:///sweep.db (resumable)."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (default: the config file's stem)."),
    output_dir: Path = typer.Option(Path("runs/sweep"), "--output-dir", "-o", callback=_paths.output_dir,
                                    help="Trial runs, trials.parquet, best_config.yaml."),
) -> None:
    """Search hyper-parameters on the validation split, prune bad trials, write the best config."""
    from booktower.data.prepare import prepare
    from booktower.training.sweep import check_sweep, open_study, run_sweep, validation_trial

    setup_logging()
    cfg = cli_config(config, set_)
    name = study or (config.stem if config else "booktower")
    with friendly_errors():
        # Before the data is prepared: a typo in the space would fail every trial, and a study or output
        # folder of another setup would be refused only then.
        check_sweep(cfg)
        open_study(cfg, storage, name, output_dir)
        data, _ = prepare(cfg.data)
        try:
            result = run_sweep(cfg, trials, storage, name, output_dir, validation_trial(data))
        except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C, or SIGTERM (main() makes it SystemExit)
            console.print(f"interrupted: the finished trials are in {storage}; the same command continues the "
                          "study, training the interrupted trial's parameters again first")
            raise typer.Exit(130 if isinstance(exc, KeyboardInterrupt) else _exit_code(exc)) from None
    console.print(result.table.head(10))
    subset, readers = cfg.training.max_valid_users, len(set(data.split.valid.user.tolist()))
    on = f" (on {subset} of the {readers} validation readers: training.max_valid_users)" if (subset or readers) < readers \
        else ""
    console.print(f"best validation {cfg.sweep.metric} {result.best_value:.4f}{on} with {result.best_params}")
    console.print(f"wrote {output_dir / 'best_config.yaml'} and {output_dir / 'trials.parquet'}")


def _exit_code(exc: SystemExit) -> int:
    return exc.code if isinstance(exc.code, int) else 1


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_command)
