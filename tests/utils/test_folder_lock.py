"""The run folder's lock: one holder, nested use in the holding thread, another thread refused at once, the
holder named from its record (or said unknown)."""

from __future__ import annotations

import json
import logging
import os
import threading

import pytest

from booktower.training.run_folder import EARLIER_RUN_OUTPUTS
from booktower.utils import folder_lock
from booktower.utils.folder_lock import INSIDE_LOCK, RunInUse, describe_holder, holds_run_lock, lock_path, run_lock


def test_the_holding_thread_may_lock_again_and_another_thread_is_refused_naming_it(tmp_path):
    run = tmp_path / "run"
    refused: list[BaseException] = []

    def second() -> None:
        try:
            with run_lock(run, "evaluate"):
                pass
        except RunInUse as exc:
            refused.append(exc)

    with run_lock(run, "train"):
        with run_lock(tmp_path / "x" / ".." / "run", "train"):  # the same folder, spelt otherwise: no second holder
            record = json.loads(lock_path(run).read_text())
            assert record["pid"] == os.getpid() and record["doing"] == "train"
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(30)
    assert len(refused) == 1
    assert f"pid {os.getpid()}" in str(refused[0]) and "`evaluate` was refused" in str(refused[0])
    with run_lock(run, "evaluate"):  # released with the outer `with`
        pass


@pytest.mark.parametrize("record", ["", "{", "[]", json.dumps({"host": "h"})])
def test_a_holder_that_recorded_nothing_readable_is_said_unknown(tmp_path, record):
    (tmp_path / "lock").write_text(record)
    assert describe_holder(tmp_path / "lock") == "another process (it recorded no pid)"


def _no_file_beside(monkeypatch, run):
    """The run folder's parent is not writable: `.run.lock` cannot be made there (the tests run as root, where a
    chmod would not refuse it)."""
    real = folder_lock.open_lock_file
    monkeypatch.setattr(folder_lock, "open_lock_file", lambda path: None if path == lock_path(run) else real(path))


def _refusal_in_another_thread(run) -> list[RunInUse]:
    refused: list[RunInUse] = []

    def second() -> None:
        try:
            with run_lock(run, "train"):
                pass
        except RunInUse as exc:
            refused.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(30)
    return refused


def test_where_the_parent_is_not_writable_the_lock_is_a_file_inside_the_run_folder(tmp_path, monkeypatch):
    """It was skipped, with a DEBUG line only: two trainings ran at once, each deleting the other's checkpoint
    folders in the making."""
    run = tmp_path / "run"
    run.mkdir()
    _no_file_beside(monkeypatch, run)
    with run_lock(run, "train"):
        assert holds_run_lock(run / "checkpoints" / "last")
        refused = _refusal_in_another_thread(run)
        assert len(refused) == 1 and str(run / INSIDE_LOCK) in str(refused[0])
    assert not holds_run_lock(run / "checkpoints" / "last") and (run / INSIDE_LOCK).is_file()
    assert INSIDE_LOCK not in EARLIER_RUN_OUTPUTS, "a new run over an earlier one would delete a held lock"


def test_a_command_that_can_lock_beside_the_folder_also_locks_the_file_inside_it(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    with monkeypatch.context() as patched:
        _no_file_beside(patched, run)
        with run_lock(run, "train"):  # held inside the folder; the other can make `.run.lock` (another user)
            patched.undo()
            refused = _refusal_in_another_thread(run)
    assert len(refused) == 1 and f"pid {os.getpid()}" in str(refused[0])


def test_a_run_with_no_lock_says_so_as_a_warning_and_does_not_hold_it(tmp_path, monkeypatch, caplog):
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setattr(folder_lock, "open_lock_file", lambda path: None)  # a read-only folder in a read-only one
    with caplog.at_level(logging.WARNING, logger="booktower.utils.folder_lock"), run_lock(run, "train"):
        assert not holds_run_lock(run)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "going on unlocked" in warned[0].getMessage() and str(run) in warned[0].getMessage()


def test_a_reader_probing_for_a_writer_never_makes_a_writer_refused(tmp_path):
    """`writer_of` (export, report, compare) takes a shared lock for an instant: a command taking the run lock at
    that instant waits it out instead of being refused by a writer that is not there."""
    import subprocess
    import sys

    from booktower.utils.folder_lock import run_lock

    run = tmp_path / "run"
    run.mkdir()
    code = ("import sys, time\nfrom pathlib import Path\nfrom booktower.utils.folder_lock import writer_of\n"
            "print('probing', flush=True)\nend = time.time() + 3\n"
            "while time.time() < end:\n    writer_of(Path(sys.argv[1]))\n")
    probes = [subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
              for _ in range(2)]
    assert all(probe.stdout.readline().strip() == "probing" for probe in probes)
    taken = 0
    while any(probe.poll() is None for probe in probes):
        with run_lock(run, "train"):  # refused (RunInUse) if a probe's instant counted as a writer
            taken += 1
    assert taken > 100 and all(probe.returncode == 0 for probe in probes)
