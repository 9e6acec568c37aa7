"""A small reading log with favourite authors over the real Goodreads 10k catalogue (../shared/data), for the
"Small logs" experiment of docs/results.md (model.history.content).

    python benchmarks/small_log.py --output-dir runs/gr
    booktower baselines --config runs/gr/config.yaml -o runs/gr/bl
    booktower train --config runs/gr/config.yaml --set seed=1 [--set model.history.content=true] -o runs/gr/c1

Each of 600 readers has two favourite authors (drawn among authors with 3+ books, by their books' popularity);
each read is, with probability 0.4, a uniform pick among those authors' books, else a pick by popularity (the
square root of the ratings count); about 18 reads per reader, one a day, repeats dropped. The same seed writes the
same files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

CATALOGUE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "goodbooks-10k-catalog" / "books.csv"

CONFIG = """inherit: {root}/configs/default.yaml
data:
  source:
    format: csv
    interactions: {out}/interactions.csv
    items: {out}/items.csv
    fallback_interactions: null
    fallback_items: null
  columns: {{user: user_id, item: item_id, timestamp: timestamp, timestamp_unit: s, item_title: title,
            item_author: author, item_categories: null, item_numeric: [], item_count_columns: [],
            item_nonnegative: []}}
  min_user_interactions: 5
  min_item_interactions: 3
training:
  epochs: 300
  early_stopping: {{patience: 10}}
"""


def reading_log(books: pl.DataFrame, readers: int, favourite_share: float, mean_reads: float,
                rng: np.random.Generator) -> pl.DataFrame:
    authors = books["author"].to_list()
    popularity = np.sqrt(books["ratings_count"].to_numpy().astype(float))
    popularity /= popularity.sum()
    by_author: dict[str, list[int]] = {}
    for index, author in enumerate(authors):
        by_author.setdefault(author, []).append(index)
    prolific = sorted(a for a, rows in by_author.items() if len(rows) >= 3)
    weight = np.array([popularity[by_author[a]].sum() for a in prolific])
    weight /= weight.sum()
    rows = []
    for reader in range(readers):
        favourites = rng.choice(len(prolific), 2, replace=False, p=weight)
        their_books = np.concatenate([by_author[prolific[f]] for f in favourites])
        seen: set[int] = set()
        for day in range(max(5, int(rng.geometric(1 / mean_reads)))):
            book = int(rng.choice(their_books) if rng.random() < favourite_share else rng.choice(len(books), p=popularity))
            if book not in seen:
                seen.add(book)
                rows.append((f"u{reader}", books["item_id"][book], 1_600_000_000 + day * 86_400 + reader))
    return pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64}, orient="row")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--readers", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if not CATALOGUE.exists():
        raise SystemExit(f"{CATALOGUE} is missing: this benchmark needs ../shared/data beside the repository")
    raw = pl.read_csv(CATALOGUE, infer_schema_length=10_000)
    books = raw.select(item_id=pl.lit("gr") + pl.col("book_id").cast(pl.String), title=pl.col("title"),
                       author=pl.col("authors").str.split(",").list.first().str.strip_chars(),
                       ratings_count=pl.col("ratings_count"))
    log = reading_log(books, args.readers, 0.4, 20.0, np.random.default_rng(args.seed))
    out = args.output_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log.write_csv(out / "interactions.csv")
    books.drop("ratings_count").write_csv(out / "items.csv")
    root = Path(__file__).resolve().parents[1]
    (out / "config.yaml").write_text(CONFIG.format(root=root, out=out), encoding="utf-8")
    print(f"wrote {log.height:,} interactions of {args.readers} readers over {log['item_id'].n_unique():,} books "
          f"and {out / 'config.yaml'}")


if __name__ == "__main__":
    main()
