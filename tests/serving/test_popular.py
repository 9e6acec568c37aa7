"""`/popular` and `Recommender.popular`: the most-read books for a visitor without history, filtered as every
other answer is, checked against a sort of the bundle's training counts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
from fastapi.testclient import TestClient

from booktower.serving.add_books import add_books
from booktower.serving.api import create_app
from booktower.serving.service import Recommender
from booktower.serving.withdraw import change_withdrawn


def _by_count(rec: Recommender) -> list[str]:
    """The naive ranking: training reads, most first, ties by item index."""
    counts = rec.parts.popularity
    order = sorted(range(len(counts)), key=lambda i: (-counts[i], i))
    return rec.parts.items.decode(order)


def test_popular_ranks_by_training_reads_and_applies_every_filter(trained, tmp_path: Path) -> None:
    bundle = shutil.copytree(trained[2], tmp_path / "b")
    rec = Recommender.from_bundle(bundle)
    ranking = _by_count(rec)
    rows = rec.popular(k=5)
    assert [r.item_id for r in rows] == ranking[:5]
    assert [r.score for r in rows] == sorted((r.score for r in rows), reverse=True) and rows[0].score > 0
    assert [r.item_id for r in rec.popular(k=5, exclude=[ranking[0], "NOT-A-BOOK"])] == ranking[1:6]
    tag = next(t for t in rec.parts.metadata["categories"][0].split(" > ") if t)
    tagged = set(rec.parts.items.decode(rec.category_items([tag])))
    assert [r.item_id for r in rec.popular(k=3, categories=[tag])] == [i for i in ranking if i in tagged][:3]
    capped, authors = [], {}
    for item in ranking:  # greedy reference for the author cap
        author = rec.parts.metadata["author"][rec.parts.items.index(item)].strip().lower()
        if authors.get(author, 0) < 1:
            capped.append(item)
            authors[author] = authors.get(author, 0) + 1
    assert [r.item_id for r in rec.popular(k=4, max_per_author=1)] == capped[:4]
    change_withdrawn(bundle, ranking[:2], withdraw=True)
    assert [r.item_id for r in Recommender.from_bundle(bundle).popular(k=3)] == ranking[2:5]


def test_books_added_after_training_come_last_and_the_api_serves_it(trained, tmp_path: Path) -> None:
    bundle = shutil.copytree(trained[2], tmp_path / "b")
    books = tmp_path / "new.csv"
    pl.DataFrame({"item_id": ["NEW1"], "title": ["new"], "author": ["x"], "categories": ["Books"]}).write_csv(books)
    add_books(bundle, books)
    rec = Recommender.from_bundle(bundle)
    everything = [r.item_id for r in rec.popular(k=rec.n_items)]
    assert everything[-1] == "NEW1" and len(everything) == rec.n_items
    client = TestClient(create_app(rec))
    answer = client.get("/popular", params={"k": 3, "max_per_author": 1})
    assert answer.status_code == 200
    assert [i["item_id"] for i in answer.json()["items"]] == [r.item_id for r in rec.popular(3, max_per_author=1)]
    assert client.get("/popular", params={"category": "no-such-shelf"}).status_code == 404
    assert np.all(np.diff([i["score"] for i in client.get("/popular").json()["items"]]) <= 0)
