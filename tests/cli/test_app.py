"""Options shared by several commands take the same range everywhere, refused while parsing."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("command", [["compare", ".", "."], ["data", "synth", "-o", "out"],
                                     ["demo", "-o", "out"]])
def test_a_negative_seed_is_refused_while_parsing(cli, tmp_path, monkeypatch, command) -> None:
    monkeypatch.chdir(tmp_path)
    outcome = cli(*command, "--seed", "-1")
    assert outcome.code == 2 and outcome.says("'--seed'") and "Traceback" not in outcome.output
    assert not (tmp_path / "out").exists()
