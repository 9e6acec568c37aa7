"""Benchmark `prepare`: rows/s and peak RSS on amazon-books-2014 and on a synthetic log at Amazon 2023 Books scale.

    .venv/bin/python benchmarks/prepare.py                 # both datasets, prints a table
    .venv/bin/python benchmarks/prepare.py --only synthetic --interactions 3000000   # a smaller synthetic run
    .venv/bin/python benchmarks/prepare.py --profile       # also print the top cProfile entries per dataset

Each measurement runs `prepare` (cache disabled) in a fresh child process, so peak RSS is that of prepare alone.
The synthetic log is generated directly with numpy (not the planted-structure synth): 30M interactions,
4M books, 10M users by default, power-law activity and popularity, written once as CSV in the default format
(books.csv + users.csv) under --workdir and reused by later runs with the same sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS, TARGET_GB = 300, 8.0


def _power_law_sampler(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Cumulative weights of n entities with Zipf-like weights (random order), for inverse-CDF sampling."""
    weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    rng.shuffle(weights)
    cum = np.cumsum(weights)
    return cum / cum[-1]


def _random_ids(rng: np.random.Generator, n: int, width: int, prefix: str) -> pl.Series:
    """n distinct ids that look like Amazon's: random upper-case/digit text with no long shared prefix.

    The last 6 characters spell a permutation of 0..n-1 in base 36 (so ids are distinct); the rest is random.
    """
    alphabet = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)
    numbers = rng.permutation(n).astype(np.int64)
    powers = 36 ** np.arange(5, -1, -1, dtype=np.int64)
    chunks = []
    for start in range(0, n, 1_000_000):  # bounded temporary memory
        part = numbers[start:start + 1_000_000]
        digits = np.concatenate([rng.integers(0, 36, (len(part), width - len(prefix) - 6)),
                                 (part[:, None] // powers) % 36], axis=1)  # (m, width - len(prefix))
        text = np.ascontiguousarray(alphabet[digits]).view(f"S{width - len(prefix)}").ravel().astype(str)
        chunks.append(pl.Series(np.char.add(prefix, text)))
    return pl.concat(chunks)


def generate_amazon_scale(folder: Path, n_interactions: int, n_books: int, n_users: int, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    user = np.searchsorted(_power_law_sampler(rng, n_users, 0.6), rng.random(n_interactions))  # (n,)
    item = np.searchsorted(_power_law_sampler(rng, n_books, 0.8), rng.random(n_interactions))  # (n,)
    stamp = rng.integers(1_262_304_000_000, 1_693_526_400_000, n_interactions)  # 2010 .. 2023-09, ms
    asins, user_ids = _random_ids(rng, n_books, 10, "B0"), _random_ids(rng, n_users, 28, "A")
    users = pl.DataFrame({"parent_asin": asins.gather(item), "userId": user_ids.gather(user), "timestamp": stamp})
    users.write_csv(folder / "users.csv")
    del users, user, item, stamp
    genres = [f'"Books", "Genre {g}", "Sub {g}-{s}"' for g in range(30) for s in range(10)]
    genre = pl.Series(genres).gather(rng.integers(0, len(genres), n_books))
    books = pl.DataFrame({"i": np.arange(n_books), "g": genre,
                          "a": rng.integers(0, n_books // 5, n_books), "w": rng.integers(0, 5000, n_books)}).select(
        pl.format('["Title {} of series {}"]', "w", "i").alias("title"),
        pl.format("Author {}", "a").alias("author"),
        pl.Series(np.round(rng.uniform(1, 5, n_books), 1)).alias("average_rating"),
        pl.Series(rng.zipf(1.8, n_books).clip(1, 10**6)).alias("rating_number"),
        pl.Series(np.round(rng.lognormal(2.5, 0.7, n_books), 2)).alias("price"),
        pl.format("[{}]", "g").alias("categories"),
        asins.alias("parent_asin"),
    )
    books.write_csv(folder / "books.csv")
    print(f"generated {n_interactions:,} interactions / {n_books:,} books / {n_users:,} users in "
          f"{time.perf_counter() - t:.1f}s -> {folder}", file=sys.stderr)


def run_one(config_path: str, overrides: list[str], profile: bool) -> dict:
    """In the child: prepare once (no cache) and report timings and peak RSS."""
    from booktower.config import load_config
    from booktower.data.errors import DropLedger
    from booktower.data.ingest import load_raw
    from booktower.data.prepare import prepare_from_raw

    config = load_config(config_path, overrides + ["data.cache_dir=null"]).data
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    start = time.perf_counter()
    ledger = DropLedger(strict=config.strict)
    raw, _ = load_raw(config, ledger)
    loaded = time.perf_counter()
    rows = raw.interactions.height + sum(ledger.counts.values())
    data = prepare_from_raw(raw, config, ledger)
    end = time.perf_counter()
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    return {
        "rows": rows, "seconds": end - start, "load_seconds": loaded - start, "prepare_seconds": end - loaded,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        # CPU seconds (user + system) show the work done even when other jobs share the cores.
        "cpu_seconds": resource.getrusage(resource.RUSAGE_SELF).ru_utime + resource.getrusage(resource.RUSAGE_SELF).ru_stime,
        "n_interactions": data.summary["n_interactions"], "n_users": data.n_users, "n_items": data.n_items,
    }


def measure(name: str, config_path: str, overrides: list[str], profile: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", config_path, "--profile" if profile else "--no-profile", *overrides]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-4000:]}")
    if profile:
        print(f"--- profile: {name} ---\n{done.stderr[-6000:]}", file=sys.stderr)
    return {"dataset": name, **json.loads(done.stdout.strip().splitlines()[-1])}


def print_table(results: list[dict]) -> None:
    head = ["dataset", "rows in", "kept", "users", "items", "load s", "rest s", "total s", "CPU s", "rows/s", "peak RSS GB", "target"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in results:
        ok = r["seconds"] < TARGET_SECONDS and r["peak_rss_gb"] < TARGET_GB
        print(f"| {r['dataset']} | {r['rows']:,} | {r['n_interactions']:,} | {r['n_users']:,} | {r['n_items']:,} | "
              f"{r['load_seconds']:.1f} | {r['prepare_seconds']:.1f} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | "
              f"{r['rows'] / r['seconds']:,.0f} | {r['peak_rss_gb']:.2f} | "
              f"{'met' if ok else 'MISSED'} (<{TARGET_SECONDS}s, <{TARGET_GB:g} GB) |")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(run_one(sys.argv[2], sys.argv[4:], sys.argv[3] == "--profile")))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["amazon-books-2014", "synthetic"], default=None)
    parser.add_argument("--interactions", type=int, default=30_000_000)
    parser.add_argument("--books", type=int, default=4_000_000)
    parser.add_argument("--users", type=int, default=10_000_000)
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "bench-prepare")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    results = []
    if args.only in (None, "amazon-books-2014"):
        if (REPO.parent / "shared" / "data" / "amazon-books-2014").is_dir():
            results.append(measure("amazon-books-2014", "configs/amazon-books-2014.yaml", [], args.profile))
        else:
            print("skipping amazon-books-2014: ../shared/data not present", file=sys.stderr)
    if args.only in (None, "synthetic"):
        folder = args.workdir / f"synthetic-{args.interactions}-{args.books}-{args.users}"
        if not (folder / "books.csv").exists():
            generate_amazon_scale(folder, args.interactions, args.books, args.users)
        overrides = [f"data.source.interactions={folder / 'users.csv'}", f"data.source.items={folder / 'books.csv'}"]
        name = f"synthetic {args.interactions / 1e6:g}M / {args.books / 1e6:g}M books / {args.users / 1e6:g}M users"
        results.append(measure(name, "configs/default.yaml", overrides, args.profile))
    print_table(results)
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
