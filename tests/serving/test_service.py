"""The recommender behind the API: seen-filtering, business filters, cold-start readers."""

from __future__ import annotations

import numpy as np
import pytest

from booktower.data.vocab import UnknownIdError

from .conftest import toy_recommender


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf"])
def test_known_reader_gets_unseen_books_of_their_cluster(kind: str) -> None:
    rec, labels = toy_recommender(index={"kind": kind, "ivf_nlist": 2})
    rows = rec.for_user("u1", k=10)
    seen = {f"b{i}" for i in rec.parts.seen.row(1)}
    assert len(rows) == 10
    assert not seen & {r.item_id for r in rows}
    assert all(labels[int(r.item_id[1:])] == 1 for r in rows)
    assert all(r.title and r.categories for r in rows)
    assert [r.score for r in rows] == sorted((r.score for r in rows), reverse=True)


def test_business_filters() -> None:
    rec, labels = toy_recommender()
    rows = rec.for_user("u0", k=5, categories=["c2"])
    assert len(rows) == 5 and all(labels[int(r.item_id[1:])] == 2 for r in rows)
    first = rec.for_user("u0", k=3)
    again = rec.for_user("u0", k=3, exclude=[first[0].item_id])
    assert first[0].item_id not in {r.item_id for r in again} and len(again) == 3


def test_anonymous_reader_from_history() -> None:
    rec, labels = toy_recommender()
    history = [f"b{i}" for i in np.flatnonzero(labels == 3)[:4]]
    rows = rec.for_history(history, k=6)
    assert len(rows) == 6 and not set(history) & {r.item_id for r in rows}
    assert all(labels[int(r.item_id[1:])] == 3 for r in rows)


def test_similar_excludes_itself() -> None:
    rec, labels = toy_recommender()
    rows = rec.similar("b0", k=4)
    assert "b0" not in {r.item_id for r in rows} and all(labels[int(r.item_id[1:])] == 0 for r in rows)


def test_unknown_ids_and_bad_k_are_named() -> None:
    rec, _ = toy_recommender(max_k=20)
    with pytest.raises(UnknownIdError, match="nobody"):
        rec.for_user("nobody")
    with pytest.raises(UnknownIdError, match=r"none of the history's 1 books is in this bundle \(e.g. \['b-missing'\]\)"):
        rec.for_history(["b-missing"])
    assert rec.for_history(["b1", "b-missing"]) == rec.for_history(["b1"]), "the unknown book is left out"
    assert rec.unknown_items(["b1", "b-missing"]) == ["b-missing"]
    with pytest.raises(UnknownIdError, match="no-such-shelf"):
        rec.for_user("u0", categories=["no-such-shelf"])
    with pytest.raises(ValueError, match=r"\[1, 20\]"):
        rec.for_user("u0", k=21)
