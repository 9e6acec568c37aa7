"""Following a bundle that is rewritten: the Python API and the server see `index add` without a restart, and
wrong argument types get errors that say what to pass."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from booktower.serving.add_books import add_books
from booktower.serving.api import create_app
from booktower.serving.recommend import recommend_from_bundle
from booktower.serving.service import Recommender


def _books(path: Path, ids: list[str]) -> Path:
    pl.DataFrame({"item_id": ids, "title": ["a history of rome"] * len(ids), "author": ["writer 1"] * len(ids),
                  "categories": ["Books|new-arrivals"] * len(ids)}).write_csv(path)
    return path


def test_recommend_from_bundle_sees_books_added_in_the_same_process(trained, tmp_path: Path) -> None:
    data, _, directory, _ = trained
    bundle = shutil.copytree(directory, tmp_path / "b")
    assert len(recommend_from_bundle(bundle, user=data.users.ids[0], k=3)) == 3  # loaded and cached
    add_books(bundle, _books(tmp_path / "new.csv", ["NEW001"]))
    rows = recommend_from_bundle(bundle, history=["NEW001"], k=data.n_items)
    assert len(rows) == data.n_items and "NEW001" not in {r["item_id"] for r in rows}


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"k": 2.5}, TypeError, "k must be an int"),
    ({"k": "3"}, TypeError, "k must be an int"),
    ({"k": True}, TypeError, "k must be an int"),
    ({"k": 0}, ValueError, r"k must be in \[1, "),
])
def test_recommend_from_bundle_names_a_bad_k(trained, kwargs: dict, error: type, message: str) -> None:
    data, _, directory, _ = trained
    with pytest.raises(error, match=message):
        recommend_from_bundle(directory, user=data.users.ids[0], **kwargs)


def test_a_history_given_as_one_string_is_refused(trained) -> None:
    data, _, directory, _ = trained
    one = data.items.ids[0]
    with pytest.raises(TypeError, match=r"history must be a list of item ids, not one string: write history=\["):
        recommend_from_bundle(directory, history=one, k=3)
    rec = Recommender.from_bundle(directory)
    for call in (lambda: rec.for_history(one, 3), lambda: rec.for_user(data.users.ids[0], 3, exclude=one),
                 lambda: rec.similar(one, 3, categories="Books")):
        with pytest.raises(TypeError, match="must be a list of ids, not one string"):
            call()


def test_the_server_follows_the_bundle(trained, tmp_path: Path) -> None:
    from booktower.serving.live import LiveRecommender

    data, _, directory, _ = trained
    bundle = shutil.copytree(directory, tmp_path / "b")
    live = LiveRecommender(bundle, check_every_s=0.0, background=False)
    client = TestClient(create_app(live))
    assert client.get("/items/NEW001/similar").status_code == 404
    add_books(bundle, _books(tmp_path / "new.csv", ["NEW001"]))
    assert client.get("/health").json()["n_items"] == data.n_items + 1
    similar = client.get("/items/NEW001/similar", params={"k": 2})
    assert similar.status_code == 200 and len(similar.json()["items"]) == 2
    assert live.reloads == 1


def test_an_idle_server_reloads_in_the_background_and_survives_a_broken_bundle(trained, tmp_path: Path) -> None:
    from booktower.serving.live import LiveRecommender

    data, _, directory, _ = trained
    bundle = shutil.copytree(directory, tmp_path / "b")
    live = LiveRecommender(bundle, check_every_s=0.2)
    add_books(bundle, _books(tmp_path / "new1.csv", ["NEW001"]))
    deadline = time.monotonic() + 30
    while live.reloads == 0 and time.monotonic() < deadline:  # no request in between: the watcher alone
        time.sleep(0.05)
    assert live.current().n_items == data.n_items + 1, "reloaded in the background"
    served = live.current()
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["n_model_items"] = "abc"
    (bundle / "manifest.json").write_text(json.dumps(manifest))  # a hand edit: new file, new signature
    deadline = time.monotonic() + 30
    while live.last_error is None and time.monotonic() < deadline:
        time.sleep(0.05)
        live.current()
    assert live.current() is served and "n_model_items" in (live.last_error or "")
    live.close()


def test_the_asgi_app_follows_the_bundle(trained, tmp_path: Path, monkeypatch) -> None:
    from booktower.serving.asgi import BUNDLE_ENV, app_from_env

    data, _, directory, _ = trained
    bundle = shutil.copytree(directory, tmp_path / "b")
    monkeypatch.setenv(BUNDLE_ENV, str(bundle))
    monkeypatch.setenv("BOOKTOWER_RELOAD_S", "0.05")  # seconds between checks (default 2)
    client = TestClient(app_from_env())
    add_books(bundle, _books(tmp_path / "new.csv", ["NEW001"]))
    deadline = time.monotonic() + 20
    while client.get("/items/NEW001/similar").status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get("/items/NEW001/similar").status_code == 200
    assert client.get("/health").json()["n_items"] == data.n_items + 1


def test_the_python_api_raises_when_the_rewritten_bundle_is_broken(trained, tmp_path: Path) -> None:
    from booktower.serving.bundle import BundleError

    data, _, directory, _ = trained
    bundle = shutil.copytree(directory, tmp_path / "b")
    assert recommend_from_bundle(bundle, user=data.users.ids[0], k=2)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["dim"] = "wide"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    for _ in range(2):  # every call says so, not only the first
        with pytest.raises(BundleError, match="dim"):
            recommend_from_bundle(bundle, user=data.users.ids[0], k=2)
