"""Reading a bundle's files one by one: each parse checked against what the manifest says, and whatever a damaged
or edited file raises turned into a BundleError naming the file (bundle.py verifies the sha256s first). And a
bundle that is missing because a write was killed in the middle of its swap: `interrupted_write` finds the
previous version that write left beside it, for a message that names it (it is never read in the bundle's place).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import polars as pl
from safetensors import SafetensorError
from safetensors.numpy import load_file

from booktower.data.types import Ragged
from booktower.data.vocab import Vocabulary
from booktower.serving.manifest import (
    MANIFEST, MODEL_DIR, REEXPORT, VOCAB_ITEMS, BundleError, Manifest, read_manifest_file, why,
)
from booktower.utils.atomic import leftover_dirs

# A write swaps a bundle in with two renames: BUNDLE -> .NAME.old.<time_ns>, then the new folder -> BUNDLE.
OLD_SUFFIX = r"[0-9]+"

# What parsing a damaged or edited file raises (its sha256 matched: the manifest was re-hashed over it).
_DAMAGED = (ValueError, KeyError, TypeError, IndexError, OSError, SafetensorError, pl.exceptions.PolarsError)


def seen_from(frame: pl.DataFrame, n_users: int, n_items: int) -> Ragged:
    """Raises ValueError on anything a writer would not have written (the caller names the file)."""
    if not (frame["user"].dtype.is_integer() and frame["item"].dtype.is_integer()):
        raise ValueError(f"user and item must be integer indices, found {frame.dtypes}")
    users = frame["user"].to_numpy().astype(np.int64)
    items = frame["item"].to_numpy().astype(np.int64)
    if users.size and (np.any(np.diff(users) < 0) or users.min() < 0 or users.max() >= n_users):
        raise ValueError(f"user indices must be sorted and within [0, {n_users})")
    if items.size and (items.min() < 0 or items.max() >= n_items):
        raise ValueError("it holds item indices outside the item vocabulary")
    return Ragged.by_row(users, items, n_users)


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Whatever a damaged file raises while it is parsed becomes a BundleError naming the file."""
    try:
        yield
    except BundleError:
        raise
    except _DAMAGED as exc:
        raise BundleError(f"{path} cannot be read ({why(exc)}): the bundle is damaged or was edited after export. "
                          f"Fix: {REEXPORT}") from None


def vectors_file(path: Path, key: str, rows: int, dim: int) -> np.ndarray:
    with reading(path):
        vectors = load_file(str(path))[key]
        if vectors.dtype != np.float32 or vectors.shape != (rows, dim):
            raise ValueError(f"{key!r} is {vectors.dtype} {vectors.shape}; the manifest says float32 {(rows, dim)}")
        if not np.isfinite(vectors).all():
            raise ValueError(f"{key!r} holds NaN or infinite values")
    return vectors


def vocabulary_file(path: Path, size: int) -> Vocabulary:
    with reading(path):
        vocab = Vocabulary.load(path)
        if len(vocab) != size:
            raise ValueError(f"{len(vocab)} ids, the manifest says {size}")
    return vocab


def metadata_file(path: Path, items: Vocabulary) -> pl.DataFrame:
    with reading(path):
        frame = pl.read_parquet(path)
        missing = [c for c in ("item_id", "title", "author", "categories", "train_count") if c not in frame.columns]
        if missing:
            raise ValueError(f"no column {missing[0]!r}")
        if not frame["item_id"].equals(items.ids, check_names=False, check_dtypes=False):
            raise ValueError(f"item_id does not follow {VOCAB_ITEMS}")
        if not frame["train_count"].dtype.is_integer() or (frame["train_count"] < 0).any():
            raise ValueError("train_count must be counts (non-negative integers)")
        wrong = [c for c in ("item_id", "title", "author", "categories") if frame[c].dtype not in (pl.String, pl.Null)]
        if wrong:
            raise ValueError(f"column {wrong[0]!r} is {frame[wrong[0]].dtype}, not text")
        if "withdrawn" in frame.columns and (frame["withdrawn"].dtype != pl.Boolean or frame["withdrawn"].null_count()):
            raise ValueError("withdrawn must be true/false for every book")
    return frame


def withdrawn_flags(path: Path, metadata: pl.DataFrame, manifest: Manifest) -> np.ndarray:
    """The withdrawn flags (none in a bundle from before them), checked against the manifest's count."""
    flags = (metadata["withdrawn"].to_numpy() if "withdrawn" in metadata.columns
             else np.zeros(metadata.height, dtype=bool))
    if int(flags.sum()) != manifest.withdrawn_books:
        raise BundleError(f"{path} withdraws {int(flags.sum())} books and {MANIFEST} says {manifest.withdrawn_books}: "
                          f"the bundle was edited after it was written. Fix: {REEXPORT}")
    return flags


def model_files(directory: Path, manifest: Manifest) -> dict[str, bytes]:
    """The model/ files the manifest lists, by name; a stray file there (a .pkl, notes) is never opened."""
    files = {}
    for name in manifest.model_files:
        with reading(directory / MODEL_DIR / name):
            files[name] = (directory / MODEL_DIR / name).read_bytes()
    return files


def old_prefix(directory: Path) -> str:
    """The name a write gives the previous version while it swaps the new one in: this, then `OLD_SUFFIX`."""
    return f".{Path(directory).name}.old."


def interrupted_write(directory: Path) -> Path | None:
    """The previous version of a missing bundle, where a write was killed between the two renames of its swap and
    left it beside, whole (the newest such); None when the bundle is there or no whole previous version is."""
    try:
        directory = Path(directory).resolve()  # a write swaps the folder a symlink points to, beside that folder
    except (OSError, RuntimeError):  # a symlink loop: no bundle, and no write of one
        return None
    if directory.exists():
        return None
    for folder in sorted(leftover_dirs(directory.parent, old_prefix(directory), OLD_SUFFIX),
                         key=lambda folder: int(folder.name.rsplit(".", 1)[1]), reverse=True):
        if _whole(folder):
            return folder
    return None


def _whole(folder: Path) -> bool:
    """A valid manifest and every file it lists, of the listed size (a cheap check: no sha256 is computed)."""
    try:
        manifest = read_manifest_file(folder / MANIFEST)
        return all((folder / name).stat().st_size == entry.bytes for name, entry in manifest.files.items())
    except (BundleError, OSError):
        return False


def interrupted_write_message(directory: Path, previous: Path) -> str:
    return (f"{directory} does not exist: a write of this bundle was interrupted (killed while it swapped the new "
            f"version in); the previous version is at {previous}: rename it back "
            f"(mv {shlex.quote(str(previous))} {shlex.quote(str(Path(directory).resolve()))}) or export again")


def refuse_interrupted(directory: Path) -> None:
    """Raise a BundleError naming the previous version when a killed write left only that of the bundle."""
    previous = interrupted_write(directory)
    if previous is not None:
        raise BundleError(interrupted_write_message(directory, previous))
