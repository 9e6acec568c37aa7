"""/health tells a monitor when the server answers from a bundle that is no longer the one on disk: a changed
bundle that failed to load makes it "degraded", with the error and both manifests; a good change makes it "ok"
again, and the reload is logged at INFO."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from fastapi.testclient import TestClient

from booktower.serving.api import create_app
from booktower.serving.live import LiveRecommender
from booktower.serving.service import Recommender

from .conftest import wait_until


def test_health_is_degraded_while_a_changed_bundle_fails_to_load(trained, tmp_path: Path, caplog) -> None:
    data, _, directory, _ = trained
    bundle = shutil.copytree(directory, tmp_path / "b")
    live = LiveRecommender(bundle, check_every_s=0.05)
    client = TestClient(create_app(live))
    try:
        fine = client.get("/health").json()
        assert fine["status"] == "ok" and fine["reload"]["error"] is None and fine["reload"]["every_s"] == 0.05
        assert fine["reload"]["loaded_manifest"] == fine["reload"]["disk_manifest"] is not None

        good = (bundle / "manifest.json").read_text()
        (bundle / "manifest.json").write_text(good[:40])  # a truncated copy: not JSON
        wait_until(lambda: live.failure is not None)
        broken = client.get("/health").json()
        assert broken["status"] == "degraded" and broken["n_items"] == data.n_items, "the old bundle is still served"
        assert "manifest.json" in broken["reload"]["error"] and broken["reload"]["failed_at"]
        assert broken["reload"]["loaded_manifest"] == fine["reload"]["loaded_manifest"]
        assert broken["reload"]["disk_manifest"]["bytes"] == 40
        assert client.get(f"/recommendations/{data.users.ids[0]}").status_code == 200

        with caplog.at_level(logging.INFO, logger="booktower.serving.live"):
            (bundle / "manifest.json").write_text(good)  # put right: a new file, so the next check loads it
            wait_until(lambda: live.reloads == 1)
        healed = client.get("/health").json()
        assert healed["status"] == "ok" and healed["reload"]["error"] is None and healed["reload"]["reloads"] == 1
        assert healed["reload"]["loaded_manifest"] == healed["reload"]["disk_manifest"]
        assert healed["reload"]["reloaded_at"]
        reloaded = [r for r in caplog.records if r.levelno == logging.INFO and "reloaded" in r.getMessage()]
        assert reloaded and "previous change had failed" in reloaded[0].getMessage()
    finally:
        live.close()


def test_a_fixed_bundle_reports_no_reload_state(trained) -> None:
    health = TestClient(create_app(Recommender.from_bundle(trained[2]))).get("/health").json()
    assert health["status"] == "ok" and health["reload"] is None


def test_a_server_without_logging_set_up_prints_booktower_info_lines(monkeypatch) -> None:
    """uvicorn configures only its own loggers: the workers give booktower's (reloads at INFO) a handler."""
    from booktower.serving.asgi import _log_booktower_info

    root, ours = logging.getLogger(), logging.getLogger("booktower")
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(ours, "handlers", [])
    monkeypatch.setattr(ours, "level", logging.NOTSET)
    _log_booktower_info()
    assert len(ours.handlers) == 1 and ours.getEffectiveLevel() == logging.INFO
    monkeypatch.setattr(ours, "handlers", [logging.NullHandler()])
    _log_booktower_info()
    assert len(ours.handlers) == 1, "logging set up already is left alone"
