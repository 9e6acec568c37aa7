"""What `max_per_author` costs in accuracy: a finished run's masked test lists, capped as the API caps them.

    .venv/bin/python benchmarks/author_cap_cost.py --run RUN [--caps 3 2 1] [--depth 200]

Each test reader's full-catalogue ranking (train + validation masked, the run's served model, as the run's own
test metrics) is cut to its top `depth`, then capped greedily at N books per author (evaluation's
`first_per_group`, the serving code); NDCG@20 and HR@20 are scored on what is left. The uncapped row reproduces
the run's metrics.json. The cap trades accuracy for lists that are not one author's series: the table gives both
sides, with the share of distinct authors among the listed books that have one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from booktower.data.types import Ragged
from booktower.evaluation import metrics as m
from booktower.evaluation.evaluator import evaluate_split
from booktower.serving.retrieve import first_per_group
from booktower.serving.service import author_codes
from booktower.training.run import load_run
from booktower.training.scoring import score_fn_for

K = 20


def capped_lists(top_items: np.ndarray, valid: np.ndarray, groups: np.ndarray, cap: int | None) -> np.ndarray:
    """(U, K) the first K of each row's valid items that survive the cap; -1 where fewer are left."""
    out = np.full((len(top_items), K), -1, dtype=np.int64)
    for row, (items, ok) in enumerate(zip(top_items, valid)):
        items = items[ok]
        if cap is not None:
            items = items[first_per_group(groups[items], cap)]
        out[row, : min(K, len(items))] = items[:K]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--caps", type=int, nargs="+", default=[3, 2, 1])
    parser.add_argument("--depth", type=int, default=200)
    args = parser.parse_args()
    run = load_run(args.run)
    data, groups = run.data, author_codes(run.data.item_metadata["author"].to_list())
    if (groups < 0).all():
        raise SystemExit(f"{args.run}: its books have no authors, so a cap changes nothing")
    result = evaluate_split(score_fn_for(run.model, data, "test"), data, "test", [args.depth])
    top = result.top_k
    truth = Ragged.by_row(data.split.test.user, data.split.test.item, data.n_users)
    n_relevant = np.diff(truth.offsets)[top.users]
    saved = json.loads((args.run / "metrics.json").read_text())["test"]
    print(f"{args.run}: {len(top.users):,} test readers, {data.n_items:,} books, depth {args.depth}; "
          f"metrics.json NDCG@{K} {saved[f'NDCG@{K}']:.4f}")
    print(f"{'max/author':>10} | {'NDCG@20':>8} | {'HR@20':>7} | {'distinct authors':>16} | {'short lists':>11}")
    for cap in [None, *args.caps]:
        lists = capped_lists(top.items, top.scores > -np.inf, groups, cap)
        hits = m.hit_matrix(np.where(lists >= 0, lists, data.n_items), truth, top.users) & (lists >= 0)
        authored = [groups[row[row >= 0]] for row in lists]
        distinct = [len(set(g[g >= 0].tolist())) / max(1, int((g >= 0).sum())) for g in authored]
        print(f"{cap if cap else '-':>10} | {m.ndcg(hits, n_relevant, K).mean():>8.4f} | "
              f"{m.hit_rate(hits, K).mean():>7.4f} | {np.mean(distinct):>16.3f} | {int((lists < 0).any(axis=1).sum()):>11}")


if __name__ == "__main__":
    main()
