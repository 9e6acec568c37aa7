"""A bundle folder deleted (or left missing by a killed write) under a running server: /health says "degraded",
that the bundle on disk is gone and which version is still served; a bundle put back is loaded again. In the
foreground (`recommend_from_bundle`) the read raises instead of answering from a bundle no longer there."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from booktower.serving.api import create_app
from booktower.serving.bundle import BundleError
from booktower.serving.live import LiveRecommender

from .conftest import wait_until


def test_health_is_degraded_while_the_bundle_folder_is_gone(trained, tmp_path: Path, caplog) -> None:
    data, _, directory, _ = trained
    bundle = shutil.copytree(directory, tmp_path / "b")
    live = LiveRecommender(bundle, check_every_s=0.05)
    client = TestClient(create_app(live))
    try:
        fine = client.get("/health").json()
        assert fine["status"] == "ok"
        with caplog.at_level(logging.ERROR, logger="booktower.serving.live"):
            shutil.rmtree(bundle)
            wait_until(lambda: live.failure is not None)
            gone = client.get("/health").json()
        assert gone["status"] == "degraded" and gone["n_items"] == data.n_items, "the loaded bundle is still served"
        error = gone["reload"]["error"]
        assert "the bundle on disk is gone" in error and str(bundle / "manifest.json") in error
        assert f"still serving the version loaded at {live.loaded_at}" in error and gone["reload"]["failed_at"]
        assert gone["reload"]["disk_manifest"] is None and gone["reload"]["loaded_manifest"] is not None
        assert gone["reload"]["loaded_at"] == live.loaded_at == fine["reload"]["loaded_at"]
        assert client.get(f"/recommendations/{data.users.ids[0]}").status_code == 200
        assert len([r for r in caplog.records if "gone" in r.getMessage()]) == 1, "said once, not every check"

        shutil.copytree(directory, bundle)  # put back: loaded again, and healthy
        wait_until(lambda: live.reloads == 1)
        healed = client.get("/health").json()
        assert healed["status"] == "ok" and healed["reload"]["error"] is None
    finally:
        live.close()


def test_health_names_the_previous_version_a_killed_swap_left(trained, tmp_path: Path) -> None:
    """No checks at all (`every_s` null): /health still looks at the folder."""
    bundle = shutil.copytree(trained[2], tmp_path / "b")
    live = LiveRecommender(bundle, check_every_s=float("inf"))
    client = TestClient(create_app(live))
    previous = tmp_path / ".b.old.1754000000000000000"
    bundle.rename(previous)  # what a kill between the swap's two renames leaves
    health = client.get("/health").json()
    assert health["status"] == "degraded" and health["reload"]["every_s"] is None
    assert "a write of this bundle was interrupted" in health["reload"]["error"]
    assert f"mv {previous} {bundle}" in health["reload"]["error"]
    previous.rename(bundle)
    assert client.get("/health").json()["status"] == "ok"


def test_the_foreground_raises_while_the_bundle_is_gone(trained, tmp_path: Path) -> None:
    bundle = shutil.copytree(trained[2], tmp_path / "b")
    live = LiveRecommender(bundle, check_every_s=0.0, background=False)
    away = bundle.rename(tmp_path / "away")
    for _ in range(2):  # on every call, until it is back
        with pytest.raises(BundleError, match="the bundle on disk is gone"):
            live.current()
    away.rename(bundle)
    assert live.current().n_items == trained[0].n_items and live.failure is None


def test_health_is_ok_while_a_writer_swaps_a_new_version_in(trained, tmp_path: Path) -> None:
    """Every export passes through a moment with no manifest (between its swap's two renames, under the bundle's
    exclusive lock): /health said "degraded" then, and a monitor paging on one reading fired on routine exports.
    With no writer, the same missing bundle is gone."""
    import threading

    from booktower.serving._lock import bundle_lock

    bundle = shutil.copytree(trained[2], tmp_path / "b")
    live = LiveRecommender(bundle, check_every_s=float("inf"))
    swapping, done = threading.Event(), threading.Event()

    def writer() -> None:  # another writer (an export in another process would be the same to the lock)
        with bundle_lock(bundle, exclusive=True):
            bundle.rename(tmp_path / ".b.old.1")
            swapping.set()
            assert done.wait(60)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert swapping.wait(60)
        mid = live.health()
        assert mid["status"] == "ok" and mid["reload"]["error"] is None and mid["reload"]["disk_manifest"] is None
    finally:
        done.set()
        thread.join(60)
    assert live.health()["status"] == "degraded", "the writer left without putting a bundle back"
    with bundle_lock(bundle, exclusive=True):  # this thread's own write (export_run's swap, as it sees itself)
        assert live.health()["status"] == "ok"
