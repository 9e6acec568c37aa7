"""Cold-item benchmark: hold out a random 5% of books from training, train, rank them with content-only vectors.

    .venv/bin/python benchmarks/cold_items.py --config configs/movielens-100k.yaml --output-dir runs/cold-ml100k \
        [--set training.epochs=5] [--fraction 0.05]

Prints one table (model vs popularity vs random, over the whole catalogue and among held-out books only) and writes
OUTPUT_DIR/cold_items.json. The trained run (on the reduced data) is written into OUTPUT_DIR as usual.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from booktower.config import load_config
from booktower.serving.cold_eval import run_cold_eval
from booktower.utils.atomic import atomic_write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--fraction", type=float, default=0.05)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    config = load_config(args.config, args.overrides)
    result = run_cold_eval(config, args.output_dir, args.fraction)
    atomic_write_json(args.output_dir / "cold_items.json", result)

    print(f"\n{args.config.name}: {result['n_held_books']} held-out books of {result['n_catalogue']}, "
          f"{result['n_targets']} test readers whose test book is held out "
          f"({result['n_targets_lost_to_pruning']} lost to pruning)")
    keys = ["HR@10", "NDCG@10", "HR@20", "HR@50", "mean_rank"]
    print(f"{'system':>18} | {'ranked among':>13} | " + " | ".join(f"{k:>9}" for k in keys))
    for system, scopes in result["cold"].items():
        for scope, label in (("all", "all books"), ("cold", "held-out only")):
            print(f"{system:>18} | {label:>13} | " + " | ".join(f"{scopes[scope][k]:>9.4f}" for k in keys))
    print(json.dumps({"warm_test_HR@10": result["warm_test_metrics"].get("HR@10")}))


if __name__ == "__main__":
    main()
