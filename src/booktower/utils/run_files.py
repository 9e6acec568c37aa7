"""Reading back the JSON, Parquet and CSV files booktower writes into a run folder (and a baselines folder).

A damaged or hand-edited file becomes one DataError naming the file and the fix, never a library's
traceback. booktower writes these files atomically, so damage is a disk fault, a partial copy or an
edit. JSON, Parquet and CSV only: nothing here unpickles.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from booktower.data.errors import DataError

# What parsing a damaged or edited file raises: invalid JSON or text (ValueError: JSONDecodeError,
# UnicodeDecodeError), a truncated or foreign Parquet / CSV file (PolarsError, or a PanicException, which is
# not an Exception), and values of another shape than booktower writes (TypeError, KeyError, IndexError).
# An OSError passes through: the CLI names the path and the fix for a missing file, a folder or a permission.
_DAMAGED = (ValueError, TypeError, KeyError, IndexError, pl.exceptions.PolarsError,
            pl.exceptions.PanicException)

RUN_JSON_SHAPE: dict[str, type] = {"inputs": dict, "machine": dict, "versions": dict, "timings_seconds": dict,
                                   "segments": list, "command": list, "cpu_kernels": str}
"""The JSON type of run.json's keys that readers take apart (when present), as training writes them."""


def retrain_fix(run_dir: Path) -> str:
    """The fix for a file training wrote (run.json, split.json, vocab/, epochs.csv, data_summary.json)."""
    return f"restore {run_dir} from a copy, or train the run again"


def rescore_fix(run_dir: Path, move_aside: bool = False) -> str:
    """The fix for a file `evaluate` writes anew: the per-user tables, diagnostics.json, audit.json, and
    metrics.json, which must be moved aside first (evaluate reads it to keep its other keys)."""
    run = f"`booktower evaluate --run {run_dir}`, which writes it again"
    return f"move it aside, then run {run}" if move_aside else f"run {run}"


def baselines_fix(folder: Path, config: Path | str = "CFG", model: str | None = None) -> str:
    """The fix for a file `booktower baselines` wrote into `folder` (of one `model`'s, when given)."""
    models = f" --models {model}" if model else ""
    return f"compute the baselines again (`booktower baselines --config {config} -o {folder}{models}`)"


class MalformedFile(ValueError):
    """A parsed file whose content is not what booktower writes; its message says what, in words."""


def _why(exc: BaseException) -> str:
    detail = (str(exc).strip().splitlines() or [""])[0][:300]
    if isinstance(exc, MalformedFile):
        return detail
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def damaged(path: Path, fix: str, problem: str) -> DataError:
    """The error for a file booktower wrote whose content is not as written; `problem` says what, in words."""
    from booktower.data.errors import DataError

    return DataError(f"it is damaged, or was edited after booktower wrote it ({problem})", path=path, fix=fix)


@contextmanager
def reading_run_file(path: Path, fix: str) -> Iterator[None]:
    """Whatever parsing or checking `path` raises (a DataError itself excepted) becomes a DataError naming the
    file and `fix`. A check inside raises MalformedFile to say in words what is not as booktower writes it."""
    from booktower.data.errors import DataError

    try:
        yield
    except DataError:
        raise
    except _DAMAGED as exc:
        raise damaged(path, fix, _why(exc)) from None


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}
    return kinds.get(type(value), "a number")


def _has_type(value: Any, kind: type) -> bool:
    """JSON's view: true/false is no number, and a whole number is a float too."""
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, (int, float) if kind is float else kind)


def read_json_object(path: Path, fix: str, shape: Mapping[str, type] | None = None) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when there is no such file. `shape` gives the type (dict, list, str,
    int, float) that a key's value must have when present, as booktower writes it."""
    path = Path(path)
    if not path.exists():
        return None
    with reading_run_file(path, fix):
        content = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(content, dict):
            raise MalformedFile(f"it holds {_json_kind(content)} where booktower writes an object")
        for key, kind in (shape or {}).items():
            if key in content and not _has_type(content[key], kind):
                raise MalformedFile(f"its {key!r} is {_json_kind(content[key])} where booktower writes "
                                    f"{_json_kind(kind())}")
    return content


def read_parquet(path: Path, fix: str, columns: tuple[str, ...] = ()) -> pl.DataFrame:
    """The table in `path`, which must have `columns` (a missing file raises FileNotFoundError)."""
    with reading_run_file(Path(path), fix):
        frame = pl.read_parquet(path)
        missing = [name for name in columns if name not in frame.columns]
        if missing:
            raise MalformedFile(f"it has no column {', '.join(map(repr, missing))}; it has {frame.columns}")
    return frame


__all__ = ["MalformedFile", "RUN_JSON_SHAPE", "baselines_fix", "damaged", "read_json_object", "read_parquet",
           "reading_run_file", "rescore_fix", "retrain_fix"]
