"""`booktower backtest`, new readers: readers the bundle does not know, served from their first books through the
service's anonymous-history call and scored on the books they read after those; the known readers' block is left
as it was."""

from __future__ import annotations

import inspect
import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from booktower.cli.app import app
from booktower.cli.backtest_cmd import backtest_command
from booktower.config.serving import ServingConfig
from booktower.data.errors import DataError
from booktower.serving.backtest import backtest
from booktower.serving.backtest_new_readers import NEW_READER_HISTORY, served_from_history, split_new_readers
from booktower.serving.service import Recommender

from .conftest import MeanEncoder, toy_parts
from .test_backtest import T0, _columns_config, _later_log, _naive

LOG = {"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64}


def _clusters(withdrawn: tuple[int, ...] = (), **serving: object) -> Recommender:
    """4 planted clusters of 30 books (b0-b29 cluster 0, b30-b59 cluster 1, ...), every book read once in training
    (the most-read list is b0, b1, ... in order), a reader the mean of their books; exact ranking."""
    parts, labels = toy_parts()
    parts.withdrawn[list(withdrawn)] = True
    centres = {f"c{c}": parts.item_vectors[labels == c].mean(axis=0) for c in np.unique(labels)}
    config = ServingConfig.model_validate({"index": {"kind": "exact"}, **serving})
    return Recommender(parts, config, MeanEncoder(parts.item_vectors, centres))


def _log(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=LOG, orient="row")


def test_a_new_reader_gets_their_cluster_and_the_most_read_list_leaves_out_their_history():
    rec = _clusters()
    # n0 reads three books of cluster 0 and then two more; n2 the same in cluster 2
    later = _log([("n0", f"b{i}", T0 + i) for i in (0, 1, 2, 27, 28)]
                 + [("n2", f"b{i}", T0 + i) for i in (60, 61, 62, 87, 88)])
    result = backtest(rec, later, [27], np.random.default_rng(0))
    new = result.new_readers
    # the 27 unread books of the reader's cluster fill the served list: both targets are in it, for both readers
    assert new.model["HR@27"] == 1.0 and new.model["Recall@27"] == 1.0
    # the most-read list is b3..b29 once n0's history is left out (b27, b28 in it) and the same for n2 (neither)
    assert new.popular["HR@27"] == 0.5 and new.popular["Recall@27"] == 0.5
    assert new.lead["HR@27"][0] == 0.5 and new.history == NEW_READER_HISTORY == 3
    assert new.counts["readers_scored"] == 2 and new.counts["targets"] == 4 and new.counts["history_reads"] == 6
    assert result.model == {} and "only new readers are scored" in result.warnings[0]
    served, unpooled = served_from_history(rec, [["b0", "b1", "b2"]], 30)
    assert set(served[0]).isdisjoint({0, 1, 2}) and set(served[0][:27]) == set(range(3, 30)) and unpooled == 0
    rec.encoder.pools = lambda items: items % 2 == 0  # as a model without history content pools no added book
    assert served_from_history(rec, [["b0", "b1", "b2"], ["b3", "b5"]], 5)[1] == 3  # b1, b3, b5


def test_the_history_is_the_first_books_by_time_and_what_cannot_be_scored_is_counted():
    rec = _clusters(withdrawn=(3, 11))
    later = pl.DataFrame({
        "user_id": ["n1"] * 6 + ["n2"] * 2 + ["n3"] * 3 + ["n4", "u0"],
        "item_id": ["b3", "b1", "not stocked", "b2", "b1", "b4", "b7", "b8", "b9", "b10", "b11", "gone", "b50"],
        "timestamp": [30, 10, 5, 20, 40, 20, 1, 2, 1, 2, 3, 1, 1],
        "order": [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]})  # b4 before b2: same second, order 0 before 1
    split = split_new_readers(rec, later, history=2)
    # n1: b1, b4 the history, b2 the target (b3 is withdrawn); n2 and n4 too few books, n3's later book withdrawn
    assert split.readers == ["n1"] and split.histories == [["b1", "b4"]] and split.targets.row(0).tolist() == [2]
    assert split.counts == {"readers": 4, "rows": 12, "rows_of_books_not_in_bundle": 2, "re_reads": 1,
                            "readers_with_too_few_reads": 2, "pairs_of_withdrawn_books": 2,
                            "readers_without_target": 1, "history_reads": 2, "targets": 1}
    # without an order column, the log's row order breaks the tie: b2 before b4
    assert split_new_readers(rec, later.drop("order"), history=2).histories == [["b1", "b2"]]


def test_the_scores_are_the_services_answers_to_the_first_books_scored_by_hand(trained):
    data, _, directory, _ = trained
    rec = Recommender.from_bundle(directory, index_kind="exact")
    rng = np.random.default_rng(11)
    rows = [(f"new{r}", book, T0 + int(rng.integers(0, 6)))  # ties in time: the log's order decides them
            for r in range(12) for book in rng.choice(data.items.ids.to_list(), size=int(rng.integers(2, 9)))]
    rows += [("new0", "a book nobody stocks", T0), (data.users.ids[0], data.items.ids[1], T0)]
    later = _log([rows[i] for i in rng.permutation(len(rows))])
    result = backtest(rec, later, [5, 10], np.random.default_rng(0)).new_readers

    books: dict[str, list[str]] = {}
    for _, (reader, book, _) in sorted(enumerate(later.iter_rows()), key=lambda row: (row[1][2], row[0])):
        if reader not in rec.parts.users and book in rec.parts.items and book not in books.setdefault(reader, []):
            books[reader].append(book)
    targets = {reader: set(read[3:]) for reader, read in books.items() if len(read) > 3}
    served = {reader: [x.item_id for x in rec.for_history(books[reader][:3], k=10)] for reader in targets}
    popular = {reader: [x.item_id for x in rec.popular(k=10, exclude=books[reader][:3])] for reader in targets}
    assert 3 <= len(targets) < len(books)  # some readers scored, some with too few books
    for k in (5, 10):
        for name, value in _naive(served, targets, k).items():
            assert result.model[name] == pytest.approx(value, abs=1e-12)
        for name, value in _naive(popular, targets, k).items():
            assert result.popular[name] == pytest.approx(value, abs=1e-12)
        mean, low, high = result.lead[f"NDCG@{k}"]
        assert mean == pytest.approx(result.model[f"NDCG@{k}"] - result.popular[f"NDCG@{k}"]) and low <= mean <= high
    assert result.counts["readers_scored"] == len(targets) and result.counts["targets"] == sum(map(len, targets.values()))
    assert result.counts["readers_with_too_few_reads"] == len(books) - len(targets)
    assert result.counts["rows_of_books_not_in_bundle"] == 1


KNOWN_KEYS = ["ks", "model", "popular", "lead_over_popular", "counts", "dropped_rows", "window", "warnings"]


def test_the_known_readers_block_is_the_same_with_or_without_new_readers(trained):
    data, _, directory, _ = trained
    rec = Recommender.from_bundle(directory, index_kind="exact")
    later = _later_log(data, rec, np.random.default_rng(3))
    later = pl.concat([later, _log([("newcomer", book, T0 + i) for i, book in enumerate(data.items.ids[:6])])])
    without = backtest(rec, later, [5, 10], np.random.default_rng(0), new_reader_history=None).as_dict()
    with_them = backtest(rec, later, [5, 10], np.random.default_rng(0)).as_dict()
    assert list(with_them) == [*KNOWN_KEYS, "new_readers"] and without.pop("new_readers") is None
    new = with_them.pop("new_readers")
    assert with_them == without and new["counts"]["readers_scored"] == 1
    assert set(new) == {"history", "model", "popular", "lead_over_popular", "counts"}
    # a metric's interval does not depend on the other cut-offs asked, in this block either
    several = backtest(rec, later, [1, 5, 10, 20], np.random.default_rng(0)).new_readers
    assert several.lead["NDCG@10"] == tuple(new["lead_over_popular"]["NDCG@10"].values())


def test_limits_of_the_service_and_a_log_with_nothing_to_score():
    later = _log([("n0", f"b{i}", T0 + i) for i in (0, 1, 2, 27, 28)])
    # serving.max_k caps a request, not the ranking: a cut-off past it is served all the same
    capped = backtest(_clusters(max_k=5), later, [27], np.random.default_rng(0)).new_readers
    assert capped.model == backtest(_clusters(), later, [27], np.random.default_rng(0)).new_readers.model
    with pytest.raises(DataError, match=r"history of 3 books is more than the service accepts \(serving.max_history 2"):
        backtest(_clusters(max_history=2), later, [10], np.random.default_rng(0))
    with pytest.raises(DataError, match=r"no read in the later log can be scored .*new readers: readers: 1, rows: 5.*"
                                        r"readers with too few reads: 1"):
        backtest(_clusters(), later, [10], np.random.default_rng(0), new_reader_history=5)
    with pytest.raises(DataError, match=r"Fix: drop --no-new-readers: the 1 reader the bundle does not know"):
        backtest(_clusters(), later, [10], np.random.default_rng(0), new_reader_history=None)


def test_the_command_prints_and_writes_the_new_readers_block(trained, tmp_path):
    data, _, directory, _ = trained
    rec = Recommender.from_bundle(directory, index_kind="exact")
    later = pl.concat([_later_log(data, rec, np.random.default_rng(5)),
                       _log([("newcomer", book, T0 + i) for i, book in enumerate(data.items.ids[:6])])])
    log = tmp_path / "later.parquet"
    later.rename({"user_id": "reader", "item_id": "book", "timestamp": "when"}).write_parquet(log)
    out = tmp_path / "backtest.json"
    args = ["backtest", "--bundle", str(directory), "--log", str(log), "--k", "5,10", "--out", str(out),
            "--config", str(_columns_config(tmp_path))]
    result = CliRunner().invoke(app, [*args, "--new-reader-history", "4"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "new readers: 1 served from their first 4 books, 2 later reads scored" in said
    assert "new readers: 7 rows by 2 readers; not scored: readers with too few reads 1" in said
    saved = json.loads(out.read_text())["new_readers"]
    assert saved["history"] == 4 and saved["counts"]["readers_scored"] == 1 and set(saved["model"]) == {
        "HR@5", "Recall@5", "NDCG@5", "HR@10", "Recall@10", "NDCG@10"}
    off = CliRunner().invoke(app, [*args, "--no-new-readers"])
    assert off.exit_code == 0 and "new readers" not in off.output and json.loads(out.read_text())["new_readers"] is None
    zero = CliRunner().invoke(app, [*args, "--new-reader-history", "0"])
    assert zero.exit_code == 2 and "--new-reader-history" in zero.output
    # the command's default is the library's
    assert inspect.signature(backtest_command).parameters["new_reader_history"].default.default == NEW_READER_HISTORY
