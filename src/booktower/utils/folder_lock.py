"""An exclusive lock on a run folder, so that two commands never write one run at once.

Two `booktower train -o RUN` at once would each wipe and rewrite the other's checkpoints, and both exit 0 with
results of neither run. So `train` (and `train --resume`, with its refit), `evaluate` and `ensemble` hold RUN's
lock while they write it, and a second command is refused at once, naming the process that holds it.

The lock is `flock` on `.<folder name>.lock` beside the folder (the convention of the bundle lock,
serving/_lock.py): a folder swapped in by a rename (an ensemble run) keeps it, and a folder deleted while it is
held does not lose it. The file is never deleted (two processes would lock two different files). The kernel
releases a flock when its process dies, so a killed run never leaves a stale lock behind; the holder's pid, host
and command are written into the file only to name it in the refusal.

Where the folder's parent is not writable (`-o .` under a read-only parent, a per-user folder in an admin-owned
runs/, a mount point) and holds no `.NAME.lock`, the lock is `INSIDE_LOCK` inside the run folder instead: such a
folder cannot be swapped by a rename anyway, and a new run replacing an earlier one removes only the earlier run's
outputs (training/run_folder.py, EARLIER_RUN_OUTPUTS), never this file. A command that can use `.NAME.lock` locks
an `INSIDE_LOCK` that exists as well, so the two kinds of holder exclude each other. Where no file can be opened
(a read-only folder) or locked (some network mounts), the command goes on unlocked, with a warning: then it does
not hold the lock (`holds_run_lock`), and what it writes removes no other process's leftovers.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from booktower.data.errors import DataError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

_held = threading.local()  # run folders this thread holds: a nested lock of the same folder is no second holder

INSIDE_LOCK = ".booktower-run.lock"
"""The run lock's file inside the run folder, where its parent cannot hold `.NAME.lock`. No run output has
this name: a new run over an earlier one leaves it in place."""


def lock_path(directory: Path) -> Path:
    """`.NAME.lock` beside the folder. `x/../b`, `b`, and a symlink to it share one lock."""
    directory = Path(directory).resolve()
    return directory.parent / f".{directory.name}.lock"


def open_lock_file(path: Path) -> int | None:
    """A descriptor of the lock file (created when missing), or None where it cannot be opened."""
    for flag in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):  # flock works on a read-only descriptor too
        try:
            return os.open(path, flag, 0o644)
        except OSError:
            continue
    return None


class RunInUse(DataError):
    """Another process holds the run folder's lock: this command was refused before it read or wrote anything."""

    def __init__(self, directory: Path, doing: str, holder: str, fix: str, lock: Path | None = None) -> None:
        self.directory, self.holder = Path(directory), holder
        super().__init__(f"{directory} is in use: another process is writing it ({holder}; lock "
                         f"{lock or lock_path(directory)}), so this `{doing}` was refused before it touched the "
                         "folder", fix=fix)


def describe_holder(path: Path) -> str:
    """Who holds the lock file at `path`, as it recorded itself ("pid 42 on host h: booktower train -o RUN, since
    ..."); "another process" when it recorded nothing readable."""
    try:
        holder = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        holder = None
    if not isinstance(holder, dict) or "pid" not in holder:
        return "another process (it recorded no pid)"
    command = holder.get("command")
    shown = f": {command}" if command else ""
    since = f", since {holder['since']}" if holder.get("since") else ""
    return f"pid {holder['pid']} on host {holder.get('host', '?')}{shown}{since}"


