"""Cold start: vectors for readers without a user row (from their history) and books without an ID row.

Both go through the trained towers with index -1 ("unknown to the ID tables"), so only the content path and the
history pooling contribute, exactly as the model handles unseen ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import polars as pl

from booktower.data.features import USER_DERIVED, FeatureSpec
from booktower.data.types import Ragged
from booktower.serving.added_content import ADDED_CONTENT, has_content, read_added_codes
from booktower.serving.book_features import with_absent_columns
from booktower.serving.manifest import (
    FEATURE_SPEC, MODEL_DIR, MODEL_SPEC, MODEL_WEIGHTS, REEXPORT, BundleError, why,
)

if TYPE_CHECKING:
    from booktower.serving.bundle import BundleParts


@dataclass(frozen=True)
class EncodedBooks:
    """New books as the bundle keeps them."""

    vectors: np.ndarray
    """(m, d) float32: their rows of the index."""
    codes: list[np.ndarray] | None
    """What a reader's history pools of them besides their ID (added_content.py); None: the model pools nothing."""


class Encoder(Protocol):
    """What the service needs from a model: vectors for anonymous readers and for new books. An encoder may also
    say which books a history can pool (`ModelEncoder.pools`); one that does not is taken to pool them all."""

    def user_vectors(self, histories: Ragged, features: list[dict[str, Any]] | None = None) -> np.ndarray:
        """(U, d) float32 from item-index histories (oldest first) and optional reader metadata by name."""
        ...

    def encode_books(self, catalogue: pl.DataFrame) -> EncodedBooks:
        """Standard catalogue rows (item_id, title, author, categories, num:*...), featurised once."""
        ...

    def reader_features(self) -> dict[str, str]:
        """The reader metadata the model reads: name -> "numeric" | "categorical"."""
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
            values = [_as_float(f.get(name), name) for f in features]
            data[f"num:{name}"] = pl.Series(f"num:{name}", values, dtype=pl.Float64)
        else:
            values = [None if f.get(name) is None else str(f.get(name)) for f in features]
            data[f"cat:{name}"] = pl.Series(f"cat:{name}", values, dtype=pl.String)
    return pl.DataFrame(data)


def _as_float(value: Any, name: str) -> float | None:
    """A numeric reader feature: None is unknown (the training median); a number or numeric text is the value;
    anything else is the caller's mistake, refused rather than served as unknown without a word."""
    if value is None:
        return None
    number = None
    if not isinstance(value, bool) and not (isinstance(value, str) and "_" in value):  # float("1_000") is 1000.0
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
    if number is None or not np.isfinite(number):
        raise ValueError(f"reader feature {name!r} is numeric: {value!r} is not a finite number (send a number, or "
                         "null or nothing for unknown)")
    return number


class ModelEncoder:
    """The trained two-tower model plus the fitted feature spec."""

    def __init__(self, model: Any, spec: FeatureSpec, popularity: np.ndarray, n_model_items: int,
                 added_codes: list[np.ndarray] | None = None) -> None:
        """`added_codes`: the content codes of the books added to the bundle after training (added_content.py),
        which a history then pools; without them, a history skips those books."""
        self.model = model.eval()
        self.spec = spec
        # A book added after training has no training count: unknown (NaN) to the history features, not 0.
        self.popularity = np.asarray(popularity, dtype=np.float64).copy()
        self.popularity[n_model_items:] = np.nan
        self.n_model_items = n_model_items
        # Which item indices a history can hold: the trained books, then the added books with content.
        self.poolable = np.ones(n_model_items, dtype=bool)
        if added_codes is not None:
            model.add_content_only_books(added_codes)
            self.poolable = np.concatenate([self.poolable, has_content(added_codes)])

    @classmethod
    def from_parts(cls, parts: BundleParts, directory: Path | None = None) -> ModelEncoder:
        """The model from the bundle's own (verified, in-memory) model files, checked against the bundle: sizes
        first (before any table is allocated), then one probe encode through both towers. `directory` (the
        bundle's) only names the files in errors."""
        where = Path(directory) if directory is not None else Path()
        model = _model_from_files(parts, where)
        added = None
        if model.history_content is not None:
            widths = [table.shape[1] for table in model.history_content.code_tables()]
            added = read_added_codes(parts.model_files, len(parts.items) - parts.n_model_items, widths, where)
        elif ADDED_CONTENT in parts.model_files:
            raise BundleError(f"{where / MODEL_DIR / ADDED_CONTENT} is for a model that pools the content of a "
                              f"history, and {where / MODEL_SPEC}'s does not. Fix: {REEXPORT}")
        spec = FeatureSpec.from_json(parts.feature_spec)
        try:
            encoder = cls(model, spec, parts.popularity, parts.n_model_items, added)
        except ValueError as exc:  # from appending the codes: the only check the constructor makes
            raise BundleError(f"{where / MODEL_DIR / ADDED_CONTENT} does not fit {where / MODEL_SPEC}'s model "
                              f"({why(exc)}). Fix: {REEXPORT}") from None
        blank_book = pl.DataFrame({"item_id": ["probe"], "title": [""], "author": [""], "categories": [[]]},
                                  schema={"item_id": pl.String, "title": pl.String, "author": pl.String,
                                          "categories": pl.List(pl.String)})
        try:
            probe_user = encoder.user_vectors(Ragged.from_lists([[]]))  # (1, d)
            probe_item = encoder.encode_books(blank_book).vectors  # (1, d)
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError, pl.exceptions.PolarsError) as exc:
            raise BundleError(f"{where / MODEL_SPEC} and {where / FEATURE_SPEC} do not fit together ({why(exc)}). "
                              f"Fix: {REEXPORT}") from None
        if probe_user.shape[1] != parts.dim or probe_item.shape[1] != parts.dim:
            raise BundleError(f"{where / MODEL_SPEC}: the model encodes {probe_user.shape[1]}-d vectors, the "
                              f"bundle's are {parts.dim}-d. Fix: {REEXPORT}")
        return encoder

    def reader_features(self) -> dict[str, str]:
        return user_feature_columns(self.spec)

    def pools(self, items: np.ndarray) -> np.ndarray:
        """(m,) bool: whether a history pools each of these item indices (a trained book, or an added one whose
        content codes the model pools); the others count only in the history features."""
        items = np.asarray(items, dtype=np.int64)
        inside = items < len(self.poolable)
        pooled = np.zeros(len(items), dtype=bool)
        pooled[inside] = self.poolable[items[inside]]
        return pooled

    def user_vectors(self, histories: Ragged, features: list[dict[str, Any]] | None = None) -> np.ndarray:
        import torch

        from booktower.data.featurize import user_features_from_history
        from booktower.models.encode import encode_users

        # prepare keeps a re-read book's earliest reading: a repeat pooled again (or counted twice in the history
        # features) would give another vector than training did
        histories = _first_reads(histories)
        rows = user_rows_from(self.spec, features) if features else None
        side = user_features_from_history(self.spec, histories, self.popularity, None, rows)
        # Books added after training have no ID row: with their content codes the model pools them (a zero ID
        # vector, their own content); without, the history skips them.
        known = _keep(histories, self.poolable)
        users = np.full(histories.n_rows, -1, dtype=np.int64)
        with torch.inference_mode():
            vectors = encode_users(self.model, side, users, known)  # (U, d)
        return vectors.detach().cpu().numpy().astype(np.float32)

    def encode_books(self, catalogue: pl.DataFrame) -> EncodedBooks:
        import torch

        from booktower.data.featurize import transform_items
        from booktower.models.encode import encode_items

        features = transform_items(self.spec, with_absent_columns(self.spec, catalogue))
        with torch.inference_mode():
            vectors = encode_items(self.model, features, np.full(catalogue.height, -1, dtype=np.int64))  # (m, d)
        codes = None if self.model.history_content is None else self.model.history_content.codes_of(features)
        return EncodedBooks(vectors.detach().cpu().numpy().astype(np.float32), codes)


