"""Pooling a reader's history (items before the target, oldest first, left-padded) into one vector."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from booktower.models.spec import HistorySpec


class HistoryPooler(nn.Module):
    """mean, recency (weight 0.5 ** (age / half_life), newest age 0) or self-attention then a masked mean."""

    def __init__(self, spec: HistorySpec, dim: int) -> None:
        super().__init__()
        if spec.pooling not in ("mean", "recency", "attention"):
            raise ValueError(f"unknown history pooling {spec.pooling!r}; choose none, mean, recency or attention")
        self.kind = spec.pooling
        self.max_length = spec.max_length
        ages = torch.arange(spec.max_length - 1, -1, -1, dtype=torch.float32)  # (L,) newest (last) is 0
        self.register_buffer("decay", 0.5 ** (ages / spec.recency_half_life), persistent=False)
        if self.kind == "attention":
            if dim % spec.attention_heads:
                raise ValueError(f"history width {dim} is not divisible by model.history.attention_heads "
                                 f"({spec.attention_heads})")
            self.position = nn.Parameter(torch.zeros(spec.max_length, dim))  # (L, dim)
            nn.init.normal_(self.position, std=0.02)
            layer = nn.TransformerEncoderLayer(dim, spec.attention_heads, dim_feedforward=2 * dim, dropout=0.0,
                                               batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, spec.attention_layers, enable_nested_tensor=False)

    def forward(self, table: torch.Tensor, history: torch.Tensor, sparse: bool) -> torch.Tensor:
        """`table` (n_items, dim) item embeddings, `history` (B, L) item indices (-1 = padding) -> (B, dim);
        a row without history gives zeros."""
        valid = history >= 0  # (B, L)
        if self.kind == "attention":
            vectors = F.embedding(history.clamp(min=0), table, sparse=sparse) * valid.unsqueeze(-1)  # (B, L, dim)
            weights = valid.to(vectors.dtype) / valid.sum(dim=1, keepdim=True).clamp(min=1)  # (B, L)
            return torch.einsum("bl,bld->bd", weights, self._attend(vectors, valid))  # (B, dim)
        # mean / recency: a weighted bag over the valid entries only (no padded (B, L, dim) tensor is built).
        weights = valid.to(table.dtype)
        if self.kind == "recency":
            weights = weights * self.decay[-history.shape[1]:].to(table.dtype)
        weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-6)  # (B, L)
        lengths = valid.sum(dim=1)  # (B,)
        offsets = torch.cumsum(lengths, 0) - lengths
        # Look each distinct item up once: the table's (sparse) gradient then has one row per distinct item
        # instead of one per history entry, which is what the optimiser would otherwise coalesce every step.
        distinct, inverse = torch.unique(history[valid], return_inverse=True)  # (U,), (N,)
        rows = F.embedding(distinct, table, sparse=sparse)  # (U, dim)
        return F.embedding_bag(inverse, rows, offsets, mode="sum",
                               per_sample_weights=weights[valid])  # (B, dim)

    def _attend(self, vectors: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        length = vectors.shape[1]
        # A row with no history would attend to nothing (NaN); let it see its last (zero) slot instead.
        padding = ~valid
        padding[:, -1] = padding[:, -1] & valid.any(dim=1)
        x = vectors + self.position[-length:].to(vectors.dtype)  # (B, L, dim)
        return self.encoder(x, src_key_padding_mask=padding)  # (B, L, dim)
