"""Books added by `index add` to a model that does not pool a history's content (model.history.content off)
leave the pooled history unchanged: the answer names them in `unpooled_history` (HTTP, Python, `recommend
--history`), apart from `unknown_history` (ids the bundle lacks)."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from booktower.cli.app import app
from booktower.serving.add_books import add_books
from booktower.serving.api import create_app
from booktower.serving.service import Recommender


def _with_added(directory: Path, tmp_path: Path, frame: pl.DataFrame) -> Path:
    bundle = shutil.copytree(directory, tmp_path / "b")
    frame.write_csv(tmp_path / "new.csv")
    add_books(bundle, tmp_path / "new.csv")
    return bundle


def _new_books(ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"item_id": ids, "title": ["a history of rome"] * len(ids), "author": ["writer 1"] * len(ids),
                         "categories": ["Books|new-arrivals"] * len(ids)})


def test_added_books_a_model_cannot_pool_are_named_apart_from_unknown_ones(trained, tmp_path: Path) -> None:
    from booktower.serving.recommend import unpooled_items

    data, _, directory, _ = trained
    bundle = _with_added(directory, tmp_path, _new_books(["NEW1", "NEW2"]))
    rec = Recommender.from_bundle(bundle, index_kind="exact")
    only_added = rec.answer_history(["NEW1", "NEW2", "NEW1"], 5)
    assert only_added.unpooled_history == ["NEW1", "NEW2"] and only_added.unknown_history == []
    a = data.items.ids[0]
    mixed = rec.answer_history([a, "NEW2", "GONE"], 5)
    assert mixed.unpooled_history == ["NEW2"] and mixed.unknown_history == ["GONE"]
    assert rec.answer_history([a], 5).unpooled_history == []
    assert unpooled_items(bundle, [a, "NEW1", "GONE"]) == ["NEW1"]


def test_the_http_answer_lists_unpooled_history_and_the_schema_documents_it(trained, tmp_path: Path) -> None:
    data, _, directory, _ = trained
    bundle = _with_added(directory, tmp_path, _new_books(["NEW1"]))
    client = TestClient(create_app(Recommender.from_bundle(bundle)))
    body = client.post("/recommendations", json={"history": ["NEW1", data.items.ids[0]], "k": 3}).json()
    assert body["unpooled_history"] == ["NEW1"] and body["unknown_history"] == []
    plain = client.post("/recommendations", json={"history": [data.items.ids[0]], "k": 3}).json()
    assert plain["unpooled_history"] == [] and plain["unknown_history"] == []
    assert client.get(f"/recommendations/{data.users.ids[0]}").json()["unpooled_history"] is None
    schema = client.get("/openapi.json").json()["components"]["schemas"]["RecommendationList"]["properties"]
    assert "model.history.content" in schema["unpooled_history"]["description"]


def test_recommend_history_prints_the_unpooled_books(trained, tmp_path: Path) -> None:
    data, _, directory, _ = trained
    bundle = _with_added(directory, tmp_path, _new_books(["NEW1"]))
    result = CliRunner().invoke(app, ["recommend", "--bundle", str(bundle), "--history",
                                      f"NEW1,{data.items.ids[0]}", "--k", "3"])
    flat = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "unpooled_history" in flat and "NEW1" in flat and "unknown_history" not in flat


def test_a_model_that_pools_content_leaves_no_added_book_unpooled(content_bundle, tmp_path: Path) -> None:
    data, directory, catalogue = content_bundle
    added = catalogue.filter(pl.col("item_id") == "b7").with_columns(item_id=pl.lit("NEW"),
                                                                      categories=pl.lit("Books|g1"))
    blank = pl.DataFrame({"item_id": ["BLANK"]})  # nothing to pool: no title, author, categories or language
    bundle = _with_added(directory, tmp_path, pl.concat([added, blank], how="diagonal"))
    answer = Recommender.from_bundle(bundle).answer_history(["NEW", "b3", "BLANK"], 3)
    assert answer.unpooled_history == ["BLANK"] and answer.unknown_history == []
