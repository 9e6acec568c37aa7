"""Whether a file holds the columns the config maps to it, told all at once: a catalogue without titles, authors
or prices should take one run to fix, not one run per column."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from booktower.data.errors import DataError


@dataclass(frozen=True)
class Mapped:
    """One column the config names for a file."""

    column: str
    key: str
    """The config key that names it (`data.columns.item_title`)."""
    absent: str | None = None
    """What the key takes when the file has no such column: `null`, `[]` (a list key, which loses the name), or
    None when the column is required."""
    fix: str = ""
    """A required column's own fix, when setting `key` is not it (the catalogue's id column has a key of its
    own, `data.columns.catalogue_item`, since `data.columns.item` also names the log's). `{near}` in it becomes
    the file's column most like this one."""
    is_id: bool = False
    """An id column: its near name is looked for among the columns that look like ids."""


_ID_LIKE = re.compile(r"id|asin|isbn|key|code", re.IGNORECASE)


def near_name(column: str, present: list[str], id_like: bool = False) -> str | None:
    """The file's column most like `column`. For an id, a column that looks like an id first: `book_id` for
    `item_id`, where plain spelling would pick `title`."""
    if id_like:
        ids = [name for name in present if _ID_LIKE.search(name)]
        close = difflib.get_close_matches(column, ids, n=1, cutoff=0.3)
        if close:
            return close[0]
    close = difflib.get_close_matches(column, present, n=1, cutoff=0.5)
    return close[0] if close else None


def require_mapped(frame: pl.DataFrame, path: Path | str, role: str, mapped: list[Mapped],
                   lists: dict[str, list[str]] | None = None) -> None:
    """An error naming every mapped column the file lacks, each with its key, a near name and what to set.
    `lists`: the list keys whose names must stay a subset of another's (`item_nonnegative` of `item_numeric`), by
    key, with their names: a name left out of the one must leave the other too."""
    missing = [m for m in mapped if m.column not in frame.columns]
    if not missing:
        return
    present = list(frame.columns)
    taken = {m.column for m in mapped}
    free = [name for name in present if name not in taken]  # a column mapped to another key is no near name
    if len(missing) == 1:
        one = missing[0]
        close = near_name(one.column, free, one.is_id)
        near = f" Did you mean {close!r}?" if close else ""
        problem = f"the {role} file has no column {one.column!r} ({one.key}).{near}"
    else:
        problem = (f"the {role} file lacks {len(missing)} of the columns the config maps to it: "
                   f"{_listed([_describe(m, free) for m in missing])}.")
    raise DataError(f"{problem} Its columns are {present[:20]}", path=path,
                    column=missing[0].column if len(missing) == 1 else None,
                    fix=_fix(missing, mapped, lists or {}, free))


def _describe(m: Mapped, present: list[str]) -> str:
    close = near_name(m.column, present, m.is_id)
    near = f"; did you mean {close!r}?" if close else ""
    return f"{m.column!r} ({m.key}{near})"


def _listed(items: list[str]) -> str:
    return ", ".join(items[:-1]) + f" and {items[-1]}"


def _fix(missing: list[Mapped], mapped: list[Mapped], lists: dict[str, list[str]], free: list[str]) -> str:
    """Set each key to the file's own name for the column, or (optional ones) to null / a list without it."""
    required = [m for m in missing if m.absent is None]
    optional = [m for m in missing if m.absent is not None]
    parts = [m.fix.format(near=near_name(m.column, free, m.is_id) or "ITS_ID_COLUMN") for m in required if m.fix]
    plain = [m.key for m in required if not m.fix]
    if plain:
        parts.append(f"set {_listed(plain) if len(plain) > 1 else plain[0]} to the file's name for "
                     f"{'those columns' if len(plain) > 1 else 'that column'} (or rename the column in the file)")
    if len(optional) == 1:
        none = "null" if optional[0].absent == "null" else "leave it out of the list ([] for an empty one)"
        parts.append(f"set {optional[0].key} to your column's name, or {none} if you have none: "
                     + " ".join(_optional_sets(optional, mapped, lists)))
    elif optional:
        parts.append("set each to your column's name, or null (lists: []) if you have none, e.g. "
                     + " ".join(_optional_sets(optional, mapped, lists)))
    return "; ".join(parts)


def _optional_sets(optional: list[Mapped], mapped: list[Mapped], lists: dict[str, list[str]]) -> list[str]:
    """`--set` arguments that map the optional columns away: null for a column, the list without the missing names
    for a list key (and for the lists that must stay inside it)."""
    gone = {m.column for m in optional}
    sets: dict[str, str] = {}
    for m in optional:
        if m.absent == "null":
            sets[m.key] = f"--set {m.key}=null"
        else:
            kept = [other.column for other in mapped if other.key == m.key and other.column not in gone]
            sets[m.key] = f"--set '{m.key}=[{','.join(kept)}]'"
    for key, names in lists.items():
        if gone & set(names):
            sets[key] = f"--set '{key}=[{','.join(n for n in names if n not in gone)}]'"
    return list(sets.values())
