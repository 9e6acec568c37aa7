"""The serving commands through typer: index add, recommendation rows, refusal of a tampered bundle."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from booktower.cli.app import app
from booktower.cli.serve_cmds import recommend_rows
from booktower.serving.bundle import BundleError
from booktower.serving.recommend import recommend_from_bundle

runner = CliRunner()


def test_index_add_command(trained, tmp_path: Path) -> None:
    data, _, directory, _ = trained
    bundle = tmp_path / "b"
    shutil.copytree(directory, bundle)
    books = tmp_path / "new.csv"
    pl.DataFrame({"item_id": ["fresh"], "title": ["the poetry of spring"], "author": ["writer 1"],
                  "categories": ['["Books", "poetry"]']}).write_csv(books)
    result = runner.invoke(app, ["index", "add", "--bundle", str(bundle), "--books", str(books)])
    assert result.exit_code == 0, result.output
    assert "1 added" in result.output
    rows = recommend_from_bundle(bundle, history=[data.items.ids[0]], k=data.n_items)
    assert "fresh" in {r["item_id"] for r in rows}


def test_recommend_rows_for_user_and_history(trained) -> None:
    data, _, directory, _ = trained
    by_user = recommend_rows(directory, data.users.ids[0], None, 4)
    assert [r["rank"] for r in by_user] == [1, 2, 3, 4] and all(r["title"] for r in by_user)
    history = ",".join(data.items.ids[:2].to_list())
    by_history = recommend_rows(directory, None, history, 3)
    assert len(by_history) == 3 and not {r["item_id"] for r in by_history} & set(data.items.ids[:2].to_list())
    with pytest.raises(ValueError, match="exactly one"):
        recommend_from_bundle(directory, user="x", history=["y"])


def test_tampered_bundle_is_refused_before_serving(trained, tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(trained[2], bundle)
    (bundle / "user_vectors.safetensors").write_bytes(b"not the vectors")
    result = runner.invoke(app, ["serve", "--bundle", str(bundle), "--port", "1"])
    assert result.exit_code == 2 and "user_vectors.safetensors" in result.output.replace("\n", "")
    with pytest.raises(BundleError, match="user_vectors"):
        recommend_from_bundle(bundle, user="u1")


def test_asgi_factory_reads_the_bundle_from_the_environment(trained, monkeypatch) -> None:
    from fastapi.testclient import TestClient

    from booktower.serving.asgi import BUNDLE_ENV, app_from_env

    monkeypatch.setenv(BUNDLE_ENV, str(trained[2]))
    assert TestClient(app_from_env()).get("/health").json()["n_items"] == trained[0].n_items
