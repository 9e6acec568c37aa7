"""Cold start: vectors for readers without a user row (from their history) and books without an ID row.

Both go through the trained towers with index -1 ("unknown to the ID tables"), so only the content path and the
history pooling contribute, exactly as the model handles unseen ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from booktower.data.features import USER_DERIVED, FeatureSpec
from booktower.data.types import Ragged


class Encoder(Protocol):
    """What the service needs from a model: vectors for anonymous readers and for new books."""

    def user_vectors(self, histories: Ragged, features: list[dict[str, Any]] | None = None) -> np.ndarray:
        """(U, d) float32 from item-index histories (oldest first) and optional reader metadata by name."""
        ...

    def item_vectors(self, catalogue: pl.DataFrame) -> np.ndarray:
        """(m, d) float32 from standard catalogue rows (item_id, title, author, categories, num:*...)."""
        ...


def user_feature_columns(spec: FeatureSpec) -> dict[str, str]:
    """Reader metadata a request may carry: name -> "numeric" | "categorical" (history aggregates excluded)."""
    columns = {s.name: "numeric" for s in spec.user.numeric if s.name not in USER_DERIVED}
    columns.update({c.name: "categorical" for c in spec.user.categorical})
    return columns


def user_rows_from(spec: FeatureSpec, features: list[dict[str, Any]]) -> pl.DataFrame | None:
    """One row per reader with every num:/cat: column the spec knows; absent values are null (the median / other)."""
    columns = user_feature_columns(spec)
    if not columns:
        return None
    data: dict[str, pl.Series] = {}
    for name, kind in columns.items():
        if kind == "numeric":
            values = [_as_float(f.get(name)) for f in features]
            data[f"num:{name}"] = pl.Series(f"num:{name}", values, dtype=pl.Float64)
        else:
            values = [None if f.get(name) is None else str(f.get(name)) for f in features]
            data[f"cat:{name}"] = pl.Series(f"cat:{name}", values, dtype=pl.String)
    return pl.DataFrame(data)


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


class ModelEncoder:
    """The trained two-tower model plus the fitted feature spec."""

    def __init__(self, model: Any, spec: FeatureSpec, popularity: np.ndarray, n_model_items: int) -> None:
        self.model = model.eval()
        self.spec = spec
        self.popularity = np.asarray(popularity, dtype=np.float64)
        self.n_model_items = n_model_items

    @classmethod
    def load(cls, model_dir: Path, spec: dict[str, Any], popularity: np.ndarray, n_model_items: int) -> ModelEncoder:
        from booktower.models.io import load_model

        return cls(load_model(Path(model_dir)), FeatureSpec.from_json(spec), popularity, n_model_items)

    def user_vectors(self, histories: Ragged, features: list[dict[str, Any]] | None = None) -> np.ndarray:
        import torch

        from booktower.data.featurize import user_features_from_history
        from booktower.models.encode import encode_users

        rows = user_rows_from(self.spec, features) if features else None
        side = user_features_from_history(self.spec, histories, self.popularity, None, rows)
        # Books added after training have no row in the model's item ID table: the history pooling skips them.
        known = _keep_below(histories, self.n_model_items)
        users = np.full(histories.n_rows, -1, dtype=np.int64)
        with torch.inference_mode():
            vectors = encode_users(self.model, side, users, known)  # (U, d)
        return vectors.detach().cpu().numpy().astype(np.float32)

    def item_vectors(self, catalogue: pl.DataFrame) -> np.ndarray:
        import torch

        from booktower.data.featurize import transform_items
        from booktower.models.encode import encode_items

        features = transform_items(self.spec, catalogue)
        with torch.inference_mode():
            vectors = encode_items(self.model, features, np.full(catalogue.height, -1, dtype=np.int64))  # (m, d)
        return vectors.detach().cpu().numpy().astype(np.float32)


def _keep_below(histories: Ragged, limit: int) -> Ragged:
    keep = histories.values < limit
    owner = np.repeat(np.arange(histories.n_rows), np.diff(histories.offsets))
    offsets = np.zeros(histories.n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner[keep], minlength=histories.n_rows), out=offsets[1:])
    return Ragged(offsets, histories.values[keep])
