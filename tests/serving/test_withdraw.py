"""`index withdraw` / `index restore`: withdrawn books leave every answer and nothing else changes."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from booktower.cli.app import app
from booktower.config.serving import IndexConfig
from booktower.data.errors import DataError
from booktower.serving.add_books import add_books
from booktower.serving.api import create_app
from booktower.serving.batch import batch_lists
from booktower.serving.bundle import BundleError, load_bundle, verify_bundle
from booktower.serving.export import export_parts, parts_from_model
from booktower.serving.service import Recommender
from booktower.serving.withdraw import change_withdrawn, read_book_ids


@pytest.fixture
def bundle(trained, tmp_path: Path) -> Path:
    return shutil.copytree(trained[2], tmp_path / "b")


def _ids(rows) -> list[str]:
    return [r.item_id for r in rows]


def test_withdrawn_books_leave_every_answer_and_the_rest_keep_their_order(trained, bundle: Path) -> None:
    data = trained[0]
    user = data.users.ids[0]
    before = Recommender.from_bundle(bundle, index_kind="exact")
    full = _ids(before.for_user(user, k=10))
    gone = full[:3]
    change = change_withdrawn(bundle, gone, withdraw=True)
    assert (change.changed, change.unchanged, change.withdrawn_now) == (3, 0, 3)
    after = Recommender.from_bundle(bundle, index_kind="exact")
    assert _ids(after.for_user(user, k=7)) == full[3:], "the next books move up, in the same order"
    anonymous = _ids(after.for_history([data.items.ids[5]], k=after.n_items))
    assert not set(gone) & set(anonymous) and len(anonymous) == after.n_items - 1 - 3
    similar = _ids(after.similar(gone[0], k=after.n_items))  # a withdrawn book may still be asked about
    assert not set(gone) & set(similar) and len(similar) == after.n_items - 3
    np.testing.assert_array_equal(load_bundle(bundle)[0].user_vectors, load_bundle(trained[2])[0].user_vectors)
    assert after.info()["n_withdrawn"] == 3 and verify_bundle(bundle)["withdrawn_books"] == 3


def test_the_hnsw_index_and_batch_lists_skip_withdrawn_books_too(trained, bundle: Path) -> None:
    data = trained[0]
    withdrawn = list(data.items.ids[:30])  # most of the catalogue: the filtered search must dig past them
    change_withdrawn(bundle, withdrawn, withdraw=True)
    rec = Recommender.from_bundle(bundle)
    assert rec.config.index.kind == "hnsw"
    for user in data.users.ids[:10]:
        got = _ids(rec.for_user(user, k=5))
        assert got and not set(got) & set(withdrawn)
    lists = batch_lists(rec, np.arange(len(data.users)), k=10)
    assert lists.height > 0 and not set(lists["item_id"].to_list()) & set(withdrawn)


def test_restore_puts_books_back_and_unknown_ids_are_refused_unless_ignored(trained, bundle: Path) -> None:
    data = trained[0]
    books = list(data.items.ids[:4])
    change_withdrawn(bundle, books, withdraw=True)
    with pytest.raises(DataError, match=r"1 of the 3 books named are not in the bundle .*\['NOPE'\]; nothing was "
                                        r"changed.*--ignore-unknown"):
        change_withdrawn(bundle, [books[0], "NOPE", books[1]], withdraw=False)
    assert load_bundle(bundle)[0].withdrawn.sum() == 4
    change = change_withdrawn(bundle, [books[0], "NOPE"], withdraw=False, ignore_unknown=True)
    assert (change.changed, change.unknown, change.withdrawn_now) == (1, ["NOPE"], 3)
    change = change_withdrawn(bundle, [books[0]], withdraw=False)
    assert (change.changed, change.unchanged) == (0, 1), "already restored: counted, the bundle not rewritten"
    assert change_withdrawn(bundle, [], withdraw=False, everything=True).withdrawn_now == 0
    assert load_bundle(bundle)[0].withdrawn.sum() == 0


def test_added_books_can_be_withdrawn_and_adding_keeps_earlier_withdrawals(trained, bundle: Path, tmp_path) -> None:
    data = trained[0]
    change_withdrawn(bundle, [data.items.ids[0]], withdraw=True)
    books = tmp_path / "new.csv"
    pl.DataFrame({"item_id": ["NEW1"], "title": ["a new book"], "author": ["someone"],
                  "categories": ["Books"]}).write_csv(books)
    add_books(bundle, books)
    assert load_bundle(bundle)[0].withdrawn.tolist() == [True] + [False] * data.n_items
    change_withdrawn(bundle, ["NEW1"], withdraw=True)
    rec = Recommender.from_bundle(bundle, index_kind="exact")
    assert not {"NEW1", data.items.ids[0]} & set(_ids(rec.for_history([data.items.ids[3]], k=rec.n_items)))


def test_a_re_export_keeps_the_withdrawals_of_the_books_it_still_holds(trained, bundle: Path, caplog) -> None:
    data, model = trained[0], trained[1]
    change_withdrawn(bundle, list(data.items.ids[:2]), withdraw=True)
    export_parts(parts_from_model(data, model), bundle, IndexConfig(kind="exact"), np.random.default_rng(0))
    assert load_bundle(bundle)[0].withdrawn[:3].tolist() == [True, True, False]
    assert "keeps 2 of those withdrawn" in caplog.text and "index restore" in caplog.text


def _new_books(path: Path, ids: list[str]) -> Path:
    pl.DataFrame({"item_id": ids, "title": [f"new book {i}" for i in ids], "author": ["someone"] * len(ids),
                  "categories": ["Books"] * len(ids)}).write_csv(path)
    return path


def test_added_books_withdrawn_before_a_re_export_come_back_withdrawn(trained, bundle: Path, tmp_path, caplog) -> None:
    """The re-export drops books added after training; their withdrawals must survive until they are added
    again (out-of-stock books would otherwise be recommended again)."""
    data, model = trained[0], trained[1]
    books = _new_books(tmp_path / "new.csv", ["NEW1", "NEW2", "NEW3"])
    add_books(bundle, books)
    change_withdrawn(bundle, ["NEW1", "NEW3", data.items.ids[0]], withdraw=True)
    export_parts(parts_from_model(data, model), bundle, IndexConfig(kind="exact"), np.random.default_rng(0))
    assert "2 are not in it" in caplog.text and "'NEW1'" in caplog.text
    parts, manifest = load_bundle(bundle)
    assert manifest["pending_withdrawals"] == ["NEW1", "NEW3"] and parts.withdrawn.sum() == 1

    change = change_withdrawn(bundle, ["NEW3"], withdraw=True)  # remembered: already withdrawn, not unknown
    assert (change.changed, change.unchanged, change.unknown, change.pending) == (0, 1, [], 2)
    add_books(bundle, _new_books(tmp_path / "first.csv", ["NEW1", "NEW2"]))
    assert "1 of the new books had been withdrawn before the bundle was re-exported" in caplog.text
    parts, manifest = load_bundle(bundle)
    assert parts.withdrawn[[parts.items.index(i) for i in ("NEW1", "NEW2")]].tolist() == [True, False]
    assert manifest["pending_withdrawals"] == ["NEW3"]
    rec = Recommender.from_bundle(bundle, index_kind="exact")
    answered = set(_ids(rec.for_history([data.items.ids[3]], k=rec.n_items)))
    assert "NEW2" in answered and "NEW1" not in answered

    change = change_withdrawn(bundle, ["NEW3"], withdraw=False)  # a restore forgets it: it arrives recommendable
    assert (change.changed, change.pending) == (1, 0)
    add_books(bundle, _new_books(tmp_path / "second.csv", ["NEW3"]))
    parts, manifest = load_bundle(bundle)
    assert not parts.withdrawn[parts.items.index("NEW3")] and manifest["pending_withdrawals"] == []
    verify_bundle(bundle)


def test_restore_all_forgets_the_remembered_withdrawals_too(trained, bundle: Path, tmp_path) -> None:
    data, model = trained[0], trained[1]
    add_books(bundle, _new_books(tmp_path / "new.csv", ["NEW1"]))
    change_withdrawn(bundle, ["NEW1"], withdraw=True)
    export_parts(parts_from_model(data, model), bundle, IndexConfig(kind="exact"), np.random.default_rng(0))
    result = CliRunner().invoke(app, ["index", "restore", "--bundle", str(bundle), "--all"])
    assert result.exit_code == 0 and "1 book restored" in " ".join(result.output.split()), result.output
    assert load_bundle(bundle)[1]["pending_withdrawals"] == []


def test_an_edited_withdrawn_count_is_a_damaged_bundle(bundle: Path, trained) -> None:
    change_withdrawn(bundle, [trained[0].items.ids[0]], withdraw=True)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["withdrawn_books"] = 0  # someone "un-withdrew" by hand: the flags and the count disagree
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="withdraws 1 books and manifest.json says 0"):
        load_bundle(bundle)


def test_the_server_follows_a_withdrawal(trained, bundle: Path) -> None:
    from booktower.serving.live import LiveRecommender

    data = trained[0]
    client = TestClient(create_app(LiveRecommender(bundle, check_every_s=0.0, background=False)))
    user = data.users.ids[0]
    top = client.get(f"/recommendations/{user}", params={"k": 1}).json()["items"][0]["item_id"]
    change_withdrawn(bundle, [top], withdraw=True)
    assert client.get("/health").json()["n_withdrawn"] == 1
    assert top not in [i["item_id"] for i in client.get(f"/recommendations/{user}", params={"k": 5}).json()["items"]]


def test_the_cli_reads_ids_from_a_file_and_options(trained, bundle: Path, tmp_path: Path, caplog) -> None:
    data = trained[0]
    stock = tmp_path / "out_of_stock.csv"
    pl.DataFrame({"item_id": [data.items.ids[1], " ", data.items.ids[2], data.items.ids[1]]}).write_csv(stock)
    with caplog.at_level(logging.WARNING, logger="booktower"):
        assert read_book_ids(stock) == [data.items.ids[1], data.items.ids[2]], "blanks and repeats dropped"
    assert "1 row has no id and was skipped" in caplog.text
    result = CliRunner().invoke(app, ["index", "withdraw", "--bundle", str(bundle), "--books", str(stock),
                                      "--id", data.items.ids[3]])
    assert result.exit_code == 0, result.output
    assert "3 books withdrawn; 3 of 40 books withdrawn now" in " ".join(result.output.split())
    refused = CliRunner().invoke(app, ["index", "withdraw", "--bundle", str(bundle), "--id", "NOPE"])
    assert refused.exit_code == 2 and "not in the bundle" in refused.output
    nothing = CliRunner().invoke(app, ["index", "restore", "--bundle", str(bundle)])
    assert nothing.exit_code == 2 and "--books FILE" in nothing.output and "--all" in nothing.output
    result = CliRunner().invoke(app, ["index", "restore", "--bundle", str(bundle), "--all"])
    assert result.exit_code == 0 and "3 books restored; 0 of 40" in " ".join(result.output.split())


def test_the_cli_guards_against_empty_ids_a_wrong_folder_and_withdrawing_everything(trained, bundle: Path,
                                                                                     tmp_path: Path) -> None:
    data = trained[0]
    empty = CliRunner().invoke(app, ["index", "withdraw", "--bundle", str(bundle), "--id", ""])
    assert empty.exit_code == 2 and "names no book" in empty.output
    not_a_bundle = tmp_path / "run"
    not_a_bundle.mkdir()
    refused = CliRunner().invoke(app, ["index", "withdraw", "--bundle", str(not_a_bundle), "--id", "x"])
    assert refused.exit_code == 2 and not (tmp_path / ".run.lock").exists(), "no lock file beside a non-bundle"
    never = CliRunner().invoke(app, ["index", "restore", "--bundle", str(bundle), "--id", data.items.ids[0]])
    assert "0 books restored, 1 not withdrawn" in " ".join(never.output.split())
    ids = tmp_path / "all.csv"
    pl.DataFrame({"item_id": data.items.ids}).write_csv(ids)
    everything = CliRunner().invoke(app, ["index", "withdraw", "--bundle", str(bundle), "--books", str(ids)])
    assert "every book is withdrawn" in " ".join(everything.output.split())
    lists = CliRunner().invoke(app, ["recommend", "--bundle", str(bundle), "--all-users", "--k", "10", "--out",
                                     str(tmp_path / "none.parquet")])
    said = " ".join(lists.output.split())
    assert "(0 rows: 60 readers x up to top-10)" in said and "no reader got a book" in said


def test_ids_written_as_floats_get_a_hint(trained, bundle: Path) -> None:
    data = trained[0]
    # a spreadsheet or a float Parquet column writes an id with a `.0` tail
    with pytest.raises(DataError, match=r"match a book when ignoring a trailing \.0 .*write them as the bundle does"):
        change_withdrawn(bundle, [f"{data.items.ids[0]}.0"], withdraw=True)


def _inodes(bundle: Path) -> dict[str, int]:
    return {p.relative_to(bundle).as_posix(): p.stat().st_ino for p in bundle.rglob("*") if p.is_file()}


def test_a_withdrawal_rewrites_only_the_books_table(trained, bundle: Path) -> None:
    before, manifest = _inodes(bundle), json.loads((bundle / "manifest.json").read_text())
    change_withdrawn(bundle, [trained[0].items.ids[0]], withdraw=True)
    after, rewritten = _inodes(bundle), json.loads((bundle / "manifest.json").read_text())
    new = {name for name in before if name in after and after[name] != before[name]}
    assert new == {"items.parquet", "manifest.json"}, "the other files are the same files, linked"
    assert {n: e for n, e in rewritten["files"].items() if n != "items.parquet"} == {
        n: e for n, e in manifest["files"].items() if n != "items.parquet"}
    assert rewritten["files"]["items.parquet"] != manifest["files"]["items.parquet"]
    assert rewritten["withdrawn_books"] == 1 and rewritten["n_items"] == manifest["n_items"]
    assert verify_bundle(bundle)["withdrawn_books"] == 1


def test_where_files_cannot_be_linked_they_are_copied(trained, bundle: Path, monkeypatch) -> None:
    def refuse(*_args, **_kwargs):
        raise OSError("this file system has no hard links")

    monkeypatch.setattr("booktower.serving.bundle.os.link", refuse)
    change_withdrawn(bundle, [trained[0].items.ids[0]], withdraw=True)
    assert verify_bundle(bundle)["withdrawn_books"] == 1
    assert Recommender.from_bundle(bundle, index_kind="exact").info()["n_withdrawn"] == 1


def test_a_withdrawal_from_a_damaged_bundle_is_refused(trained, bundle: Path) -> None:
    """Publishing it would give a running server a version it cannot load, while the command said it worked."""
    vectors = bundle / "user_vectors.safetensors"
    data = bytearray(vectors.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    vectors.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="user_vectors.safetensors does not match its sha256"):
        change_withdrawn(bundle, [trained[0].items.ids[0]], withdraw=True)
    assert json.loads((bundle / "manifest.json").read_text())["withdrawn_books"] == 0


def _renames_fail(monkeypatch, *prefixes: str) -> None:
    """Renaming a folder whose name starts with one of `prefixes` fails, as on a full or failing disk."""
    rename = Path.rename

    def failing(self: Path, target):
        if self.name.startswith(prefixes):
            raise OSError("disk full")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", failing)


def test_a_failed_swap_leaves_the_previous_version_in_place(trained, bundle: Path, monkeypatch) -> None:
    _renames_fail(monkeypatch, f".{bundle.name}.new.")
    with pytest.raises(OSError, match="disk full"):
        change_withdrawn(bundle, [trained[0].items.ids[0]], withdraw=True)
    monkeypatch.undo()
    assert verify_bundle(bundle)["withdrawn_books"] == 0
    assert [p.name for p in bundle.parent.iterdir() if p.name.startswith(f".{bundle.name}.")] == [f".{bundle.name}.lock"]


def test_a_damaged_books_table_is_refused_before_anything_changes(trained, bundle: Path) -> None:
    items = bundle / "items.parquet"
    items.write_bytes(items.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(BundleError, match="items.parquet does not match its sha256"):
        change_withdrawn(bundle, [trained[0].items.ids[0]], withdraw=True)


def test_when_the_previous_version_cannot_be_put_back_it_is_kept_beside(trained, bundle: Path, monkeypatch) -> None:
    _renames_fail(monkeypatch, f".{bundle.name}.new.", f".{bundle.name}.old.")
    with pytest.raises(OSError, match="disk full"):
        change_withdrawn(bundle, [trained[0].items.ids[0]], withdraw=True)
    monkeypatch.undo()
    kept = [p for p in bundle.parent.iterdir() if p.name.startswith(f".{bundle.name}.old.")]
    assert not bundle.exists() and len(kept) == 1 and verify_bundle(kept[0])["withdrawn_books"] == 0
