"""Atomic writes: a file is either the old version or the complete new one, never half-written."""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import polars as pl

log = logging.getLogger(__name__)

MKDTEMP_SUFFIX = r"[a-z0-9_]{8}"  # what mkdtemp adds to a prefix: eight of its random characters


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask must set one to read it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_temp_dir(parent: Path, prefix: str, sole_writer: bool = False) -> Path:
    """A fresh folder in `parent` with the permissions a plain mkdir would give it: mkdtemp makes it 0700, and a
    folder swapped in from it (a model, a bundle, a checkpoint) would be unreadable to anyone else, such as the
    account that serves it.

    `sole_writer`: the caller knows that no other live process makes folders with this prefix (it holds the
    target's exclusive lock, or only it ever writes the target), so any such folder already there was left by a
    write that was killed before its swap (SIGKILL, power loss): it is removed first, and a log line says so."""
    if sole_writer:
        remove_leftover_dirs(Path(parent), prefix)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(folder, 0o777 & ~_umask())
    return folder


# What a write can fail with that is the disk's (or its mount's) fault, not a bug or the network's.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
# Rust writers (safetensors, polars) give the OS error as text:
# "Error while serializing: I/O error: No space left on device (os error 28)".
_OS_ERROR_TEXT = re.compile(r"\(os error (\d+)\)")


def _disk_errno(exc: BaseException) -> int | None:
    """The errno of a write the disk refused, whether the writer raised an OSError or a type of its own."""
    code = exc.errno if isinstance(exc, OSError) else None
    if code is None:
        match = _OS_ERROR_TEXT.search(str(exc))
        code = int(match.group(1)) if match else None
    return code if code in _DISK_ERRNOS else None


@contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """A write to `path` that the disk refuses (full, over quota, read-only, file too large) raises an OSError
    that names `path`, whatever the writer raised: `write()` and `fsync()` leave OSError.filename empty, and
    safetensors and polars raise their own types with the errno in the text. The CLI then prints the path and
    the fix instead of a traceback. Other errors pass unchanged."""
    try:
        yield
    except Exception as exc:
        code = _disk_errno(exc)
        if code is None or (isinstance(exc, OSError) and exc.filename is not None):
            raise
        raise OSError(code, os.strerror(code), str(path)) from exc


@contextmanager
def named_as(tmp: Path, final: Path) -> Iterator[None]:
    """While a folder is written as `tmp` to be renamed `final`, an OSError naming a file in `tmp` names that
    file under `final` instead: the hidden temporary folder is deleted by the time the error prints."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None or exc.filename is None or not Path(exc.filename).is_relative_to(tmp):
            raise
        raise OSError(exc.errno, exc.strerror, str(final / Path(exc.filename).relative_to(tmp))) from exc


def fsync_files(folder: Path) -> None:
    """Flush every file directly in `folder` to disk, before the folder is renamed into place: after a crash
    the renamed folder then holds whole files, not ones the page cache had not yet written."""
    for child in folder.iterdir():
        if child.is_file():
            with writing(child), open(child, "rb") as handle:
                os.fsync(handle.fileno())


def leftover_dirs(parent: Path, prefix: str, suffix: str = MKDTEMP_SUFFIX) -> list[Path]:
    """The folders in `parent` named `prefix` then a match of the regular expression `suffix` (by default, the
    folders `make_temp_dir(parent, prefix)` makes), sorted by name. The whole name must match: `.b.new.` then
    eight characters is bundle `b`'s, while `.b.new.x.new.abcd1234` is bundle `b.new.x`'s and never taken."""
    pattern = re.compile(re.escape(prefix) + suffix)
    try:
        children = list(Path(parent).iterdir())
    except OSError:  # no parent folder (yet), or one that cannot be listed: nothing of ours is there
        return []
    return sorted(p for p in children if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink())


def remove_leftover_dirs(parent: Path, prefix: str, suffix: str = MKDTEMP_SUFFIX) -> list[Path]:
    """Remove the `leftover_dirs` (interrupted writes' folders) and say so in one log line, with the space freed.
    Only a caller that knows no live process is writing one of them may call it (see `make_temp_dir`). Returns
    the folders removed; one that cannot be removed is logged and left."""
    found = leftover_dirs(parent, prefix, suffix)
    if not found:
        return []
    size = sum(_bytes_under(folder) for folder in found)
    for folder in found:
        shutil.rmtree(folder, ignore_errors=True)
    removed = [folder for folder in found if not folder.exists()]
    kept = [folder.name for folder in found if folder.exists()]
    log.warning("removed %d folder(s) that interrupted writes left in %s (%.1f MB): %s%s", len(removed), parent,
                size / 1e6, ", ".join(folder.name for folder in removed),
                f"; could not remove {', '.join(kept)}: delete them by hand" if kept else "")
    return removed


def _bytes_under(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed over `path` (with the
    permissions a plain write would give it, not mkstemp's 0600). A write the disk refuses names `path`
    (see `writing`)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:  # a read-only or full folder: name the file the user asked for, not the hidden one
        raise OSError(exc.errno, exc.strerror, str(target)) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with writing(target):
            yield tmp_path
            with open(tmp_path, "rb") as handle:
                os.fsync(handle.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_write_parquet(frame: pl.DataFrame, path: Path | str) -> None:
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)


def atomic_write_csv(frame: pl.DataFrame, path: Path | str) -> None:
    with atomic_path(path) as tmp:
        frame.write_csv(tmp)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
