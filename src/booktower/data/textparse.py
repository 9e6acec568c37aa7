"""Parsing text-ish metadata: JSON-list strings, category paths, titles, authors, tokens."""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field

import numpy as np
import polars as pl

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


def parse_list_column(raw: pl.Series) -> pl.Series:
    """JSON-list strings (`["Books", "Fiction"]`), `a > b > c` paths or `a|b` text -> list[str] (empty when missing).
    A row that starts with `[` but is not valid JSON (`[Books, Fiction]`) is split on its commas.

    A column that is already a list (JSON-lines sources) is only cleaned.
    """
    if isinstance(raw.dtype, pl.List):
        cleaned = raw.cast(pl.List(pl.String)).list.eval(pl.element().str.strip_chars().filter(pl.element() != ""))
        return cleaned.fill_null([]).rename(raw.name)
    text = raw.cast(pl.String).fill_null("").str.strip_chars()
    parsed = text.str.replace_all("|", " > ", literal=True).str.split(" > ")
    looks_json = text.str.starts_with("[")
    if bool(looks_json.any()):
        decoded = _json_lists(text, looks_json)
        parsed = pl.select(pl.when(decoded.is_not_null()).then(decoded).otherwise(parsed)).to_series()
        malformed = looks_json & decoded.is_null()
        if bool(malformed.any()):
            loose = text.str.strip_prefix("[").str.strip_suffix("]").str.split(",").list.eval(
                pl.element().str.strip_chars().str.strip_chars("\"'"))
            parsed = pl.select(pl.when(malformed).then(loose).otherwise(parsed)).to_series()
    return parsed.list.eval(pl.element().str.strip_chars().filter(pl.element() != "")).fill_null([]).rename(raw.name)


def _json_lists(text: pl.Series, candidates: pl.Series) -> pl.Series:
    """The rows of `text` marked in `candidates` that are JSON lists, decoded to list[str]; null elsewhere. One
    vectorised decode when every candidate parses; else row by row (only the candidates), so one malformed row
    is not an error for the whole column."""
    masked = pl.select(pl.when(candidates).then(text).otherwise(pl.lit(None, pl.String))).to_series()
    try:
        return masked.str.json_decode(pl.List(pl.String))
    except pl.exceptions.PolarsError:
        return pl.Series(text.name, [_json_list(v) for v in masked.to_list()], dtype=pl.List(pl.String))


def _json_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return [str(x) for x in parsed if x is not None] if isinstance(parsed, list) else None


def parse_text_column(raw: pl.Series) -> pl.Series:
    """A title that may be a JSON-list string (`["Chaucer"]`) or a list -> plain text. Other titles, those that
    start with `[` included (`[Untitled] Poems`), stay as they are."""
    if isinstance(raw.dtype, pl.List):
        return raw.cast(pl.List(pl.String)).list.join(" ").fill_null("").rename("title")
    text = raw.cast(pl.String).fill_null("").str.strip_chars()
    looks_json = text.str.starts_with("[")
    if bool(looks_json.any()):
        listed = _json_lists(text, looks_json).list.join(" ")
        text = pl.select(pl.when(listed.is_not_null()).then(listed).otherwise(text)).to_series()
    return text.rename("title")


def json_list_strings(lists: pl.Series) -> pl.Series:
    """list[str] -> JSON-list strings (`["Books","Fiction"]`), vectorised (no Python call per row)."""
    name = lists.name or "values"
    encoded = pl.DataFrame({name: lists.cast(pl.List(pl.String))}).select(pl.struct(name).struct.json_encode()).to_series()
    # json_encode writes {"name":[...]}: keep the list. A null list becomes [].
    prefix = len('{"' + name + '":')
    body = encoded.str.slice(prefix).str.strip_suffix("}")
    return pl.select(pl.when(body == "null").then(pl.lit("[]")).otherwise(body)).to_series().rename(name)


def stable_hash(token: str, buckets: int) -> int:
    """A hash that is the same in every process and version (Python's hash() is salted; polars' may change)."""
    return zlib.crc32(token.encode("utf-8")) % buckets


def tokenize(titles: pl.Series) -> pl.Series:
    return titles.str.to_lowercase().str.extract_all(r"[^\W_]+")


