"""Format adapters: each turns a source layout into plain tables that the column mapping then reads."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from booktower.config.data import ColumnMapping, SourceConfig
from booktower.data.errors import DataError
from booktower.data.readers import iter_ndjson_batches, ndjson_keys, read_table, require_columns


@dataclass
class SourceFrames:
    interactions: pl.DataFrame
    interactions_path: Path
    items: pl.DataFrame | None = None
    items_path: Path | None = None
    users: pl.DataFrame | None = None
    users_path: Path | None = None
    paths: list[Path] = field(default_factory=list)
    header: bool = True
    """Whether each CSV file's first line names its columns, so its first row is line 2."""


def read_source(
    source: SourceConfig, interactions_path: Path, items_path: Path | None, columns: ColumnMapping | None = None
) -> SourceFrames:
    if source.format == "movielens-100k":
        if source.users is not None:  # its readers are u.user: say so rather than ignore the file
            raise DataError("format movielens-100k reads its readers from u.user in the MovieLens folder, so "
                            "data.source.users would be ignored", path=source.users,
                            fix="set data.source.users: null (or add the columns to u.user)")
        return read_movielens_100k(interactions_path)
    if source.format == "amazon2023-jsonl":
        # The dump has no reader table, but a users file the config names is the user's own: read it as the
        # csv path does (ignoring it would also let a mistyped path pass unnoticed).
        return read_users(read_amazon2023_jsonl(interactions_path, items_path, columns or ColumnMapping()), source)
    interactions = read_table(interactions_path, "interactions", separator=source.separator_for("interactions"),
                              encoding=source.encoding)
    frames = SourceFrames(interactions, interactions_path, paths=[interactions_path])
    if items_path is not None:
        items = read_table(items_path, "items", separator=source.separator_for("items"), encoding=source.encoding)
        frames.items = flatten_amazon_meta(items)
        frames.items_path = items_path
        frames.paths.append(items_path)
    return read_users(frames, source)


def read_users(frames: SourceFrames, source: SourceConfig) -> SourceFrames:
    """Adds the configured reader table (`data.source.users`, any table format) to `frames`."""
    if source.users is not None:
        frames.users = read_table(source.users, "users", separator=source.separator_for("users"), encoding=source.encoding)
        frames.users_path = source.users
        frames.paths.append(source.users)
    return frames


def flatten_amazon_meta(frame: pl.DataFrame) -> pl.DataFrame:
    """Amazon 2023 `meta_Books.jsonl` nests `author` as {name, ...}: take the name. Lists stay lists (the
    text parsers accept list columns directly, so no per-row JSON round trip)."""
    exprs = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Struct):
            fields = [f.name for f in dtype.fields]
            if not fields:  # `"details": {}` on every row: nothing to take
                exprs.append(pl.lit(None, dtype=pl.String).alias(name))
                continue
            inner = "name" if "name" in fields else fields[0]
            exprs.append(pl.col(name).struct.field(inner).cast(pl.String).alias(name))
    return frame.with_columns(exprs) if exprs else frame


# The fields of the Amazon Reviews 2023 JSON lines that the default format uses, with their JSON types.
REVIEW_SCHEMA: dict[str, pl.DataType] = {
    "rating": pl.Float64(), "parent_asin": pl.String(), "user_id": pl.String(), "timestamp": pl.Int64(),
}
META_SCHEMA: dict[str, pl.DataType] = {
    "title": pl.String(), "author": pl.Struct({"name": pl.String()}), "average_rating": pl.Float64(),
    "rating_number": pl.Int64(), "price": pl.String(), "categories": pl.List(pl.String()), "parent_asin": pl.String(),
}


def _mapped_schema(path: Path, role: str, needed: list[tuple[str, str]], known: dict[str, pl.DataType]) -> dict:
    """Validate the mapping against the file's fields, then read only those fields (known ones typed)."""
    keys = ndjson_keys(path, role)
    require_columns(pl.DataFrame(schema={k: pl.String for k in keys}), path, role, needed)
    return {column: known.get(column, pl.String()) for column, _ in needed}


