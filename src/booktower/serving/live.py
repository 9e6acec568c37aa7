"""A recommender that follows its bundle: `index add` (or a new export) is picked up without a restart.

Every write of a bundle makes a new manifest file, so a `stat` of it says whether the bundle changed. A server's
recommender (`background=True`) has a watcher thread that asks every `check_every_s` seconds, requests or not, so
an idle server is up to date before its next request; in the foreground (`background=False`) `current()` asks at
most that often. On a change the new bundle is loaded (verified, under the shared lock) and the whole Recommender
swapped in one assignment, so a request sees the old bundle or the new one, never parts of both; meanwhile
requests are answered from the old bundle, and memory holds both. A bundle that fails to load is logged and the
old one kept, until the next change, and `health()` says so (/health: status "degraded", with the error), so a
monitor sees that the server answers from a bundle that is no longer on disk; in the foreground
(`background=False`, as `recommend_from_bundle` uses it) the error is raised instead. So with a bundle folder
that is gone (deleted, moved, or left missing by a write killed in its swap, whose previous version
`interrupted_write` finds): health says "degraded" (the loaded version is still served, and a restart would fail),
the foreground raises, and a bundle put back is loaded again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from booktower.config.serving import ServingConfig
from booktower.serving._lock import bundle_being_written, bundle_lock
from booktower.serving.bundle import BundleError, manifest_signature
from booktower.serving.bundle_read import interrupted_write, interrupted_write_message
from booktower.serving.manifest import MANIFEST
from booktower.serving.service import Recommender

log = logging.getLogger(__name__)

RELOAD_EVERY_S = 2.0


@dataclass(frozen=True)
class ReloadFailure:
    """A changed bundle that could not be loaded: why, and when."""

    error: str
    at: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def manifest_identity(signature: tuple[int, ...] | None) -> dict[str, Any] | None:
    """A manifest_signature as a person reads it: the file's modification time and size (None: no manifest)."""
    if signature is None:
        return None
    *_, mtime_ns, size = signature
    modified = datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc).isoformat(timespec="milliseconds")
    return {"modified": modified, "bytes": size}


