"""Options shared by several commands take the same range everywhere, refused while parsing."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("command", [["compare", ".", "."], ["data", "synth", "-o", "out"],
                                     ["demo", "-o", "out"]])
def test_a_negative_seed_is_refused_while_parsing(cli, tmp_path, monkeypatch, command) -> None:
    monkeypatch.chdir(tmp_path)
    outcome = cli(*command, "--seed", "-1")
    assert outcome.refused("--seed -1 is out of range: it must be at least 0", "pass --seed 0 or more")
    assert not (tmp_path / "out").exists()


def test_sigterm_ends_the_command_through_its_cleanup() -> None:
    """A stop from a scheduler runs the same `finally` / `except BaseException` paths as Ctrl-C."""
    import signal

    import pytest

    from booktower.cli.app import exit_on_sigterm

    previous = signal.getsignal(signal.SIGTERM)
    cleaned = []
    try:
        exit_on_sigterm()
        with pytest.raises(SystemExit) as stopped:
            try:
                signal.raise_signal(signal.SIGTERM)
            finally:
                cleaned.append(True)
        assert stopped.value.code == 128 + signal.SIGTERM and cleaned == [True]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_interrupted_train_says_how_to_resume(monkeypatch, tmp_path) -> None:
    from typer.testing import CliRunner

    import booktower.training.pipeline as pipeline
    from booktower.cli.app import app

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "train_run", interrupted)
    outcome = CliRunner().invoke(app, ["train", "-o", str(tmp_path / "run")])
    assert outcome.exit_code == 130
    # nothing of the run was written: `--resume` would find no config.yaml, the same command starts it
    said = " ".join(outcome.output.split())
    assert "run the same command again to start it" in said and "Traceback" not in outcome.output


def test_resume_of_a_folder_that_holds_no_run_is_refused(monkeypatch, tmp_path) -> None:
    """A mistyped --output-dir with --resume and no --config would otherwise train the built-in default there."""
    from typer.testing import CliRunner

    import booktower.training.pipeline as pipeline
    from booktower.cli.app import app

    def trains(*args, **kwargs):
        raise AssertionError("a run was trained")

    monkeypatch.setattr(pipeline, "train_run", trains)
    outcome = CliRunner().invoke(app, ["train", "-o", str(tmp_path / "typo"), "--resume"])
    assert outcome.exit_code == 2
    assert "holds no config.yaml" in " ".join(outcome.output.split()) and "Traceback" not in outcome.output
