"""Tower inputs as tensors, and SideTensors: a side's feature matrices on a device, gathered by row fast."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from booktower.data.types import Ragged, SideFeatures


@dataclass(frozen=True)
class Bags:
    """A batch of bags in EmbeddingBag layout: bag b is values[offsets[b]:offsets[b+1]] (last runs to the end)."""

    values: torch.Tensor  # (nnz,) int64
    offsets: torch.Tensor  # (B,) int64 start of each bag


@dataclass(frozen=True)
class PaddedBags:
    """A batch of bags as a fixed-width matrix: bag b is values[b, t] weighted by weights[b, t], padding weighted
    0. Same shapes for every batch and no host sync to build: what a CUDA graph can replay (training/graphed.py)."""

    values: torch.Tensor  # (B, T) int64, padding 0
    weights: torch.Tensor  # (B, T) float32, 1 / bag length (a mean), 0 for padding


@dataclass(frozen=True)
class ItemBatch:
    """Item-tower input. `ids` of -1 mean "no ID row" (an unknown book): content path only."""

    ids: torch.Tensor  # (B,) int64
    numeric: torch.Tensor  # (B, d_num) float32
    categorical: dict[str, Bags | PaddedBags] = field(default_factory=dict)
    text: Bags | PaddedBags | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True)
class UserBatch:
    """User-tower input. `history` holds item indices oldest first, left-padded with -1."""

    ids: torch.Tensor  # (B,) int64, -1 = unknown reader
    numeric: torch.Tensor  # (B, d_num) float32
    categorical: dict[str, Bags | PaddedBags] = field(default_factory=dict)
    history: torch.Tensor | None = None  # (B, L) int64

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def gather_ragged(offsets: torch.Tensor, values: torch.Tensor, rows: torch.Tensor) -> Bags:
    """Rows of a CSR matrix as EmbeddingBag input, without a Python loop over rows."""
    starts = offsets.index_select(0, rows)  # (B,)
    lengths = offsets.index_select(0, rows + 1) - starts  # (B,)
    out_offsets = torch.cumsum(lengths, 0) - lengths  # (B,) exclusive cumsum
    total = int(lengths.sum())
    # position t of the output comes from starts[b] + (t - out_offsets[b]) for its bag b
    shift = torch.repeat_interleave(starts - out_offsets, lengths, output_size=total)  # (nnz,)
    flat = shift + torch.arange(total, device=values.device)
    return Bags(values.index_select(0, flat), out_offsets)


def pad_ragged(offsets: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A CSR matrix (n rows) as (n, T) values and mean weights, T its longest row (at least 1)."""
    lengths = offsets[1:] - offsets[:-1]  # (n,)
    width = max(int(lengths.max()) if len(lengths) else 0, 1)
    position = offsets[:-1, None] + torch.arange(width, device=offsets.device)[None, :]  # (n, T)
    valid = torch.arange(width, device=offsets.device)[None, :] < lengths[:, None]
    padded = values.index_select(0, position.clamp(max=max(len(values) - 1, 0)).view(-1)).view(position.shape) \
        if len(values) else torch.zeros_like(position)
    weights = valid.float() / lengths.clamp(min=1)[:, None].float()
    return torch.where(valid, padded, torch.zeros_like(padded)), weights


def _tensor(array: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype).to(device)


class SideTensors:
    """One side's features (one row per index) held on `device`."""

    def __init__(self, features: SideFeatures, device: torch.device | str = "cpu", use_features: bool = True) -> None:
        device = torch.device(device)
        self.n_rows = features.n_rows
        numeric = features.numeric if use_features else np.zeros((features.n_rows, 0), np.float32)
        self.numeric = _tensor(numeric, device, torch.float32)  # (n, d_num)
        self.ragged: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        if use_features:
            for f in features.categorical:
                self.ragged[f.name] = (_tensor(f.bags.offsets, device, torch.int64), _tensor(f.bags.values, device, torch.int64))
        self.text: tuple[torch.Tensor, torch.Tensor] | None = None
        if use_features and features.text is not None:
            self.text = (_tensor(features.text.offsets, device, torch.int64), _tensor(features.text.values, device, torch.int64))
        self.padded = False

    def with_padded_bags(self) -> "SideTensors":
        """The same features whose bags come as PaddedBags (fixed width, no host sync per batch): each bag field
        is held once as an (n, T) matrix, T its longest bag."""
        out = copy.copy(self)
        out.ragged = {name: pad_ragged(*pair) for name, pair in self.ragged.items()}
        out.text = pad_ragged(*self.text) if self.text is not None else None
        out.padded = True
        return out

    def _bags(self, pair: tuple[torch.Tensor, torch.Tensor], rows: torch.Tensor) -> Bags | PaddedBags:
        if self.padded:
            return PaddedBags(pair[0].index_select(0, rows), pair[1].index_select(0, rows))
        return gather_ragged(*pair, rows)

    def _parts(self, rows: torch.Tensor) -> tuple[torch.Tensor, dict[str, Bags | PaddedBags], Bags | PaddedBags | None]:
        numeric = self.numeric.index_select(0, rows)  # (B, d_num)
        cats = {name: self._bags(pair, rows) for name, pair in self.ragged.items()}
        text = self._bags(self.text, rows) if self.text is not None else None
        return numeric, cats, text

    def item_batch(self, rows: torch.Tensor, ids: torch.Tensor | None = None) -> ItemBatch:
        """Features of `rows`; ID rows are `ids` (default: the same indices)."""
        numeric, cats, text = self._parts(rows)
        return ItemBatch(rows if ids is None else ids, numeric, cats, text)

    def user_batch(self, rows: torch.Tensor, ids: torch.Tensor | None = None,
                   history: torch.Tensor | None = None) -> UserBatch:
        numeric, cats, _ = self._parts(rows)
        return UserBatch(rows if ids is None else ids, numeric, cats, history)


def pad_histories(histories: Ragged, rows: np.ndarray, max_length: int) -> np.ndarray:
    """The last `max_length` items of each row, oldest first, left-padded with -1. (B,) -> (B, L)."""
    rows = np.asarray(rows, dtype=np.int64)
    ends = histories.offsets[rows + 1]  # (B,)
    starts = histories.offsets[rows]
    positions = ends[:, None] - max_length + np.arange(max_length)[None, :]  # (B, L)
    valid = positions >= starts[:, None]
    if histories.values.size == 0:
        return np.full((len(rows), max_length), -1, dtype=np.int64)
    out = histories.values[np.clip(positions, 0, len(histories.values) - 1)]
    return np.where(valid, out, -1).astype(np.int64)
