"""RUN/test_scorings.json: entries are appended, never dropped; a new run's start marks the earlier ones; a model
held in memory and its saved file have one fingerprint; a damaged record is refused, not overwritten."""

from __future__ import annotations

import hashlib
import logging

import pytest
import torch

from booktower.config.model import ModelConfig
from booktower.data.errors import DataError
from booktower.data.toy import random_prepared
from booktower.models import TwoTower, spec_from_config
from booktower.models.io import save_model
from booktower.utils.scorings import (
    TEST_SCORINGS,
    mark_earlier_run,
    model_file_sha256,
    read_test_scorings,
    record_test_scoring,
    scoring_models,
    weights_sha256,
)

KS = [10, 20]
METRICS = {"HR@10": 0.5, "NDCG@10": 0.25, "HR@20": 0.75}


def test_a_model_in_memory_and_its_saved_file_have_one_fingerprint_that_sha256sum_gives(tmp_path):
    data = random_prepared(n_users=12, n_items=15, per_user=4)
    torch.manual_seed(0)
    model = TwoTower(spec_from_config(ModelConfig(), data.user_features, data.item_features, data.n_users,
                                      data.n_items))
    assert model_file_sha256(tmp_path) is None  # no model/ in the folder
    save_model(model, tmp_path / "model")
    on_disk = hashlib.sha256((tmp_path / "model" / "model.safetensors").read_bytes()).hexdigest()
    assert weights_sha256(model) == model_file_sha256(tmp_path) == on_disk
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert weights_sha256(model) != on_disk


def test_each_scoring_is_appended_with_its_command_model_and_headline(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        record_test_scoring(tmp_path, "train", "a" * 64, METRICS, KS)
        entries = record_test_scoring(tmp_path, "evaluate", "a" * 64, METRICS, KS)
    assert [entry["command"] for entry in entries] == ["train", "evaluate"]
    assert entries == read_test_scorings(tmp_path)
    first = entries[0]
    assert first["model_sha256"] == "a" * 64 and first["headline"] == {"HR@10": 0.5, "NDCG@10": 0.25}
    assert first["earlier_run"] is False and isinstance(first["at"], str) and isinstance(first["argv"], list)
    assert not caplog.records  # one model scored twice: the same numbers, nothing to warn about


def test_a_second_model_scoring_the_same_test_split_is_warned_about(tmp_path, caplog):
    record_test_scoring(tmp_path, "train", "a" * 64, METRICS, KS)
    with caplog.at_level(logging.WARNING):
        entries = record_test_scoring(tmp_path, "evaluate", "b" * 64, METRICS, KS)
    assert scoring_models(entries) == ["a" * 64, "b" * 64]
    assert "scored by 2 different models" in caplog.text and str(tmp_path / TEST_SCORINGS) in caplog.text


def test_a_new_run_marks_the_earlier_entries_once_and_keeps_them(tmp_path):
    assert mark_earlier_run(tmp_path) == 0 and not (tmp_path / TEST_SCORINGS).exists()
    record_test_scoring(tmp_path, "train", "a" * 64, METRICS, KS)
    assert mark_earlier_run(tmp_path) == 1
    first_replaced = read_test_scorings(tmp_path)[0]["replaced_at"]
    record_test_scoring(tmp_path, "train", "b" * 64, METRICS, KS)
    assert mark_earlier_run(tmp_path) == 1  # only the second run's entry: the first was marked already
    entries = read_test_scorings(tmp_path)
    assert [entry["earlier_run"] for entry in entries] == [True, True]
    assert entries[0]["replaced_at"] == first_replaced


def test_recommend_lists_are_recorded_unscored_and_entries_without_a_model_are_not_counted(tmp_path):
    record_test_scoring(tmp_path, "recommend", "a" * 64, None, KS)
    entries = record_test_scoring(tmp_path, "evaluate", None, METRICS, KS)
    assert entries[0]["headline"] is None
    assert scoring_models(entries) == ["a" * 64]


@pytest.mark.parametrize("text", ["{not json", "[1, 2"])
def test_a_damaged_record_is_refused_and_left_as_it_is(tmp_path, text):
    (tmp_path / TEST_SCORINGS).write_text(text)
    with pytest.raises(DataError, match="move it aside"):
        record_test_scoring(tmp_path, "evaluate", "a" * 64, METRICS, KS)
    assert (tmp_path / TEST_SCORINGS).read_text() == text


WRITER = """
import sys, time
from pathlib import Path
from booktower.utils.scorings import record_test_scoring
run, name, times = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
(run.parent / f"{name}.ready").touch()
while len(list(run.parent.glob("*.ready"))) < 2:  # both processes start writing together
    time.sleep(0.001)
for _ in range(times):
    record_test_scoring(run, name, "a" * 64, None, [10])
"""


def test_two_processes_recording_at_once_keep_every_entry(tmp_path):
    import subprocess
    import sys

    run = tmp_path / "run"
    run.mkdir()
    times = 60
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(run), name, str(times)])
               for name in ("evaluate", "recommend")]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    entries = read_test_scorings(run)
    assert sorted(entry["command"] for entry in entries) == ["evaluate"] * times + ["recommend"] * times
    assert sorted(path.name for path in run.iterdir()) == [TEST_SCORINGS]  # no lock file left in the run


def test_the_record_waits_for_a_writer_holding_its_lock(tmp_path):
    import threading

    from booktower.utils.scorings import record_lock

    record_test_scoring(tmp_path, "train", "a" * 64, METRICS, KS)
    written = threading.Event()

    def other() -> None:
        record_test_scoring(tmp_path, "recommend", "a" * 64, None, KS)
        written.set()

    with record_lock(tmp_path):
        thread = threading.Thread(target=other)
        thread.start()
        assert not written.wait(0.3)  # it waits for the holder (another descriptor: as another process would)
        mark_earlier_run(tmp_path)  # the holder's own write, in between
    thread.join(10)
    entries = read_test_scorings(tmp_path)
    assert [(entry["command"], entry["earlier_run"]) for entry in entries] == [("train", True), ("recommend", False)]
