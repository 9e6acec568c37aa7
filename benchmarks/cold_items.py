"""Cold-item benchmark: hold out a random 5% of books from training, train, rank them with content-only vectors.

    .venv/bin/python benchmarks/cold_items.py --config configs/movielens-100k.yaml --output-dir runs/cold-ml100k \
        [--set training.epochs=5] [--fraction 0.05] [--seeds 1,2,3]

Prints one table (model vs popularity vs random, over the whole catalogue and among held-out books only) and, for
a model that pools a history's content (model.history.content), a second: readers who read held-out books before a
test book the model trained on, as anonymous served readers, with those books left out of their history and with
them pooled by their content (what `index add` gives a served bundle). Writes OUTPUT_DIR/cold_items.json. The trained run (on the reduced data) is written into OUTPUT_DIR as usual;
with --seeds, one run per seed (OUTPUT_DIR/seed-S) on the same held-out books, served as their ensemble.
"""

from __future__ import annotations


from _holdout import holdout_arguments

from booktower.config import load_config
from booktower.serving.cold_eval import run_cold_eval
from booktower.utils.atomic import atomic_write_json


def main() -> None:
    args = holdout_arguments(__doc__, 0.05, seeds=True)

    config = load_config(args.config, args.overrides)
    result = run_cold_eval(config, args.output_dir, args.fraction, seeds=args.seeds)
    atomic_write_json(args.output_dir / "cold_items.json", result)
    print_cold(args.config.name, result)
    print_new_books_in_histories(result["new_books_in_histories"])


def print_cold(name: str, result: dict) -> None:
    """The content-only vectors against popularity and random, over the whole catalogue and the held-out books."""
    print(f"\n{name}: {result['n_held_books']} held-out books of {result['n_catalogue']}, "
          f"{result['n_targets']} test readers whose test book is held out "
          f"({result['n_targets_lost_to_pruning']} lost to pruning)")
    keys = ["HR@10", "NDCG@10", "HR@20", "HR@50", "mean_rank"]
    print(f"{'system':>18} | {'ranked among':>13} | " + " | ".join(f"{k:>9}" for k in keys))
    for system, scopes in result["cold"].items():
        for scope, label in (("all", "all books"), ("cold", "held-out only")):
            print(f"{system:>18} | {label:>13} | " + " | ".join(f"{scopes[scope][k]:>9.4f}" for k in keys))
    warm = result["warm_test_metrics"]
    print(f"the run's own test (trained books, known readers): HR@10 {warm.get('HR@10', float('nan')):.4f}, "
          f"NDCG@20 {warm.get('NDCG@20', float('nan')):.4f}")


def print_new_books_in_histories(found: dict) -> None:
    """Readers of held-out books before a trained test book, served as anonymous readers (model.history.content)."""
    if "skipped" in found:
        print(f"\nnew books in histories: not scored ({found['skipped']})")
        return
    print(f"\nnew books in histories: {found['n_readers']} test readers read held-out books before their (trained) "
          f"test book: {found['mean_new_books_read']:.2f} of {found['mean_history_length']:.1f} history books each")
    print(f"{'readers':>26} | {'metric':>7} | {'without them':>12} | {'with them':>9} | {'difference (95% CI)':>26} | "
          f"{'p (boot)':>8} | {'p (Wilcoxon)':>12} | wins/losses")
    scopes = {"all": f"all {found['n_readers']}", "last_read_new": f"last read new: {found['last_read_new']['n_readers']}"}
    for scope, label in scopes.items():
        for metric in ("NDCG@20", "HR@20"):
            if metric not in found[scope]:
                continue
            c = found[scope][metric]
            print(f"{label:>26} | {metric:>7} | {c['mean_b']:>12.4f} | {c['mean_a']:>9.4f} | "
                  f"{c['diff']:>+8.4f} ({c['ci_low']:+.4f}, {c['ci_high']:+.4f}) | {c['p_bootstrap']:>8.3f} | "
                  f"{c['p_wilcoxon']:>12.3g} | {c['wins']}/{c['losses']}")


if __name__ == "__main__":
    main()
