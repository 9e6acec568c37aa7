"""Named data errors and the ledger of dropped rows."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from booktower.utils.wording import counted


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
    """Where the first rows of a reason are, by reason ("on lines 3 and 7 of users.csv (the header is line 1)")."""

    def drop(
        self, reason: str, count: int, *, path: Path | str | None = None, column: str | None = None,
        where: tuple[str, list[int]] | None = None, fix: str = "clean the rows or set data.strict: false to drop them",
    ) -> None:
        """Counts `count` rows dropped for `reason`; `where` says where the first of them are in their file (words,
        and the numbers: `TableFile.where`), for the error under data.strict and for `notes`."""
        if count <= 0:
            return
        if self.strict:
            error = DataError(f"{counted(count, 'row')} would be dropped ({reason}){' ' + where[0] if where else ''} "
                              "and data.strict is on", path=path, column=column, fix=fix)
            error.rows = where[1] if where else []
            raise error
        self.counts[reason] += int(count)
        if where:
            self.notes[reason] = where[0]

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


def _relative_note(path: str) -> str:
    """Relative paths in a config resolve against the working directory, not the config's folder: say so when
    such a path is missing, since running from another folder is the usual cause."""
    candidate = Path(path)
    if "://" in path or candidate.is_absolute() or candidate.exists():
        return ""
    return f" (relative to the working directory {Path.cwd()})"
