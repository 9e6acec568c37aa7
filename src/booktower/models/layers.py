"""Small building blocks of the towers: MLPs, ID lookups with an "unknown" row, bags, fusion."""

from __future__ import annotations

import torch
from torch import nn

from booktower.models.batches import Bags, PaddedBags


def mlp(in_dim: int, hidden: list[int], out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    """Linear-ReLU(-Dropout) blocks, then a plain Linear to `out_dim`."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class IdEmbedding(nn.Module):
    """An ID table where index -1 means "no row": it looks up row 0 and returns zeros for that row."""

    def __init__(self, n: int, dim: int, sparse: bool, std: float = 0.05) -> None:
        super().__init__()
        self.table = nn.Embedding(n, dim, sparse=sparse)
        nn.init.normal_(self.table.weight, std=std)

    def forward(self, ids: torch.Tensor, known: bool | None = None) -> torch.Tensor:
        """`known`: the caller's `all_known(ids)`, when it has it (saves checking again)."""
        if all_known(ids) if known is None else known:
            return self._rows(ids)  # (..., dim): nothing to mask, three ops saved
        known = ids >= 0  # (...,)
        rows = self._rows(ids.clamp(min=0))  # (..., dim)
        return rows * known.unsqueeze(-1).to(rows.dtype)

    def _rows(self, ids: torch.Tensor) -> torch.Tensor:
        if self.table.sparse:
            return self.table(ids)
        return lookup_rows(self.table.weight, ids)


def all_known(ids: torch.Tensor) -> bool:
    """True where no id is -1 and finding out costs no host sync (CPU tensors): training batches never hold an
    unknown id, so the masks of unknown rows can be skipped there."""
    return ids.device.type == "cpu" and (ids.numel() == 0 or int(ids.min()) >= 0)


class _L2Normalize(torch.autograd.Function):
    """F.normalize(x, dim=-1) with one backward node of a few ops (autograd's chain through the norm, its clamp,
    the expand and the division is about a dozen)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float) -> torch.Tensor:
        raw = torch.linalg.vector_norm(x, dim=-1, keepdim=True)  # (..., 1)
        norm = raw.clamp_min(eps)
        y = x / norm
        ctx.save_for_backward(y, norm, raw > eps)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        y, norm, unclamped = ctx.saved_tensors
        # d(x / |x|) = (g - y <g, y>) / |x|; where the norm was clamped to eps, the divisor is a constant: g / eps
        along = (grad * y).sum(dim=-1, keepdim=True).mul_(unclamped)
        return (grad - y * along).div_(norm), None


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """x / max(||x||, eps) over the last dimension, as F.normalize."""
    return _L2Normalize.apply(x, eps)


def lookup_rows(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """table[ids] with a dense gradient: (n, d), (...) -> (..., d). `index_select`, whose backward is one
    index_add into a zero table: no host sync, so a CUDA graph can hold it. F.embedding's CUDA backward sorts the
    ids past 3,072 of them, which pytorch/pytorch#82886 reports failing in a capture."""
    return table.index_select(0, ids.reshape(-1)).view(*ids.shape, table.shape[1])


def weighted_bag(table: torch.Tensor, values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum over t of weights[b, t] * table[values[b, t]]: (n, d), (B, T), (B, T) -> (B, d). A gather and a
    weighted sum rather than `F.embedding_bag`: compiled, Inductor fuses the forward into one reduction and the
    backward into one scatter-add, where embedding_bag's CUDA backward is a sort and several more kernels."""
    rows = lookup_rows(table, values)  # (B, T, d)
    # a product and a sum, not einsum: autocast would run einsum as a bf16 batched product
    return (rows * weights.to(rows.dtype).unsqueeze(-1)).sum(dim=1)


class BagEmbedding(nn.Module):
    """Mean of a bag's embeddings (empty bag -> zeros)."""

    def __init__(self, n: int, dim: int, sparse: bool) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(n, dim, mode="mean", sparse=sparse)
        nn.init.normal_(self.bag.weight, std=0.05)

    def forward(self, bags: Bags | PaddedBags) -> torch.Tensor:
        if isinstance(bags, PaddedBags):  # the mean as a weighted sum; padding weighs 0
            if self.bag.sparse:
                raise ValueError("padded bags are for dense table gradients (TwoTower.use_dense_gradients)")
            return weighted_bag(self.bag.weight, bags.values, bags.weights)  # (B, dim)
        return self.bag(bags.values, bags.offsets)  # (B, dim)


class Fusion(nn.Module):
    """Fuse the input parts before the tower MLP.

    concat: [p_1, ..., p_k]; sum: sum_k W_k p_k; gate: sum_k g_k W_k p_k with g = softmax(W_g [p_1..p_k]).
    `out_dim` is the width handed to the tower MLP.
    """

    def __init__(self, kind: str, part_dims: list[int], width: int) -> None:
        super().__init__()
        if kind not in ("concat", "sum", "gate"):
            raise ValueError(f"unknown fusion {kind!r}; choose concat, sum or gate")
        self.kind = kind
        total = sum(part_dims)
        if kind == "concat":
            self.out_dim = total
            return
        self.out_dim = width
        self.project = nn.ModuleList(nn.Linear(d, width) for d in part_dims)
        if kind == "gate":
            self.gate = nn.Linear(total, len(part_dims))

    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:
        if self.kind == "concat":
            return torch.cat(parts, dim=-1)  # (B, sum d_k)
        projected = torch.stack([proj(p) for proj, p in zip(self.project, parts)], dim=1)  # (B, k, w)
        if self.kind == "sum":
            return torch.relu(projected.sum(dim=1))  # (B, w)
        weights = torch.softmax(self.gate(torch.cat(parts, dim=-1)), dim=-1)  # (B, k)
        return torch.relu((weights.unsqueeze(-1) * projected).sum(dim=1))  # (B, w)
