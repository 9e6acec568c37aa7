"""The report renders from files alone and shows every section."""

from __future__ import annotations

import shutil

from booktower.evaluation.report import write_report


def test_report_renders_every_section(fake_run):
    path = write_report(fake_run)
    text = path.read_text()
    for heading in ("Headline", "Paired comparison", "Training curves", "Slices", "Popularity bias",
                    "Embedding diagnostics", "Recommendation audit", "Data summary", "Run", "Resolved config"):
        assert f"## {heading}" in text, heading
    assert "| itemknn |" in text and "**model**" in text
    for name in ("training", "metric_at_k", "slices", "ranks", "popularity"):
        png = fake_run / "plots" / f"{name}.png"
        assert png.exists() and png.read_bytes()[:4] == b"\x89PNG", name
        assert f"plots/{name}.png" in text


def test_report_survives_missing_optional_files(fake_run):
    for name in ("epochs.csv", "diagnostics.json", "audit.json", "per_user_test.parquet"):
        (fake_run / name).unlink()
    shutil.rmtree(fake_run / "baselines")
    text = write_report(fake_run).read_text()
    assert "no diagnostics.json" in text and "No baselines" in text


def test_report_says_where_the_numbers_come_from_and_repeats_data_warnings(fake_run):
    import json

    import polars as pl

    from booktower.utils.runinfo import cpu_model, write_run_info

    write_run_info(fake_run, config_yaml=(fake_run / "config.yaml").read_text(), seed=7, inputs=[],
                   timings={"fit": 1.5}, extra={"device": "cpu", "best_epoch": 2, "epochs_run": 3,
                                                "stopped_early": True, "training_step": "eager"})
    pl.read_csv(fake_run / "epochs.csv").with_columns(examples_per_s=pl.Series([1000.0, 1500.0, 1250.0])) \
        .write_csv(fake_run / "epochs.csv")
    summary = json.loads((fake_run / "data_summary.json").read_text())
    summary["warnings"] = ["3 of 9 held-out interactions have the same timestamp"]
    (fake_run / "data_summary.json").write_text(json.dumps(summary))
    text = write_report(fake_run).read_text()
    run = text.split("## Run\n")[1].split("\n## ")[0]
    for row in ("| seed | 7 |", "| epochs run (best) | 3 (2), stopped early |", "| training step | eager |",
                "| training interactions/s per epoch | 1,000-1,500 |", "fit 1.5"):
        assert row in run, row
    assert cpu_model() in run
    assert "- **warning**: 3 of 9 held-out interactions have the same timestamp" in text


def test_a_refit_runs_report_says_which_model_scored_the_test_and_the_audit_counts_its_readers(fake_run):
    from booktower.utils.runinfo import write_run_info

    plain = write_report(fake_run).read_text()
    assert "refit on train + validation" not in plain
    audit = plain.split("## Recommendation audit\n")[1].split("\n## ")[0]
    assert "test readers" in audit and "sampled readers" not in audit
    write_run_info(fake_run, config_yaml=(fake_run / "config.yaml").read_text(), seed=7, inputs=[], timings={},
                   extra={"best_epoch": 4, "refit_on_validation": True})
    headline = write_report(fake_run).read_text().split("## Headline")[1].split("\n## ")[0]
    assert "test numbers come from a model refit on train + validation for the 4 epochs" in headline


def test_a_run_trained_on_train_only_is_said_to_be_compared_with_baselines_fit_on_more(fake_run):
    from booktower.utils.runinfo import write_run_info

    write_run_info(fake_run, config_yaml=(fake_run / "config.yaml").read_text(), seed=7, inputs=[], timings={},
                   extra={"best_epoch": 4, "refit_on_validation": False})
    headline = " ".join(write_report(fake_run).read_text().split("## Headline")[1].split("\n## ")[0].split())
    assert "trained on train only, while the baselines' test numbers come from fits on train + validation" in headline
    shutil.rmtree(fake_run / "baselines")
    headline = " ".join(write_report(fake_run).read_text().split("## Headline")[1].split("\n## ")[0].split())
    assert "trained on train only" not in headline  # no baselines, nothing to caveat
