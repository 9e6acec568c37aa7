"""Pooling a reader's history (items before the target, oldest first, left-padded) into one vector."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from booktower import native
from booktower.models.indexing import distinct_rows
from booktower.models.layers import weighted_bag
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

    def forward(self, table: torch.Tensor, history: torch.Tensor, sparse: bool,
                beyond_table: bool = False) -> torch.Tensor:
        """`table` (n_items, dim) item embeddings, `history` (B, L) item indices (-1 = padding) -> (B, dim);
        a row without history gives zeros. `beyond_table`: indices from n_items up are books without an ID row
        (added to a served bundle after training); each takes its share of the weights with a zero vector, as
        it does with its own content in HistoryContent, so a reader's ID and content pools weigh books alike."""
        weights = self.weights(history, table.dtype)  # (B, L)
        present = history >= 0 if self.kind == "attention" else None  # (B, L) every book, ID row or not
        if beyond_table:
            history = history.masked_fill(history >= table.shape[0], -1)
        valid = history >= 0  # (B, L) the entries with an ID row
        if present is not None:
            vectors = F.embedding(history.clamp(min=0), table, sparse=sparse) * valid.unsqueeze(-1)  # (B, L, dim)
            return torch.einsum("bl,bld->bd", weights, self._attend(vectors, present))  # (B, dim)
        if beyond_table:
            weights = weights * valid
        # mean / recency: a weighted bag over the valid entries only (no padded (B, L, dim) tensor is built).
        if sparse and native.takes((table, weights), (history,)):
            return _NativeBag.apply(table, history, weights)  # (B, dim)
        if not sparse:
            # A dense table gradient has every row whatever the lookups, so looking each distinct item up once
            # (below) would save nothing; this bag has fixed shapes and no host sync (training/graphed.py).
            return weighted_bag(table, history.clamp(min=0), weights)  # (B, dim)
        entries = valid.reshape(-1).nonzero().squeeze(1)  # (N,) flat positions of the valid entries, row-major
        items = history.reshape(-1).index_select(0, entries)  # (N,)
        lengths = valid.sum(dim=1)  # (B,)
        # Look each distinct item up once: the table's (sparse) gradient then has one row per distinct item
        # instead of one per history entry, which is what the optimiser would otherwise merge every step.
        distinct, inverse = distinct_rows(items, table.shape[0])  # (U,), (N,)
        rows = F.embedding(distinct, table, sparse=sparse)  # (U, dim)
        return WeightedBag.apply(rows, inverse, torch.cumsum(lengths, 0) - lengths,
                                 entries.div(history.shape[1], rounding_mode="floor"),
                                 weights.reshape(-1).index_select(0, entries))  # (B, dim)

    def weights(self, history: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(B, L) -> (B, L) each history entry's weight in the pool, summing to 1 over a row's valid entries (0
        for padding and for a row without history): recency-decayed for `recency`, equal otherwise (attention's
        final masked mean is equal-weighted too)."""
        weights = (history >= 0).to(dtype)
        if self.kind == "recency":
            weights = weights * self.decay[-history.shape[1]:].to(dtype)
        return weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-6)

    def _attend(self, vectors: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        length = vectors.shape[1]
        # A row with no history would attend to nothing (NaN); let it see its last (zero) slot instead.
        padding = ~valid
        padding[:, -1] = padding[:, -1] & valid.any(dim=1)
        x = vectors + self.position[-length:].to(vectors.dtype)  # (B, L, dim)
        return self.encoder(x, src_key_padding_mask=padding)  # (B, L, dim)


class WeightedBag(torch.autograd.Function):
    """out[b] = sum of weights[e] * rows[inverse[e]] over bag b's entries e (contiguous, starting at offsets[b]).

    The forward is F.embedding_bag; the backward scatters each entry's weighted output gradient onto its row
    with one index_add, where embedding_bag's own CPU backward sorts the entries first (about 7 vs 4 ms per
    amazon batch of 18k history entries for the whole pooling, forward and backward, on 2 threads). `weights`
    get no gradient: they come from the history mask and the recency decay, neither trained."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, inverse: torch.Tensor, offsets: torch.Tensor, bag: torch.Tensor,
                weights: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inverse, bag, weights)
        ctx.n_rows, ctx.dtype = rows.shape[0], rows.dtype
        return F.embedding_bag(inverse, rows, offsets, mode="sum", per_sample_weights=weights)  # (B, dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        inverse, bag, weights = ctx.saved_tensors
        per_entry = grad.index_select(0, bag).to(ctx.dtype).mul_(weights.unsqueeze(1))  # (N, dim)
        rows_grad = per_entry.new_zeros(ctx.n_rows, grad.shape[1]).index_add_(0, inverse, per_entry)  # (U, dim)
        return rows_grad, None, None, None, None


class _NativeBag(torch.autograd.Function):
    """out[b] = sum over l of weights[b, l] * table[history[b, l]] (padding skipped) in one C pass, and in one
    more the table's sparse gradient, each touched row once: what the path above does in about fifteen ops
    (distinct rows, lookup, bag, then gather, scale, index_add and autograd's sparse gradient)."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, history: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(history, weights)
        ctx.table_shape = table.shape
        return native.bag_forward(table, history, weights)  # (B, dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        history, weights = ctx.saved_tensors
        rows, values = native.bag_backward(grad, history, weights, ctx.table_shape[0])  # (U,), (U, dim)
        table_grad = torch.sparse_coo_tensor(rows.unsqueeze(0), values, ctx.table_shape, check_invariants=False)
        return table_grad, None, None
