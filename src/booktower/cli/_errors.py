"""How the CLI reports a user's mistake: one `error:` line naming the fix, exit status 2, no traceback."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

# Markup is off: what the CLI prints is mostly user text (ids, titles, paths, `--set` values, exception
# messages) and brackets in it ("[bold]3", "[avg_rating]", "Book [Hardcover]") would be eaten as style tags.
# Styled output goes through `Text` objects instead (see `print_error`).
console = Console(stderr=True, markup=False)


def option_name(param: typer.CallbackParam) -> str:
    """How the user spelt a parameter in an error: the long option name, or the argument's name."""
    long = [opt for opt in param.opts if opt.startswith("--")]
    return long[0] if long else str(param.name).upper()


def print_error(message: str, label: str = "error") -> None:
    """`label: message` on stderr, the label in red; the message prints exactly as given."""
    console.print(Text.assemble((label, "red"), ": ", message))


def fail(message: str, label: str = "error") -> NoReturn:
    """A user mistake: print it (the message names the option or file and the fix), exit with status 2."""
    print_error(message, label)
    raise typer.Exit(2)


_FIXES = {
    errno.EROFS: "the file system is read-only. Fix: write to a location on a writable disk "
                 "(for a bundle, copy it there first)",
    errno.EACCES: "permission denied. Fix: choose a path you may use, or change its permissions",
    errno.EPERM: "operation not permitted. Fix: choose a path you may use, or change its permissions",
    errno.ENOSPC: "no space left on the device. Fix: free some space or write to another disk",
    errno.EDQUOT: "the disk quota is exceeded. Fix: free some space or write to another disk",
    errno.EFBIG: "the file is too large for this file system. Fix: write to another disk",
    errno.EISDIR: "this is a folder where a file is expected. Fix: pass the path of a file",
    errno.ENOTDIR: "part of this path is a file where a folder is expected. Fix: pass a path under a folder",
    errno.EEXIST: "this already exists and is not a folder. Fix: choose a new path, or move the file away",
}


def describe_os_error(exc: OSError, writing: Path | None = None) -> str | None:
    """The path an OSError hit and what the user can do about it; None for errors not theirs to fix.

    `writing`: the folder the command writes, named when the error carries no path (a failed `write()` or
    `fsync()` leaves OSError.filename empty)."""
    if exc.errno is None:  # raised by booktower itself: a FileNotFoundError's message names the missing file
        return str(exc) if isinstance(exc, FileNotFoundError) else None
    path = exc.filename2 if exc.filename2 is not None else exc.filename  # a rename fails at its target
    if exc.errno == errno.ENOENT:
        return f"{path} does not exist. Fix: check the path" if path is not None else str(exc)
    problem = _FIXES.get(exc.errno)
    if problem is None:
        return None
    if path is None and writing is not None:
        return f"writing {writing}: {problem}"
    return f"{path}: {problem}" if path is not None else f"{exc.strerror}: {problem}"
