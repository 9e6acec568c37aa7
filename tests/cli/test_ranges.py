"""A count or number out of range, in any command, is one `error:` line (exit 2) naming the option, its range
and the fix, found while the command line is parsed: not typer's usage panel, and before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest


def _command(tmp_path: Path, name: str) -> list[str]:
    """Each command with whatever else it needs to get as far as its ranged options."""
    (tmp_path / "run").mkdir(exist_ok=True)
    return {
        "recommend --run": ["recommend", "--run", str(tmp_path / "run"), "--all-test-users",
                            "--out", str(tmp_path / "top.parquet")],
        "recommend --bundle": ["recommend", "--bundle", str(tmp_path / "run"), "--user", "u1"],
        "compare": ["compare", str(tmp_path / "run"), str(tmp_path / "run")],
        "serve": ["serve", "--bundle", str(tmp_path / "run")],
        "sweep": ["sweep", "--storage", f"sqlite:///{tmp_path / 'sweep.db'}", "-o", str(tmp_path / "out")],
        "data synth": ["data", "synth", "-o", str(tmp_path / "out")],
        "demo": ["demo", "-o", str(tmp_path / "out")],
    }[name]


@pytest.fixture
def nothing_runs(monkeypatch) -> None:
    """Any real work fails the test: a bad number must be refused before it starts."""
    import uvicorn

    from booktower.data import synth
    from booktower.evaluation import compare, run_eval

    def refuse(*args, **kwargs):
        raise AssertionError("the command ran before its options were checked")

    for module, name in ((uvicorn, "run"), (run_eval, "load_trained"), (compare, "compare_runs"),
                         (synth, "write_synthetic")):
        monkeypatch.setattr(module, name, refuse)


@pytest.mark.parametrize(("command", "option", "value", "allowed", "fix"), [
    ("recommend --run", "--k", "0", "at least 1", "pass --k 1 or more"),
    ("recommend --run", "--k", "-5", "at least 1", "pass --k 1 or more"),
    ("recommend --bundle", "--k", "0", "at least 1", "pass --k 1 or more"),
    ("recommend --bundle", "--k", "-1", "at least 1", "pass --k 1 or more"),
    ("compare", "--samples", "0", "at least 1", "pass --samples 1 or more"),
    ("compare", "--seed", "-1", "at least 0", "pass --seed 0 or more"),
    ("serve", "--port", "0", "in [1, 65535]", "pass --port 1 or more"),
    ("serve", "--port", "65536", "in [1, 65535]", "pass --port 65535 or less"),
    ("serve", "--workers", "0", "at least 1", "pass --workers 1 or more"),
    ("serve", "--threads", "-2", "at least 1", "pass --threads 1 or more"),
    ("serve", "--reload-every", "-0.5", "in [0, 86400]", "pass --reload-every 0 or more"),
    ("sweep", "--trials", "0", "at least 1", "pass --trials 1 or more"),
    ("data synth", "--users", "0", "at least 10", "pass --users 10 or more"),
    ("data synth", "--books", "-20", "at least 20", "pass --books 20 or more"),
    ("data synth", "--mean-history", "0", "in [3, 10000]", "pass --mean-history 3 or more"),
    ("data synth", "--seed", "-1", "at least 0", "pass --seed 0 or more"),
    ("demo", "--seed", "-3", "at least 0", "pass --seed 0 or more"),
])
def test_a_number_out_of_range_is_one_error_line_naming_the_fix(cli, tmp_path, nothing_runs, command, option,
                                                                  value, allowed, fix) -> None:
    outcome = cli(*_command(tmp_path, command), option, value)
    assert outcome.refused(f"{option} {value} is out of range: it must be {allowed}", f"Fix: {fix}")
    assert "Usage:" not in outcome.output and "╭" not in outcome.output  # no usage panel
    assert len(outcome.output.strip().splitlines()) <= 2  # one line (the console wraps it at 80 columns)
    assert not (tmp_path / "out").exists() and not (tmp_path / "top.parquet").exists()


def test_values_in_range_still_reach_the_command(cli, tmp_path, monkeypatch) -> None:
    """The callbacks hand the value on unchanged, for ints and floats alike."""
    from booktower.data import synth

    seen = {}
    monkeypatch.setattr(synth, "write_synthetic",
                        lambda output_dir, config, seed: seen.update(config=config, seed=seed) or
                        {"books": 0, "books_path": "b", "interactions": 0, "users": 0, "users_path": "u"})
    outcome = cli("data", "synth", "-o", tmp_path / "out", "--users", "10", "--books", "20",
                  "--mean-history", "3.5", "--seed", "0")
    assert outcome.code == 0, outcome.output
    assert (seen["config"].n_users, seen["config"].n_books, seen["config"].mean_history, seen["seed"]) == \
        (10, 20, 3.5, 0)


@pytest.mark.parametrize(("command", "option"), [("data synth", "--mean-history"), ("serve", "--reload-every")])
def test_nan_is_refused_like_a_number_out_of_range(cli, tmp_path, nothing_runs, command, option) -> None:
    outcome = cli(*_command(tmp_path, command), option, "nan")
    assert outcome.refused(f"{option} nan is not a number", "Fix:")
    assert "Traceback" not in outcome.output and not (tmp_path / "out").exists()