def hash_tokens(titles: pl.Series, buckets: int, max_tokens: int, bigrams: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Titles -> CSR (offsets, bucket ids) of hashed tokens; unique tokens are hashed once."""
    tokens = tokenize(titles).list.head(max_tokens)
    if bigrams:
        tokens = tokens.list.eval(
            pl.concat_list(pl.element(), pl.element() + pl.lit(" ") + pl.element().shift(-1)).explode().drop_nulls()
        )
    lengths = tokens.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = tokens.explode().drop_nulls()
    unique = flat.unique()
    table = pl.DataFrame({"tok": unique, "h": [stable_hash(t, buckets) for t in unique.to_list()]},
                         schema={"tok": pl.String, "h": pl.Int64})
    values = pl.DataFrame({"tok": flat}).join(table, on="tok", how="left", maintain_order="left")["h"].to_numpy()
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets, values.astype(np.int64)


# ---- authors -------------------------------------------------------------------------------------------------

AUTHOR_SEPARATORS = (";", " & ", " and ")
"""What separates two authors in any catalogue. A comma does in some ("J.K. Rowling, Mary GrandPré") and is part
of the name in others ("Green, John"): `fit_author_split` tells which."""
_SUFFIX = r",\s*((?i:jr|sr)\.?|II|III|IV)\s*(,|$)"
"""A comma before a name's suffix ("Martin Luther King, Jr."), which never starts another author."""
_CUT, _KEPT = "\x1f", "\x1e"  # control characters no author name holds


@dataclass
class AuthorSplit:
    """How an author column's text becomes authors. Fitted once and saved in the feature spec, so books added to
    a served bundle (`index add`) are split exactly as the training books were."""

    separators: list[str] = field(default_factory=lambda: [","])
    """Each one separates two authors (literal text). The default is the rule of specs saved before this one
    existed: every comma."""
    keep_suffixes: bool = False
    """A comma before Jr., Sr., II, III or IV stays inside the name instead of making the suffix an author."""


def split_authors(authors: pl.Series, rule: AuthorSplit) -> pl.Series:
    """Author text -> list[str] of authors per row (empty when there is none)."""
    text = authors.cast(pl.String).fill_null("")
    if rule.keep_suffixes:
        text = text.str.replace_all(_SUFFIX, _KEPT + "${1}${2}")
    for separator in rule.separators:
        text = text.str.replace_all(separator, _CUT, literal=True)
    parts = text.str.split(_CUT).list.eval(pl.element().str.strip_chars().filter(pl.element() != ""))
    return parts.list.eval(pl.element().str.replace_all(_KEPT, ", ", literal=True)).rename(authors.name)


def fit_author_split(authors: pl.Series, separator: str | None = None) -> AuthorSplit:
    """The rule for this catalogue's `authors` (its training books'). `separator` (data.features.author_separator),
    when set, is the only one. Unset: `;`, ` & ` and ` and ` separate authors, and so do commas unless most names
    holding one comma have a one-word side ("Green, John", "Tolkien, J.R.R."): a catalogue of "Surname, Forename"
    names. Decided over the whole column, not per row, since one row cannot tell "Le Guin, Ursula K." (one author)
    from "Stieg Larsson, Reg Keeland" (two), while a column shows which form it uses."""
    if separator is not None:
        return AuthorSplit([separator], keep_suffixes=separator == ",")
    # A suffix is left out of the vote: "Martin Luther King, Jr." has a one-word side in either form.
    unsuffixed = authors.cast(pl.String).fill_null("").str.replace_all(_SUFFIX, "${2}")
    pieces = split_authors(unsuffixed, AuthorSplit(list(AUTHOR_SEPARATORS))).explode().drop_nulls()
    one_comma = pieces.filter(pieces.str.count_matches(",", literal=True) == 1)
    sides = one_comma.str.split(",").list.eval(pl.element().str.strip_chars())
    inverted = sides.list.eval(~pl.element().str.contains(r"\s")).list.any()
    if 2 * int(inverted.sum()) > len(inverted):
        return AuthorSplit(list(AUTHOR_SEPARATORS))
    return AuthorSplit([*AUTHOR_SEPARATORS, ","], keep_suffixes=True)


def single_word_authors(bags: pl.Series, rule: AuthorSplit) -> str | None:
    """A warning when many of the authors `rule` made are one word: most often a "Surname, Forename" name cut at
    its comma ("Green" and "John"), which gives every John one shared author feature."""
    names = bags.explode().drop_nulls().unique(maintain_order=True)
    single = names.filter(~names.str.contains(r"\s"))
    if len(single) < 3 or len(single) < 0.25 * len(names):
        return None
    examples = ", ".join(repr(name) for name in single.head(5).to_list())
    cut = "its commas" if "," in rule.separators else " or ".join(repr(s) for s in rule.separators)
    return (f"{len(single):,} of the {len(names):,} authors read from the catalogue's author column are one word "
            f"({examples}, ...): most likely \"Surname, Forename\" names cut at {cut}, so every John shares one "
            "author feature. Fix: set data.features.author_separator to what separates two authors in the column "
            "(e.g. ';' for \"Green, John; Levithan, David\")")
