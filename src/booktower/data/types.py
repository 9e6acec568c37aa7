"""Typed containers the data layer hands to models, training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from booktower.data.vocab import Vocabulary

if TYPE_CHECKING:
    from booktower.data.features import FeatureSpec


@dataclass(frozen=True)
class Interactions:
    """Indexed interactions, sorted by (user, time, order). All arrays have the same length."""

    user: np.ndarray  # (n,) int64 user index
    item: np.ndarray  # (n,) int64 item index
    timestamp: np.ndarray  # (n,) int64 epoch seconds

    def __post_init__(self) -> None:
        if not (len(self.user) == len(self.item) == len(self.timestamp)):
            raise ValueError("Interactions arrays must have equal lengths")

    def __len__(self) -> int:
        return len(self.user)

    def subset(self, mask: np.ndarray) -> "Interactions":
        return Interactions(self.user[mask], self.item[mask], self.timestamp[mask])


@dataclass(frozen=True)
class Split:
    """A train / validation / test split over one pair of vocabularies."""

    kind: str
    train: Interactions
    valid: Interactions
    test: Interactions

    def sizes(self) -> dict[str, int]:
        return {"n_train": len(self.train), "n_valid": len(self.valid), "n_test": len(self.test)}


@dataclass(frozen=True)
class Ragged:
    """A ragged int matrix in CSR form: row r holds values[offsets[r]:offsets[r+1]] (EmbeddingBag layout)."""

    offsets: np.ndarray  # (n_rows + 1,) int64
    values: np.ndarray  # (nnz,) int64

    @property
    def n_rows(self) -> int:
        return len(self.offsets) - 1

    def row(self, r: int) -> np.ndarray:
        return self.values[self.offsets[r] : self.offsets[r + 1]]

    @classmethod
    def by_row(cls, rows: np.ndarray, values: np.ndarray, n_rows: int) -> "Ragged":
        """`values` grouped by their row (each in [0, n_rows)), a row's values in their given order: a log sorted
        by (user, time) gives each user's items oldest first."""
        rows, values = np.asarray(rows, dtype=np.int64), np.asarray(values, dtype=np.int64)
        if rows.size and np.any(rows[1:] < rows[:-1]):
            order = np.argsort(rows, kind="stable")
            rows, values = rows[order], values[order]
        offsets = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_rows), out=offsets[1:])
        return cls(offsets, values)

    @classmethod
    def from_lists(cls, rows: list[list[int]]) -> "Ragged":
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.fromiter((v for r in rows for v in r), dtype=np.int64, count=int(offsets[-1]))
        return cls(offsets, values)


@dataclass(frozen=True)
class CategoricalField:
    """A (multi-)categorical feature: per row a bag of level ids in [0, cardinality)."""

    name: str
    bags: Ragged
    levels: list[str]  # level names; index 0 is always "<other>" (rare or unseen levels)

    @property
    def cardinality(self) -> int:
        return len(self.levels)


@dataclass(frozen=True)
class SideFeatures:
    """Engineered features of one side (users or items), one row per vocabulary index."""

    numeric: np.ndarray  # (n, d_num) float32, scaled with training-split statistics
    numeric_names: list[str]
    categorical: list[CategoricalField] = field(default_factory=list)
    text: Ragged | None = None  # hashed title tokens in [0, text_buckets)
    text_buckets: int = 0

    @property
    def n_rows(self) -> int:
        return self.numeric.shape[0]

    def dims(self) -> dict[str, Any]:
        return {
            "numeric": int(self.numeric.shape[1]),
            "categorical": {f.name: f.cardinality for f in self.categorical},
            "text_buckets": int(self.text_buckets),
        }


@dataclass
class PreparedData:
    """Everything a model needs: vocabularies, the split, features fitted on train, display metadata."""

    users: Vocabulary
    items: Vocabulary
    split: Split
    user_features: SideFeatures
    item_features: SideFeatures
    item_category: np.ndarray  # (n_items,) int64 category id at the configured level, -1 = none (for CAL)
    category_names: list[str]
    item_metadata: pl.DataFrame  # item_id, title, author, categories (display strings), row order = item index
    summary: dict[str, Any]
    feature_spec: "FeatureSpec | None" = None  # fitted on train; featurises new books and anonymous readers

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def item_popularity(self) -> np.ndarray:
        """Training interactions per item (n_items,)."""
        return np.bincount(self.split.train.item, minlength=self.n_items)

    def histories(self, *parts: str) -> tuple[Ragged, np.ndarray]:
        """Each user's items (and timestamps) from the named parts ("train", "valid", "test"), oldest first."""
        chosen = [getattr(self.split, p) for p in parts]
        user = np.concatenate([c.user for c in chosen])
        item = np.concatenate([c.item for c in chosen])
        ts = np.concatenate([c.timestamp for c in chosen])
        rank = np.concatenate([np.full(len(c), i) for i, c in enumerate(chosen)])
        order = np.lexsort((rank, ts, user))  # stable within a part: file/seq order already applied
        offsets = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(user, minlength=self.n_users), out=offsets[1:])
        return Ragged(offsets, item[order]), ts[order]
