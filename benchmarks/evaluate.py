"""Exact full-catalogue evaluation speed: every test user over every item at d = 96, with peak memory.

Default: the real amazon-books-2014 split (38,234 test users x 38,519 items, real masks) with random unit
vectors as the "model". Without the shared data it falls back to a synthetic split of the same size.

    python benchmarks/evaluate.py [--config configs/amazon-books-2014.yaml] [--dim 96] [--chunks 1024,2048,4096]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch

from booktower.data.types import Interactions, PreparedData, Split
from booktower.evaluation import evaluate_split
from booktower.evaluation.ranking import inner_products


def _synthetic(n_users: int, n_items: int, per_user: int, rng: np.random.Generator) -> PreparedData:
    """A PreparedData-shaped object with only the fields the evaluator reads (leave-last-out split)."""
    from booktower.data.vocab import Vocabulary

    users = np.repeat(np.arange(n_users), per_user)
    items = rng.integers(0, n_items, len(users))
    times = np.tile(np.arange(per_user), n_users)
    last = times == per_user - 1
    second = times == per_user - 2
    train = ~(last | second)
    part = lambda m: Interactions(users[m], items[m], times[m])
    split = Split("leave_last_out", part(train), part(second), part(last))
    return PreparedData(Vocabulary([f"u{i}" for i in range(n_users)], "user_id"),
                        Vocabulary([f"b{i}" for i in range(n_items)], "item_id"), split, None, None,
                        np.full(n_items, -1), [], None, {})


def _load(config: Path | None, overrides: list[str], rng: np.random.Generator) -> tuple[PreparedData, str]:
    if config is not None and config.exists():
        from booktower.config import load_config
        from booktower.data.prepare import prepare

        try:
            data, _ = prepare(load_config(config, overrides).data)
            return data, f"real split of {config}"
        except FileNotFoundError:
            pass
    return _synthetic(38234, 38519, 13, rng), "synthetic split (shared data absent)"


def _cpu_seconds() -> float:
    """User + system CPU time of this process: on a shared, oversubscribed machine, CPU s / threads is the
    wall time the same work would take with the cores to itself."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/amazon-books-2014.yaml"))
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--chunks", default="1024,2048,4096")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--full-rank", action="store_true", help="Also time the exact full-catalogue rank pass.")
    parser.add_argument("--synthetic", action="store_true", help="Skip the real split.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where the vectors live and the scores are masked and cut (cuda: bf16 products)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    data, source = _load(None if args.synthetic else args.config, args.overrides, rng)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    gen = torch.Generator().manual_seed(0)
    user_vecs = torch.nn.functional.normalize(torch.randn(data.n_users, args.dim, generator=gen), dim=1)  # (n_users, d)
    item_vecs = torch.nn.functional.normalize(torch.randn(data.n_items, args.dim, generator=gen), dim=1)
    user_vecs, item_vecs_t = user_vecs.to(device, dtype), item_vecs.T.contiguous().to(device, dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def score_fn(users: np.ndarray) -> torch.Tensor:
        return inner_products(user_vecs[torch.from_numpy(users).to(device)], item_vecs_t)  # (U, n_items)

    print(f"{source}: {len(np.unique(data.split.test.user)):,} test users x {data.n_items:,} items, d = {args.dim}, "
          f"{device}, {torch.get_num_threads()} torch threads")
    print(f"{'chunk':>6} {'full rank':>10} {'wall s (best)':>14} {'CPU s':>8} {'users/s':>10} {'peak RSS GiB':>13} "
          f"{'HR@10':>8}")
    for full_rank in (False, True) if args.full_rank else (False,):
        for chunk in (int(c) for c in args.chunks.split(",")):
            best, cpu = float("inf"), float("inf")
            for _ in range(args.repeats):
                sync()
                start, cpu_start = time.perf_counter(), _cpu_seconds()
                result = evaluate_split(score_fn, data, "test", [10, 20, 50], chunk=chunk, full_rank=full_rank)
                sync()
                best = min(best, time.perf_counter() - start)
                cpu = min(cpu, _cpu_seconds() - cpu_start)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB, process peak so far
            n = len(result.top_k.users)
            print(f"{chunk:>6} {full_rank!s:>10} {best:>14.2f} {cpu:>8.2f} {n / best:>10,.0f} {peak:>13.2f} "
                  f"{result.metrics['HR@10']:>8.4f}", flush=True)


if __name__ == "__main__":
    main()
