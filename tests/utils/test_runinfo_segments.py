"""run.json's segments: the command as launched, each segment's timings added to the earlier ones', and a
rewrite of run.json (the finished run's) that keeps them."""

from __future__ import annotations

import json

from booktower.evaluation.report_sections import command_rows, shown_command, world_size_cell
from booktower.utils.runinfo import RunSegment, Timings, launch_command, record_start, write_run_info

MAIN = "/venv/lib/python3.11/site-packages/booktower/__main__.py"


def test_the_command_names_torchrun_and_its_processes_not_main_py():
    argv = [MAIN, "train", "-o", "run"]
    torchrun = {"TORCHELASTIC_RUN_ID": "x", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "2"}
    assert launch_command(argv, torchrun) == ["torchrun", "--nproc_per_node=2", "-m", "booktower", "train", "-o",
                                              "run"]
    two_nodes = {**torchrun, "WORLD_SIZE": "4"}
    assert launch_command(argv, two_nodes)[:3] == ["torchrun", "--nproc_per_node=2", "--nnodes=2"]
    assert launch_command(argv, {}) == ["python", "-m", "booktower", "train", "-o", "run"]
    assert launch_command(["/venv/bin/booktower", "train"], torchrun) == ["/venv/bin/booktower", "train"]
    # a run.json written before segments: its sys.argv is shown as launched too
    assert shown_command(argv, 2) == "torchrun (2 processes) -m booktower train -o run"
    assert shown_command(argv, 1) == "python -m booktower train -o run"


def test_segments_add_up_and_survive_the_finished_runs_rewrite(tmp_path):
    record_start(tmp_path)
    first = RunSegment(tmp_path, 2, "cpu")
    first.open()
    first.trained("epochs", 1, {"prepare": 1.0, "fit": 4.0})
    first.close("interrupted", {"prepare": 1.0, "fit": 5.5})
    second = RunSegment(tmp_path, 1, "cpu")
    second.open()
    assert second.earlier == {"prepare": 1.0, "fit": 5.5}
    second.trained("epochs", 2, {"prepare": 0.5, "fit": 3.0})
    total = second.total({"prepare": 0.5, "fit": 3.0, "evaluate": 1.0})
    assert total == {"prepare": 1.5, "fit": 8.5, "evaluate": 1.0}
    write_run_info(tmp_path, config_yaml="seed: 1\n", seed=1, inputs=[], timings=total, extra={"world_size": 1})
    info = json.loads((tmp_path / "run.json").read_text())
    assert [s["world_size"] for s in info["segments"]] == [2, 1] and info["timings_seconds"] == total
    assert info["started"] and info["world_size"] == 1
    second.close("finished", {"prepare": 0.5, "fit": 3.0, "evaluate": 1.0})
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["seed"] == 1 and info["segments"][1]["ended_by"] == "finished"
    assert world_size_cell(info).endswith("; resumed 1 time, world sizes 2 -> 1")
    assert [row[0] for row in command_rows(info)] == ["command", "resume 1"]


def test_a_segment_killed_without_closing_keeps_its_last_epoch_and_is_said_to_be(tmp_path):
    record_start(tmp_path)
    killed = RunSegment(tmp_path, 1, "cpu")
    killed.open()
    killed.trained("epochs", 1, {"fit": 2.0})  # then SIGKILL: no close
    resumed = RunSegment(tmp_path, 1, "cpu")
    resumed.open()
    assert resumed.earlier == {"fit": 2.0}
    info = json.loads((tmp_path / "run.json").read_text())
    assert "ended without closing (killed)" in command_rows(info)[0][1]


def test_a_probe_recorded_before_segments_keeps_its_time(tmp_path):
    """A --validation-only run.json of an older booktower: timings_seconds but no segments."""
    (tmp_path / "run.json").write_text(json.dumps({"timings_seconds": {"fit": 7.0}, "validation_only": True}))
    segment = RunSegment(tmp_path, 1, "cpu")
    segment.open()
    assert segment.total({"fit": 1.0, "evaluate": 0.5}) == {"fit": 8.0, "evaluate": 0.5}


def test_timings_so_far_count_a_step_still_running():
    import time

    timings = Timings()
    with timings.step("fit"):
        time.sleep(0.05)
        assert timings.so_far()["fit"] >= 0.05 and "fit" not in timings.seconds
    assert timings.seconds["fit"] >= 0.05


def test_finishing_closes_the_segment_and_marks_the_run_in_one_write(tmp_path, monkeypatch):
    import booktower.utils.runinfo as runinfo

    record_start(tmp_path)
    segment = RunSegment(tmp_path, 1, "cpu")
    segment.open()
    writes: list[dict] = []
    write = runinfo.atomic_write_json
    monkeypatch.setattr(runinfo, "atomic_write_json", lambda path, obj: (writes.append(obj), write(path, obj)))
    segment.finish({"fit": 2.0})
    assert len(writes) == 1 and writes[0]["finished"] and writes[0]["segments"][-1]["ended_by"] == "finished"
    assert writes[0]["timings_seconds"] == {"fit": 2.0}


def test_a_segment_said_finished_in_an_unfinished_run_is_recorded_as_killed(tmp_path):
    """What an older booktower left when killed between closing the segment and marking the run finished."""
    record_start(tmp_path)
    killed = RunSegment(tmp_path, 1, "cpu")
    killed.open()
    killed.close("finished", {"fit": 2.0})  # then SIGKILL: no `finished`
    RunSegment(tmp_path, 1, "cpu").open()
    segments = json.loads((tmp_path / "run.json").read_text())["segments"]
    assert [s.get("ended_by") for s in segments] == ["killed before the run was marked finished", None]
