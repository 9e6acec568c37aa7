"""`explain`: each answer's `because` is the read book most like it (cosine of the item vectors), checked against
a brute force over the reader's books."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from booktower.serving.api import create_app
from booktower.serving.service import EXPLAIN_RECENT, Recommender


def _closest_read(rec: Recommender, item: str, read: list[int]) -> str:
    vectors = rec.parts.item_vectors.astype(np.float64)
    target = vectors[rec.parts.items.index(item)]
    cosine = [target @ vectors[r] / np.linalg.norm(target) / np.linalg.norm(vectors[r]) for r in read]
    return rec.parts.items.decode([read[int(np.argmax(cosine))]])[0]


def test_because_names_the_closest_read_book_for_known_and_anonymous_readers(trained) -> None:
    data, _, bundle, _ = trained
    rec = Recommender.from_bundle(bundle, index_kind="exact")
    client = TestClient(create_app(rec))
    for user in data.users.ids[:5]:
        answer = client.get(f"/recommendations/{user}", params={"k": 5, "explain": True}).json()["items"]
        read = rec.read_by(user).tolist()
        for item in answer:
            assert item["because"] == _closest_read(rec, item["item_id"], read)
    history = list(data.items.ids[:3])
    posted = client.post("/recommendations", json={"history": [*history, "GONE"], "k": 4, "explain": True}).json()
    read = rec.item_indices(history).tolist()
    assert [i["because"] for i in posted["items"]] == [_closest_read(rec, i["item_id"], read) for i in posted["items"]]
    plain = client.get(f"/recommendations/{data.users.ids[0]}", params={"k": 3}).json()["items"]
    assert all(item["because"] is None for item in plain), "only on request"


def test_because_looks_among_recent_reads_and_none_without_any(trained) -> None:
    _, _, bundle, _ = trained
    rec = Recommender.from_bundle(bundle, index_kind="exact")
    item = rec.parts.items.ids[0]
    old, recent = 1, 2
    many = np.array([old] + [recent] * EXPLAIN_RECENT)  # the old read falls outside the window
    assert rec.because([item], many) == [rec.parts.items.ids[recent]]
    assert rec.because([item, rec.parts.items.ids[1]], np.zeros(0, dtype=np.int64)) == [None, None]
