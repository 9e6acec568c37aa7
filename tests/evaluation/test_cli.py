"""The evaluation commands on a fake trained run (the model side is replaced by a random factor scorer)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from booktower.cli.app import app
from booktower.config import load_config

from .conftest import factor_scorer

runner = CliRunner()


@pytest.fixture
def fake_model(monkeypatch, toy_data):
    """`load_trained` returns the toy data and a stand-in model; `score_fn_for` scores it with random factors."""
    from booktower.evaluation import run_eval
    from booktower.training import scoring

    _, _, score_fn = factor_scorer(toy_data)
    config = load_config(None, ["evaluation.bootstrap_samples=50"])
    monkeypatch.setattr(run_eval, "load_trained", lambda run_dir: (config, toy_data, object()))
    monkeypatch.setattr(scoring, "score_fn_for", lambda model, data, part: score_fn)
    return score_fn


def test_evaluate_rewrites_metrics_and_keeps_other_keys(fake_run, fake_model):
    path = fake_run / "metrics.json"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({"validation": {}, "test": {}, "note": "kept"}))
    result = runner.invoke(app, ["evaluate", "--run", str(fake_run)])
    assert result.exit_code == 0, result.output
    rewritten = json.loads(path.read_text())
    assert rewritten["note"] == "kept"
    assert rewritten["test"] == pytest.approx(saved["test"])
    assert (fake_run / "report.md").exists()


def test_recommend_lists_match_the_test_metrics(fake_run, fake_model, toy_data, tmp_path):
    out = tmp_path / "top.parquet"
    result = runner.invoke(app, ["recommend", "--run", str(fake_run), "--all-test-users", "--k", "50", "--out", str(out)])
    assert result.exit_code == 0, result.output
    top = pl.read_parquet(out)
    assert top.columns == ["user_id", "rank", "item_id", "score"]
    n_test = len(np.unique(toy_data.split.test.user))
    assert top["user_id"].n_unique() == n_test and top.height == n_test * 50
    test = pl.DataFrame({"user_id": toy_data.users.decode(toy_data.split.test.user),
                         "item_id": toy_data.items.decode(toy_data.split.test.item)})
    hits = top.filter(pl.col("rank") <= 10).join(test, on=["user_id", "item_id"]).height
    assert hits / n_test == pytest.approx(json.loads((fake_run / "metrics.json").read_text())["test"]["HR@10"])
    one = runner.invoke(app, ["recommend", "--run", str(fake_run), "--user", top["user_id"][0], "--k", "5",
                              "--out", str(tmp_path / "one.parquet")])
    assert one.exit_code == 0, one.output
    assert pl.read_parquet(tmp_path / "one.parquet")["item_id"].to_list() == top["item_id"][:5].to_list()


def test_compare_and_report_commands(fake_run: Path):
    result = runner.invoke(app, ["compare", str(fake_run), str(fake_run / "baselines" / "pop"), "--samples", "100"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output.strip().splitlines()[-1])
    assert payload["metric"] == "NDCG@10" and 0 <= payload["p_wilcoxon"] <= 1
    assert runner.invoke(app, ["compare", "--run", str(fake_run), "--run", str(fake_run)]).exit_code == 0
    assert runner.invoke(app, ["compare", str(fake_run)]).exit_code == 2
    result = runner.invoke(app, ["report", "--run", str(fake_run)])
    assert result.exit_code == 0 and (fake_run / "report.md").exists()
    assert runner.invoke(app, ["report", "--run", str(fake_run / "missing")]).exit_code == 2


def _refusal(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    return "".join(result.output.split())


def test_compare_with_the_baselines_folder_points_to_one_baseline(fake_run: Path):
    said = _refusal("compare", str(fake_run), str(fake_run / "baselines"))
    assert "holdsthebaselinesease,itemknn,pop" in said and f"Fix:pass{fake_run / 'baselines' / 'ease'}" in said
    assert "booktowerevaluate" not in said


def test_compare_with_a_prepare_only_folder_says_to_train(fake_run: Path, tmp_path: Path):
    prep = tmp_path / "prep"
    prep.mkdir()
    for name in ("config.yaml", "data_summary.json", "run.json"):  # what `booktower prepare` writes
        (prep / name).write_text("{}")
    said = _refusal("compare", str(fake_run), str(prep))
    assert "holdsprepareddataonly" in said and "booktowertrain--config" in said
    assert "booktowerevaluate" not in said


def test_compare_with_a_trained_run_without_tables_says_to_evaluate(fake_run: Path):
    (fake_run / "model").mkdir()
    (fake_run / "per_user_test.parquet").unlink()
    said = _refusal("compare", str(fake_run / "baselines" / "pop"), str(fake_run))
    assert f"booktowerevaluate--run{fake_run}" in said


@pytest.mark.parametrize("metric", ["popularity@10", "rank", "n_train"])
def test_compare_refuses_a_metric_where_higher_is_not_better_naming_the_allowed_ones(fake_run: Path, metric):
    """"users A better / worse" counts higher values as better: wrong for popularity@K (a lower one may be the
    better list) and meaningless for the table's other columns."""
    said = _refusal("compare", str(fake_run), str(fake_run / "baselines" / "pop"), "--metric", metric)
    assert f"'{metric}'isnotaranking-qualitymetric" in said
    assert "Fix:--metriconeofHR@10,Recall@10,Precision@10,NDCG@10,MRR@10,MAP@10,HR@20" in said


def test_compare_says_which_direction_its_user_counts_assume(fake_run: Path):
    result = runner.invoke(app, ["compare", str(fake_run), str(fake_run / "baselines" / "pop"), "--samples", "50",
                                 "--metric", "MRR@20"])
    assert result.exit_code == 0, result.output
    assert "users A better/worse (higher MRR@20 is better)" in " ".join(result.output.split())
