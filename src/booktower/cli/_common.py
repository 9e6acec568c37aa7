"""What every command shares: config loading at the edge, logging, friendly errors."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import typer
from rich.logging import RichHandler

from booktower.cli._errors import console, describe_os_error, fail, print_error
from booktower.cli._paths import config_file
from booktower.config import BooktowerConfig, ConfigError, load_config

__all__ = ["CONFIG_OPTION", "SET_OPTION", "cli_config", "console", "fail", "friendly_errors", "print_error",
           "setup_logging"]

CONFIG_OPTION = typer.Option(None, "--config", "-c", help="YAML config file (see configs/).",
                             callback=config_file)
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
        fail(str(exc), label="config error")
    except OSError as exc:  # e.g. an `inherit:` that names a folder or an unreadable file
        message = describe_os_error(exc)
        if message is None:
            raise
        fail(message, label="config error")


@contextmanager
def friendly_errors(writing: Path | None = None) -> Iterator[None]:
    """Known user-facing errors print their message (which names the fix) and exit 2, without a traceback.

    Operating-system errors a user can fix (a read-only disk, no permission, a full disk, a file where a
    folder belongs) are described with the path they hit, or the folder the command is `writing` where the
    error names none; any other OSError is a bug and keeps its traceback.
    """
    from booktower.data.errors import DataError
    from booktower.data.vocab import UnknownIdError
    from booktower.models.io import WeightsError

    try:
        yield
    except (DataError, ConfigError, UnknownIdError, WeightsError) as exc:
        fail(str(exc))
    except OSError as exc:
        message = describe_os_error(exc, writing)
        if message is None:
            raise
        fail(message)
