"""The `booktower` command. Subcommands are thin wrappers over library functions."""

from __future__ import annotations

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

    for name in ("train_cmds", "sweep_cmd", "eval_cmds", "serve_cmds", "demo_cmd"):
        try:
            module = importlib.import_module(f"booktower.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"booktower.cli.{name}":
                raise
            continue
        module.register(app)


_register_optional()


def main() -> None:
    app()
