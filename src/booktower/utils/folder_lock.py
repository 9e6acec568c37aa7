"""An exclusive lock on a run folder, so that two commands never write one run at once.

Two `booktower train -o RUN` at once would each wipe and rewrite the other's checkpoints, and both exit 0 with
results of neither run. So `train` (and `train --resume`, with its refit), `evaluate` and `ensemble` hold RUN's
lock while they write it, and a second command is refused at once, naming the process that holds it.

The lock is `flock` on `.<folder name>.lock` beside the folder (the convention of the bundle lock,
serving/_lock.py): a folder swapped in by a rename (an ensemble run) keeps it, and a folder deleted while it is
held does not lose it. The file is never deleted (two processes would lock two different files). The kernel
releases a flock when its process dies, so a killed run never leaves a stale lock behind; the holder's pid, host
and command are written into the file only to name it in the refusal. Where the file cannot be opened (a
read-only folder) or locked (some network mounts), the command goes on unlocked, saying so in the log.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from booktower.data.errors import DataError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

_held = threading.local()  # lock files this thread holds: a nested lock of the same folder is no second holder


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

    def __init__(self, directory: Path, doing: str, holder: str, fix: str) -> None:
        self.directory, self.holder = Path(directory), holder
        super().__init__(f"{directory} is in use: another process is writing it ({holder}; lock "
                         f"{lock_path(directory)}), so this `{doing}` was refused before it touched the folder", fix=fix)


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


def _try_lock(fd: int, path: Path) -> bool | None:
    """True: locked. False: another process holds it. None: the file system refuses locks."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        log.warning("%s cannot be locked (%s): going on without the run folder's lock", path, exc)
        return None
    return True


@contextmanager
def run_lock(directory: Path, doing: str, fix: str = "wait for it to end, or stop it") -> Iterator[None]:
    """Hold `directory`'s exclusive lock for the `with` block; raise RunInUse at once when another process (or
    thread) holds it. `doing` names this command in the holder's record and the refusal."""
    path = lock_path(directory)
    held: set[Path] = _held.__dict__.setdefault("paths", set())
    if path in held:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # the lock file cannot be opened either: unlocked, as below
    fd = open_lock_file(path) if fcntl is not None else None
    if fd is None:
        log.debug("no lock for %s (fcntl missing or %s cannot be opened): going on unlocked", directory, path)
        yield
        return
    try:
        locked = _try_lock(fd, path)
        if locked is False:
            raise RunInUse(directory, doing, describe_holder(path), fix)
        if locked:
            _record_holder(fd, doing)
            held.add(path)
        try:
            yield
        finally:
            if locked:
                held.discard(path)
                _forget_holder(fd)
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _forget_holder(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
    except OSError:
        pass

