"""The run folder's lock: one holder, nested use in the holding thread, another thread refused at once, the
holder named from its record (or said unknown)."""

from __future__ import annotations

import json
import os
import threading

import pytest

from booktower.utils.folder_lock import RunInUse, describe_holder, lock_path, run_lock


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