def _model_from_files(parts: BundleParts, where: Path) -> Any:
    """A TwoTower (or an Ensemble) from model.json + model.safetensors bytes; any problem is a BundleError naming the file."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    from booktower.models.ensemble import model_for_spec, spec_from_dict
    from booktower.models.io import SPEC, WEIGHTS

    for name in (SPEC, WEIGHTS):
        if name not in parts.model_files:
            raise BundleError(f"{where / MODEL_DIR / name} is missing from the bundle. Fix: {REEXPORT}")
    try:
        spec = spec_from_dict(json.loads(parts.model_files[SPEC]))
        sizes = {"item ID rows": (spec.item.n_ids, parts.n_model_items),
                 "user ID rows": (spec.user.n_ids, len(parts.users)), "output_dim": (spec.output_dim, parts.dim)}
        for what, (got, want) in sizes.items():
            if got != want:
                raise ValueError(f"{what} = {got}, the bundle has {want}")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"{where / MODEL_SPEC} is not this bundle's model spec ({why(exc)}). Fix: {REEXPORT}") from None
    try:
        model = model_for_spec(spec)
    except Exception as exc:  # noqa: BLE001 - an edited spec can fail anywhere in the towers' constructors
        raise BundleError(f"{where / MODEL_SPEC} does not describe a model that can be built ({why(exc)}). "
                          f"Fix: {REEXPORT}") from None
    try:
        model.load_state_dict(load_tensors(parts.model_files[WEIGHTS]))
    except (SafetensorError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise BundleError(f"{where / MODEL_WEIGHTS} cannot be loaded into {MODEL_SPEC}'s model ({why(exc)}). "
                          f"Fix: {REEXPORT}") from None
    broken = [name for name, tensor in model.state_dict().items()
              if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if broken:
        raise BundleError(f"{where / MODEL_WEIGHTS} holds NaN or infinite weights (e.g. {broken[:3]}). Fix: {REEXPORT}")
    return model.eval()


def _keep(histories: Ragged, poolable: np.ndarray) -> Ragged:
    """`histories` without the entries a history cannot pool (`poolable` False, or past its end)."""
    values = histories.values
    keep = values < len(poolable)
    keep[keep] = poolable[values[keep]]
    return _where(histories, keep)


def _first_reads(histories: Ragged) -> Ragged:
    """Each row's items once, at their first (oldest) place."""
    owner = np.repeat(np.arange(histories.n_rows), np.diff(histories.offsets))
    _, first = np.unique(np.stack([owner, histories.values], axis=1), axis=0, return_index=True)
    keep = np.zeros(len(histories.values), dtype=bool)
    keep[first] = True
    return _where(histories, keep)


def _where(histories: Ragged, keep: np.ndarray) -> Ragged:
    """The entries of `histories` marked in `keep` ((nnz,) bool), rows and order kept."""
    owner = np.repeat(np.arange(histories.n_rows), np.diff(histories.offsets))
    offsets = np.zeros(histories.n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner[keep], minlength=histories.n_rows), out=offsets[1:])
    return Ragged(offsets, histories.values[keep])
