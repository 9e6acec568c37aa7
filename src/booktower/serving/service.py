"""The recommender a server or a command line answers from: a verified bundle, an index and the filters."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from booktower.config.serving import IndexConfig, ServingConfig
from booktower.data.types import Ragged
from booktower.data.vocab import UnknownIdError
from booktower.serving.bundle import MODEL_DIR, TAG_SEPARATOR, BundleParts, load_bundle
from booktower.serving.encoder import Encoder, ModelEncoder
from booktower.serving.index import build_index
from booktower.serving.retrieve import Hits, allowed_mask, search_filtered


@dataclass(frozen=True)
class Recommendation:
    """One result with what a page needs to show it."""

    item_id: str
    score: float
    title: str
    author: str
    categories: str

    def as_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "score": self.score, "title": self.title, "author": self.author,
                "categories": self.categories}


class Recommender:
    """Answers known readers, anonymous readers (history) and item-to-item queries from one bundle."""

    def __init__(self, parts: BundleParts, config: ServingConfig, encoder: Encoder | None = None,
                 manifest: dict[str, Any] | None = None) -> None:
        self.parts = parts
        self.config = config
        self.encoder = encoder
        self.manifest = manifest or {}
        self.index = build_index(parts.item_vectors, config.index)
        self._vectors = np.ascontiguousarray(parts.item_vectors, dtype=np.float32)  # (n, d)
        self._ids = parts.items.ids.to_list()  # plain lists: a request touches ~10 rows, polars calls cost more
        self._titles = parts.metadata["title"].fill_null("").to_list()
        self._authors = parts.metadata["author"].fill_null("").to_list()
        self._categories = parts.metadata["categories"].fill_null("").to_list()
        self._by_tag = _tag_index(self._categories)

    @classmethod
    def from_bundle(cls, directory: Path, config: ServingConfig | None = None, index_kind: str | None = None) -> Recommender:
        """Load and verify a bundle; the index settings come from the manifest unless `config` is given."""
        parts, manifest = load_bundle(Path(directory))
        if config is None:
            index = IndexConfig.model_validate(manifest.get("index") or {})
            config = ServingConfig(index=index)
        if index_kind is not None:
            config = config.model_copy(update={"index": config.index.model_copy(update={"kind": index_kind})})
        encoder = ModelEncoder.load(Path(directory) / MODEL_DIR, parts.feature_spec, parts.popularity, parts.n_model_items)
        return cls(parts, config, encoder, manifest)

    # ---- lookups -------------------------------------------------------------------------------------------

    @property
    def n_items(self) -> int:
        return len(self.parts.items)

    def user_index(self, user_id: str) -> int:
        try:
            return self.parts.users.index(user_id)
        except UnknownIdError:
            raise UnknownIdError(f"reader {user_id!r} is not in this bundle: a reader unknown at training time is "
                                 "served from their history (POST /recommendations, or --history)") from None

    def item_indices(self, item_ids: list[str], what: str = "item") -> np.ndarray:
        """Raw ids -> indices; an unknown id raises UnknownIdError naming it."""
        indices = np.empty(len(item_ids), dtype=np.int64)
        for i, raw in enumerate(item_ids):
            try:
                indices[i] = self.parts.items.index(raw)
            except UnknownIdError:
                raise UnknownIdError(f"{what} {raw!r} is not in the catalogue") from None
        return indices

    def category_items(self, categories: list[str]) -> np.ndarray | None:
        if not categories:
            return None
        chosen = []
        for name in categories:
            if name not in self._by_tag:
                raise UnknownIdError(f"category {name!r} is not in the catalogue")
            chosen.append(self._by_tag[name])
        return np.unique(np.concatenate(chosen))

    # ---- queries -------------------------------------------------------------------------------------------

    def check_k(self, k: int) -> int:
        if not 1 <= k <= self.config.max_k:
            raise ValueError(f"k must be in [1, {self.config.max_k}], got {k}")
        return k

    def for_user(self, user_id: str, k: int = 10, exclude: list[str] = (), categories: list[str] = ()) -> list[Recommendation]:
        """A known reader: the exported vector; everything they read is excluded."""
        user = self.user_index(user_id)
        seen = self.parts.seen.row(user)
        return self._answer(self.parts.user_vectors[user], k, seen, list(exclude), list(categories))

    def for_history(self, history: list[str], k: int = 10, exclude: list[str] = (), categories: list[str] = (),
                    features: dict[str, Any] | None = None) -> list[Recommendation]:
        """An anonymous reader: the user tower builds the vector from the history (no user ID row)."""
        if self.encoder is None:
            raise RuntimeError("this recommender has no model to encode anonymous readers")
        if len(history) > self.config.max_history:
            raise ValueError(f"history holds {len(history)} items; at most {self.config.max_history} are accepted")
        indices = self.item_indices(list(history), what="history item")
        vector = self.encoder.user_vectors(Ragged.from_lists([indices.tolist()]), [features] if features else None)[0]  # (d,)
        return self._answer(vector, k, indices, list(exclude), list(categories))

    def similar(self, item_id: str, k: int = 10, exclude: list[str] = (), categories: list[str] = ()) -> list[Recommendation]:
        """Books nearest to one book (itself excluded)."""
        item = self.item_indices([item_id])
        return self._answer(self._vectors[item[0]], k, item, list(exclude), list(categories))

    def _answer(self, vector: np.ndarray, k: int, seen: np.ndarray, exclude: list[str], categories: list[str]) -> list[Recommendation]:
        self.check_k(k)
        excluded = np.concatenate([seen, self.item_indices(exclude)]) if exclude else seen
        allowed = allowed_mask(self.n_items, excluded, self.category_items(categories))
        hits = search_filtered(self.index, self._vectors, vector, k, allowed, self.config.index.overfetch)
        return self._rows(hits)

    def _rows(self, hits: Hits) -> list[Recommendation]:
        return [Recommendation(self._ids[i], float(score), self._titles[i], self._authors[i], self._categories[i])
                for i, score in zip(hits.ids.tolist(), hits.scores.tolist())]

    def info(self) -> dict[str, Any]:
        return {
            "status": "ok", "n_items": self.n_items, "n_users": len(self.parts.users), "dim": self.parts.dim,
            "index": self.config.index.kind, "format_version": self.manifest.get("format_version"),
            "booktower_version": self.manifest.get("booktower_version"), "created": self.manifest.get("created"),
        }


def _tag_index(categories: list[str]) -> dict[str, np.ndarray]:
    frame = pl.DataFrame({"c": categories}).with_row_index("row").with_columns(pl.col("c").str.split(TAG_SEPARATOR))
    exploded = frame.explode("c").filter(pl.col("c").is_not_null() & (pl.col("c") != ""))
    groups = exploded.group_by("c").agg(pl.col("row"))
    return {tag: np.asarray(rows, dtype=np.int64) for tag, rows in zip(groups["c"].to_list(), groups["row"].to_list())}