class LiveRecommender:
    """The Recommender of a bundle folder, reloaded when the bundle changes."""

    def __init__(self, directory: Path | str, config: ServingConfig | None = None, index_kind: str | None = None,
                 check_every_s: float = RELOAD_EVERY_S, background: bool = True) -> None:
        self.directory = Path(directory)
        self._config, self._index_kind = config, index_kind
        self.check_every_s = check_every_s
        self.background = background
        self._signature = manifest_signature(self.directory)  # taken before the load: a later change reloads
        self._recommender = Recommender.from_bundle(self.directory, config, index_kind)
        self._loaded_signature = self._signature  # what is served; _signature is the last one tried
        self.loaded_at = _now()  # when the Recommender served was loaded
        self._checked = time.monotonic()
        self._loading = threading.Lock()  # one reload at a time
        self._stop = threading.Event()
        self.reloads = 0
        self.reloaded_at: str | None = None
        self.failure: ReloadFailure | None = None  # one assignment: a reader sees the error and its time together
        if background and check_every_s < float("inf"):
            threading.Thread(target=self._watch, name="booktower-bundle-watch", daemon=True).start()

    def current(self) -> Recommender:
        """The newest loaded Recommender (in the foreground, checking the manifest at most every
        `check_every_s` seconds first)."""
        if not self.background:
            now = time.monotonic()
            if now - self._checked >= self.check_every_s:
                self._checked = now
                self._check()
        return self._recommender

    @property
    def last_error(self) -> str | None:
        """Why the last changed bundle could not be loaded; None when the newest one is served."""
        failure = self.failure
        return failure.error if failure is not None else None

    def health(self) -> dict[str, Any]:
        """What /health adds for a followed bundle: status "degraded" while the bundle on disk changed but failed
        to load, or is gone (the loaded one is served), and the `reload` state: the error, the loaded and on-disk
        manifests. A stat: a bundle gone since the last check (or with no checks) is reported without waiting. A
        manifest missing while a writer holds the bundle's lock is a write's swap in progress, not a bundle gone:
        "ok" (disk_manifest null), as every export passes through it."""
        failure, disk = self.failure, manifest_signature(self.directory)
        if disk is None and failure is None and not bundle_being_written(self.directory):
            disk = manifest_signature(self.directory)  # a write that ended since the first look swapped it in
            if disk is None:
                failure = ReloadFailure(self._gone_error(), _now())
        return {"status": "ok" if failure is None else "degraded", "reload": {
            "every_s": self.check_every_s if math.isfinite(self.check_every_s) else None,
            "reloads": self.reloads, "reloaded_at": self.reloaded_at, "loaded_at": self.loaded_at,
            "error": None if failure is None else failure.error, "failed_at": None if failure is None else failure.at,
            "loaded_manifest": manifest_identity(self._loaded_signature),
            "disk_manifest": manifest_identity(disk),
        }}

    def _gone_reason(self) -> str:
        """Why there is no bundle to load: its manifest is missing (naming the version a killed write left)."""
        previous = interrupted_write(self.directory)
        if previous is not None:
            return interrupted_write_message(self.directory, previous)
        return f"the bundle on disk is gone: {self.directory / MANIFEST} does not exist"

    def _gone_error(self) -> str:
        """The reason, and what is served meanwhile."""
        return (f"{self._gone_reason()}; still serving the version loaded at {self.loaded_at} (a restart would "
                "fail: put the bundle back or export it again, and the next check loads it)")

    def close(self) -> None:
        """Stop watching the bundle (the loaded recommender stays usable)."""
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.check_every_s):
            self._check()

    def _check(self) -> None:
        signature = manifest_signature(self.directory)
        if signature is None:
            self._gone()
        elif signature != self._signature and self._loading.acquire(blocking=False):
            self._reload(signature)

    def _gone(self) -> None:
        """The manifest is missing: say so once (log, health), and load whatever is put back, even the same folder
        moved back. In the foreground, raise, on every call until the bundle is back."""
        with bundle_lock(self.directory, exclusive=False):  # a writer swapping a version in holds it exclusively
            if manifest_signature(self.directory) is not None:
                return  # the swap of a new version, seen between its two renames: the next check loads it
        if self._signature is not None:
            self._signature = None
            self.failure = ReloadFailure(self._gone_error(), _now())
            if self.background:
                log.error("%s: %s", self.directory, self.failure.error)
        if not self.background:
            raise BundleError(self._gone_reason())

    def _reload(self, signature: tuple[int, ...]) -> None:
        try:
            fresh = Recommender.from_bundle(self.directory, self._config, self._index_kind)
        except Exception as exc:  # noqa: BLE001 - a server keeps answering from the bundle it has
            self.failure = ReloadFailure(f"{type(exc).__name__}: {exc}", _now())
            if not self.background:
                raise  # a caller that waits for the reload hears why; its next call tries again
            log.error("%s changed but cannot be loaded; still serving the previous bundle (/health says "
                      "\"degraded\" until a changed bundle loads): %s", self.directory, self.failure.error)
            self._signature = signature  # not retried until the bundle changes again
        else:
            before = self._recommender.n_items
            self._recommender = fresh  # one assignment: requests see the old or the new state, whole
            self._signature = self._loaded_signature = signature
            self.reloads += 1
            self.reloaded_at = self.loaded_at = _now()
            recovered = " (the previous change had failed to load)" if self.failure is not None else ""
            self.failure = None
            log.info("%s reloaded%s: %d books (was %d), %d withdrawn", self.directory, recovered, fresh.n_items,
                     before, int(fresh.parts.withdrawn.sum()))
        finally:
            self._loading.release()
