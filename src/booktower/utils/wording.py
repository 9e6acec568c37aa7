"""Counts in messages, in the number they agree with: "1 book", "3 books"."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` with its noun: counted(1, "book") -> "1 book", counted(2_000, "book") -> "2,000 books"."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
