"""A book named twice in an anonymous history counts once, at its first read, as `prepare` keeps a re-read:
every path into the user tower (the Python API, POST /recommendations, `recommend --history`, the encoder
itself, and the `because` explanations) answers ["a", "b", "a"] as ["a", "b"]."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from booktower.data.types import Ragged
from booktower.serving.api import create_app
from booktower.serving.recommend import recommend_from_bundle
from booktower.serving.service import Recommender


def _scored(rows) -> list[tuple[str, float]]:
    return [(row.item_id, round(row.score, 5)) for row in rows]


def test_a_repeated_book_counts_once_at_its_first_read(trained) -> None:
    data, _, bundle, _ = trained
    rec = Recommender.from_bundle(bundle, index_kind="exact")
    a, b, c = data.items.ids[:3]
    k = data.n_items - 3
    assert _scored(rec.for_history([a, b, a], k)) == _scored(rec.for_history([a, b], k))
    assert _scored(rec.for_history([a, b, c, c, c, c], k)) == _scored(rec.for_history([a, b, c], k))
    assert _scored(rec.for_history([f" {a}", b, a], k)) == _scored(rec.for_history([a, b], k)), "ids are stripped first"


def test_the_encoder_pools_a_repeated_book_once(trained) -> None:
    """A caller of the encoder (not only the service) gets the vector training would give."""
    _, _, bundle, _ = trained
    encoder = Recommender.from_bundle(bundle).encoder
    twice, once = encoder.user_vectors(Ragged.from_lists([[4, 7, 4, 4], [4, 7]]))
    np.testing.assert_allclose(twice, once, rtol=1e-5, atol=1e-6)


def test_the_http_answer_and_its_explanations_are_those_of_the_first_reads(trained) -> None:
    data, _, bundle, _ = trained
    client = TestClient(create_app(Recommender.from_bundle(bundle, index_kind="exact")))
    a, b = data.items.ids[:2]
    repeated = client.post("/recommendations", json={"history": [a, "GONE", b, a, "GONE"], "k": 8, "explain": True})
    plain = client.post("/recommendations", json={"history": [a, "GONE", b], "k": 8, "explain": True})
    assert repeated.status_code == plain.status_code == 200
    assert repeated.json() == plain.json()
    assert repeated.json()["unknown_history"] == ["GONE"]


def test_recommend_from_bundle_counts_a_repeated_book_once(trained) -> None:
    data, _, bundle, _ = trained
    a, b = data.items.ids[:2]
    assert recommend_from_bundle(bundle, history=[a, b, a], k=10) == recommend_from_bundle(bundle, history=[a, b], k=10)
