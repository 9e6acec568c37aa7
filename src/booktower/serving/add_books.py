"""New books into a served bundle without retraining: content-only vectors from the fitted item tower."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from booktower.data.errors import DataError
from booktower.data.features import FeatureSpec
from booktower.data.textparse import parse_list_column, parse_text_column
from booktower.data.vocab import Vocabulary
from booktower.serving._lock import bundle_lock
from booktower.serving.added_content import with_added_codes
from booktower.serving.book_features import model_book_features, report_columns, source_column
from booktower.serving.bundle import TAG_SEPARATOR, BundleParts, load_bundle, read_manifest, write_bundle
from booktower.serving.encoder import Encoder, ModelEncoder
from booktower.serving.manifest import CatalogueColumns
from booktower.serving.withdraw import withdrawn_on_arrival
from booktower.utils.wording import counted

log = logging.getLogger(__name__)

BOOKS_OPTION = "--books"


def read_table_of_books(path: Path, columns: CatalogueColumns | None = None, what: str = "new books") -> pl.DataFrame:
    """A `--books` file as text columns, its id column named item_id; its problems are DataErrors naming
    `--books` (index has no config) and the file as `what`. `columns`: the training catalogue's names, accepted
    too."""
    from booktower.data.readers import read_table

    columns = columns or CatalogueColumns()
    frame = read_table(Path(path), what, named_by=BOOKS_OPTION)
    if "item_id" in frame.columns and columns.item != "item_id" and columns.item in frame.columns:
        log.warning("%s has both item_id and %s (the training catalogue's id column): item_id is read as the "
                    "books' id; drop one of them to be sure which", path, columns.item)
    if "item_id" not in frame.columns:
        if columns.item not in frame.columns:
            names = sorted({"item_id", columns.item})
            raise DataError(f"the {what} file has no id column {' or '.join(map(repr, names))} (found "
                            f"{frame.columns[:20]})", path=path, fix=f"name the id column {names[-1]}")
        frame = frame.rename({columns.item: "item_id"})
    return frame


def standard_catalogue(frame: pl.DataFrame, spec: FeatureSpec, path: Path | str = "the new-books file",
                       columns: CatalogueColumns | None = None) -> pl.DataFrame:
    """Standard catalogue rows (item_id, title, author, categories, and the num:/cat: columns the fitted model
    reads), parsed as ingest parses the training catalogue: ids and numbers stripped, `$` and null words removed,
    negative values of the catalogue's non-negative columns removed. A standard column may go by the training
    catalogue's name (`columns`)."""
    columns = columns or CatalogueColumns()
    frame = _standard_names(frame, columns)
    features = model_book_features(spec)
    report_columns(frame, features, path)
    columns_out = [
        pl.col("item_id").cast(pl.String).str.strip_chars().alias("item_id"),
        parse_text_column(frame["title"]).alias("title") if "title" in frame.columns else pl.lit("").alias("title"),
        pl.col("author").cast(pl.String).fill_null("").alias("author") if "author" in frame.columns
        else pl.lit("").alias("author"),
        parse_list_column(frame["categories"]).alias("categories") if "categories" in frame.columns
        else pl.lit([], dtype=pl.List(pl.String)).alias("categories"),
    ]
    for feature in features:
        source = source_column(frame, feature)
        if feature.kind == "num":
            numbers = _numbers_as_missing(frame, source, path) if source else None
            columns_out.append(numbers.alias(feature.column) if numbers is not None
                               else pl.lit(None, dtype=pl.Float64).alias(feature.column))
        elif feature.kind == "cat":
            columns_out.append(pl.col(source).cast(pl.String).alias(feature.column) if source
                               else pl.lit(None, dtype=pl.String).alias(feature.column))
    return _without_negatives(frame.select(columns_out), columns.nonnegative, path)


