"""Path options checked while the command line is parsed, before any work: a config that is a folder, an
output folder that is a file, a run that does not exist or a read-only destination each become one `error:`
line that names the option and the fix (instead of a traceback after minutes of training)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from booktower.cli._errors import fail, option_name


def _each(value: Any, check: Callable[[Path], None]) -> Any:
    """Run `check` on one path or on every path of a repeatable option; None (not given) passes."""
    for path in [] if value is None else value if isinstance(value, list) else [value]:
        check(path)
    return value


def _nearest_existing(path: Path) -> Path:
    """The path itself or its closest ancestor that exists (the folder a new path would be created in)."""
    path = path.absolute()
    return next(p for p in [path, *path.parents] if p.exists())


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in `folder`, by trying: `os.access` says yes to root everywhere, even
    under /proc, and then a long command fails at its very end."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _check_writable(name: str, path: Path, target: Path | None = None,
                    fix: str = "choose a location you can write to") -> None:
    """`target` (default: `path`), the place a command writes into or creates its output in, must be (or be
    creatable in) a folder we may write."""
    existing = _nearest_existing(path if target is None else target)
    if not existing.is_dir():
        fail(f"{name} {path}: {existing} is a file, so nothing can be created in it. "
             f"Fix: pass a path under a folder")
    if not _can_create_in(existing):
        fail(f"{name} {path}: {existing} is not writable (read-only file system or no permission). "
             f"Fix: {fix}")


def config_file(param: typer.CallbackParam, value: Path | None) -> Path | None:
    def check(path: Path) -> None:
        name = option_name(param)
        if not path.exists():
            fail(f"{name} {path} does not exist. Fix: pass an existing YAML file (see configs/)")
        if path.is_dir():
            examples = sorted(p.name for p in path.glob("*.y*ml"))[:3]
            hint = f", e.g. {path / examples[0]}" if examples else ""
            fail(f"{name} {path} is a folder. Fix: pass a YAML file{hint}")

    return _each(value, check)


def output_dir(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """A folder the command creates (when missing) and writes into."""
    def check(path: Path) -> None:
        name = option_name(param)
        if path.exists() and not path.is_dir():
            fail(f"{name} {path} is a file, not a folder. "
                 f"Fix: pass a folder path (it is created when missing)")
        _check_writable(name, path)

    return _each(value, check)


def output_file(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """A file the command writes (replacing an older one)."""
    def check(path: Path) -> None:
        name = option_name(param)
        if path.is_dir():
            fail(f"{name} {path} is a folder. Fix: pass a file path, e.g. {path / 'recommendations.parquet'}")
        _check_writable(name, path, path.parent if path.exists() else path)

    return _each(value, check)


def run_dir(param: typer.CallbackParam, value: Path | list[Path] | None) -> Path | list[Path] | None:
    """An existing run (or baseline) folder the command reads."""
    fix = "pass a run folder written by `booktower train --output-dir`"
    return _each(value, lambda path: _existing_dir(option_name(param), path, fix))


def bundle_dir(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """An existing bundle folder the command reads."""
    fix = "pass a bundle folder written by `booktower export`"

    def check(path: Path) -> None:
        _refuse_interrupted(option_name(param), path)
        _existing_dir(option_name(param), path, fix)

    return _each(value, check)


def changed_bundle_dir(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """An existing bundle that is rewritten in place: a new copy is written beside it, then swapped in."""
    def check(path: Path) -> None:
        name = option_name(param)
        _refuse_interrupted(name, path)
        _existing_dir(name, path, "pass a bundle folder written by `booktower export`")
        _check_writable(name, path, path.absolute().parent,
                        fix="copy the bundle to a folder you can write to and change the copy")

    return _each(value, check)


def new_bundle_dir(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Where `export` writes a bundle. Writing replaces the whole folder, so only a new folder, an empty one
    or an older bundle may be named: anything else (a run, a data folder, `.`) would be deleted."""
    from booktower.serving.bundle import MANIFEST, is_bundle_folder

    def check(path: Path) -> None:
        name = option_name(param)
        output_dir(param, path)
        if path.is_dir() and any(path.iterdir()) and not is_bundle_folder(path):
            fail(f"{name} {path} is a folder that holds files but no booktower bundle (no booktower {MANIFEST}); "
                 f"exporting replaces the whole folder. Fix: pass a new folder, e.g. {path / 'bundle'}")

    return _each(value, check)


def _refuse_interrupted(name: str, path: Path) -> None:
    """A bundle that a write killed in its swap left missing: name the previous version beside it and the fix,
    rather than only "does not exist"."""
    from booktower.serving.bundle_read import interrupted_write, interrupted_write_message

    previous = interrupted_write(path)
    if previous is not None:
        fail(f"{name} {interrupted_write_message(path, previous)}")


def _existing_dir(name: str, path: Path, fix: str) -> None:
    if not path.exists():
        fail(f"{name} {path} does not exist. Fix: {fix}")
    if not path.is_dir():
        fail(f"{name} {path} is a file, not a folder. Fix: {fix}")
