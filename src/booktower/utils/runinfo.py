"""What every run records beside its artefacts: resolved config, input fingerprint, seed, versions, machine, timings."""

from __future__ import annotations

import hashlib
import json
import re
import os
import platform
import sys
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from booktower import native
from booktower.utils.atomic import atomic_write_json, atomic_write_text

_PACKAGES = ("booktower", "torch", "numpy", "polars", "pyarrow", "pydantic", "scipy", "implicit", "faiss-cpu",
             "optuna", "mlflow-skinny", "mlflow", "safetensors", "fastapi")


def file_fingerprint(paths: list[Path]) -> dict[str, Any]:
    """sha256 of each input file (streamed) and one combined digest."""
    files: dict[str, dict[str, Any]] = {}
    combined = hashlib.sha256()
    for path in sorted({Path(p) for p in paths}):
        digest = hashlib.sha256()
        if path.is_dir():
            children = sorted(p for p in path.rglob("*") if p.is_file())
        else:
            children = [path]
        size = 0
        for child in children:
            with open(child, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
                    size += len(block)
        files[str(path)] = {"sha256": digest.hexdigest(), "bytes": size}
        combined.update(f"{path}:{digest.hexdigest()}".encode())
    return {"files": files, "sha256": combined.hexdigest()}


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def code_revision() -> dict[str, Any] | None:
    """The git commit of the booktower source that ran, and whether it had uncommitted changes; None for an
    installed package (its version says which) or where git is missing."""
    import subprocess

    source = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return None
        changes = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no", "--",
                                  "."], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"git_commit": commit.stdout.strip(), "uncommitted_changes": bool(changes.stdout.strip())}


def cpu_model() -> str:
    """The CPU's marketing name (Linux: /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """The hardware a run's numbers come from. Throughput depends on it, and so do the weights: the same seed and
    code give bit-identical runs on one kind of CPU, but another CPU (or vector unit: `cpu_capability`) takes other
    kernel paths that round differently (docs/scaling.md)."""
    info: dict[str, Any] = {"cpu": cpu_model(), "logical_cores": os.cpu_count(),
                            "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    try:
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    if torch.cuda.is_initialized():  # a run that used CUDA; asking otherwise would start CUDA for nothing
        info["gpus"] = [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())]
        info["cuda"] = torch.version.cuda
    return info


class Timings:
    """Named wall-clock timings of a run's steps."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._open: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        self._open[name] = start
        try:
            yield
        finally:
            self._open.pop(name, None)
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)

    def so_far(self) -> dict[str, float]:
        """`seconds` with the steps still running counted up to now: what a run killed at this moment spent."""
        now = time.perf_counter()
        current = dict(self.seconds)
        for name, start in self._open.items():
            current[name] = round(current.get(name, 0.0) + now - start, 3)
        return current


HISTORY_LOST = "history_lost"
"""run.json key of a run resumed after its run.json was lost: what that cost (the earlier segments, the input
files' sha256s)."""

_KEPT_ON_REWRITE = ("started", "segments", HISTORY_LOST)
"""run.json keys a rewrite keeps: when a training run started, its segments (one per start or resume), and what
of that history was lost."""


def write_run_info(
    output_dir: Path, *, config_yaml: str, seed: int, inputs: list[Path], timings: dict[str, float],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write `config.yaml` and `run.json` (fingerprint, seed, versions, machine, timings) into `output_dir`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_dir / "config.yaml", config_yaml)
    info = {
        "seed": seed,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "inputs": file_fingerprint([p for p in inputs if p.exists()]),
        "versions": package_versions(),
        "code": code_revision(),  # an editable install's version never changes: the commit says what ran
        "machine": machine_info(),
        # whether training ran booktower's C kernels (booktower/native): they round differently from PyTorch
        "cpu_kernels": native.status(),
        "timings_seconds": timings,
        "command": sys.argv,
        WORKING_DIRECTORY: str(Path.cwd()),  # what the config's relative data paths were read against
        DATA_FORMAT: data_format(),
    }
    # a resumed run's history: written when it started and at each resume, it must outlive this rewrite
    earlier = _run_json(output_dir) or {}
    info.update({key: earlier[key] for key in _KEPT_ON_REWRITE if key in earlier})
    if extra:
        info.update(extra)
    atomic_write_json(output_dir / "run.json", info)


WORKING_DIRECTORY = "working_directory"


