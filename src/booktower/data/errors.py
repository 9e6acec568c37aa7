"""Named data errors and the ledger of dropped rows."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence


class DataError(ValueError):
    """Bad input. The message names the file, the column, example rows and the fix."""

    def __init__(
        self,
        problem: str,
        *,
        path: Path | str | None = None,
        column: str | None = None,
        rows: Sequence[int] = (),
        fix: str,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.column = column
        self.rows = list(rows)[:5]
        self.fix = fix
        where = []
        if self.path:
            where.append(f"file {self.path}{_relative_note(self.path)}")
        if column:
            where.append(f"column {column!r}")
        if self.rows:
            where.append("rows " + ", ".join(str(r) for r in self.rows))
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(f"{prefix}{problem}. Fix: {fix}")


@dataclass
class DropLedger:
    """Counts every row that validation or pruning removes, by reason; `strict` makes any drop an error."""

    strict: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    notes: dict[str, str] = field(default_factory=dict)

    def drop(
        self, reason: str, count: int, *, path: Path | str | None = None, column: str | None = None,
        rows: Sequence[int] = (), fix: str = "clean the rows or set data.strict: false to drop them",
    ) -> None:
        if count <= 0:
            return
        if self.strict:
            raise DataError(f"{count} rows would be dropped ({reason}) and data.strict is on",
                            path=path, column=column, rows=rows, fix=fix)
        self.counts[reason] += int(count)
        if rows:
            self.notes[reason] = "example rows " + ", ".join(str(r) for r in list(rows)[:5])

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


def _relative_note(path: str) -> str:
    """Relative paths in a config resolve against the working directory, not the config's folder: say so when
    such a path is missing, since running from another folder is the usual cause."""
    candidate = Path(path)
    if "://" in path or candidate.is_absolute() or candidate.exists():
        return ""
    return f" (relative to the working directory {Path.cwd()})"
