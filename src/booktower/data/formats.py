"""Format adapters: each turns a source layout into plain tables that the column mapping then reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from booktower.config.data import SourceConfig
from booktower.data.errors import DataError
from booktower.data.readers import read_table


@dataclass
class SourceFrames:
    interactions: pl.DataFrame
    interactions_path: Path
    items: pl.DataFrame | None = None
    items_path: Path | None = None
    users: pl.DataFrame | None = None
    users_path: Path | None = None
    paths: list[Path] = field(default_factory=list)


def read_source(source: SourceConfig, interactions_path: Path, items_path: Path | None) -> SourceFrames:
    if source.format == "movielens-100k":
        return read_movielens_100k(interactions_path)
    interactions = read_table(interactions_path, "interactions", separator=source.separator, encoding=source.encoding)
    frames = SourceFrames(interactions, interactions_path, paths=[interactions_path])
    if items_path is not None:
        frames.items = flatten_amazon_meta(read_table(items_path, "items", separator=source.separator, encoding=source.encoding))
        frames.items_path = items_path
        frames.paths.append(items_path)
    if source.users is not None:
        frames.users = read_table(source.users, "users", separator=source.separator, encoding=source.encoding)
        frames.users_path = source.users
        frames.paths.append(source.users)
    return frames


def flatten_amazon_meta(frame: pl.DataFrame) -> pl.DataFrame:
    """Amazon 2023 `meta_Books.jsonl` nests `author` as {name, ...} and holds lists; flatten to text columns."""
    exprs = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Struct):
            fields = [f.name for f in dtype.fields]
            inner = "name" if "name" in fields else fields[0]
            exprs.append(pl.col(name).struct.field(inner).cast(pl.String).alias(name))
        elif isinstance(dtype, pl.List):
            exprs.append(pl.col(name).cast(pl.List(pl.String)).list.eval(pl.element().fill_null(""))
                         .map_elements(lambda v: _json_list(v), return_dtype=pl.String).alias(name))
    return frame.with_columns(exprs) if exprs else frame


def _json_list(values: pl.Series) -> str:
    import json

    return json.dumps(values.to_list(), ensure_ascii=False)


MOVIELENS_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]


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
    ratings = pl.read_csv(paths["u.data"], separator="\t", has_header=False, infer_schema=False,
                          new_columns=["user_id", "item_id", "rating", "timestamp"])
    item_cols = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *MOVIELENS_GENRES]
    items_raw = pl.read_csv(paths["u.item"].read_bytes().decode("latin-1").encode("utf-8"), separator="|",
                            has_header=False, infer_schema=False, new_columns=item_cols, quote_char=None)
    flags = items_raw.select(MOVIELENS_GENRES).with_columns(pl.all().cast(pl.Int8))
    genres = [
        [g for g, f in zip(MOVIELENS_GENRES, row) if f == 1 and g != "unknown"] for row in flags.iter_rows()
    ]
    import json

    items = items_raw.select(
        "item_id", "title",
        pl.col("release_date").str.slice(-4).alias("release_year"),
        pl.Series("genres", [json.dumps(g) for g in genres]),
    )
    users = pl.read_csv(paths["u.user"], separator="|", has_header=False, infer_schema=False,
                        new_columns=["user_id", "age", "gender", "occupation", "zip"])
    return SourceFrames(ratings, paths["u.data"], items, paths["u.item"], users, paths["u.user"],
                        paths=list(paths.values()))
