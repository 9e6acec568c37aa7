"""QA findings on `prepare` and `data fetch`: no silent run on the bundled sample, the offline fetch hint, and
the --output-dir help."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_YAML = REPO / "configs" / "default.yaml"


def test_prepare_refuses_a_named_default_path_that_is_missing(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the wrong folder: no data/ here
    outcome = cli("prepare", "--config", DEFAULT_YAML, "--set", "data.source.interactions=data/users.csv",
                  "--set", "data.cache_dir=null", "-o", tmp_path / "run")
    assert outcome.refused("data/users.csv", f"relative to the working directory {tmp_path}",
                           "the interactions file does not exist", "Fix: check data.source.interactions")
    assert "bundled sample" not in outcome.output


def test_prepare_refuses_a_default_path_named_by_an_inheriting_config(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"inherit: {DEFAULT_YAML}\ndata:\n  source:\n    interactions: data/users.csv\n  cache_dir: null\n")
    outcome = cli("prepare", "--config", mine, "-o", tmp_path / "run")
    assert outcome.refused("data/users.csv", "the interactions file does not exist")
    assert "bundled sample" not in outcome.output


def test_prepare_on_the_built_in_default_still_falls_back_to_the_sample(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    outcome = cli("prepare", "--config", DEFAULT_YAML, "--set", "data.cache_dir=null", "-o", tmp_path / "run")
    assert outcome.code == 0, outcome.output
    assert outcome.says("data/users.csv not found: using the bundled sample")


def test_prepare_help_says_where_the_prepared_arrays_go(cli) -> None:
    outcome = cli("prepare", "--help")
    assert outcome.code == 0
    assert not outcome.says("Where data_summary.json and the prepared data go")
    assert outcome.says("data_summary.json, config.yaml and run.json", "data.cache_dir", "./.booktower-cache",
                        "data.cache_dir=null they are not kept")


def test_prepare_says_where_the_arrays_went(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cached = cli("prepare", "--config", DEFAULT_YAML, "--set", f"data.cache_dir={tmp_path / 'cache'}",
                 "-o", tmp_path / "run")
    assert cached.code == 0, cached.output
    assert cached.says(f"prepared arrays cached in {tmp_path / 'cache'}")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.yaml", "data_summary.json", "run.json"]
    uncached = cli("prepare", "--config", DEFAULT_YAML, "--set", "data.cache_dir=null", "-o", tmp_path / "run2")
    assert uncached.code == 0 and uncached.says("prepared arrays not kept: data.cache_dir is null")
