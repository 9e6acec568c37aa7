"""The command line of the hold-out benchmarks (cold_items.py, new_readers.py): a config, overrides, an output
folder and the fraction held out."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def holdout_arguments(doc: str, fraction: float, seeds: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--fraction", type=float, default=fraction, help=f"share held out (default {fraction})")
    if seeds:
        parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=None,
                            help="comma-separated: one run per seed, served as their ensemble (default: one run)")
    args = parser.parse_args()
    if not 0 < args.fraction < 1:
        parser.error(f"--fraction {args.fraction} is not a share: pass a number between 0 and 1 (e.g. {fraction})")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return args
