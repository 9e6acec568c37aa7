"""The content of a reader's history: the item tower's bag inputs (authors, categories, title tokens) of the books
read, pooled with the history's own weights (model.history.content).

The ID vectors a history pools are learnt from reads alone; on a small log (a few reads per book) they barely move
from their initialisation, so a reader of one favourite author is described by noise. The author and category
embeddings are shared by every book that carries them and learn from all of their reads, so a reader vector built
from them generalises from the first read. The model holds each book's bag codes as buffers (saved with the
weights), so every caller of `encode_user`, serving included, gets the same inputs without passing the catalogue.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from booktower.data.types import Ragged, SideFeatures
from booktower.models.history import WeightedBag
from booktower.models.indexing import distinct_rows
from booktower.models.layers import weighted_bag

def padded_codes(bags: Ragged, width: int) -> np.ndarray:
    """(n, width) int32: each row's first `width` codes, then -1."""
    starts, lengths = bags.offsets[:-1], np.diff(bags.offsets)
    position = starts[:, None] + np.arange(width)[None, :]  # (n, width)
    valid = np.arange(width)[None, :] < lengths[:, None]
    if bags.values.size == 0:
        return np.full(position.shape, -1, dtype=np.int32)
    codes = bags.values[np.clip(position, 0, len(bags.values) - 1)]
    return np.where(valid, codes, -1).astype(np.int32)


class HistoryContent(nn.Module):
    """Per field, sum over the history of weight[b, l] * mean(table[codes of book history[b, l]]) -> (B, dim).

    The tables are the item tower's own bag tables (passed in at each call, not owned): a reader's author vector
    and a candidate's author vector are the same vector."""

    def __init__(self, n_items: int, fields: dict[str, int], text_width: int) -> None:
        super().__init__()
        self.fields = sorted(fields)
        widths = [fields[name] for name in self.fields] + ([text_width] if text_width else [])
        for i, width in enumerate(widths):
            self.register_buffer(f"codes_{i}", torch.full((n_items, width), -1, dtype=torch.int32))

    def code_tables(self) -> list[torch.Tensor]:
        return [getattr(self, f"codes_{i}") for i in range(len(self.fields) + self.has_text)]

    @property
    def n_items(self) -> int:
        """Books with codes: the model's ID rows, plus any appended (`append`)."""
        return self.codes_0.shape[0]

    @property
    def has_text(self) -> bool:
        return hasattr(self, f"codes_{len(self.fields)}")

    def codes_of(self, features: SideFeatures) -> list[np.ndarray]:
        """Each code table's rows for the books of `features`: (n, width) int32, -1 padded, in `code_tables` order."""
        by_name = {f.name: f.bags for f in features.categorical}
        missing = [name for name in self.fields if name not in by_name]
        if missing or (self.has_text and features.text is None):
            raise ValueError(f"the item features lack {missing or ['title tokens']}, which this model pools")
        sources = [by_name[name] for name in self.fields] + ([features.text] if self.has_text else [])
        return [padded_codes(bags, table.shape[1]) for table, bags in zip(self.code_tables(), sources)]

    @torch.no_grad()
    def fill(self, features: SideFeatures) -> None:
        """Copy every book's bag codes from the item features the model is trained on (one row per item)."""
        if features.n_rows != self.n_items:
            raise ValueError(f"{features.n_rows} item feature rows for a model of {self.n_items} items")
        for table, codes in zip(self.code_tables(), self.codes_of(features)):
            table.copy_(torch.from_numpy(codes))

    @torch.no_grad()
    def append(self, codes: list[np.ndarray]) -> None:
        """Books after the model's own (added to a served bundle): their rows of `codes_of`, appended. The state
        then no longer loads into a model built from the spec, so this is for serving, never before a save."""
        tables = self.code_tables()
        if len(codes) != len(tables) or any(c.ndim != 2 or c.shape[1] != t.shape[1] for c, t in zip(codes, tables)):
            raise ValueError(f"appended codes of shapes {[c.shape for c in codes]} for code tables of widths "
                             f"{[t.shape[1] for t in tables]}")
        if len({c.shape[0] for c in codes}) > 1:
            raise ValueError(f"appended codes disagree on the number of books: {[c.shape[0] for c in codes]}")
        for i, (table, rows) in enumerate(zip(tables, codes)):
            added = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int32)).to(table.device)
            setattr(self, f"codes_{i}", torch.cat([table, added]))

    def forward(self, tables: list[torch.Tensor], history: torch.Tensor, weights: torch.Tensor,
                sparse: bool) -> list[torch.Tensor]:
        """`tables`: the item tower's bag tables in field order (then the title-token table); `history` (B, L) item
        indices (-1 = padding); `weights` (B, L) the pooling weights. -> one (B, dim) per table."""
        if not sparse:
            return [self._dense(table, codes, history, weights) for table, codes in zip(tables, self.code_tables())]
        # Each distinct book's content once, then the weighted pool: the tables' sparse gradients then have one
        # row per (distinct book, code), not one per (history entry, code).
        valid = history >= 0
        entries = valid.reshape(-1).nonzero().squeeze(1)  # (N,)
        distinct, inverse = distinct_rows(history.reshape(-1).index_select(0, entries), self.n_items)  # (U,), (N,)
        lengths = valid.sum(dim=1)  # (B,)
        offsets = torch.cumsum(lengths, 0) - lengths
        bag = entries.div(history.shape[1], rounding_mode="floor")  # (N,) each entry's reader row
        entry_weights = weights.reshape(-1).index_select(0, entries)  # (N,)
        out = []
        for table, codes in zip(tables, self.code_tables()):
            rows = _book_means(table, codes.index_select(0, distinct))  # (U, dim)
            out.append(WeightedBag.apply(rows, inverse, offsets, bag, entry_weights.to(rows.dtype)))  # (B, dim)
        return out

    @staticmethod
    def _dense(table: torch.Tensor, codes: torch.Tensor, history: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Fixed shapes and no host sync (training/graphed.py): every (entry, code) pair in one weighted bag."""
        batch, length = history.shape
        book_codes = codes.index_select(0, history.clamp(min=0).reshape(-1)).long()  # (B * L, T)
        pair_weights = _mean_weights(book_codes, weights.dtype) * weights.reshape(-1, 1)  # (B * L, T)
        return weighted_bag(table, book_codes.clamp(min=0).view(batch, -1), pair_weights.view(batch, -1))  # (B, dim)


def _book_means(table: torch.Tensor, book_codes: torch.Tensor) -> torch.Tensor:
    """(U, T) codes with -1 padding -> (U, dim) the mean of each book's code rows (zeros for none). Only the
    valid codes are looked up: a padding slot looked up at weight 0 would still put its row in the sparse
    gradient, and lazy Adam moves every row it is handed, by its momentum, even at a zero gradient. (Looking up
    each distinct code once instead, as the ID pooling does, measured no faster on the amazon titles.)"""
    present = book_codes >= 0
    lengths = present.sum(dim=1)  # (U,)
    return F.embedding_bag(book_codes[present].long(), table, torch.cumsum(lengths, 0) - lengths, mode="mean",
                           sparse=True)  # (U, dim)


def _mean_weights(codes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(n, T) codes with -1 padding -> (n, T) weights 1 / bag length (0 for padding and for an empty bag)."""
    valid = (codes >= 0).to(dtype)
    return valid / valid.sum(dim=1, keepdim=True).clamp(min=1)