def _record_holder(fd: int, doing: str) -> None:
    from booktower.utils.runinfo import launch_command

    argv = launch_command()
    command = " ".join([Path(argv[0]).name, *argv[1:]]) if argv else doing
    record = {"pid": os.getpid(), "host": socket.gethostname(), "doing": doing, "command": command,
              "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
    except OSError:  # a read-only descriptor: the lock holds, the refusal names no pid
        pass


_ATTEMPTS = 10  # ~0.45 s before another holder is taken for a writer


def _try_lock(fd: int, path: Path) -> bool | None:
    """True: locked. False: another process holds it. None: the file system refuses locks. A holder is given a
    moment to let go: `writer_of` probes hold a shared lock for microseconds, a writer holds it for minutes."""
    for attempt in range(_ATTEMPTS):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < _ATTEMPTS:
                time.sleep(0.05)
        except OSError as exc:
            log.warning("%s cannot be locked (%s): going on without the run folder's lock", path, exc)
            return None
    return False


def has_run_files(directory: Path) -> bool:
    """Whether `directory` holds anything but the lock file a command may leave inside it (INSIDE_LOCK)."""
    return any(path.name != INSIDE_LOCK for path in Path(directory).iterdir())


def _held_folders() -> set[Path]:
    return _held.__dict__.setdefault("folders", set())


def holds_run_lock(path: Path) -> bool:
    """Whether this thread holds the run lock of `path` or of a folder above it (`RUN/checkpoints/last` is in
    RUN): then no other process writes there, and a folder a killed write left is no live writer's. False where
    the command went on unlocked."""
    path = Path(path).resolve()
    held = _held_folders()
    return any(folder in held for folder in (path, *path.parents))


def _open_lock_files(directory: Path, stack: ExitStack) -> list[tuple[int, Path]]:
    """The run lock's files, opened (`stack` closes them): `.NAME.lock` beside the folder, and `INSIDE_LOCK`
    where it exists or where the parent cannot hold `.NAME.lock`. Empty where none can be opened."""
    beside, inside = lock_path(directory), directory / INSIDE_LOCK
    try:
        beside.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # the lock file cannot be opened either
    opened = []
    for path in (beside, inside):
        if path == inside and opened and not inside.exists():
            break  # `.NAME.lock` is used, and no process locked inside the folder
        fd = open_lock_file(path) if path == beside or directory.is_dir() else None
        if fd is not None:
            stack.callback(os.close, fd)  # closing the descriptor releases the lock
            opened.append((fd, path))
    if opened and opened[0][1] == inside:
        log.info("%s cannot be created (%s is not writable): the lock of %s is %s", beside, beside.parent,
                 directory, inside)
    return opened


@contextmanager
def run_lock(directory: Path, doing: str, fix: str = "wait for it to end, or stop it") -> Iterator[None]:
    """Hold `directory`'s exclusive lock for the `with` block; raise RunInUse at once when another process (or
    thread) holds it. `doing` names this command in the holder's record and the refusal."""
    given, directory = directory, Path(directory).resolve()
    held = _held_folders()
    if directory in held or fcntl is None:
        if directory not in held:
            log.warning("no lock for %s (this system has no fcntl): going on unlocked, so another command may "
                        "write the folder at the same time", given)
        yield
        return
    with ExitStack() as stack:
        locked, opened = [], _open_lock_files(directory, stack)
        for fd, path in opened:
            got = _try_lock(fd, path)  # None: a warning said the file system refuses locks
            if got is False:
                raise RunInUse(given, doing, describe_holder(path), fix, lock=path)
            if got:
                locked.append(fd)
        if not opened:
            log.warning("no lock for %s (neither %s nor %s can be created): going on unlocked, so another command "
                        "may write the folder at the same time", given, lock_path(directory), directory / INSIDE_LOCK)
        for fd in locked:
            _record_holder(fd, doing)
            stack.callback(_forget_holder, fd)
        if locked:
            held.add(directory)
            stack.callback(held.discard, directory)
        yield


def _forget_holder(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
    except OSError:
        pass



def writer_of(directory: Path) -> str | None:
    """Who is writing `directory` right now (another process holding its run lock, as it recorded itself), or
    None: for a command that only reads the run, to say "being trained" rather than "interrupted". Never creates a
    lock file, never waits."""
    directory = Path(directory).resolve()
    if fcntl is None or directory in _held_folders():
        return None
    for path in (lock_path(directory), directory / INSIDE_LOCK):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return describe_holder(path)
        except OSError:
            continue  # a file system that refuses locks: nobody can be seen holding it
        finally:
            os.close(fd)  # releases the probe's shared lock
    return None
