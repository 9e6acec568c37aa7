"""The `booktower` command. Subcommands are thin wrappers over library functions."""

from __future__ import annotations

import signal

import typer

from booktower.cli import data_cmds

app = typer.Typer(
    name="booktower", help="Train, evaluate and serve two-tower book recommenders.", no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command("prepare")(data_cmds.prepare_command)
app.add_typer(data_cmds.data_app, name="data")


def _register_optional() -> None:
    """Command groups owned by other modules register themselves here (each module: `register(app)`)."""
    import importlib

    for name in ("train_cmds", "sweep_cmd", "eval_cmds", "serve_cmds", "index_cmds", "backtest_cmd", "demo_cmd"):
        try:
            module = importlib.import_module(f"booktower.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"booktower.cli.{name}":
                raise
            continue
        module.register(app)


_register_optional()


def exit_on_sigterm() -> None:
    """SIGTERM (a scheduler's or torchrun's stop) ends the process through SystemExit, so the run's cleanup
    runs as for Ctrl-C: the MLflow run is closed as FAILED, worker threads stop, and `--resume` picks up."""
    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def main() -> None:
    exit_on_sigterm()
    app()
