"""Recompute a run's test metrics from `booktower recommend --all-test-users` output, independently.

Uses only numpy, polars and the data layer (to re-create the prepared split); nothing from
booktower.evaluation. Checks that no known (train/validation) item was recommended, that every test user has a
full list, and that HR@K, NDCG@K, MRR@K and coverage@K equal RUN/metrics.json to 1e-6.

    booktower recommend --run RUN --all-test-users --k 50 --out /tmp/top50.parquet
    python benchmarks/recompute_metrics.py --run RUN --top-k /tmp/top50.parquet
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import polars as pl

from booktower.config import load_config
from booktower.data.prepare import prepare


def _frame(data, part) -> pl.DataFrame:
    return pl.DataFrame({"user_id": data.users.decode(part.user), "item_id": data.items.decode(part.item)})


def recompute(run: Path, top_k_path: Path) -> tuple[dict[str, float], dict[str, int]]:
    config = load_config(run / "config.yaml")
    data, _ = prepare(config.data)
    top = pl.read_parquet(top_k_path).sort("user_id", "rank")
    test = _frame(data, data.split.test)
    known = pl.concat([_frame(data, data.split.train), _frame(data, data.split.valid)]).unique()
    leaks = top.join(known, on=["user_id", "item_id"], how="inner").height
    lists = top.group_by("user_id").agg(pl.col("item_id"), pl.col("rank"))
    checks = {"test_users": test["user_id"].n_unique(), "listed_users": lists.height, "known_item_leaks": leaks,
              "bad_rank_sequences": int(lists.filter(pl.col("rank") != pl.int_ranges(1, pl.col("rank").list.len() + 1)).height)}
    truth = test.group_by("user_id").agg(pl.col("item_id").alias("truth"))
    joined = truth.join(lists, on="user_id", how="left")
    metrics: dict[str, float] = {}
    for k in config.evaluation.ks:
        hr = ndcg = mrr = 0.0
        for listed, relevant in zip(joined["item_id"].to_list(), joined["truth"].to_list()):
            listed = (listed or [])[:k]
            relevant = set(relevant)
            ranks = [r for r, item in enumerate(listed) if item in relevant]
            hr += 1.0 if ranks else 0.0
            mrr += 1.0 / (ranks[0] + 1) if ranks else 0.0
            dcg = sum(1.0 / math.log2(r + 2) for r in ranks)
            ndcg += dcg / sum(1.0 / math.log2(r + 2) for r in range(min(len(relevant), k)))
        n = joined.height
        metrics.update({f"HR@{k}": hr / n, f"NDCG@{k}": ndcg / n, f"MRR@{k}": mrr / n,
                        f"coverage@{k}": top.filter(pl.col("rank") <= k)["item_id"].n_unique() / data.n_items})
    return metrics, checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--top-k", type=Path, required=True)
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args()
    metrics, checks = recompute(args.run, args.top_k)
    reported = json.loads((args.run / "metrics.json").read_text())["test"]
    worst = 0.0
    print(f"{'metric':<14}{'recomputed':>12}{'metrics.json':>14}{'abs diff':>12}")
    for key, value in metrics.items():
        diff = abs(value - reported[key])
        worst = max(worst, diff)
        print(f"{key:<14}{value:>12.6f}{reported[key]:>14.6f}{diff:>12.2e}")
    print("checks:", json.dumps(checks))
    ok = (worst <= args.tolerance and checks["known_item_leaks"] == 0 and checks["bad_rank_sequences"] == 0
          and checks["test_users"] == checks["listed_users"])
    print(f"{'OK' if ok else 'MISMATCH'}: largest difference {worst:.2e} (tolerance {args.tolerance:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
