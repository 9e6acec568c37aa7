"""A self-describing serving bundle: every file bound by a sha256 in `manifest.json`; nothing is ever unpickled.

Layout (paths relative to the bundle folder):
    manifest.json               format, versions, dims, index settings, ANN report, {path: sha256, bytes}
    item_vectors.safetensors    "items": (n_items, d) float32, row i = item index i
    user_vectors.safetensors    "users": (n_users, d) float32, known readers (history = train + validation)
    model/model.safetensors     the whole two-tower model (the user tower serves anonymous readers)
    model/model.json            its architecture spec
    vocab/users.parquet         user ids, row = user index
    vocab/items.parquet         item ids, row = item index
    feature_spec.json           the fitted feature specification (statistics, levels, hashing)
    items.parquet               display metadata: item_id, title, author, categories, tags: list[str],
                                train_count (training interactions; 0 for books added later)
    seen.parquet                (user, item) indices each known reader has already read, for seen-filtering
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from safetensors.numpy import load_file, save_file

import booktower
from booktower.data.types import Ragged
from booktower.data.vocab import Vocabulary
from booktower.utils.atomic import atomic_write_json, atomic_write_parquet, atomic_write_text

FORMAT = "booktower-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ITEM_VECTORS = "item_vectors.safetensors"
USER_VECTORS = "user_vectors.safetensors"
MODEL_DIR = "model"
FEATURE_SPEC = "feature_spec.json"
ITEMS = "items.parquet"
SEEN = "seen.parquet"
VOCAB_USERS = "vocab/users.parquet"
VOCAB_ITEMS = "vocab/items.parquet"
TAG_SEPARATOR = " > "


class BundleError(ValueError):
    """A bundle is missing, from another format version, or does not match its manifest."""


@dataclass
class BundleParts:
    """Everything a bundle holds, in memory (what `write_bundle` writes and `load_bundle` returns)."""

    item_vectors: np.ndarray  # (n_items, d) float32
    user_vectors: np.ndarray  # (n_users, d) float32
    items: Vocabulary
    users: Vocabulary
    metadata: pl.DataFrame  # item_id, title, author, categories; row order = item index
    seen: Ragged  # row u = item indices reader u has read (oldest first)
    popularity: np.ndarray  # (n_items,) int64 training interactions per item
    feature_spec: dict[str, Any]
    model_files: dict[str, bytes]  # file name in model/ -> content
    n_model_items: int  # items the model's ID table knows (later additions are content-only)
    info: dict[str, Any] = field(default_factory=dict)  # index settings, ANN report, source run...

    def __post_init__(self) -> None:
        n_items, n_users = len(self.items), len(self.users)
        checks = {
            "item_vectors rows": (self.item_vectors.shape[0], n_items),
            "metadata rows": (self.metadata.height, n_items),
            "user_vectors rows": (self.user_vectors.shape[0], n_users),
            "seen rows": (self.seen.n_rows, n_users),
            "popularity rows": (len(self.popularity), n_items),
        }
        for what, (got, want) in checks.items():
            if got != want:
                raise BundleError(f"bundle {what} = {got}, expected {want}")
        if self.seen.values.size and (self.seen.values.min() < 0 or self.seen.values.max() >= n_items):
            raise BundleError("seen.parquet holds item indices outside the item vocabulary")

    @property
    def dim(self) -> int:
        return int(self.item_vectors.shape[1])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _seen_frame(seen: Ragged) -> pl.DataFrame:
    users = np.repeat(np.arange(seen.n_rows, dtype=np.int64), np.diff(seen.offsets))
    return pl.DataFrame({"user": users, "item": seen.values.astype(np.int64)})


def _seen_from(frame: pl.DataFrame, n_users: int) -> Ragged:
    users = frame["user"].to_numpy().astype(np.int64)
    if users.size and (np.any(np.diff(users) < 0) or users.min() < 0 or users.max() >= n_users):
        raise BundleError(f"{SEEN}: user indices must be sorted and within [0, {n_users})")
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=offsets[1:])
    return Ragged(offsets, frame["item"].to_numpy().astype(np.int64))


def _write_files(parts: BundleParts, folder: Path) -> None:
    (folder / MODEL_DIR).mkdir(parents=True, exist_ok=True)
    save_file({"items": np.ascontiguousarray(parts.item_vectors, dtype=np.float32)}, str(folder / ITEM_VECTORS))
    save_file({"users": np.ascontiguousarray(parts.user_vectors, dtype=np.float32)}, str(folder / USER_VECTORS))
    for name, content in parts.model_files.items():
        if Path(name).name != name or not name.endswith((".safetensors", ".json")):
            raise BundleError(f"model file {name!r}: only flat .safetensors / .json files go into a bundle")
        (folder / MODEL_DIR / name).write_bytes(content)
    parts.users.save(folder / VOCAB_USERS)
    parts.items.save(folder / VOCAB_ITEMS)
    atomic_write_text(folder / FEATURE_SPEC, json.dumps(parts.feature_spec, sort_keys=True))
    meta = parts.metadata.select("item_id", "title", "author", "categories").with_columns(
        pl.col("categories").fill_null("").str.split(TAG_SEPARATOR).list.eval(pl.element().filter(pl.element() != ""))
        .alias("tags"), pl.Series("train_count", np.asarray(parts.popularity, dtype=np.int64)))
    atomic_write_parquet(meta, folder / ITEMS)
    atomic_write_parquet(_seen_frame(parts.seen), folder / SEEN)


def _manifest(parts: BundleParts, folder: Path) -> dict[str, Any]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "booktower_version": booktower.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dim": parts.dim,
        "n_items": len(parts.items),
        "n_users": len(parts.users),
        "n_model_items": parts.n_model_items,
        **parts.info,
        "files": {p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files},
    }


def write_bundle(parts: BundleParts, directory: Path) -> dict[str, Any]:
    """Write into a temporary sibling folder, then swap it in: readers see the old bundle or the new one."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.new.", dir=directory.parent))
    old = directory.parent / f".{directory.name}.old.{time.time_ns()}"
    try:
        _write_files(parts, tmp)
        manifest = _manifest(parts, tmp)
        atomic_write_json(tmp / MANIFEST, manifest)
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{directory} is not a bundle: {MANIFEST} is missing (make one with `booktower export`)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format version {manifest.get('format_version')} is not supported "
                          f"(this booktower reads version {FORMAT_VERSION}); re-export the run")
    return manifest


