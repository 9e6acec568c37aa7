"""`evaluate` refuses to score a run on data other than it was trained on (changed input files or split), unless
told to, and then metrics.json says so."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from booktower.cli.app import app
from booktower.config import load_config
from booktower.data.toy import random_prepared
from booktower.utils.atomic import atomic_write_json
from booktower.utils.runinfo import file_fingerprint

from .conftest import factor_scorer

runner = CliRunner()


def evaluate(run: Path, *flags: str):
    result = runner.invoke(app, ["evaluate", "--run", str(run), "--no-report", *flags])
    return result.exit_code, "".join(result.output.split())


def serve_data(monkeypatch, data) -> None:
    """`load_trained` hands back `data` (as if config.yaml prepared it) and a random factor model."""
    from booktower.evaluation import run_eval
    from booktower.training import scoring

    _, _, score_fn = factor_scorer(data)
    config = load_config(None, ["evaluation.bootstrap_samples=50", "evaluation.audit_users=2"])
    monkeypatch.setattr(run_eval, "load_trained", lambda run_dir: (config, data, object()))
    monkeypatch.setattr(scoring, "score_fn_for", lambda model, data_, part: score_fn)


def test_a_changed_split_is_refused_and_let_through_only_on_request(fake_run, toy_data, monkeypatch):
    trained = json.loads((fake_run / "split.json").read_text())
    before = (fake_run / "metrics.json").read_bytes()
    serve_data(monkeypatch, random_prepared(n_users=120, n_items=60, per_user=10, seed=3))  # same ids, other split
    code, said = evaluate(fake_run)
    assert code == 2 and "Traceback" not in said
    assert "notthedatathisrunwastrainedandselectedon" in said and "thesplitdiffersfromtheoneinsplit.json" in said
    assert "--allow-changed-data" in said and "booktowertrain" in said
    assert (fake_run / "metrics.json").read_bytes() == before

    assert evaluate(fake_run, "--allow-changed-data")[0] == 0
    note = json.loads((fake_run / "metrics.json").read_text())["data_changed"]
    assert note["trained_split"] == trained and note["scored_split"]["sha256"] != trained["sha256"]
    assert evaluate(fake_run)[0] == 2  # split.json was rewritten, but the trained split is still known
    assert runner.invoke(app, ["report", "--run", str(fake_run)]).exit_code == 0
    assert "**Scored on changed data** (--allow-changed-data): the split differs" in (fake_run / "report.md").read_text()

    serve_data(monkeypatch, toy_data)  # the data the run was trained on again: scored, and the note goes
    assert evaluate(fake_run)[0] == 0
    assert "data_changed" not in json.loads((fake_run / "metrics.json").read_text())
    assert json.loads((fake_run / "split.json").read_text()) == trained


def test_a_changed_input_file_is_refused_before_the_data_is_prepared(fake_run, tmp_path, monkeypatch):
    books = tmp_path / "books.csv"
    books.write_text("item_id,title\nb1,one\n")
    atomic_write_json(fake_run / "run.json", {"inputs": file_fingerprint([books])})
    books.write_text("item_id,title\nb1,another\n")
    from booktower.evaluation import run_eval

    def never(run_dir):
        raise AssertionError("the data was prepared before the inputs were checked")

    monkeypatch.setattr(run_eval, "load_trained", never)
    code, said = evaluate(fake_run)
    assert code == 2 and f"input{books}changed" in said and "run.json" in said


def test_the_qa_case_a_trained_run_whose_last_two_timestamps_swapped(tmp_path):
    """The real thing: train on CSV files, swap some readers' last two timestamps (same ids, another split)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
    from test_resume import write_dataset

    from booktower.training.pipeline import train_run

    config = write_dataset(tmp_path / "data", 12)
    train_run(load_config(config, ["training.epochs=1"]), tmp_path / "run")
    assert evaluate(tmp_path / "run")[0] == 0  # unchanged data: scored as before
    path = tmp_path / "data" / "interactions.csv"
    rows = pl.read_csv(path).sort("order")
    timestamps = rows["timestamp"].to_list()
    for user in ("u0", "u1", "u2"):  # each reader's validation and test books change places
        a, b = [i for i, u in enumerate(rows["user_id"].to_list()) if u == user][-2:]
        timestamps[a], timestamps[b] = timestamps[b], timestamps[a]
    rows.with_columns(timestamp=pl.Series(timestamps)).write_csv(path)
    code, said = evaluate(tmp_path / "run")
    assert code == 2 and f"input{path}changed" in said
    assert evaluate(tmp_path / "run", "--allow-changed-data")[0] == 0
    changes = json.loads((tmp_path / "run" / "metrics.json").read_text())["data_changed"]["changes"]
    assert any("split" in c for c in changes) and any(str(path) in c for c in changes)


def test_data_that_renumbers_the_books_is_refused_even_when_allowed_and_says_why(tmp_path):
    """Timestamps that change which book appears first renumber the books (first appearance in time): the model's
    rows cannot follow, so even --allow-changed-data stops, saying it is the same ids in another order."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "training"))
    from test_resume import write_dataset

    from booktower.training.pipeline import train_run

    config = write_dataset(tmp_path / "data", 12)
    train_run(load_config(config, ["training.epochs=1"]), tmp_path / "run")
    path = tmp_path / "data" / "interactions.csv"
    rows = pl.read_csv(path)
    rows.with_columns(timestamp=rows["timestamp"].max() + 1 - rows["timestamp"]).write_csv(path)  # time reversed
    code, said = evaluate(tmp_path / "run", "--allow-changed-data")
    assert code == 2 and "thesame12idsinanotherorder" in said


def test_a_changed_split_lists_now_then_at_training(fake_run):
    from booktower.evaluation.data_check import split_change

    trained = json.loads((fake_run / "split.json").read_text())["n_users"]
    (changed,) = split_change(fake_run, random_prepared(n_users=100, n_items=60, per_user=10, seed=9))
    assert trained != 100
    assert changed.startswith(f"the split differs from the one in split.json (now vs at training: n_users 100 vs "
                              f"{trained}, ")
