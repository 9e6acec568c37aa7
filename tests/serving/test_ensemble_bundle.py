"""An ensemble's bundle serves as a single model's does, books added after training included: every member pools
an added book's content, and a reader's vector is the members' vectors side by side (each over its temperature)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl

from booktower.data.types import Ragged
from booktower.serving.add_books import add_books
from booktower.serving.service import Recommender


def _with_new_book(bundle: Path, tmp_path: Path) -> Path:
    copy = shutil.copytree(bundle, tmp_path / f"{bundle.parent.name}-added")
    books = tmp_path / "new.csv"
    pl.DataFrame({"item_id": ["NEW"], "title": ["the history of dragons"], "author": ["writer 2"],
                  "categories": ["Books > g1"], "language": ["fre"], "price": [7.0]}).write_csv(books)
    add_books(copy, books)
    return copy


def test_an_added_book_in_a_history_moves_every_member(make_catalogue_bundle, tmp_path_factory, tmp_path):
    pooled = {"history": {"content": True}}
    _, both, _ = make_catalogue_bundle(tmp_path_factory.mktemp("both") / "b", pooled, seeds=(0, 1))
    _, first, _ = make_catalogue_bundle(tmp_path_factory.mktemp("first") / "b", pooled, seeds=(0,))
    _, second, _ = make_catalogue_bundle(tmp_path_factory.mktemp("second") / "b", pooled, seeds=(1,))
    recommenders = [Recommender.from_bundle(_with_new_book(bundle, tmp_path)) for bundle in (both, first, second)]
    new = recommenders[0].parts.items.encode(["NEW"])[0]
    history = Ragged.from_lists([[new, 3]])
    vectors = [rec.encoder.user_vectors(history) for rec in recommenders]
    logits_side = [v / rec.encoder.model.temperature for v, rec in zip(vectors[1:], recommenders[1:])]
    np.testing.assert_allclose(vectors[0], np.concatenate(logits_side, axis=1), rtol=1e-5, atol=1e-5)
    without = recommenders[0].encoder.user_vectors(Ragged.from_lists([[3]]))
    assert not np.allclose(vectors[0], without), "the added book's content reaches the reader's vector"
    assert recommenders[0].parts.item_vectors.shape[1] == 2 * recommenders[1].parts.item_vectors.shape[1]
    listed = [r.item_id for r in recommenders[0].for_history(["NEW", "b3"], k=5)]
    assert len(listed) == 5 and "NEW" not in listed and "b3" not in listed
