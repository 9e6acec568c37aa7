"""A recommender that follows its bundle: `index add` (or a new export) is picked up without a restart.

Every write of a bundle makes a new manifest file, so a `stat` of it says whether the bundle changed. `current()`
asks at most once every `check_every_s` seconds; on a change it loads the new bundle (verified, under the shared
lock) and swaps the whole Recommender in one assignment, so a request sees the old bundle or the new one, never
parts of both. A server reloads in a background thread and answers from the old bundle meanwhile; memory holds
both while the new one loads. A bundle that fails to load is logged and the old one kept, until the next change;
in the foreground (`background=False`, as `recommend_from_bundle` uses it) the error is raised instead.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from booktower.config.serving import ServingConfig
from booktower.serving.bundle import manifest_signature
from booktower.serving.service import Recommender

log = logging.getLogger(__name__)

RELOAD_EVERY_S = 2.0


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
        self._checked = time.monotonic()
        self._loading = threading.Lock()  # one reload at a time
        self.reloads = 0
        self.last_error: str | None = None

    def current(self) -> Recommender:
        """The newest loaded Recommender (checks the manifest at most every `check_every_s` seconds)."""
        now = time.monotonic()
        if now - self._checked >= self.check_every_s:
            self._checked = now
            signature = manifest_signature(self.directory)
            if signature != self._signature and signature is not None:
                self._start_reload(signature)
        return self._recommender

    def _start_reload(self, signature: tuple[int, ...]) -> None:
        if not self._loading.acquire(blocking=False):
            return  # a reload is already running; it or the next check picks this change up
        if self.background:
            threading.Thread(target=self._reload, args=(signature,), name="booktower-reload", daemon=True).start()
        else:
            self._reload(signature)

    def _reload(self, signature: tuple[int, ...]) -> None:
        try:
            fresh = Recommender.from_bundle(self.directory, self._config, self._index_kind)
        except Exception as exc:  # noqa: BLE001 - a server keeps answering from the bundle it has
            self.last_error = f"{type(exc).__name__}: {exc}"
            if not self.background:
                raise  # a caller that waits for the reload hears why; its next call tries again
            log.error("%s changed but cannot be loaded; still serving the previous bundle: %s", self.directory,
                      self.last_error)
            self._signature = signature  # not retried until the bundle changes again
        else:
            self._recommender = fresh  # one assignment: requests see the old or the new state, whole
            self._signature = signature
            self.reloads += 1
            self.last_error = None
            log.info("%s reloaded: %d books", self.directory, fresh.n_items)
        finally:
            self._loading.release()