def verify_bundle(directory: Path) -> dict[str, Any]:
    """Check every file named in the manifest against its sha256; raise naming the first file that differs."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    files = manifest.get("files") or {}
    required = {ITEM_VECTORS, USER_VECTORS, VOCAB_USERS, VOCAB_ITEMS, FEATURE_SPEC, ITEMS, SEEN}
    for name in sorted(required - set(files)):
        raise BundleError(f"{directory / MANIFEST}: the manifest does not list {name}")
    for name in files:  # before any file is opened: a manifest must not point a reader elsewhere
        if directory.resolve() not in (directory / name).resolve().parents:
            raise BundleError(f"{directory / MANIFEST}: file entry {name!r} points outside the bundle")
    for name, entry in files.items():
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{directory / name} is listed in the manifest but missing")
        if sha256_file(path) != entry.get("sha256"):
            raise BundleError(f"{directory / name} does not match its sha256 in the manifest: "
                              "the bundle was modified or is incomplete; re-export it")
    return manifest


def load_bundle(directory: Path) -> tuple[BundleParts, dict[str, Any]]:
    """Verified parts and the manifest. Raises BundleError on any mismatch."""
    directory = Path(directory)
    manifest = verify_bundle(directory)
    items = Vocabulary.load(directory / VOCAB_ITEMS)
    users = Vocabulary.load(directory / VOCAB_USERS)
    metadata = pl.read_parquet(directory / ITEMS)
    model_files = {p.name: p.read_bytes() for p in sorted((directory / MODEL_DIR).glob("*")) if p.is_file()}
    parts = BundleParts(
        item_vectors=load_file(str(directory / ITEM_VECTORS))["items"],
        user_vectors=load_file(str(directory / USER_VECTORS))["users"],
        items=items, users=users,
        metadata=metadata.select("item_id", "title", "author", "categories"),
        seen=_seen_from(pl.read_parquet(directory / SEEN), len(users)),
        popularity=metadata["train_count"].to_numpy().astype(np.int64),
        feature_spec=json.loads((directory / FEATURE_SPEC).read_text(encoding="utf-8")),
        model_files=model_files,
        n_model_items=int(manifest["n_model_items"]),
        info={k: v for k, v in manifest.items() if k in ("index", "ann", "source", "added_books")},
    )
    if parts.dim != manifest["dim"] or len(items) != manifest["n_items"]:
        raise BundleError(f"{directory}: vectors ({parts.item_vectors.shape}) disagree with the manifest")
    return parts, manifest
