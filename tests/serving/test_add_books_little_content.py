"""`index add` says, in one warning, which new books carry an empty title or no title, author or categories at
all: a new book's vector comes from its content alone, so theirs come from little or nothing."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import polars as pl

from booktower.serving.add_books import add_books


def _add(directory: Path, tmp_path: Path, frame: pl.DataFrame, caplog) -> list[str]:
    bundle = shutil.copytree(directory, tmp_path / "b")
    frame.write_csv(tmp_path / "new.csv")
    with caplog.at_level(logging.WARNING, logger="booktower"):
        add_books(bundle, tmp_path / "new.csv")
    return [r.getMessage() for r in caplog.records if "empty title" in r.getMessage()]


def test_books_with_an_empty_title_or_no_content_are_counted_in_one_warning(trained, tmp_path: Path, caplog) -> None:
    frame = pl.DataFrame({"item_id": ["N1", "N2", "N3", "N4"], "title": ["", None, "a history of rome", "  "],
                          "author": ["writer 1", None, "writer 2", ""], "categories": ["Books", "", "Books", None]})
    warnings = _add(trained[2], tmp_path, frame, caplog)
    assert len(warnings) == 1
    message = warnings[0]
    assert "new books with an empty title: 3 of 4 (e.g. ['N1', 'N2', 'N4'])" in message
    assert "with no title, author or categories at all: 2 (e.g. ['N2', 'N4'])" in message
    assert "Fix: fill in title, author and categories" in message


def test_a_file_without_a_title_column_is_counted_too(trained, tmp_path: Path, caplog) -> None:
    warnings = _add(trained[2], tmp_path, pl.DataFrame({"item_id": ["N1"]}), caplog)
    assert len(warnings) == 1 and "new books with an empty title: 1 of 1 (e.g. ['N1'])" in warnings[0]
    assert "with no title, author or categories at all: 1 (e.g. ['N1'])" in warnings[0]


def test_books_with_titles_get_no_such_warning(trained, tmp_path: Path, caplog) -> None:
    frame = pl.DataFrame({"item_id": ["N1"], "title": ["a history of rome"], "author": [""], "categories": [""]})
    assert _add(trained[2], tmp_path, frame, caplog) == []
