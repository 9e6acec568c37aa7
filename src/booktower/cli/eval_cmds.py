"""`booktower baselines | evaluate | report | compare | recommend`: thin wrappers over booktower.evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from booktower.cli._common import CONFIG_OPTION, SET_OPTION, cli_config, console, friendly_errors, setup_logging

RUN_OPTION = typer.Option(..., "--run", "-r", help="A run directory written by `booktower train`.")


def baselines_command(
    config: Optional[Path] = CONFIG_OPTION,
    set_: Optional[list[str]] = SET_OPTION,
    models: str = typer.Option("pop,itemknn,ease,als,bpr", "--models", help="Comma-separated baselines."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Where metrics.json and per-user tables go."),
) -> None:
    """Fit each baseline on train (validation metrics) and on train + validation (test metrics)."""
    from booktower.data.prepare import prepare
    from booktower.evaluation.baselines import run_baselines
    from booktower.evaluation.tables import print_metric_table

    setup_logging()
    cfg = cli_config(config, set_)
    names = [n.strip() for n in models.split(",") if n.strip()]
    with friendly_errors():
        data, _ = prepare(cfg.data)
        try:
            table = run_baselines(names, cfg.baselines, data, cfg.evaluation.ks, cfg.seed, output_dir,
                                  chunk=cfg.evaluation.user_chunk)
        except ValueError as exc:
            console.print(f"[red]error[/red]: {exc}")
            raise typer.Exit(2) from None
    print_metric_table({name: parts["test"] for name, parts in table.items()}, cfg.evaluation.ks, console,
                       title="test (fit on train + validation)")
    console.print(f"wrote {output_dir / 'metrics.json'}")


def register(app: typer.Typer) -> None:
    app.command("baselines")(baselines_command)
