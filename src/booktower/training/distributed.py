"""torch.distributed plumbing for `torchrun ... -m booktower train`: the process group, the rank's shard of an
epoch, all-gathers that keep gradients, and rank-0 decisions shared with the other ranks.

Without the torchrun environment variables (RANK, WORLD_SIZE, ...) everything here is the single-process no-op,
so `booktower train` behaves exactly as before.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Who this process is. `world_size == 1` is the plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, kind: str) -> torch.device:
        """The device of this rank: CUDA rank-local when CUDA is chosen, otherwise the CPU."""
        if kind == "cuda":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (a small JSON-like object)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average scalars over the ranks (epoch losses), in a fixed key order on every rank."""
        if not self.enabled or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.cuda(self.local_rank)
        dist.all_reduce(t)
        means = {k: float(v) / self.world_size for k, v in zip(keys, t.cpu().tolist())}
        return {k: means[k] for k in values}


def init_distributed(device_kind: str) -> DistContext:
    """Join the torchrun process group when its variables are set: NCCL for CUDA, gloo for the CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    ctx = DistContext(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(ctx.local_rank)
        # Rank 0 validates while the others wait in a collective: allow for a long validation.
        dist.init_process_group(backend, timeout=timedelta(hours=2))
        log.info("distributed: rank %d of %d (%s)", ctx.rank, world, backend)
    return ctx


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def rank_shard(perm: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's part of an epoch's permutation (the same permutation on every rank). The permutation is
    padded by wrapping round to a multiple of the world size, so every rank runs the same number of equal-sized
    batches (collectives need matching shapes); a few interactions appear twice in such an epoch."""
    if world_size == 1:
        return perm
    pad = (-len(perm)) % world_size
    full = torch.cat([perm, perm[:pad]]) if pad else perm
    return full[rank::world_size]


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient of the gathered tensor and keeps this rank's part
    (an all-reduce then a slice: a reduce-scatter that also works on gloo)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(n, ...) on every rank -> (world * n, ...) in rank order; gradients flow back to each rank's part."""
    return _GatherWithGrad.apply(x)


def gather(x: torch.Tensor) -> torch.Tensor:
    """(n, ...) on every rank -> (world * n, ...) in rank order, no gradient (item indices)."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)
