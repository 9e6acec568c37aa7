"""New-reader benchmark: hold out a random 10% of readers from training, train, serve them from their histories.

    .venv/bin/python benchmarks/new_readers.py --config configs/amazon-books-2014-best.yaml \
        --output-dir runs/new-readers [--set training.epochs=8] [--fraction 0.1] [--seeds 1,2,3]

A held-out reader arrives as an anonymous reader of the API does: their train + validation books are the history
and their test book is ranked over the whole catalogue, history masked (evaluation/new_readers.py). Prints the
two-tower beside the baselines that fold a new reader in without refitting (popularity, ItemKNN, EASE), and the
run's own test metrics over its known readers; writes OUTPUT_DIR/new_readers.json (the run is written there too).
With --seeds, one run per seed (OUTPUT_DIR/seed-S) on the same held-out readers, served as their ensemble.
"""

from __future__ import annotations


from _holdout import holdout_arguments

from booktower.config import load_config
from booktower.evaluation.new_readers import run_new_reader_eval
from booktower.utils.atomic import atomic_write_json

KEYS = ["HR@10", "NDCG@10", "HR@20", "NDCG@20", "HR@50"]


def main() -> None:
    args = holdout_arguments(__doc__, 0.1, seeds=True)

    result = run_new_reader_eval(load_config(args.config, args.overrides), args.output_dir, args.fraction,
                                 seeds=args.seeds)
    atomic_write_json(args.output_dir / "new_readers.json", result)

    print(f"\n{args.config.name}: {result['n_held_readers']} readers held out, {result['n_scored']} scored "
          f"({result['n_lost']} lost: their test book or every book left the reduced data), "
          f"{result['n_catalogue']} books")
    print(f"{'system':>28} | " + " | ".join(f"{k:>8}" for k in KEYS) + " | mean rank")
    for system, metrics in result["new_readers"].items():
        print(f"{system + ', new readers':>28} | " + " | ".join(f"{metrics[k]:>8.4f}" for k in KEYS)
              + f" | {metrics['mean_rank']:>9.1f}")
    known = result["known_readers_test_metrics"]
    print(f"{'two-tower, known (its test)':>28} | " + " | ".join(f"{known.get(k, float('nan')):>8.4f}" for k in KEYS)
          + " |")
    print(f"\nthe two-tower against each, same new readers: {'metric':>7} | {'difference (95% CI)':>26} | p (boot) | "
          "p (Wilcoxon) | wins/losses")
    for other, metrics in result["two_tower_against"].items():
        for metric, c in metrics.items():
            print(f"{'vs ' + other:>46} {metric:>7} | {c['diff']:>+8.4f} ({c['ci_low']:+.4f}, {c['ci_high']:+.4f}) | "
                  f"{c['p_bootstrap']:>8.3f} | {c['p_wilcoxon']:>12.3g} | {c['wins']}/{c['losses']}")


if __name__ == "__main__":
    main()