DATA_FORMAT = "data_format"
"""run.json key: the data layer's version that prepared the run's data (data.prepare.CACHE_FORMAT); a later
version may order or validate the same files' rows differently."""


def data_format() -> int:
    from booktower.data.prepare import CACHE_FORMAT

    return CACHE_FORMAT


def older_data_format(run_dir: Path) -> str | None:
    """Why the same files may prepare differently now: the run was prepared by an older data layer (None when it
    was not, or run.json cannot say)."""
    info = _run_json(Path(run_dir)) or {}
    if not info:
        return None
    then = info.get(DATA_FORMAT)
    if isinstance(then, int) and then >= data_format():
        return None
    version = f"data format {then}" if isinstance(then, int) else "a data format before 7"
    return (f"the run was prepared by an older booktower ({version}; this one prepares format {data_format()}, "
            "see CACHE_FORMAT in data/prepare.py), which can order or keep the same files' rows differently")


def record_start(run_dir: Path, inputs: list[Path] | None = None) -> None:
    """A training run's first run.json: the folder its config's relative paths are read against, kept there
    until the finished run's run.json replaces it, so that an interrupted run resumes from any folder; and the
    input files' sha256s, so that a resume refuses files changed since the run started."""
    atomic_write_json(Path(run_dir) / "run.json", {WORKING_DIRECTORY: str(Path.cwd()), "started": _now(),
                                                   "inputs": file_fingerprint([p for p in inputs or [] if p.exists()]),
                                                   DATA_FORMAT: data_format()})


def working_directory(run_dir: Path) -> Path:
    """The folder the run was trained from (run.json), against which its config's relative paths were read;
    the current folder for a run that recorded none."""
    recorded = (_run_json(Path(run_dir)) or {}).get(WORKING_DIRECTORY)
    return Path(recorded) if isinstance(recorded, str) and recorded else Path.cwd()


FINISHED = "finished"
"""The run.json key a training run writes last (a timestamp): its files are complete and `--resume` leaves
them alone. run.json alone does not tell: `prepare` writes one too, and a trained run writes it before its
report."""


def run_json_problem(run_dir: Path) -> str | None:
    """What is wrong with RUN/run.json ("is not valid JSON (...)", "cannot be read (...)"), or None when it is a
    JSON object or missing (a run that has not started)."""
    path = Path(run_dir) / "run.json"
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        return f"is not valid JSON ({exc})"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None if isinstance(info, dict) else f"holds a JSON {type(info).__name__}, not an object"


def record_lost_history(run_dir: Path, note: str) -> None:
    """The run.json of a run resumed without one: `note` says what was lost; the folder its config's relative
    paths were read against is the current one."""
    atomic_write_json(Path(run_dir) / "run.json", {WORKING_DIRECTORY: str(Path.cwd()), HISTORY_LOST: note})


