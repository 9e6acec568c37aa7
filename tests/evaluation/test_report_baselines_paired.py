"""The report's paired comparison: a baseline without a per-user table is named under the table, not silently
dropped; and each interval is resampled on its own, so a baseline's numbers do not move when another one is
added or removed."""

from __future__ import annotations

import json
import re
import shutil

from booktower.evaluation.report import write_report


def _rows(report: str, name: str) -> list[str]:
    """Every table row of the report that starts with the baseline `name`."""
    return [line for line in report.splitlines() if re.match(rf"\|\s*{re.escape(name)}\s*\|", line)]


def test_a_baseline_without_a_per_user_table_is_named_under_the_paired_table(fake_run):
    shutil.rmtree(fake_run / "baselines" / "ease")
    report = write_report(fake_run).read_text()
    paired = report.split("## Paired comparison")[1].split("\n## ")[0]
    flat = " ".join(paired.split())
    assert _rows(paired, "pop") and _rows(paired, "itemknn") and not _rows(paired, "ease")
    assert "_Left out of this table: ease, which has no per-user table" in flat
    assert str(fake_run / "baselines" / "ease" / "per_user_test.parquet") in flat
    assert f"-o {fake_run / 'baselines'} --models ease" in flat
    headline = report.split("## Headline")[1].split("\n## ")[0]
    assert _rows(headline, "ease")  # still listed there, from metrics.json


def test_every_baseline_paired_leaves_no_note(fake_run):
    report = write_report(fake_run).read_text()
    assert "Left out of this table" not in report


def test_removing_one_baseline_leaves_the_others_intervals_unchanged(fake_run):
    before = write_report(fake_run).read_text()
    metrics_path = fake_run / "baselines" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    assert list(metrics)[0] == "pop"  # the first drawn from a shared generator, before the fix
    del metrics["pop"]
    metrics_path.write_text(json.dumps(metrics))
    shutil.rmtree(fake_run / "baselines" / "pop")
    after = write_report(fake_run).read_text()
    for name in ("**model**", "itemknn", "ease"):
        assert _rows(after, name) == _rows(before, name) and _rows(before, name), name
    assert not _rows(after, "pop")
