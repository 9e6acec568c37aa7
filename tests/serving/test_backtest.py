"""`booktower backtest`: a bundle's served lists and its most-read list scored on later reads, against a naive
recomputation through the service's own answers; what cannot be scored is counted, not scored."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from booktower.cli.app import app
from booktower.config.data import DataConfig
from booktower.data.errors import DataError
from booktower.serving.backtest import backtest, read_later_log
from booktower.serving.service import Recommender

T0 = 1_700_000_000  # after the toy data's reads


def _naive(lists: dict[str, list[str]], targets: dict[str, set[str]], k: int) -> dict[str, float]:
    hr, rec, nd = [], [], []
    for reader, wanted in targets.items():
        top = lists[reader][:k]
        hits = [book in wanted for book in top]
        hr.append(float(any(hits)))
        rec.append(sum(hits) / len(wanted))
        dcg = sum(1 / math.log2(rank + 2) for rank, hit in enumerate(hits) if hit)
        nd.append(dcg / sum(1 / math.log2(rank + 2) for rank in range(min(k, len(wanted)))))
    return {f"HR@{k}": np.mean(hr), f"Recall@{k}": np.mean(rec), f"NDCG@{k}": np.mean(nd)}


def _later_log(data, rec: Recommender, rng: np.random.Generator) -> pl.DataFrame:
    """Each of 20 known readers reads 1-4 random books, some of them read before; plus a stranger and a book
    the bundle lacks."""
    rows = []
    for reader in data.users.ids.to_list()[:20]:
        for book in rng.choice(data.items.ids.to_list(), size=int(rng.integers(1, 5)), replace=False):
            rows.append((reader, book, T0 + len(rows)))
        rows.append((reader, data.items.ids[int(rec.read_by(reader)[0])], T0 + len(rows)))  # a re-read
    rows += [("a stranger", data.items.ids[0], T0), (data.users.ids[0], "a book nobody stocks", T0)]
    return pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64},
                        orient="row")


def test_the_scores_are_the_served_and_most_read_lists_scored_by_hand(trained):
    data, _, directory, _ = trained
    rec = Recommender.from_bundle(directory, index_kind="exact")
    later = _later_log(data, rec, np.random.default_rng(3))
    result = backtest(rec, later, [5, 10], np.random.default_rng(0))
    targets: dict[str, set[str]] = {}
    for reader, book in later.select("user_id", "item_id").iter_rows():
        if reader in rec.parts.users and book in rec.parts.items:
            read = set(rec.parts.items.decode(rec.read_by(reader)))
            if book not in read:
                targets.setdefault(reader, set()).add(book)
    served = {r: [x.item_id for x in rec.for_user(r, k=10)] for r in targets}
    popular = {r: [x.item_id for x in rec.popular(k=10, exclude=rec.parts.items.decode(rec.read_by(r)))]
               for r in targets}
    for k in (5, 10):
        for name, value in _naive(served, targets, k).items():
            assert result.model[name] == pytest.approx(value, abs=1e-12)
        for name, value in _naive(popular, targets, k).items():
            assert result.popular[name] == pytest.approx(value, abs=1e-12)
        lead, low, high = result.lead[f"NDCG@{k}"]
        assert lead == pytest.approx(result.model[f"NDCG@{k}"] - result.popular[f"NDCG@{k}"]) and low <= lead <= high
    assert result.counts["readers_scored"] == len(targets) and result.counts["targets"] == sum(map(len, targets.values()))
    assert result.counts["readers_unknown_to_bundle"] == 1 and result.counts["rows_of_unknown_readers"] == 1
    assert result.counts["rows_of_books_not_in_bundle"] == 1 and result.counts["pairs_read_before_export"] >= 20


def test_withdrawn_books_are_counted_not_scored(trained, tmp_path):
    from booktower.serving.withdraw import change_withdrawn

    data, _, directory, _ = trained
    bundle = tmp_path / "b"
    shutil.copytree(directory, bundle)
    reader = data.users.ids[0]
    rec = Recommender.from_bundle(bundle, index_kind="exact")
    top = rec.for_user(reader, k=2)
    change_withdrawn(bundle, [top[0].item_id], withdraw=True)
    rec = Recommender.from_bundle(bundle, index_kind="exact")
    later = pl.DataFrame({"user_id": [reader, reader], "item_id": [top[0].item_id, top[1].item_id],
                          "timestamp": [T0, T0]})
    result = backtest(rec, later, [1], np.random.default_rng(0))
    assert result.counts["pairs_of_withdrawn_books"] == 1 and result.counts["targets"] == 1
    assert result.model["HR@1"] == 1.0  # the second book moved up to first once the first left the lists


def test_a_log_with_nothing_to_score_says_what_it_held(trained):
    data, _, directory, _ = trained
    rec = Recommender.from_bundle(directory, index_kind="exact")
    reader = data.users.ids[0]
    read = rec.parts.items.decode(rec.read_by(reader))
    later = pl.DataFrame({"user_id": [reader] * len(read), "item_id": list(read), "timestamp": [T0] * len(read)})
    with pytest.raises(DataError, match=rf"no read in the later log can be scored .*pairs read before export: {len(read)}"):
        backtest(rec, later, [10], np.random.default_rng(0))


def _columns_config(folder: Path) -> Path:
    config = folder / "config.yaml"
    config.write_text("data:\n  columns: {user: reader, item: book, timestamp: when, timestamp_unit: s}\n")
    return config


def test_the_log_is_read_with_the_run_columns_and_the_window_applies(tmp_path):
    log = tmp_path / "later.csv"
    log.write_text("reader,book,when\nu1,b1,1700000000\nu1,b2,1700100000\nu2,b3,not a time\nu2,b4,1700200000\n")
    config = DataConfig.model_validate({"columns": {"user": "reader", "item": "book", "timestamp": "when",
                                                    "timestamp_unit": "s"}})
    from datetime import UTC, datetime

    frame, dropped, window = read_later_log(config, log, since=datetime.fromtimestamp(1_700_050_000, UTC),
                                            until=datetime.fromtimestamp(1_700_150_000, UTC))
    assert frame["item_id"].to_list() == ["b2"]
    assert dropped == {"unparsable_timestamp": 1, "outside_window": 2} and window["since"].startswith("2023-11-15")
    with pytest.raises(DataError, match="is not before --until"):
        read_later_log(config, log, since=datetime.fromtimestamp(2, UTC), until=datetime.fromtimestamp(1, UTC))


def test_the_command_prints_the_table_and_writes_json(trained, tmp_path):
    data, _, directory, _ = trained
    rec = Recommender.from_bundle(directory, index_kind="exact")
    later = _later_log(data, rec, np.random.default_rng(5)).rename({"user_id": "reader", "item_id": "book",
                                                                      "timestamp": "when"})
    log = tmp_path / "later.parquet"
    later.write_parquet(log)
    out = tmp_path / "backtest.json"
    args = ["backtest", "--bundle", str(directory), "--log", str(log), "--k", "5,10", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--config", str(_columns_config(tmp_path))])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "served lists" in said and "most read" in said and "not scored:" in said and "readers unknown to bundle 1" in said
    saved = json.loads(out.read_text())
    assert saved["ks"] == [5, 10] and set(saved["model"]) == {"HR@5", "Recall@5", "NDCG@5", "HR@10", "Recall@10", "NDCG@10"}
    assert saved["lead_over_popular"]["NDCG@10"]["ci_low"] <= saved["lead_over_popular"]["NDCG@10"]["mean"]
    no_config = CliRunner().invoke(app, args)
    assert no_config.exit_code == 2 and "pass --config" in " ".join(no_config.output.split())
    bad_k = CliRunner().invoke(app, [*args, "--k", "ten"])
    assert bad_k.exit_code == 2 and "--k 'ten'" in bad_k.output


def test_ids_written_another_way_get_a_hint_and_the_ci_of_a_metric_does_not_depend_on_the_others(trained):
    data, _, directory, _ = trained
    rec = Recommender.from_bundle(directory, index_kind="exact")
    later = _later_log(data, rec, np.random.default_rng(7))
    shouted = later.with_columns(pl.col("item_id").str.to_uppercase())
    with pytest.raises(DataError, match=r"rows name a book the bundle holds once ignoring letter case \(log 'B"):
        backtest(rec, shouted, [10], np.random.default_rng(0))
    one = backtest(rec, later, [10], np.random.default_rng(0))
    several = backtest(rec, later, [5, 10, 20], np.random.default_rng(0))
    assert one.lead["NDCG@10"] == several.lead["NDCG@10"] and one.lead["HR@10"] == several.lead["HR@10"]


def test_a_window_that_holds_no_read_says_where_the_reads_are_and_a_folder_is_no_log(tmp_path):
    from datetime import UTC, datetime

    log = tmp_path / "later.csv"
    log.write_text("reader,book,when\nu1,b1,1700000000\nu1,b2,1700100000\n")
    config = DataConfig.model_validate({"columns": {"user": "reader", "item": "book", "timestamp": "when",
                                                    "timestamp_unit": "s"}})
    with pytest.raises(DataError, match=r"all 2 reads fall outside the window .* from 2023-11-14T22:13:20\+00:00 to"):
        read_later_log(config, log, since=datetime(2030, 1, 1, tzinfo=UTC))
    with pytest.raises(DataError, match="--log names a folder"):
        read_later_log(config, tmp_path)


def test_without_config_the_runs_own_config_is_read_and_set_overrides_it(trained, tmp_path):
    data, _, directory, _ = trained
    bundle = shutil.copytree(directory, tmp_path / "b")
    run = tmp_path / "run"
    run.mkdir()
    _columns_config(run)
    (run / "run.json").write_text("{}")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["source"] = {"run": str(run), "run_json_sha256": "0" * 64}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    rec = Recommender.from_bundle(bundle, index_kind="exact")
    later = _later_log(data, rec, np.random.default_rng(5)).rename({"user_id": "reader", "item_id": "book",
                                                                      "timestamp": "when"})
    later.write_csv(tmp_path / "later.csv")
    args = ["backtest", "--bundle", str(bundle), "--log", str(tmp_path / "later.csv")]
    result = CliRunner().invoke(app, [*args, "--set", "data.strict=false"])
    said = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "served lists" in said and "was written again since the bundle was exported" in said
    ms = CliRunner().invoke(app, [*args, "--set", "data.columns.timestamp_unit=ms", "--since", "2023-11-15"])
    assert ms.exit_code == 2 and "read as ms" in " ".join(ms.output.split())  # the override reached the run's config
