"""What `index withdraw` costs against rewriting the whole bundle (what it did before session 20).

    .venv/bin/python benchmarks/withdraw.py --bundle BUNDLE [--books 1000000] [--repeats 3]

Works on copies in a temporary folder beside nothing of yours (the bundle named is only read). Each row withdraws
one book per repeat, in one process (no interpreter start-up): "whole bundle" loads the bundle and writes it back
with one more flag (`load_bundle` + `write_bundle`), "books table" is `change_withdrawn` (the whole bundle is
verified, items.parquet rewritten, every other file hard-linked). `--books N` adds a row for a synthetic bundle of N
books made by repeating the given bundle's books, to show how each grows with the catalogue.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from booktower.data.vocab import Vocabulary
from booktower.serving.bundle import BundleParts, load_bundle, write_bundle
from booktower.serving.withdraw import change_withdrawn


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def _grown(parts: BundleParts, n_books: int) -> BundleParts:
    """`parts` with its books repeated up to `n_books` (new ids; the readers and the model unchanged)."""
    rows = np.resize(np.arange(len(parts.items)), n_books)
    ids = pl.Series(parts.items.name, [f"B{i:08d}" for i in range(n_books)], dtype=pl.String)
    return replace(parts, item_vectors=parts.item_vectors[rows], items=Vocabulary(ids, name=parts.items.name),
                   metadata=parts.metadata[rows].with_columns(ids.alias("item_id")), popularity=parts.popularity[rows],
                   withdrawn=np.zeros(n_books, dtype=bool))


def _row(bundle: Path, scratch: Path, repeats: int) -> tuple[int, float, float, float]:
    """(books, MB, seconds per whole-bundle rewrite, seconds per withdrawal), medians over `repeats`."""
    whole_copy, table_copy = scratch / "whole", scratch / "table"
    shutil.copytree(bundle, whole_copy)
    shutil.copytree(bundle, table_copy)
    ids = pl.read_parquet(bundle / "vocab" / "items.parquet")[:, 0].to_list()
    whole, table = [], []
    for repeat in range(repeats):
        start = time.perf_counter()
        parts, _ = load_bundle(whole_copy)
        flags = parts.withdrawn.copy()
        flags[repeat] = True
        write_bundle(replace(parts, withdrawn=flags), whole_copy)
        whole.append(time.perf_counter() - start)
        start = time.perf_counter()
        change_withdrawn(table_copy, [ids[repeat]], withdraw=True)
        table.append(time.perf_counter() - start)
    shutil.rmtree(whole_copy)
    shutil.rmtree(table_copy)
    return len(ids), _folder_mb(bundle), float(np.median(whole)), float(np.median(table))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--books", type=int, default=0, help="also a synthetic bundle of this many books")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="withdraw-bench-") as tmp:
        scratch = Path(tmp)
        rows.append(_row(args.bundle, scratch, args.repeats))
        if args.books:
            grown = scratch / "grown"
            write_bundle(_grown(load_bundle(args.bundle)[0], args.books), grown)
            rows.append(_row(grown, scratch, args.repeats))
    print("| books | bundle MB | whole bundle s | books table s | x |")
    print("|---|---|---|---|---|")
    for books, mb, whole, table in rows:
        print(f"| {books:,} | {mb:.0f} | {whole:.3f} | {table:.3f} | {whole / table:.1f} |")


if __name__ == "__main__":
    main()
