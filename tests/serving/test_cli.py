"""The serving commands through typer: index add, recommendation rows, refusal of a tampered bundle."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from booktower.cli.app import app
from booktower.cli.serve_cmds import recommend_rows
from booktower.serving.bundle import BundleError
from booktower.serving.recommend import recommend_from_bundle

runner = CliRunner()


def test_index_add_command(trained, tmp_path: Path) -> None:
    data, _, directory, _ = trained
    bundle = tmp_path / "b"
    shutil.copytree(directory, bundle)
    books = tmp_path / "new.csv"
    pl.DataFrame({"item_id": ["fresh"], "title": ["the poetry of spring"], "author": ["writer 1"],
                  "categories": ['["Books", "poetry"]']}).write_csv(books)
    result = runner.invoke(app, ["index", "add", "--bundle", str(bundle), "--books", str(books)])
    assert result.exit_code == 0, result.output
    assert "1 added" in result.output
    rows = recommend_from_bundle(bundle, history=[data.items.ids[0]], k=data.n_items)
    assert "fresh" in {r["item_id"] for r in rows}


def test_recommend_rows_for_user_and_history(trained) -> None:
    data, _, directory, _ = trained
    by_user = recommend_rows(directory, data.users.ids[0], None, 4)
    assert [r["rank"] for r in by_user] == [1, 2, 3, 4] and all(r["title"] for r in by_user)
    history = ",".join(data.items.ids[:2].to_list())
    by_history = recommend_rows(directory, None, history, 3)
    assert len(by_history) == 3 and not {r["item_id"] for r in by_history} & set(data.items.ids[:2].to_list())
    with pytest.raises(ValueError, match="exactly one"):
        recommend_from_bundle(directory, user="x", history=["y"])


def test_tampered_bundle_is_refused_before_serving(trained, tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(trained[2], bundle)
    (bundle / "user_vectors.safetensors").write_bytes(b"not the vectors")
    result = runner.invoke(app, ["serve", "--bundle", str(bundle), "--port", "1"])
    assert result.exit_code == 2 and "user_vectors.safetensors" in result.output.replace("\n", "")
    with pytest.raises(BundleError, match="user_vectors"):
        recommend_from_bundle(bundle, user="u1")


def test_asgi_factory_reads_the_bundle_from_the_environment(trained, monkeypatch) -> None:
    from fastapi.testclient import TestClient

    from booktower.serving.asgi import BUNDLE_ENV, app_from_env

    monkeypatch.setenv(BUNDLE_ENV, str(trained[2]))
    assert TestClient(app_from_env()).get("/health").json()["n_items"] == trained[0].n_items


def test_export_command_writes_a_verified_bundle_from_a_run(small_config, tmp_path: Path) -> None:
    import json

    from booktower.data.synth import SynthConfig, write_synthetic
    from booktower.serving.bundle import verify_bundle
    from booktower.training.pipeline import train_run

    data = tmp_path / "data"
    write_synthetic(data, SynthConfig(n_users=150, n_books=60, mean_history=12.0), seed=0)
    run = tmp_path / "run"
    train_run(small_config("training.epochs=1", f"data.source.interactions={data / 'users.csv'}",
                           f"data.source.items={data / 'books.csv'}", "data.cache_dir=null", "data.min_user_interactions=2",
                           "data.min_item_interactions=2"), run)
    bundle = tmp_path / "bundle"
    # the export reads the run's data again, from the files its config names
    result = runner.invoke(app, ["export", "--run", str(run), "-o", str(bundle), "--index", "exact"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    n_items = verify_bundle(bundle)["n_items"]
    assert summary["bundle"] == str(bundle) and summary["ann"]["n_items"] == n_items > 0
    missing = runner.invoke(app, ["export", "--run", str(tmp_path / "nowhere"), "-o", str(tmp_path / "b2")])
    assert missing.exit_code != 0 and "nowhere" in missing.output.replace("\n", "")


def test_unknown_reader_and_missing_books_file_name_the_way_out(trained, tmp_path: Path) -> None:
    unknown = runner.invoke(app, ["recommend", "--bundle", str(trained[2]), "--user", "nobody"])
    message = " ".join(unknown.output.split())
    assert unknown.exit_code == 2 and "reader 'nobody' is not in this bundle" in message and "--history" in message
    missing = runner.invoke(app, ["index", "add", "--bundle", str(trained[2]), "--books", str(tmp_path / "no.csv")])
    message = "".join(missing.output.split())
    assert missing.exit_code == 2 and "Fix:check--books" in message and "data.source" not in message


def test_a_printed_history_list_says_which_books_it_left_out(trained) -> None:
    data = trained[0]
    history = f"{data.items.ids[0]},PRUNED-1,{data.items.ids[1]}"
    result = runner.invoke(app, ["recommend", "--bundle", str(trained[2]), "--history", history, "--k", "3"])
    assert result.exit_code == 0, result.output
    assert "left out of the history, not in" in result.output and "PRUNED-1" in result.output


def test_index_add_names_empty_and_repeated_ids(trained, tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(trained[2], bundle)
    books = tmp_path / "new.csv"
    pl.DataFrame({"item_id": ["n1", "n1", None, "n2"], "title": ["a", "b", "c", "d"], "author": ["x"] * 4,
                  "categories": ['["Books"]', "", "", "Books > Poetry"]}).write_csv(books)
    result = runner.invoke(app, ["index", "add", "--bundle", str(bundle), "--books", str(books)])
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "1 empty, 1 repeated (e.g. ['n1'])" in message


def test_recommend_writes_every_readers_served_list_from_a_bundle(trained, tmp_path: Path) -> None:
    data, _, directory, _ = trained
    out = tmp_path / "lists.csv"
    result = runner.invoke(app, ["recommend", "--bundle", str(directory), "--all-users", "--k", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pl.read_csv(out, schema_overrides={"user_id": pl.String, "item_id": pl.String})
    assert frame["user_id"].n_unique() == data.n_users and frame.height == 4 * data.n_users
    first = data.users.ids[0]
    served = recommend_from_bundle(directory, user=first, k=4)  # the bundle's own (hnsw) index
    listed = frame.filter(pl.col("user_id") == first).sort("rank")["item_id"].to_list()
    assert len(set(listed) & {r["item_id"] for r in served}) >= 3, "the same books, up to the ANN index's misses"
    tag = "Books"
    result = runner.invoke(app, ["recommend", "--bundle", str(directory), "--user", first, "--category", tag,
                                 "--k", "3", "--out", str(tmp_path / "one.parquet")])
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(tmp_path / "one.parquet")["user_id"].unique().to_list() == [first]


@pytest.mark.parametrize(("args", "says"), [
    (["--all-users"], "add --out"),
    (["--all-users", "--user", "u1", "--out", "x.csv"], "not both"),
    (["--history", "b1", "--out", "x.csv"], "an anonymous --history prints"),
    (["--all-users", "--out", "x.csv", "--category", "no-such-tag", "--k", "3"], "no-such-tag"),
    (["--all-users", "--out", "x.csv", "--k", "41"], "larger than the bundle's catalogue (40 books)"),
])
def test_bundle_lists_refuse_what_they_cannot_write(trained, tmp_path: Path, args, says) -> None:
    args = [a if a != "x.csv" else str(tmp_path / "x.csv") for a in args]
    result = runner.invoke(app, ["recommend", "--bundle", str(trained[2]), *args])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert says in " ".join(result.output.split()), result.output
