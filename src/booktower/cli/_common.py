"""What every command shares: config loading at the edge, logging, friendly errors."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import typer
from rich.console import Console
from rich.logging import RichHandler

from booktower.config import BooktowerConfig, ConfigError, load_config

console = Console(stderr=True)

CONFIG_OPTION = typer.Option(None, "--config", "-c", help="YAML config file (see configs/).")
SET_OPTION = typer.Option(None, "--set", help="Override a config key: section.key=value (repeatable).")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)], force=True,
    )
    # faiss logs its CPU-feature probing ("Could not load library with AVX2 support ... ModuleNotFoundError")
    # at INFO, which reads like a failure; it is not one.
    for noisy in ("matplotlib", "PIL", "urllib3", "httpx", "alembic", "mlflow", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cli_config(config: Path | None, overrides: list[str] | None) -> BooktowerConfig:
    """The one place raw YAML becomes a validated config."""
    try:
        return load_config(config, overrides or [])
    except ConfigError as exc:
        console.print(f"[red]config error[/red]: {exc}")
        raise typer.Exit(2) from None


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Known user-facing errors print their message (which names the fix) and exit 2, without a traceback."""
    from booktower.data.errors import DataError
    from booktower.data.vocab import UnknownIdError
    from booktower.models.io import WeightsError

    try:
        yield
    except (DataError, ConfigError, UnknownIdError, WeightsError, FileNotFoundError) as exc:
        console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None


def fail(message: str) -> None:
    console.print(f"[red]error[/red]: {message}")
    sys.exit(2)
