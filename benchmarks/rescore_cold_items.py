"""Score a finished cold-item run again without training: after a change to the protocol (serving/cold_eval.py),
the same model's numbers on the same held-out books, beside the ones the run wrote.

    .venv/bin/python benchmarks/rescore_cold_items.py --run runs/s22/cold-single [--output FILE]

RUN is an output folder of benchmarks/cold_items.py: its model (or, after --seeds, its seed-S members, served as
their ensemble), its config.yaml (the first member's) and its cold_items.json. The config prepares the data and
the split seed draws the held-out books again (cold_items.json's `split_seed`; runs from before it was recorded
drew them with the base config's seed, which an ensemble's members do not carry: pass --split-seed). The reduced
data's books must be those the model was trained on (RUN/vocab/items.parquet), or it stops. Prints the
cold_items.py tables and, per system and scope, the run's numbers against today's.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
from cold_items import print_cold, print_new_books_in_histories

from booktower.data.vocab import Vocabulary
from booktower.models.ensemble import ensemble_of
from booktower.models.io import load_model
from booktower.serving.cold_eval import cold_split, score_cold, score_new_books_in_histories
from booktower.training.run import run_config
from booktower.utils.atomic import atomic_write_json

KEYS = ["HR@20", "HR@50", "mean_rank"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--split-seed", type=int, default=None, help="the seed that drew the held-out books")
    parser.add_argument("--output", type=Path, default=None, help="write the new numbers to this JSON file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    before = json.loads((args.run / "cold_items.json").read_text())
    members = [args.run] if (args.run / "model").exists() else [args.run / f"seed-{s}" for s in before["seeds"]]
    config = run_config(members[0])  # relative data paths read from the folder the run was trained in
    seed = args.split_seed if args.split_seed is not None else before.get("split_seed", config.seed)
    if args.split_seed is None and "split_seed" not in before and len(members) > 1:
        parser.error(f"{args.run} is an ensemble run from before cold_items.json recorded its split seed: pass "
                     "--split-seed (the base config's seed, e.g. 42)")

    rng = np.random.default_rng(seed)  # drawn as run_cold_eval draws: the split, then the scoring
    split = cold_split(config, before["fraction"], rng)
    for member in members:
        if Vocabulary.load(member / "vocab" / "items.parquet") != split.data.items:
            raise SystemExit(f"{member}: the model was trained on other books than today's split keeps (another "
                             "fraction, seed or data?): not scored")
    models = [load_model(member / "model") for member in members]
    model = models[0] if len(models) == 1 else ensemble_of(models).eval()
    result = {**before, "split_seed": seed, "n_targets": len(split.target_users),
              "cold": score_cold(split, model, rng, [10, 20, 50]),
              "new_books_in_histories": score_new_books_in_histories(split, model, rng)}
    if args.output:
        atomic_write_json(args.output, result)
    print_cold(str(args.run), result)
    print_new_books_in_histories(result["new_books_in_histories"])
    print(f"\n{'system':>18} | {'scope':>5} | " + " | ".join(f"{k + ' (run)':>16} | {k + ' (now)':>16}" for k in KEYS))
    for system, scopes in result["cold"].items():
        for scope, now in scopes.items():
            was = before["cold"][system][scope]
            print(f"{system:>18} | {scope:>5} | " + " | ".join(f"{was[k]:>16.4f} | {now[k]:>16.4f}" for k in KEYS))


if __name__ == "__main__":
    main()
