"""`train --validation-only` ends by saying what `--resume` will do: a refit only where the config refits."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from booktower.cli.app import app
from tests.training.test_resume import write_dataset


@pytest.mark.parametrize("refit, then", [("true", "refit, then the test, scored once"),
                                         ("false", "completes the run: the test, scored once")])
def test_the_completion_hint_names_a_refit_only_when_there_is_one(tmp_path, refit, then):
    config = write_dataset(tmp_path / "data", 12)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--config", str(config), "-o", str(run), "--validation-only",
                                      "--set", "training.epochs=1", "--set", f"training.refit_on_validation={refit}"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert then in said
    assert ("refit, then the test" in said) == (refit == "true")
    written = json.loads((run / "validation.json").read_text())["test"]
    assert ("refit, then the test" in written) == (refit == "true")
