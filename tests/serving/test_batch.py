"""Lists for many readers at once: the service's own answers (exact index), reader by reader."""

from __future__ import annotations

import numpy as np

from booktower.serving.batch import batch_lists
from booktower.serving.service import Recommender


def test_batch_lists_are_the_services_answers(trained) -> None:
    data, _, bundle, _ = trained
    rec = Recommender.from_bundle(bundle, index_kind="exact")
    users = np.arange(len(rec.parts.users))
    frame = batch_lists(rec, users, k=7, chunk=16)  # several blocks
    assert frame.height == 7 * len(users)
    for user in (0, 17, len(users) - 1):
        user_id = rec.parts.users.decode([user])[0]
        served = rec.for_user(user_id, k=7)
        mine = frame.filter(frame["user_id"] == user_id).sort("rank")
        assert mine["item_id"].to_list() == [r.item_id for r in served]
        np.testing.assert_allclose(mine["score"].to_numpy(), [r.score for r in served], rtol=1e-5, atol=1e-6)
        assert mine["title"].to_list() == [r.title for r in served]


def test_a_category_restricts_and_a_reader_with_everything_read_gets_a_short_list(trained) -> None:
    _, _, bundle, _ = trained
    rec = Recommender.from_bundle(bundle, index_kind="exact")
    tag = next(t for t in rec.parts.metadata["categories"][0].split(" > ") if t)
    tagged = set(rec.category_items([tag]).tolist())
    frame = batch_lists(rec, np.array([0, 1, 2]), k=rec.n_items, categories=[tag])
    assert set(rec.parts.items.encode(frame["item_id"]).tolist()) <= tagged
    for user in (0, 1, 2):
        unread_tagged = tagged - set(rec.parts.seen.row(user).tolist())
        listed = frame.filter(frame["user_id"] == rec.parts.users.decode([user])[0])
        assert listed.height == len(unread_tagged), "every unread tagged book, and nothing masked"
        assert listed["rank"].to_list() == list(range(1, listed.height + 1))
