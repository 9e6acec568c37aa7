"""Ensemble members trained side by side: one `booktower train` process per seed, `jobs` at a time.

A single run leaves cores idle on a many-core CPU (its operations are small), while members of one config share
nothing but the prepared data, so N processes train N members in about the time of one. Each process is the
command a user would type (`booktower train --config C --set seed=S -o DIR [--resume]`), so a member trained
here is the run `train` would have written, and an interrupted one resumes either way.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from booktower.config import BooktowerConfig
from booktower.config.loading import dump_config
from booktower.data.errors import DataError
from booktower.utils.atomic import atomic_write_text

log = logging.getLogger(__name__)

CONFIG_FILE = "members-config.yaml"
"""The resolved config every member process reads (with `--set seed=S`), written into the members' folder."""


@dataclass
class _Member:
    seed: int
    run_dir: Path
    log_file: Path
    process: subprocess.Popen | None = None


def member_log(members_dir: Path, seed: int) -> Path:
    return members_dir / f"seed-{seed}.log"


def train_side_by_side(config: BooktowerConfig, seeds: list[int], members_dir: Path, jobs: int) -> list[Path]:
    """Train (or resume, or keep) one run per seed in `members_dir/seed-S`, `jobs` processes at a time; each
    one's output goes to `members_dir/seed-S.log`. Raises a DataError naming the seeds that failed and their
    logs (the finished ones are kept, so the same command continues)."""
    from booktower.data.prepare import prepare

    members_dir.mkdir(parents=True, exist_ok=True)
    config_file = members_dir / CONFIG_FILE
    atomic_write_text(config_file, dump_config(config))
    _warn_if_oversubscribed(config, jobs)
    prepare(config.data)  # once, into the cache, rather than once per process at the same time
    members = [_Member(seed, members_dir / f"seed-{seed}", member_log(members_dir, seed)) for seed in seeds]
    log.info("training %d members, %d at a time; each one's output: %s", len(members), jobs,
             member_log(members_dir, seeds[0]).with_name("seed-S.log"))
    failed = _run_all(members, config_file, jobs, _thread_env(config, jobs))
    if failed:
        raise DataError(_failure(members, failed), fix="fix the cause and run the same command again: finished "
                                                       "members are kept and interrupted ones resumed")
    return [member.run_dir for member in members]


def _failure(members: list[_Member], failed: list[_Member]) -> str:
    """Each failed member with its own error (the last lines of its log), and the members never started."""
    told = [f"seed {m.seed} stopped (exit {m.process.returncode}; {m.log_file}):\n{_tail(m.log_file, 6)}"
            for m in failed]
    waiting = [str(m.seed) for m in members if m.process is None]
    if waiting:
        told.append(f"not started after that: seed{'s' if len(waiting) > 1 else ''} {', '.join(waiting)}")
    return f"{len(failed)} of {len(members)} members failed:\n" + "\n".join(told)


def _run_all(members: list[_Member], config_file: Path, jobs: int, env: dict[str, str]) -> list[_Member]:
    waiting, running, failed = list(members), [], []
    progress = tqdm(total=len(members), desc="ensemble members", unit="run")
    try:
        while waiting or running:
            while waiting and len(running) < jobs and not failed:
                member = waiting.pop(0)
                running.append(member)  # before it starts: a stop in between must still reach it
                member.process = _start(member, config_file, env)
            if not running:
                break  # a member failed: start no more, report it
            time.sleep(0.2)
            for member in [m for m in running if m.process.poll() is not None]:
                running.remove(member)
                progress.update(1)
                if member.process.returncode != 0:
                    failed.append(member)
    except BaseException:  # Ctrl-C or SIGTERM here: stop the members as a scheduler would, so each checkpoints
        _stop(running)
        raise
    finally:
        progress.close()
    return failed


def _start(member: _Member, config_file: Path, env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "booktower", "train", "--config", str(config_file),
               "--set", f"seed={member.seed}", "-o", str(member.run_dir),
               "--set", "training.progress=false"]  # bars would fill the log; the epochs are logged all the same
    if (member.run_dir / "config.yaml").is_file():
        command.append("--resume")  # refused, naming the change, if the config changed since it started
    with member.log_file.open("ab") as out:
        out.write(f"$ {' '.join(command)}\n".encode())
        out.flush()
        # its own session: a Ctrl-C in the terminal reaches only this process, which stops the members in turn
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop(running: list[_Member]) -> None:
    running = [member for member in running if member.process is not None]  # one stopped before its start
    for member in running:
        if member.process.poll() is None:
            member.process.send_signal(signal.SIGTERM)
    for member in running:
        try:
            member.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            member.process.kill()


def _thread_env(config: BooktowerConfig, jobs: int) -> dict[str, str]:
    """The cores shared out between the processes when the config leaves torch's thread count unset (the
    environment, not the config: a member's config stays the one `train` would record)."""
    env = dict(os.environ)
    if config.training.num_threads is None:
        share = str(max(1, (os.cpu_count() or 1) // jobs))
        env.setdefault("OMP_NUM_THREADS", share)
        env.setdefault("MKL_NUM_THREADS", share)
    return env


def _warn_if_oversubscribed(config: BooktowerConfig, jobs: int) -> None:
    per_member = max(config.training.workers, config.training.num_threads or 1)
    cores = os.cpu_count() or 1
    if jobs * per_member > cores:
        log.warning("%d members at a time with %d threads each ask for %d cores on a %d-core machine: they will "
                    "slow each other down (set --jobs %d, or training.workers / training.num_threads lower)",
                    jobs, per_member, jobs * per_member, cores, max(1, cores // per_member))


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])
