"""`booktower prepare` and `booktower data ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from booktower.cli._common import CONFIG_OPTION, SET_OPTION, cli_config, console, friendly_errors, setup_logging

data_app = typer.Typer(help="Create or download input data.", no_args_is_help=True)


def prepare_command(
    config: Optional[Path] = CONFIG_OPTION,
    set_: Optional[list[str]] = SET_OPTION,
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Where data_summary.json and the prepared data go."),
) -> None:
    """Validate, prune, split and featurise the data; write DIR/data_summary.json."""
    from booktower.data.summary import print_summary, write_prepared_run

    setup_logging()
    cfg = cli_config(config, set_)
    with friendly_errors():
        data = write_prepared_run(cfg, output_dir)
    print_summary(data.summary, console)
    console.print(f"wrote {output_dir / 'data_summary.json'}")
