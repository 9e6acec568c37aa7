"""A bundle whose lock file cannot be made (a read-only mount) is read unlocked, and that is a warning, once per
bundle: it was a DEBUG line, and a server reading on every reload must not repeat it."""

from __future__ import annotations

import logging
from pathlib import Path

from booktower.serving import _lock
from booktower.serving._lock import bundle_lock


def test_an_unlockable_bundle_is_warned_about_once_per_bundle(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(_lock, "open_lock_file", lambda path: None)
    monkeypatch.setattr(_lock, "_warned", set())
    with caplog.at_level(logging.DEBUG, logger="booktower.serving._lock"):
        for bundle in ("a", "a", "a", "b"):
            with bundle_lock(tmp_path / bundle, exclusive=False) as held:
                assert held is False
    said = [r for r in caplog.records if "going on unlocked" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING, logging.WARNING]
    assert str(tmp_path / "a") in said[0].getMessage() and str(tmp_path / "b") in said[1].getMessage()
