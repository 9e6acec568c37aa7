"""Vocabulary: raw ids <-> contiguous indices, with one explicit policy for unknown ids."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Literal

import numpy as np
import polars as pl

from booktower.utils.atomic import atomic_write_parquet
from booktower.utils.run_files import MalformedFile, reading_run_file, retrain_fix

UnknownPolicy = Literal["error", "null"]


class UnknownIdError(KeyError):
    """An id is not in the vocabulary."""

    def __str__(self) -> str:  # KeyError's own str() quotes its message
        return str(self.args[0]) if self.args else "unknown id"


class Vocabulary:
    """An ordered set of raw string ids. Index i is the i-th id; ids are unique.

    Unknown ids are handled in one place: `encode(..., unknown="error")` raises naming the ids,
    `unknown="null"` returns -1 for them (the cold-start paths decide what -1 means).
    """

    def __init__(self, ids: Iterable[str] | pl.Series, name: str = "id") -> None:
        series = pl.Series(name, ids, dtype=pl.String) if not isinstance(ids, pl.Series) else ids.cast(pl.String)
        if series.null_count():
            raise ValueError(f"vocabulary {name!r} cannot hold null ids")
        if series.n_unique() != len(series):
            raise ValueError(f"vocabulary {name!r} has duplicate ids")
        self.name = name
        self._ids = series.rename(name)
        self._lookup: dict[str, int] | None = None

    @classmethod
    def from_values(cls, values: pl.Series, name: str = "id") -> "Vocabulary":
        """Distinct values in order of first appearance (stable, so the same data gives the same indices)."""
        return cls(values.cast(pl.String).unique(maintain_order=True), name=name)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, raw_id: object) -> bool:
        return str(raw_id) in self._dict()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._ids.equals(other._ids)

    @property
    def ids(self) -> pl.Series:
        return self._ids

    def _dict(self) -> dict[str, int]:
        if self._lookup is None:
            self._lookup = {raw: i for i, raw in enumerate(self._ids.to_list())}
        return self._lookup

    def index(self, raw_id: str) -> int:
        try:
            return self._dict()[str(raw_id)]
        except KeyError:
            raise UnknownIdError(f"{self.name} {raw_id!r} is not in the vocabulary") from None

    def encode(self, raw: pl.Series | Iterable[str], unknown: UnknownPolicy = "error") -> np.ndarray:
        """Vectorised raw ids -> int64 indices (a join, so millions of ids stay fast)."""
        series = raw.cast(pl.String) if isinstance(raw, pl.Series) else pl.Series(list(raw), dtype=pl.String)
        table = pl.DataFrame({"_raw": self._ids, "_idx": pl.int_range(len(self._ids), dtype=pl.Int64, eager=True)})
        joined = pl.DataFrame({"_raw": series}).join(table, on="_raw", how="left", maintain_order="left")
        idx = joined["_idx"]
        if idx.null_count():
            if unknown == "error":
                missing = joined.filter(pl.col("_idx").is_null())["_raw"].head(5).to_list()
                raise UnknownIdError(f"{idx.null_count()} {self.name} ids are not in the vocabulary, e.g. {missing}")
            idx = idx.fill_null(-1)
        return idx.to_numpy().astype(np.int64, copy=False)

    def decode(self, indices: np.ndarray | Iterable[int]) -> list[str]:
        arr = np.asarray(indices, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= len(self)):
            raise IndexError(f"{self.name} index out of range [0, {len(self)})")
        return self._ids.gather(arr).to_list()

    def save(self, path: Path) -> None:
        atomic_write_parquet(pl.DataFrame({self.name: self._ids}), path)

    @classmethod
    def load(cls, path: Path, fix: str | None = None) -> "Vocabulary":
        """The vocabulary saved at `path`. A damaged or edited file (truncated, not Parquet, another table, null
        or repeated ids) raises a DataError naming it and `fix`, by default a run's (RUN/vocab: train again).
        Elsewhere, without a `fix`, it raises what reading raised, for that folder's reader to name its own fix
        (a prepared-data cache entry is prepared again, a bundle exported again)."""
        path = Path(path)
        fix = fix or _run_fix(path)
        if fix is None:
            return cls._read(path)
        with reading_run_file(path, fix):
            return cls._read(path)

    @classmethod
    def _read(cls, path: Path) -> "Vocabulary":
        frame = pl.read_parquet(path)
        if frame.width != 1:
            raise MalformedFile(f"a vocabulary file has exactly one column, it has {frame.columns}")
        return cls(frame.to_series(), name=frame.columns[0])


def _run_fix(path: Path) -> str | None:
    """The fix for a damaged RUN/vocab file (training wrote it); None for a vocabulary file elsewhere."""
    run_dir = path.parent.parent
    if path.parent.name == "vocab" and (run_dir / "config.yaml").is_file():
        return retrain_fix(run_dir)
    return None