def _numbers_as_missing(frame: pl.DataFrame, column: str, path: Path | str) -> pl.Series:
    """A metadata column as numbers, a value that is not one (`abc`, `inf`) set to missing with a warning, as
    `prepare` set it for the training books: the catalogue `prepare` accepted is accepted here too."""
    from booktower.data.values import read_numbers

    parsed = read_numbers(frame, column, f"the {BOOKS_OPTION} file")
    if parsed.bad.any():
        from booktower.data.readers import table_format

        examples = parsed.raw.filter(parsed.bad).unique(maintain_order=True).head(3).to_list()
        kind = table_format(Path(path))
        first = {"csv": 2, "jsonl": 1}.get(kind, 1)  # a CSV's rows start below its header; Parquet rows count from 1
        word = "row" if kind == "parquet" else "line"
        places = [int(i) + first for i in pl.arg_where(parsed.bad, eager=True).head(3).to_list()]
        log.warning("%s, column %r: %s (e.g. %s, on %s%s %s): set to missing, as prepare sets a training book's",
                    path, column, parsed.counted(), examples, word, "s" if len(places) > 1 else "",
                    ", ".join(map(str, places)))
    return parsed.values


def _standard_names(frame: pl.DataFrame, columns: CatalogueColumns) -> pl.DataFrame:
    """title / author / categories under the catalogue's own names too (the standard name wins when both are)."""
    renames = {theirs: ours for ours, theirs in (("title", columns.title), ("author", columns.author),
                                                  ("categories", columns.categories))
               if theirs and theirs != ours and theirs in frame.columns and ours not in frame.columns}
    return frame.rename(renames)


def _without_negatives(catalogue: pl.DataFrame, nonnegative: list[str], path: Path | str) -> pl.DataFrame:
    """Negative values of the non-negative columns become missing, as prepare made them for training books
    (a value training never produced would move the vector unpredictably); counted in a warning."""
    for name in nonnegative:
        column = f"num:{name}"
        if column not in catalogue.columns:
            continue
        negative = (pl.col(column) < 0).fill_null(False)
        count = int(catalogue.select(negative.sum()).item())
        if count:
            named = catalogue.filter(negative)["item_id"].to_list()[:5]
            log.warning("%s: %d book%s a negative %s (e.g. %s); it is treated as missing, as prepare treated the "
                        "training catalogue's (fix: %s must be >= 0)", path, count, " has" if count == 1 else "s have",
                        name, named, name)
            catalogue = catalogue.with_columns(pl.when(negative).then(None).otherwise(pl.col(column)).alias(column))
    return catalogue


def _warn_if_indistinct(vectors: np.ndarray) -> None:
    """New books have no ID vector: a model whose item tower reads no book content (model.item.use_features:
    false) gives every one the same vector, and they would tie in every list. Said, not refused: a category slot
    can still serve them."""
    if len(vectors) >= 2 and np.allclose(vectors, vectors[:1]):
        log.warning("the %d new books all got the same vector: this model's item tower reads no book content (e.g. "
                    "model.item.use_features: false), so nothing tells them apart and they rank together. Serve "
                    "them through a category slot (?category=...), or retrain with book features to rank them",
                    len(vectors))


def _warn_if_little_content(catalogue: pl.DataFrame, path: Path | str) -> None:
    """A new book has no ID vector: its title, author and categories are most of what it is encoded from, so
    books without them get vectors from little or nothing and rank near chance. Said, not refused: a shop may
    list a book before its metadata arrives."""
    def blank(name: str) -> pl.Expr:
        return pl.col(name).fill_null("").str.strip_chars() == ""

    untitled = blank("title")
    bare = untitled & blank("author") & (pl.col("categories").list.len().fill_null(0) == 0)
    flags = catalogue.select("item_id", untitled.alias("untitled"), bare.alias("bare"))
    n_untitled, n_bare = int(flags["untitled"].sum()), int(flags["bare"].sum())
    if not n_untitled:
        return
    some = flags.filter("untitled")["item_id"].to_list()[:5]
    bare_ids = flags.filter("bare")["item_id"].to_list()[:5]
    none_at_all = f"; with no title, author or categories at all: {n_bare} (e.g. {bare_ids})" if n_bare else ""
    log.warning("%s: new books with an empty title: %d of %d (e.g. %s)%s. Their vectors come from little or "
                "nothing, so they rank near chance. Fix: fill in title, author and categories before adding them "
                "(an added book's vector changes only at a re-export)", path, n_untitled, catalogue.height, some,
                none_at_all)


