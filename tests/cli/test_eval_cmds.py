"""`baselines`, `compare`, `recommend --run`: values that cannot work are refused before the data is prepared
or a model scored, with the allowed range in the message."""

from __future__ import annotations

import importlib

import pytest


@pytest.fixture
def no_prepare(monkeypatch):
    """Preparing data fails the test: a wrong flag must be refused before that (it can take minutes)."""
    module = importlib.import_module("booktower.data.prepare")  # the module: the package exports the function

    def refuse(*args, **kwargs):
        raise AssertionError("prepare() ran before the flags were checked")

    monkeypatch.setattr(module, "prepare", refuse)


@pytest.mark.parametrize(("models", "says"), [
    ("", "names no baseline"),
    (" , ", "names no baseline"),
    ("pop,nope", "names unknown baselines ['nope']"),
])
def test_baselines_refuses_an_empty_or_unknown_model_list(cli, tmp_path, no_prepare, models, says) -> None:
    outcome = cli("baselines", "--models", models, "-o", tmp_path / "out")
    assert outcome.refused(f"--models {models!r} {says}", "pop, itemknn, ease, als, bpr")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("samples", ["0", "-5"])
def test_compare_refuses_fewer_than_one_bootstrap_sample(cli, tmp_path, samples) -> None:
    outcome = cli("compare", tmp_path, tmp_path, "--samples", samples)
    assert outcome.refused(f"--samples {samples} is out of range: it must be at least 1",
                           "pass --samples 1 or more")


def test_recommend_from_a_run_refuses_k_past_the_catalogue(cli, tmp_path, monkeypatch) -> None:
    from booktower.config import load_config
    from booktower.data.toy import random_prepared
    from booktower.evaluation import run_eval

    data = random_prepared(n_users=10, n_items=30, per_user=4)
    monkeypatch.setattr(run_eval, "load_trained", lambda run: (load_config(None), data, object()))
    outcome = cli("recommend", "--run", tmp_path, "--all-test-users", "--out", tmp_path / "top.parquet",
                  "--k", "99999999999999999999")
    n = data.n_items
    assert outcome.refused(f"--k 99999999999999999999 is larger than the run's catalogue ({n} books)",
                           f"pass --k {n} or less")
    assert not (tmp_path / "top.parquet").exists()



@pytest.fixture
def toy_run(monkeypatch):
    """`load_trained` gives toy data and a stand-in model that `score_fn_for` scores with random factors."""
    import numpy as np
    import torch

    from booktower.config import load_config
    from booktower.data.toy import random_prepared
    from booktower.evaluation import run_eval
    from booktower.training import scoring

    data = random_prepared(n_users=10, n_items=30, per_user=4)
    scores = torch.from_numpy(np.random.default_rng(0).standard_normal((data.n_users, data.n_items)))
    monkeypatch.setattr(run_eval, "load_trained", lambda run: (load_config(None), data, object()))
    monkeypatch.setattr(scoring, "score_fn_for", lambda model, data_, part: lambda users: scores[users])
    return data


@pytest.mark.parametrize("name", ["top.csv", "top.CSV", "top.parquet"])
def test_recommend_from_a_run_writes_the_format_its_extension_names(cli, tmp_path, toy_run, name) -> None:
    import polars as pl

    out = tmp_path / name
    outcome = cli("recommend", "--run", tmp_path, "--all-test-users", "--k", "5", "--out", out)
    assert outcome.code == 0, outcome.output
    frame = pl.read_csv(out) if name.lower().endswith(".csv") else pl.read_parquet(out)
    assert frame.columns == ["user_id", "rank", "item_id", "score"] and frame.height > 0


@pytest.mark.parametrize(("name", "says"), [("top.txt", "extension '.txt'"), ("top", "no extension")])
def test_recommend_from_a_run_refuses_an_extension_it_cannot_write(cli, tmp_path, monkeypatch, name, says) -> None:
    from booktower.evaluation import run_eval

    def never(run):
        raise AssertionError("the run was loaded before --out was checked")

    monkeypatch.setattr(run_eval, "load_trained", never)
    outcome = cli("recommend", "--run", tmp_path, "--all-test-users", "--out", tmp_path / name)
    stem = tmp_path / name.split(".")[0]
    assert outcome.refused(f"--out {tmp_path / name} has {says}", f"name the file {stem.name}.csv (CSV) or")
    assert not (tmp_path / name).exists()


def test_recommend_help_says_the_extension_chooses_the_format(cli) -> None:
    assert cli("recommend", "--help").says(".csv or .parquet")
