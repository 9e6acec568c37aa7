"""What the serving filters cost: withdrawn books (`index withdraw`) and the author cap (`max_per_author`).

    .venv/bin/python benchmarks/filters.py --bundle BUNDLE [--index hnsw] [--k 10] [--queries 1000]

Each row answers the same seeded sample of known readers with `Recommender.for_user`, one query at a time on one
thread (as a serving worker does), and reports milliseconds per request against the unfiltered row of the same run.
Withdrawals are drawn at random in memory (the bundle on disk is not changed). The author cap also reports the share
of distinct authors in the lists; in a bundle without authors it caps nothing.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from booktower.config.serving import IndexConfig, ServingConfig
from booktower.serving.bundle import load_bundle
from booktower.serving.encoder import ModelEncoder
from booktower.serving.service import Recommender

ROWS = [(0.0, None), (0.01, None), (0.1, None), (0.5, None), (0.0, 2), (0.0, 1), (0.1, 1)]
"""(share of books withdrawn, max_per_author)."""


def _time(rec: Recommender, users: list[str], k: int, cap: int | None) -> tuple[float, float]:
    """(ms per request, mean share of distinct authors among a list's books that have one; NaN: none has)."""
    distinct = []
    start = time.perf_counter()
    for user in users:
        rows = rec.for_user(user, k, max_per_author=cap)
        authors = [r.author.strip().lower() for r in rows if r.author.strip()]
        if authors:
            distinct.append(len(set(authors)) / len(authors))
    return (time.perf_counter() - start) / len(users) * 1e3, float(np.mean(distinct)) if distinct else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--index", default=None, help="Index kind (default: the bundle's).")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    parts, manifest = load_bundle(args.bundle)
    index = IndexConfig.model_validate(manifest["index"])
    if args.index:
        index = index.model_copy(update={"kind": args.index})
    config = ServingConfig(index=index)
    encoder = ModelEncoder.from_parts(parts, args.bundle)
    rng = np.random.default_rng(args.seed)
    users = parts.users.decode(np.sort(rng.choice(len(parts.users), min(args.queries, len(parts.users)), replace=False)))
    print(f"{len(parts.items):,} books, {len(users)} readers, k={args.k}, index {index.kind}")
    print(f"{'withdrawn':>9} | {'max/author':>10} | {'ms/request':>10} | {'x unfiltered':>12} | {'distinct authors':>16}")
    base = None
    for share, cap in ROWS:
        withdrawn = np.zeros(len(parts.items), dtype=bool)
        withdrawn[rng.choice(len(parts.items), int(share * len(parts.items)), replace=False)] = True
        rec = Recommender(replace(parts, withdrawn=withdrawn), config, encoder)
        _time(rec, users[:50], args.k, cap)  # warm the index and the caches
        ms, distinct = _time(rec, users, args.k, cap)
        base = ms if base is None else base
        print(f"{share:>9.0%} | {cap if cap else '-':>10} | {ms:>10.3f} | {ms / base:>12.2f} | {distinct:>16.3f}")


if __name__ == "__main__":
    main()