def read_amazon2023_jsonl(reviews: Path, meta: Path | None, columns: ColumnMapping) -> SourceFrames:
    """`Books.jsonl.gz` (reviews) and `meta_Books.jsonl.gz` read in streamed batches, mapped columns only.

    The column mapping names raw JSON fields, e.g. `columns.user: user_id` (the reviews' field name).
    """
    needed = [(columns.user, "data.columns.user"), (columns.item, "data.columns.item"),
              (columns.timestamp, "data.columns.timestamp")]
    needed += [(c, f"data.columns.{k}") for k, c in (("rating", columns.rating), ("order", columns.order),
                                                    ("split", columns.split)) if c]
    schema = _mapped_schema(reviews, "interactions", needed, REVIEW_SCHEMA | {columns.user: pl.String()})
    interactions = pl.concat(list(iter_ndjson_batches(reviews, schema)), how="vertical")
    frames = SourceFrames(interactions, reviews, paths=[reviews])
    if meta is not None:
        item_needed = [(columns.catalogue_id, "data.columns.catalogue_item" if columns.catalogue_item
                        else "data.columns.item")]
        item_needed += [(c, f"data.columns.{k}") for k, c in (("item_title", columns.item_title),
                        ("item_author", columns.item_author), ("item_categories", columns.item_categories)) if c]
        item_needed += [(c, "data.columns.item_numeric") for c in columns.item_numeric]
        item_needed += [(c, "data.columns.item_categorical") for c in columns.item_categorical]
        # Numeric fields are read as text: price is a number, a string or null in the real dump.
        known = {k: v for k, v in META_SCHEMA.items() if k not in columns.item_numeric}
        meta_schema = _mapped_schema(meta, "items", item_needed, known)
        items = pl.concat([flatten_amazon_meta(b) for b in iter_ndjson_batches(meta, meta_schema)], how="vertical")
        frames.items, frames.items_path = items, meta
        frames.paths.append(meta)
    return frames


MOVIELENS_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]


def _headerless(path: Path, separator: str, columns: list[str], encoding: str = "utf-8") -> pl.DataFrame:
    """One of MovieLens's u.* files (no header, no quoting) as text columns; a line with another number of
    fields than the format's is a DataError naming it, not polars' traceback."""
    text = path.read_bytes().decode(encoding)
    try:
        return pl.read_csv(text.encode("utf-8"), separator=separator, has_header=False, infer_schema=False,
                           new_columns=columns, quote_char=None)
    except (pl.exceptions.ComputeError, pl.exceptions.ShapeError) as exc:
        lines = text.splitlines()
        bad = next((n for n, line in enumerate(lines, start=1) if line and line.count(separator) != len(columns) - 1),
                   None)
        where = f"line {bad} has {lines[bad - 1].count(separator) + 1} fields" if bad else str(exc).splitlines()[0]
        raise DataError(f"every line of {path.name} holds {len(columns)} fields separated by {separator!r}, and "
                        f"{where}", path=path, fix="correct or delete that line (the MovieLens-100K files have no "
                        "header: line 1 is the first record)") from None


def read_movielens_100k(folder: Path) -> SourceFrames:
    """MovieLens-100K: u.data (tab), u.item (pipe, latin-1, 19 genre flags), u.user (pipe)."""
    if not folder.is_dir():
        raise DataError("format movielens-100k expects the MovieLens-100K folder", path=folder,
                        fix="set data.source.interactions to the folder holding u.data, u.item and u.user")
    paths = {name: folder / name for name in ("u.data", "u.item", "u.user")}
    for name, path in paths.items():
        if not path.exists():
            raise DataError(f"the MovieLens-100K folder has no {name}", path=path,
                            fix="download the complete ml-100k archive and point data.source.interactions at it")
    ratings = _headerless(paths["u.data"], "\t", ["user_id", "item_id", "rating", "timestamp"])
    item_cols = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *MOVIELENS_GENRES]
    items_raw = _headerless(paths["u.item"], "|", item_cols, encoding="latin-1")
    flags = items_raw.select(MOVIELENS_GENRES[1:]).with_columns(pl.all().cast(pl.Int8)).to_numpy() == 1  # (n, 18)
    names = np.array(MOVIELENS_GENRES[1:], dtype=object)
    genres = [json.dumps(list(names[row])) for row in flags]
    items = items_raw.select(
        "item_id", "title",
        pl.col("release_date").str.slice(-4).alias("release_year"),
        pl.Series("genres", genres),
    )
    users = _headerless(paths["u.user"], "|", ["user_id", "age", "gender", "occupation", "zip"])
    return SourceFrames(ratings, paths["u.data"], items, paths["u.item"], users, paths["u.user"],
                        paths=list(paths.values()), header=False)

