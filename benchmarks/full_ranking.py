"""Exact full ranking at scale: every user against every item (bf16 dot products on CUDA), chunked top-K.

    python benchmarks/full_ranking.py --users 1000000 --items 1000000 --dim 128 --k 50 --device cuda
    python benchmarks/full_ranking.py --users 20000 --items 20000 --device cpu     # a CPU smoke run

Random unit vectors stand in for a model (the cost does not depend on the values). Items stay resident; users
are scored `--chunk` at a time ((chunk, items) scores, then torch.topk). Prints one table row per chunk size.
"""

from __future__ import annotations

import argparse
import time

import torch

from booktower.evaluation.ranking import block_max_top_k


def rank_all(users: torch.Tensor, items: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """(U, d) x (I, d) -> (U, k) item indices of the top-k scores per user."""
    out = torch.empty(users.shape[0], k, dtype=torch.int64, device=users.device)
    for start in range(0, users.shape[0], chunk):
        scores = users[start : start + chunk] @ items.T  # (c, I)
        out[start : start + chunk] = torch.topk(scores, k, dim=1, sorted=True).indices
    return out


def rank_all_blocked(users: torch.Tensor, items: torch.Tensor, k: int, chunk: int, blocks: int = 64) -> torch.Tensor:
    """Two-stage top-k: top-k inside each of `blocks` column blocks, then top-k of those candidates.
    Same result as `rank_all` (up to ties); the second stage reads blocks * k values instead of all items."""
    n_items = items.shape[0]
    width = -(-n_items // blocks)
    pad = width * blocks - n_items
    out = torch.empty(users.shape[0], k, dtype=torch.int64, device=users.device)
    for start in range(0, users.shape[0], chunk):
        scores = users[start : start + chunk] @ items.T  # (c, I)
        if pad:
            scores = torch.nn.functional.pad(scores, (0, pad), value=float("-inf"))
        local = torch.topk(scores.view(len(scores), blocks, width), k, dim=2)  # (c, blocks, k)
        cand = local.values.flatten(1)
        pick = torch.topk(cand, k, dim=1, sorted=True).indices  # (c, k) into blocks * k
        block = pick // k
        column = local.indices.flatten(1).gather(1, pick)
        out[start : start + chunk] = block * width + column
    return out


def rank_all_blockmax(users: torch.Tensor, items: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """The evaluator's block-maximum top-k (booktower.evaluation.ranking.block_max_top_k) per chunk."""
    out = torch.empty(users.shape[0], k, dtype=torch.int64, device=users.device)
    for start in range(0, users.shape[0], chunk):
        out[start : start + chunk] = block_max_top_k(users[start : start + chunk] @ items.T, k)[1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--chunks", default="2048,4096")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", default="topk,blocked,blockmax",
                        help="topk: one torch.topk per chunk; blocked: two-stage top-k; blockmax: block maxima first")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    gen = torch.Generator(device=device).manual_seed(0)
    users = torch.nn.functional.normalize(torch.randn(args.users, args.dim, device=device, generator=gen), dim=1)
    items = torch.nn.functional.normalize(torch.randn(args.items, args.dim, device=device, generator=gen), dim=1)
    users, items = users.to(dtype), items.to(dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"{args.users:,} users x {args.items:,} items, d={args.dim}, top-{args.k}, {dtype}, {device}")
    check = users[:256]
    methods = {"topk": rank_all, "blocked": rank_all_blocked, "blockmax": rank_all_blockmax}
    reference = rank_all(check, items, args.k, 256)
    ref_scores = (check @ items.T).float().gather(1, reference).sort(dim=1).values  # tie-robust comparison
    print(f"{'method':>8} {'chunk':>6} {'seconds':>8} {'users/s':>11} {'peak MB':>8} {'same ids':>9} {'same scores':>11}")
    for name, chunk in [(m, int(c)) for m in args.methods.split(",") for c in args.chunks.split(",")]:
        rank = methods[name]
        found = rank(check, items, args.k, 256)
        agree = (found.sort(dim=1).values == reference.sort(dim=1).values).float().mean()
        same_scores = ((check @ items.T).float().gather(1, found).sort(dim=1).values == ref_scores).float().mean()
        rank(users[: chunk * 2], items, args.k, chunk)  # warm-up (kernels, allocator)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync()
        start = time.perf_counter()
        rank(users, items, args.k, chunk)
        sync()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
        print(f"{name:>8} {chunk:>6} {seconds:>8.2f} {args.users / seconds:>11.0f} {peak:>8.0f} {agree:>9.4f} "
              f"{same_scores:>11.4f}", flush=True)


if __name__ == "__main__":
    main()
