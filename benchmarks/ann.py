"""ANN vs exact retrieval on a bundle's own vectors: recall@K and per-query latency for several index settings.

    .venv/bin/python benchmarks/ann.py --bundle BUNDLE [--k 10] [--queries 1000]

Queries are the bundle's known-reader vectors (a seeded sample); the truth is exact top-K by inner product.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from booktower.config.serving import IndexConfig
from booktower.serving.bundle import load_bundle
from booktower.serving.index import compare_with_exact

SETTINGS = [
    {"kind": "hnsw", "hnsw_m": 16, "hnsw_ef_search": 32},
    {"kind": "hnsw", "hnsw_m": 32, "hnsw_ef_search": 64},
    {"kind": "hnsw", "hnsw_m": 32, "hnsw_ef_search": 128},
    {"kind": "ivf", "ivf_nlist": 256, "ivf_nprobe": 8},
    {"kind": "ivf", "ivf_nlist": 256, "ivf_nprobe": 32},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # one query at a time on one core, as a serving worker does
    parts, _ = load_bundle(args.bundle)
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(parts.user_vectors), size=min(args.queries, len(parts.user_vectors)), replace=False)
    queries = parts.user_vectors[np.sort(chosen)]
    print(f"{len(parts.item_vectors)} items, d={parts.dim}, {len(queries)} queries, k={args.k}")
    print(f"{'setting':>44} | {'recall':>7} | {'exact ms':>8} | {'ann ms':>7} | {'speed-up':>8} | {'build s':>7}")
    for setting in SETTINGS:
        report = compare_with_exact(parts.item_vectors, queries, IndexConfig(**setting), k=args.k)
        name = ", ".join(f"{k}={v}" for k, v in setting.items())
        print(f"{name:>44} | {report.recall:>7.4f} | {report.exact_ms_per_query:>8.3f} | {report.ann_ms_per_query:>7.3f} "
              f"| {report.speedup:>8.2f} | {report.build_seconds:>7.2f}")


if __name__ == "__main__":
    main()
