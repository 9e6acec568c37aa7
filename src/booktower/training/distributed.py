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


def average_sparse_gradients(params: list[torch.Tensor]) -> None:
    """Average the sparse gradients of `params` (float32 embedding tables) over the ranks, as DDP averages the
    dense ones, by all-gathering every rank's (row, values) entries: the concatenation divided by the world size
    is the mean a dense all-reduce gives, in entries x dim floats per rank instead of rows x dim (0.6 MB against
    3.7 GB per step at Amazon 2023 scale, docs/scaling.md). Rows may repeat; LazyAdam merges them. A rank without
    a gradient for a table takes part with no entries, so every rank runs the same two collectives: the entry
    counts, then one buffer with every table's rows and values as 32-bit words."""
    if not params:
        return
    world, device = dist.get_world_size(), params[0].device
    entries = [_entries(param) for param in params]
    counts = torch.tensor([len(index) for index, _ in entries], dtype=torch.int64, device=device)
    every = [torch.empty_like(counts) for _ in range(world)]
    dist.all_gather(every, counts)
    sizes = torch.stack(every).tolist()  # (world, tables)
    widths = [2 + param.shape[1] for param in params]  # 32-bit words: an int64 row is two
    length = max(sum(n * w for n, w in zip(row, widths)) for row in sizes)
    # int32 words carry the rows and the float32 values as bits: integer copies never touch a value
    buffer = torch.zeros(max(length, 1), dtype=torch.int32, device=device)
    offset = 0
    for (index, values), width in zip(entries, widths):
        n = len(index)
        block = buffer[offset : offset + n * width].view(n, width)
        block[:, :2] = index.contiguous().view(torch.int32).view(n, 2)
        block[:, 2:] = values.contiguous().view(torch.int32)
        offset += n * width
    parts = [torch.empty_like(buffer) for _ in range(world)]
    dist.all_gather(parts, buffer)
    gathered: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in params]
    for part, row in zip(parts, sizes):
        offset = 0
        for j, (n, width) in enumerate(zip(row, widths)):
            block = part[offset : offset + n * width].view(n, width)
            gathered[j].append((block[:, :2].reshape(-1).view(torch.int64),
                                block[:, 2:].reshape(-1).view(torch.float32).view(n, width - 2)))
            offset += n * width
    for param, blocks in zip(params, gathered):
        index = torch.cat([rows for rows, _ in blocks])
        values = torch.cat([vals for _, vals in blocks]).div_(world)
        param.grad = torch.sparse_coo_tensor(index.unsqueeze(0), values, param.shape, check_invariants=False)


def _entries(param: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A table's sparse gradient as (rows (n,), values (n, dim)); no gradient gives no entries."""
    grad = param.grad
    if grad is None:
        return torch.zeros(0, dtype=torch.int64, device=param.device), param.new_zeros(0, param.shape[1])
    if not grad.is_sparse or grad.dtype != torch.float32:
        raise ValueError("average_sparse_gradients takes float32 sparse gradients of embedding tables")
    return grad._indices()[0], grad._values()


def names_ddp_ignores(module: torch.nn.Module, sparse_tables: list[torch.nn.Parameter]) -> list[str]:
    """The parameters and buffers DDP must leave alone: the sparse tables (their gradients are all-gathered by
    `average_sparse_gradients`) and the books' content codes, the same data on every rank and never changed,
    which DDP would otherwise broadcast (books x codes) before every step."""
    from booktower.models.history_content import HistoryContent

    tables = {id(p) for p in sparse_tables}
    constant = {id(b) for m in module.modules() if isinstance(m, HistoryContent) for b in m.buffers()}
    return ([name for name, p in module.named_parameters() if id(p) in tables]
            + [name for name, b in module.named_buffers() if id(b) in constant])
