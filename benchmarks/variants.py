"""Train config variants on the validation split only and print one table row each (the test split is never
read): the quick way to compare model choices before a sweep or a final 3-seed run.

    python benchmarks/variants.py --config configs/amazon-books-2014.yaml --set training.max_valid_users=5000 \\
        --variant base= --variant dim64="model.output_dim=64 model.item.id_dim=64" [--seeds 1 2] [--out FILE]

Each variant is NAME=OVERRIDES (space-separated key=value, as for --set). Rows are appended to --out (TSV) as
they finish, so a long batch can be followed and resumed.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import tempfile
import time
from pathlib import Path

import torch

from booktower.config import load_config
from booktower.data.prepare import prepare
from booktower.training.sweep import validation_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--variant", action="append", required=True, help="NAME=key=value key=value ...")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--also", default="HR@20", help="a second validation metric shown at the best epoch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_config(args.config, ["training.progress=false", *args.overrides])
    data, _ = prepare(base.data)
    train = validation_trial(data)
    print(f"{'variant':<24} {'seed':>4} {'val ' + base.sweep.metric:>13} {'val ' + args.also:>11} "
          f"{'best epoch':>10} {'s/epoch':>8}")
    for spec in args.variant:
        name, _, overrides = spec.partition("=")
        for seed in args.seeds:
            config = load_config(args.config, ["training.progress=false", *args.overrides, *shlex.split(overrides),
                                               f"seed={seed}"])
            curve: list[float] = []
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                best = train(config, Path(tmp), lambda epoch, value: curve.append(value))
                epochs = list(csv.DictReader((Path(tmp) / "epochs.csv").open()))
            # the validated epochs, in the order `curve` saw them (every eval_every-th epoch, and the last)
            validated = [row for row in epochs if row.get(f"val_{config.sweep.metric}")]
            per_epoch = (time.perf_counter() - start) / max(len(epochs), 1)
            best_row = validated[curve.index(best)] if curve else {}
            best_epoch = int(best_row.get("epoch", 0))
            also = float(best_row.get(f"val_{args.also}") or "nan")
            row = (f"{name:<24} {seed:>4} {best:>13.4f} {also:>11.4f} {best_epoch:>10} {per_epoch:>8.1f}")
            print(row, flush=True)
            if args.out:
                with args.out.open("a") as fh:
                    fields = [name, str(seed), f"{best:.5f}", f"{args.also}={also:.5f}", overrides,
                              " ".join(f"{v:.4f}" for v in curve)]
                    fh.write("\t".join(fields) + "\n")


if __name__ == "__main__":
    main()
