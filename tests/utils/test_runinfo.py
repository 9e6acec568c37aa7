"""run.json names the code that ran: the git commit of an editable checkout, with a flag for local changes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from booktower.utils.runinfo import code_revision, write_run_info

SOURCE = Path(__file__).resolve().parents[2] / "src" / "booktower"


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(SOURCE), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None or not (SOURCE.parents[1] / ".git").exists(),
                    reason="needs git and this checkout's .git")
def test_run_json_records_the_checkouts_commit(tmp_path) -> None:
    if code_revision() is None:
        pytest.skip("git does not read this checkout here (e.g. another user owns it)")
    write_run_info(tmp_path, config_yaml="seed: 1\n", seed=1, inputs=[], timings={})
    recorded = json.loads((tmp_path / "run.json").read_text())["code"]
    assert recorded["git_commit"] == _git("rev-parse", "HEAD")
    changed = bool(_git("status", "--porcelain", "--untracked-files=no", "--", "."))
    assert recorded["uncommitted_changes"] is changed


def test_outside_a_checkout_there_is_no_revision(monkeypatch) -> None:
    import booktower.utils.runinfo as runinfo

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert runinfo.code_revision() is None
