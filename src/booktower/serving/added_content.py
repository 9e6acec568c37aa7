"""The content codes of books added to a bundle (`index add`), so that a reader's history can pool them.

A model with `model.history.content` keeps every trained book's bag codes (authors, categories, title tokens) as
buffers and pools them over a reader's history. A book added later has no ID row, but it has content:
`model/added_content.safetensors` holds its codes, one row per added book in index order, and the encoder appends
them to the model's buffers when it loads the bundle. A row of -1 codes is a book with nothing to pool (no known
author, category or title token, or added by a booktower that kept no codes): a history skips it, as it skips
every book it knows nothing of.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from booktower.serving.manifest import MODEL_DIR, REEXPORT, BundleError, why

ADDED_CONTENT = "added_content.safetensors"
"""Its name in the bundle's model/ folder."""


def _key(table: int) -> str:
    return f"codes_{table}"


def with_added_codes(model_files: dict[str, bytes], n_added_before: int, codes: list[np.ndarray],
                     widths: list[int]) -> dict[str, bytes]:
    """`model_files` whose added-content file also holds `codes` (the new books' rows, one array per content
    table). Books added before without codes get rows of -1 (skipped by histories), so rows stay in index order."""
    earlier = read_added_codes(model_files, n_added_before, widths) if ADDED_CONTENT in model_files else None
    if earlier is None:
        earlier = [np.full((n_added_before, width), -1, dtype=np.int32) for width in widths]
    merged = {_key(i): np.ascontiguousarray(np.concatenate([old, new.astype(np.int32)]))
              for i, (old, new) in enumerate(zip(earlier, codes))}
    return {**model_files, ADDED_CONTENT: save(merged)}


def read_added_codes(model_files: dict[str, bytes], n_added: int, widths: list[int],
                     where: Path | None = None) -> list[np.ndarray] | None:
    """The added books' codes (one (n_added, width) int32 array per content table), or None where the bundle
    keeps none. Anything else than that shape is a BundleError naming the file."""
    if ADDED_CONTENT not in model_files:
        return None
    path = (Path(where) if where is not None else Path()) / MODEL_DIR / ADDED_CONTENT
    try:
        tensors = load(model_files[ADDED_CONTENT])
    except (SafetensorError, ValueError, OSError) as exc:
        raise BundleError(f"{path} cannot be read ({why(exc)}). Fix: {REEXPORT}") from None
    expected = {_key(i): (n_added, width) for i, width in enumerate(widths)}
    found = {name: tuple(array.shape) for name, array in tensors.items()}
    if found != expected or any(array.dtype != np.int32 for array in tensors.values()):
        raise BundleError(f"{path} holds {found} ({sorted({str(a.dtype) for a in tensors.values()})}); this "
                          f"bundle's {n_added} added books and its model's content need int32 {expected}. "
                          f"Fix: {REEXPORT}")
    return [tensors[_key(i)] for i in range(len(widths))]


def has_content(codes: list[np.ndarray]) -> np.ndarray:
    """(n,) bool: the books with at least one code to pool."""
    return np.logical_or.reduce([(rows >= 0).any(axis=1) for rows in codes])