def with_books(parts: BundleParts, encoder: Encoder, catalogue: pl.DataFrame) -> BundleParts:
    """`parts` plus the new books (appended, index order kept). Ids already in the bundle are an error."""
    ids = catalogue["item_id"]
    empty = ids.null_count() + int((ids == "").sum())
    repeated = ids.drop_nulls().filter(ids.drop_nulls().is_duplicated()).unique(maintain_order=True).to_list()
    if empty or repeated:
        raise DataError(f"new books need unique, non-empty item_id values: {empty} empty, {len(repeated)} repeated"
                        f"{f' (e.g. {repeated[:5]})' if repeated else ''}",
                        fix="give every row of the file its own item_id")
    clash = [raw for raw in ids.to_list() if raw in parts.items]
    if clash:
        raise DataError(f"{len(clash)} new books are already in the bundle, e.g. {clash[:5]}",
                        fix="pass --skip-existing to add only the others (e.g. the whole training catalogue, for the "
                            "books prepare pruned), or drop them from the file (a book's vector is replaced only by "
                            "re-exporting)")
    arriving_withdrawn, still_pending = withdrawn_on_arrival(parts, ids.to_list())
    if arriving_withdrawn.any():
        log.warning("%d of the new books had been withdrawn before the bundle was re-exported (e.g. %s): added "
                    "withdrawn; `booktower index restore --id ID` puts one back", int(arriving_withdrawn.sum()),
                    ids.filter(pl.Series(arriving_withdrawn)).to_list()[:5])
    encoded = encoder.encode_books(catalogue)
    _warn_if_indistinct(encoded.vectors)
    codes = encoded.codes
    model_files = parts.model_files if codes is None else with_added_codes(
        parts.model_files, len(parts.items) - parts.n_model_items, codes, [c.shape[1] for c in codes])
    metadata = catalogue.select("item_id", "title", "author",
                                pl.col("categories").list.join(TAG_SEPARATOR).alias("categories"))
    return replace(
        parts,
        model_files=model_files,
        item_vectors=np.concatenate([parts.item_vectors, encoded.vectors]),
        items=Vocabulary(pl.concat([parts.items.ids, ids.rename(parts.items.name)]), name=parts.items.name),
        metadata=pl.concat([parts.metadata, metadata], how="vertical_relaxed"),
        popularity=np.concatenate([parts.popularity, np.zeros(len(ids), dtype=np.int64)]),
        withdrawn=np.concatenate([parts.withdrawn, arriving_withdrawn]),
        info={**parts.info, "added_books": int(parts.info.get("added_books", 0)) + len(ids),
              "pending_withdrawals": still_pending},
    )


def _without_held_books(catalogue: pl.DataFrame, parts: BundleParts, path: Path) -> pl.DataFrame:
    held = catalogue["item_id"].is_in(parts.items.ids.implode())
    if held.any():
        log.warning("%s: %d of its %d books are already in the bundle and were skipped (--skip-existing)%s", path,
                    int(held.sum()), catalogue.height, "; nothing is left to add" if held.all() else "")
    return catalogue.filter(~held)


def add_books(bundle_dir: Path, books: Path, skip_existing: bool = False) -> dict[str, Any]:
    """`booktower index add`: encode the books, append them, rewrite the bundle atomically. Returns the manifest.

    Books the bundle already holds are an error, or with `skip_existing` left out (counted in a warning), so the
    whole training catalogue may be passed to add the books prepare pruned.

    The whole read-modify-write holds the bundle's exclusive lock: adds that run at once queue, and each one
    appends to what the previous one wrote (none is lost).
    """
    bundle_dir = Path(bundle_dir)
    columns = read_manifest(bundle_dir).catalogue
    frame = read_table_of_books(books, columns)  # outside the lock: a bad file fails without making anyone wait
    with bundle_lock(bundle_dir, exclusive=True):
        parts, _ = load_bundle(bundle_dir)
        spec = FeatureSpec.from_json(parts.feature_spec)
        catalogue = standard_catalogue(frame, spec, books, columns)
        if skip_existing:
            catalogue = _without_held_books(catalogue, parts, books)
            if catalogue.is_empty():
                return read_manifest(bundle_dir).as_json()
        extended = with_books(parts, ModelEncoder.from_parts(parts, bundle_dir), catalogue)
        _warn_if_little_content(catalogue, books)  # after the checks: only about books that will be added
        manifest = write_bundle(extended, bundle_dir)
    log.info("%s: added %s from %s", bundle_dir, counted(catalogue.height, "book"), books)
    return manifest
