"""The report renders from files alone and shows every section."""

from __future__ import annotations

import shutil

from booktower.evaluation.report import write_report


def test_report_renders_every_section(fake_run):
    path = write_report(fake_run)
    text = path.read_text()
    for heading in ("Headline", "Paired comparison", "Training curves", "Slices", "Popularity bias",
                    "Embedding diagnostics", "Recommendation audit", "Data summary", "Resolved config"):
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
