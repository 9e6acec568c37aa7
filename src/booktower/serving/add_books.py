"""New books into a served bundle without retraining: content-only vectors from the fitted item tower."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from booktower.data.errors import DataError
from booktower.data.textparse import parse_list_column, parse_text_column
from booktower.data.vocab import Vocabulary
from booktower.serving.bundle import TAG_SEPARATOR, BundleParts, load_bundle, write_bundle
from booktower.serving.encoder import Encoder, ModelEncoder


def read_books(path: Path) -> pl.DataFrame:
    """A CSV / Parquet / JSONL of new books in the standard columns: item_id, title, author, categories
    (a JSON list, `a > b` path or `a|b` tags) and optional num:<name> columns."""
    from booktower.data.readers import read_table

    frame = read_table(Path(path), "new books", named_by="--books")
    if "item_id" not in frame.columns:
        raise DataError(f"the new-books file has no item_id column (found {frame.columns})", path=path,
                        fix="name the id column item_id")
    return standard_catalogue(frame)


def standard_catalogue(frame: pl.DataFrame) -> pl.DataFrame:
    columns = [pl.col("item_id").cast(pl.String)]
    columns.append(parse_text_column(frame["title"]).alias("title") if "title" in frame.columns else pl.lit("").alias("title"))
    columns.append(pl.col("author").cast(pl.String).fill_null("") if "author" in frame.columns else pl.lit("").alias("author"))
    columns.append(parse_list_column(frame["categories"]).alias("categories") if "categories" in frame.columns
                   else pl.lit([], dtype=pl.List(pl.String)).alias("categories"))
    columns += [pl.col(c).cast(pl.Float64, strict=False) for c in frame.columns if c.startswith("num:")]
    return frame.select(columns)


def with_books(parts: BundleParts, encoder: Encoder, catalogue: pl.DataFrame) -> BundleParts:
    """`parts` plus the new books (appended, index order kept). Ids already in the bundle are an error."""
    ids = catalogue["item_id"]
    empty = ids.null_count() + int((ids.str.strip_chars() == "").sum())
    repeated = ids.drop_nulls().filter(ids.drop_nulls().is_duplicated()).unique(maintain_order=True).to_list()
    if empty or repeated:
        raise DataError(f"new books need unique, non-empty item_id values: {empty} empty, {len(repeated)} repeated"
                        f"{f' (e.g. {repeated[:5]})' if repeated else ''}",
                        fix="give every row of the file its own item_id")
    clash = [raw for raw in ids.to_list() if raw in parts.items]
    if clash:
        raise DataError(f"{len(clash)} new books are already in the bundle, e.g. {clash[:5]}",
                        fix="drop them from the file (a book's vector is replaced only by re-exporting)")
    vectors = encoder.item_vectors(catalogue)  # (m, d)
    metadata = catalogue.select("item_id", "title", "author",
                                pl.col("categories").list.join(TAG_SEPARATOR).alias("categories"))
    return replace(
        parts,
        item_vectors=np.concatenate([parts.item_vectors, vectors.astype(np.float32)]),
        items=Vocabulary(pl.concat([parts.items.ids, ids.rename(parts.items.name)]), name=parts.items.name),
        metadata=pl.concat([parts.metadata, metadata], how="vertical_relaxed"),
        popularity=np.concatenate([parts.popularity, np.zeros(len(ids), dtype=np.int64)]),
        info={**parts.info, "added_books": int(parts.info.get("added_books", 0)) + len(ids)},
    )


def add_books(bundle_dir: Path, books: Path) -> dict[str, Any]:
    """`booktower index add`: encode the books, append them, rewrite the bundle atomically. Returns the manifest."""
    bundle_dir = Path(bundle_dir)
    parts, _ = load_bundle(bundle_dir)
    encoder = ModelEncoder.load(bundle_dir / "model", parts.feature_spec, parts.popularity, parts.n_model_items)
    return write_bundle(with_books(parts, encoder, read_books(books)), bundle_dir)
