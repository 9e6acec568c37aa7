"""`max_per_author`: at most that many books by one author in a list, checked against a greedy walk down the
uncapped ranking (the naive reference), everywhere a list is served."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from booktower.serving.api import create_app
from booktower.serving.batch import batch_lists
from booktower.serving.retrieve import first_per_group
from booktower.serving.service import Recommender


def test_first_per_group_keeps_each_groups_first_entries_in_rank_order() -> None:
    groups = np.array([3, 3, -1, 3, 1, 1, -1, 1, 3])
    assert first_per_group(groups, 2).tolist() == [True, True, True, False, True, True, True, False, False]
    assert first_per_group(groups, 1).tolist() == [True, False, True, False, True, False, True, False, False]
    assert first_per_group(np.zeros(0, dtype=np.int64), 2).tolist() == []


def _capped_reference(rows, k: int, cap: int) -> list[str]:
    """Walk the uncapped ranking, skipping a book whose author already has `cap` books in the list."""
    taken: dict[str, int] = {}
    picked = []
    for row in rows:
        author = row.author.strip().lower()
        if author and taken.get(author, 0) >= cap:
            continue
        taken[author] = taken.get(author, 0) + 1
        picked.append(row.item_id)
    return picked[:k]


@pytest.mark.parametrize("index_kind", ["exact", "hnsw"])
def test_every_query_kind_matches_the_greedy_reference(trained, index_kind: str) -> None:
    data, _, bundle, _ = trained
    rec = Recommender.from_bundle(bundle, index_kind=index_kind)
    exact = Recommender.from_bundle(bundle, index_kind="exact")
    assert len(set(rec.author_groups.tolist()) - {-1}) < 10, "few authors, so the cap binds"
    for user in data.users.ids[:8]:
        everything = exact.for_user(user, k=exact.n_items)
        capped = [r.item_id for r in rec.for_user(user, k=10, max_per_author=1)]
        assert capped == _capped_reference(everything, 10, 1)
    history = list(data.items.ids[:2])
    everything = exact.for_history(history, k=exact.n_items - 2)
    assert ([r.item_id for r in rec.for_history(history, k=6, max_per_author=2)]
            == _capped_reference(everything, 6, 2))
    book = data.items.ids[5]
    everything = exact.similar(book, k=exact.n_items - 1)
    assert [r.item_id for r in rec.similar(book, k=5, max_per_author=1)] == _capped_reference(everything, 5, 1)


def test_a_cap_that_leaves_too_few_books_gives_a_shorter_list_and_a_bad_cap_is_refused(trained) -> None:
    data, _, bundle, _ = trained
    rec = Recommender.from_bundle(bundle, index_kind="exact")
    n_authors = len(set(rec.author_groups.tolist()) - {-1})
    assert -1 not in rec.author_groups.tolist()
    rows = rec.for_user(data.users.ids[0], k=20, max_per_author=1)
    assert len(rows) == n_authors and len({r.author for r in rows}) == n_authors
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_per_author must be a whole number"):
            rec.for_user(data.users.ids[0], k=5, max_per_author=bad)


def test_batch_lists_and_the_api_apply_the_same_cap(trained) -> None:
    data, _, bundle, _ = trained
    rec = Recommender.from_bundle(bundle, index_kind="exact")
    frame = batch_lists(rec, np.arange(len(data.users)), k=6, chunk=16, max_per_author=1)
    client = TestClient(create_app(rec))
    for user in data.users.ids[:5]:
        served = [r.item_id for r in rec.for_user(user, k=6, max_per_author=1)]
        assert frame.filter(frame["user_id"] == user).sort("rank")["item_id"].to_list() == served
        answer = client.get(f"/recommendations/{user}", params={"k": 6, "max_per_author": 1}).json()
        assert [i["item_id"] for i in answer["items"]] == served
    posted = client.post("/recommendations", json={"history": list(data.items.ids[:2]), "k": 4, "max_per_author": 1})
    assert posted.status_code == 200 and len({i["author"] for i in posted.json()["items"]}) == 4
    assert client.get(f"/recommendations/{data.users.ids[0]}", params={"max_per_author": 0}).status_code == 422


def test_the_cli_caps_printed_and_written_lists(trained, tmp_path) -> None:
    import polars as pl
    from typer.testing import CliRunner

    from booktower.cli.app import app

    data, _, bundle, _ = trained
    out = tmp_path / "lists.parquet"
    result = CliRunner().invoke(app, ["recommend", "--bundle", str(bundle), "--all-users", "--out", str(out),
                                      "--k", "5", "--max-per-author", "1"])
    assert result.exit_code == 0 and "at most 1 per author" in result.output, result.output
    lists = pl.read_parquet(out)
    assert lists.group_by("user_id").agg(pl.col("author").n_unique() == pl.len())["author"].all()
    printed = CliRunner().invoke(app, ["recommend", "--bundle", str(bundle), "--user", data.users.ids[0], "--k", "5",
                                       "--max-per-author", "1"])
    assert printed.exit_code == 0 and printed.output.count("\n") > 5
    refused = CliRunner().invoke(app, ["recommend", "--run", str(tmp_path), "--all-test-users", "--out", str(out),
                                       "--max-per-author", "1"])
    assert refused.exit_code == 2 and "--max-per-author go with --bundle" in " ".join(refused.output.split())


def test_one_author_written_several_ways_is_one_author() -> None:
    from booktower.serving.service import author_codes

    groups = author_codes(["DAVID REYES", " David Reyes ", "David  Reyes", "J. R. R. Tolkien", "J.R.R. Tolkien",
                             "Tolkien", "", None])
    assert len(set(groups[:3].tolist())) == 1 and groups[3] == groups[4] != groups[5] != groups[0]
    assert groups[6:].tolist() == [-1, -1]
