"""An advisory lock beside a bundle, so a reader never mixes the files of two versions and writers never race.

`write_bundle` swaps a whole folder in; `index add` is a read-modify-write. Without a lock, two adds each read
version N and the last one to write wins (books lost), and a reader that opened version N's manifest may read
version N+1's vectors. So:
    * readers hold a shared lock while they read the files (many readers at once);
    * writers hold an exclusive lock for the whole read-modify-write (one writer, no reader in the middle).

The lock is `flock` on `.<bundle name>.lock` in the bundle's parent folder: it must outlive the folder swap, so
it cannot live inside the bundle, and it is never deleted (deleting a lock file lets two processes lock two
different files). Where it cannot be used (no `fcntl`, as on Windows; a read-only mount where the file cannot be
created) the lock is skipped, with a warning once per bundle (a server reads it on every reload): a read-only
bundle has no writer to wait for, and `load_bundle` also re-reads a bundle whose manifest changed while it was
being read.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from booktower.utils.folder_lock import lock_path, open_lock_file

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the loader's change check still applies
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

__all__ = ["bundle_being_written", "bundle_lock", "lock_path"]

# Locks this thread already holds, by lock file: add_books holds the exclusive lock and calls load_bundle and
# write_bundle, which must not lock again (a second flock on a new descriptor would wait for ourselves).
_held = threading.local()
_warned: set[Path] = set()  # lock files whose skipping was logged: once per bundle, not on every read
_warned_lock = threading.Lock()


def _warn_once(path: Path, message: str, *args: object) -> None:
    with _warned_lock:
        if path in _warned:
            return
        _warned.add(path)
    log.warning(message, *args)


def _flock(fd: int, exclusive: bool, path: Path) -> bool:
    """Take the lock, waiting (and saying so) while another process holds it. False where the file system
    refuses locks (some network mounts)."""
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for %s: another process is %s the bundle", path,
                     "reading or writing" if exclusive else "writing")
            fcntl.flock(fd, mode)
    except OSError as exc:
        _warn_once(path, "%s cannot be locked (%s): going on without the bundle lock", path, exc)
        return False
    return True


@contextmanager
def bundle_lock(directory: Path, exclusive: bool) -> Iterator[bool]:
    """Hold the bundle's lock (shared for reading, exclusive for writing) for the `with` block. Yields whether it
    is held (False where locking is skipped): only a writer that holds it knows no other process is writing."""
    path = lock_path(directory)
    held: dict[Path, bool] = _held.__dict__.setdefault("locks", {})
    if path in held:
        if exclusive and not held[path]:
            raise RuntimeError(f"{path}: cannot upgrade a shared bundle lock to an exclusive one")
        yield True
        return
    fd = open_lock_file(path) if fcntl is not None else None
    if fd is None:
        _warn_once(path, "no lock for %s (%s): going on unlocked (a read that a write changed is read again, "
                   "but two writes are not kept apart)", directory,
                   "this system has no fcntl" if fcntl is None else f"{path} cannot be created or opened")
        yield False
        return
    try:
        if not _flock(fd, exclusive, path):
            yield False
            return
        held[path] = exclusive
        try:
            yield True
        finally:
            del held[path]
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def bundle_being_written(directory: Path) -> bool:
    """Whether another process holds the bundle's exclusive lock now: a write (an export's swap, an `index add`)
    is in progress (this thread's own, where it holds the lock exclusively). Asked without waiting; False where
    the lock cannot be used."""
    path = lock_path(directory)
    held: dict[Path, bool] = _held.__dict__.get("locks", {})
    if fcntl is None or path in held:
        return held.get(path, False)
    fd = open_lock_file(path)
    if fd is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # releases the shared lock it may have taken
    return False