def _run_json(run_dir: Path) -> dict[str, Any] | None:
    """RUN/run.json, or None when it is missing or unreadable (then the run has not finished)."""
    try:
        info = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def recorded_timings(run_dir: Path) -> dict[str, float]:
    """The step timings run.json holds (a `--validation-only` run's fit, before a `--resume` completes it);
    empty for a run that recorded none."""
    recorded = (_run_json(Path(run_dir)) or {}).get("timings_seconds")
    if not isinstance(recorded, dict):
        return {}
    return {str(k): float(v) for k, v in recorded.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


SEGMENTS = "segments"
"""run.json's history of a training run: one entry per start or resume, each with its command, world size,
device, start and end, the epochs it trained and its step timings. The run's `timings_seconds` is their sum;
`command` and `world_size` stay the last segment's."""


KILLED_BEFORE_FINISHED = "killed before the run was marked finished"
"""The end of a segment an older booktower recorded as finished, in a run.json without `finished`."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def launch_command(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> list[str]:
    """The command as typed, near enough to run again. Under `python -m` or torchrun, sys.argv starts with
    booktower/__main__.py, which names neither the launcher nor how many processes it started (the global
    batch is that many times training.batch_size)."""
    argv = list(sys.argv if argv is None else argv)
    env = os.environ if environ is None else environ
    if not argv or not argv[0].endswith("__main__.py"):
        return argv
    module = ["-m", Path(argv[0]).parent.name or "booktower", *argv[1:]]
    if "TORCHELASTIC_RUN_ID" not in env and "LOCAL_WORLD_SIZE" not in env:
        return ["python", *module]
    local, world = env.get("LOCAL_WORLD_SIZE", "1"), env.get("WORLD_SIZE", env.get("LOCAL_WORLD_SIZE", "1"))
    nodes = ([f"--nnodes={int(world) // int(local)}"]
             if world != local and world.isdigit() and local.isdigit() and int(local) > 0 else [])
    return ["torchrun", f"--nproc_per_node={local}", *nodes, *module]


def sum_timings(parts: list[dict[str, Any]]) -> dict[str, float]:
    """Step timings added up over segments (each a dict of step -> seconds), in the order steps first ran."""
    total: dict[str, float] = {}
    for timings in parts:
        for name, value in (timings or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                total[name] = round(total.get(name, 0.0) + float(value), 3)
    return total


class RunSegment:
    """This process's entry in run.json's `segments` (rank 0 writes it). Opened when training starts or resumes,
    updated after every checkpointed epoch, so that a SIGKILL keeps the time up to the last checkpoint, and
    closed with how the segment ended (finished, validation_only, interrupted, failed: ...)."""

    def __init__(self, run_dir: Path, world_size: int, device: str) -> None:
        self.run_dir = Path(run_dir)
        self.entry: dict[str, Any] = {"command": launch_command(), "world_size": world_size, "device": device,
                                      "started": _now()}
        self.index = 0
        self.earlier: dict[str, float] = {}

    def open(self) -> None:
        info = _run_json(self.run_dir) or {}
        segments = [s for s in info.get(SEGMENTS) or [] if isinstance(s, dict)]
        if FINISHED not in info:  # an older booktower closed the segment, then marked the run: killed between
            for segment in segments:
                if segment.get("ended_by") == "finished":
                    segment["ended_by"] = KILLED_BEFORE_FINISHED
        # a run.json written before segments were recorded holds only its total so far
        self.earlier = (sum_timings([s.get("timings_seconds") or {} for s in segments]) if segments
                        else recorded_timings(self.run_dir))
        self.index = len(segments)
        self._write(info, [*segments, self.entry])

    def trained(self, key: str, epoch: int, timings: dict[str, float]) -> None:
        """Epoch `epoch` of `key` ("epochs", or "refit_epochs") finished and was checkpointed."""
        self.entry.setdefault(key, []).append(int(epoch))
        self.entry["timings_seconds"] = timings
        self._write(_run_json(self.run_dir) or {})

    def close(self, ended_by: str, timings: dict[str, float]) -> None:
        self.entry.update(ended=_now(), ended_by=ended_by, timings_seconds=timings)
        self._write(_run_json(self.run_dir) or {})

    def finish(self, timings: dict[str, float]) -> None:
        """The last write of a training run, in one: this segment ends as finished, and run.json gains `finished`
        and the run's timings (the earlier segments' and this one's `timings`). A kill before it leaves the
        segment open (killed) and the run unfinished; none can leave one without the other."""
        self.entry.update(ended=_now(), ended_by="finished", timings_seconds=timings)
        info = _run_json(self.run_dir)
        if info is None:
            raise FileNotFoundError(f"{self.run_dir}/run.json is missing or unreadable: write_run_info comes first")
        info.update({"timings_seconds": self.total(timings), FINISHED: _now()})
        self._write(info)

    def total(self, timings: dict[str, float]) -> dict[str, float]:
        """The run's timings: the earlier segments' and this one's `timings`."""
        return sum_timings([self.earlier, timings])

    def _write(self, info: dict[str, Any], segments: list[dict[str, Any]] | None = None) -> None:
        if segments is None:
            segments = [s for s in info.get(SEGMENTS) or [] if isinstance(s, dict)][: self.index]
            self.index = len(segments)  # a run.json rewritten without the earlier segments: stay the last
            segments.append(self.entry)
        info[SEGMENTS] = segments
        atomic_write_json(self.run_dir / "run.json", info)


def finished_at(run_dir: Path) -> str | None:
    """When the training run in `run_dir` finished (run.json's `finished`), or None while it has not."""
    info = _run_json(run_dir)
    return None if info is None else info.get(FINISHED)


def is_sweep_trial(folder: Path) -> bool:
    """A `booktower sweep` trial folder (DIR/trial_0007 beside DIR/trials.parquet): its config and epochs.csv,
    no run.json, no model. A run trained into the sweep's folder later (DIR/best) is a run, not a trial."""
    folder = Path(folder)
    return (re.fullmatch(r"trial_\d{4}", folder.name) is not None and (folder.parent / "trials.parquet").is_file()
            and not (folder / "run.json").exists())


def peak_memory_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
