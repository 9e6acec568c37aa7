"""A self-describing serving bundle: every file bound by a sha256 in `manifest.json`; nothing is ever unpickled.

Layout (paths relative to the bundle folder):
    manifest.json               format, versions, dims, index settings, ANN report, {path: sha256, bytes}
    item_vectors.safetensors    "items": (n_items, d) float32, row i = item index i
    user_vectors.safetensors    "users": (n_users, d) float32, known readers (history = every interaction the
                                run knows: train + validation + test, as production serves them)
    model/model.safetensors     the whole two-tower model (the user tower serves anonymous readers)
    model/model.json            its architecture spec
    model/added_content.safetensors  (after `index add`, for a model pooling a history's content) the added books'
                                content codes, so a history can pool them (added_content.py)
    vocab/users.parquet         user ids, row = user index
    vocab/items.parquet         item ids, row = item index
    feature_spec.json           the fitted feature specification (statistics, levels, hashing)
    items.parquet               display metadata: item_id, title, author, categories, tags: list[str],
                                train_count (training interactions; 0 for books added later), withdrawn
                                (never recommended: `index withdraw`; absent in older bundles: none is)
    seen.parquet                (user, item) indices each known reader has read (train + validation + test),
                                for seen-filtering: a served list never repeats a book the reader has read

Only the files the manifest lists are read (a stray file in the folder is ignored and dropped by the next write).
Beside the folder lives `.<name>.lock` (see `_lock.py`): writers hold it exclusively, readers shared, so a reader
sees the old bundle or the new one and concurrent `index add` runs queue instead of losing books. Leave it there.
A write killed before its swap leaves `.<name>.new.*`, one killed between the swap's renames `.<name>.old.*` (and
no bundle: reads then name it); the next write, holding the lock, removes them and logs it (`_publish`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from safetensors.numpy import save_file

import booktower
from booktower.data.types import Ragged
from booktower.data.vocab import Vocabulary
from booktower.serving._lock import bundle_lock
from booktower.serving.outside_reads import (
    OUTSIDE_READS,
    absorb_outside_reads,
    read_outside_reads,
    write_outside_reads,
)
from booktower.serving.bundle_read import (
    OLD_SUFFIX, metadata_file, model_files, old_prefix, reading, refuse_interrupted, seen_from, vectors_file,
    vocabulary_file, withdrawn_flags,
)
from booktower.serving.manifest import (
    FEATURE_SPEC, FORMAT, FORMAT_VERSION, ITEM_VECTORS, ITEMS, MANIFEST, MODEL_DIR, REEXPORT, REQUIRED, SEEN,
    USER_VECTORS, VOCAB_ITEMS, VOCAB_USERS, BundleError, Manifest, parse_manifest, read_manifest_file,
)
from booktower.utils.atomic import (
    atomic_path, atomic_write_json, atomic_write_parquet, atomic_write_text, make_temp_dir, named_as,
    remove_leftover_dirs, writing,
)

__all__ = ["BundleError", "BundleParts", "load_bundle", "manifest_signature", "read_catalogue", "read_manifest",
           "rewrite_files", "verify_bundle", "write_bundle"]

TAG_SEPARATOR = " > "
_READ_ATTEMPTS = 5  # a bundle rewritten while it is read (no lock available) is read again, this many times


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
    withdrawn: np.ndarray | None = None  # (n_items,) bool: never recommended (withdraw.py); None: none is
    outside_reads: pl.DataFrame | None = None  # (user, item_id) reads of books not held (outside_reads.py)

    def __post_init__(self) -> None:
        n_items, n_users = len(self.items), len(self.users)
        if self.withdrawn is None:
            self.withdrawn = np.zeros(n_items, dtype=bool)
        checks = {
            "item_vectors rows": (self.item_vectors.shape[0], n_items),
            "metadata rows": (self.metadata.height, n_items),
            "user_vectors rows": (self.user_vectors.shape[0], n_users),
            "seen rows": (self.seen.n_rows, n_users),
            "popularity rows": (len(self.popularity), n_items),
            "withdrawn rows": (len(self.withdrawn), n_items),
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


def _write_files(parts: BundleParts, folder: Path) -> None:
    (folder / MODEL_DIR).mkdir(parents=True, exist_ok=True)
    for name, key, vectors in ((ITEM_VECTORS, "items", parts.item_vectors), (USER_VECTORS, "users", parts.user_vectors)):
        with atomic_path(folder / name) as part:  # safetensors itself writes 0600 files
            save_file({key: np.ascontiguousarray(vectors, dtype=np.float32)}, str(part))
    for name, content in parts.model_files.items():
        if Path(name).name != name or not name.endswith((".safetensors", ".json")):
            raise BundleError(f"model file {name!r}: only flat .safetensors / .json files go into a bundle")
        with writing(folder / MODEL_DIR / name):
            (folder / MODEL_DIR / name).write_bytes(content)
    parts.users.save(folder / VOCAB_USERS)
    parts.items.save(folder / VOCAB_ITEMS)
    atomic_write_text(folder / FEATURE_SPEC, json.dumps(parts.feature_spec, sort_keys=True))
    meta = parts.metadata.select("item_id", "title", "author", "categories").with_columns(
        pl.col("categories").fill_null("").str.split(TAG_SEPARATOR).list.eval(pl.element().filter(pl.element() != ""))
        .alias("tags"), pl.Series("train_count", np.asarray(parts.popularity, dtype=np.int64)),
        pl.Series("withdrawn", np.asarray(parts.withdrawn, dtype=bool)))
    atomic_write_parquet(meta, folder / ITEMS)
    atomic_write_parquet(_seen_frame(parts.seen), folder / SEEN)
    write_outside_reads(parts.outside_reads, folder)


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
        "withdrawn_books": int(parts.withdrawn.sum()),
        "files": {p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files},
    }


def is_bundle_folder(directory: Path) -> bool:
    """A folder holding a booktower manifest (of any version): one a write may replace. A `manifest.json` of
    something else (a web app's) does not count."""
    try:
        manifest = json.loads((Path(directory) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


def _refuse_to_replace(directory: Path) -> None:
    """Writing swaps the whole folder, so a target that is not a bundle (a training run, a file) would be lost."""
    if directory.exists() and not directory.is_dir():
        raise BundleError(f"{directory} is a file, not a bundle folder; pass a new folder to write the bundle to")
    if directory.is_dir() and any(directory.iterdir()) and not is_bundle_folder(directory):
        raise BundleError(f"{directory} exists and is not a booktower bundle (no booktower {MANIFEST}): writing "
                          "there would delete its contents; pass a new folder or an existing bundle")


def write_bundle(parts: BundleParts, directory: Path) -> dict[str, Any]:
    """Write into a temporary sibling folder, then swap it in, under the bundle's exclusive lock: readers (who
    take the shared lock) see the old bundle or the new one, never a mix."""
    parts = absorb_outside_reads(parts)  # a book the bundle now holds is never served to those who read it

    def fill(folder: Path) -> dict[str, Any]:
        _write_files(parts, folder)
        return _manifest(parts, folder)

    return _publish(directory, fill)


def rewrite_files(directory: Path, names: set[str], write: Callable[[Path], None], **fields: Any) -> dict[str, Any]:
    """A new version of the bundle in which only the files `names` are new, written by `write(folder)`, and the
    manifest's top-level `fields` change. Every other file the manifest lists is hard-linked into the new version
    (copied where the file system cannot link) with its sha256 carried over, so that withdrawing one book of a
    large bundle writes one table instead of every vector. The whole bundle is verified first, as a load would:
    a change to a damaged bundle is refused rather than published as a version no server can load. Swapped in as
    `write_bundle` swaps."""
    directory = Path(directory).resolve()
    with bundle_lock(directory, exclusive=True):
        listed = _verify(directory).files
        previous = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))

        def fill(folder: Path) -> dict[str, Any]:
            files = {}
            for name, entry in listed.items():
                if name in names:
                    continue
                if (directory / name).is_symlink():  # export writes none; a link would carry its target's path
                    raise BundleError(f"{directory / name} is a symbolic link; nothing was changed. Fix: {REEXPORT}")
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(directory / name, folder / name)
                files[name] = entry.model_dump()
            write(folder)
            for name in names:
                files[name] = {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
            return {**previous, **fields, "booktower_version": booktower.__version__,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": dict(sorted(files.items()))}

        return _publish(directory, fill)


def _link_or_copy(source: Path, target: Path) -> None:
    """Every write swaps in new files and never edits one in place, so two versions may share a file's data."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _publish(directory: Path, fill: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """`fill(folder)` writes a version's files into a temporary sibling folder and returns its manifest, which is
    checked, written, and the folder swapped in under the bundle's exclusive lock.

    A write that holds the lock knows no live process is writing this bundle, so it removes what killed writes
    left beside it: their temporary folders first, and once its own version is in place, the previous versions
    a kill between the swap's two renames left (`.NAME.old.*`; then the bundle itself was missing)."""
    # The real folder: `.` cannot be renamed, and through a symlink the swap would replace the link, not the bundle.
    directory = Path(directory).resolve()
    _refuse_to_replace(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with bundle_lock(directory, exclusive=True) as locked:
        tmp = make_temp_dir(directory.parent, f".{directory.name}.new.", sole_writer=locked)
        old = directory.parent / f"{old_prefix(directory)}{time.time_ns()}"
        try:
            with named_as(tmp, directory):  # an error names the bundle's file, not the hidden temporary one
                manifest = fill(tmp)
                parse_manifest(manifest, tmp / MANIFEST)  # what a reader will check, checked before it is published
                atomic_write_json(tmp / MANIFEST, manifest)
            if directory.exists():
                directory.rename(old)
            try:
                tmp.rename(directory)
            except OSError:
                if old.exists():  # put the previous version back before the cleanup below removes it
                    old.rename(directory)
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if directory.exists():  # else `old` is the only copy left (putting it back failed too): keep it
                shutil.rmtree(old, ignore_errors=True)
                if locked:
                    remove_leftover_dirs(directory.parent, old_prefix(directory), OLD_SUFFIX)
    return manifest


def manifest_signature(directory: Path) -> tuple[int, ...] | None:
    """Changes whenever the bundle is rewritten (each write makes a new manifest file); None when there is none.
    A stat, so a server can ask it every few seconds."""
    try:
        st = (Path(directory) / MANIFEST).stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def read_manifest(directory: Path) -> Manifest:
    """The manifest, its fields validated (format, version, sizes, index settings, file entries). A bundle that
    a killed write left missing raises a BundleError naming the previous version beside it (`interrupted_write`)."""
    refuse_interrupted(Path(directory))
    return read_manifest_file(Path(directory) / MANIFEST)


def _verify(directory: Path) -> Manifest:
    manifest = read_manifest(directory)
    for name in REQUIRED:
        if name not in manifest.files:
            raise BundleError(f"{directory / MANIFEST}: the manifest does not list {name}. Fix: {REEXPORT}")
    root = directory.resolve()
    for name in manifest.files:  # before any file is opened: a manifest must not point a reader elsewhere
        if root not in (directory / name).resolve().parents:
            raise BundleError(f"{directory / MANIFEST}: file entry {name!r} points outside the bundle")
    _check_files(directory, manifest, list(manifest.files))
    return manifest


def _check_files(directory: Path, manifest: Manifest, names: list[str]) -> None:
    for name in names:
        entry, path = manifest.files.get(name), directory / name
        if entry is None:
            raise BundleError(f"{directory / MANIFEST}: the manifest does not list {name}. Fix: {REEXPORT}")
        if not path.is_file():
            raise BundleError(f"{path} is listed in the manifest but missing")
        if path.stat().st_size != entry.bytes or sha256_file(path) != entry.sha256:
            raise BundleError(f"{path} does not match its sha256 in the manifest: "
                              "the bundle was modified or is incomplete; re-export it")


def verify_bundle(directory: Path) -> dict[str, Any]:
    """Check the manifest's fields and every file it names against its sha256; raise naming the first problem."""
    directory = Path(directory)
    with bundle_lock(directory, exclusive=False):
        return _verify(directory).as_json()


def read_catalogue(directory: Path) -> tuple[Vocabulary, pl.DataFrame, np.ndarray]:
    """The book vocabulary, items.parquet (every column) and its withdrawn flags, these two files checked against
    their sha256 and nothing else read: what a change to the catalogue's flags needs (`index withdraw`). Call it
    under the bundle's lock."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    _check_files(directory, manifest, [VOCAB_ITEMS, ITEMS])
    items = vocabulary_file(directory / VOCAB_ITEMS, manifest.n_items)
    metadata = metadata_file(directory / ITEMS, items)
    return items, metadata, withdrawn_flags(directory / ITEMS, metadata, manifest)


def _read_bundle(directory: Path) -> tuple[BundleParts, Manifest]:
    """One read of the files the verified manifest lists, each checked against the manifest's sizes."""
    manifest = _verify(directory)
    items = vocabulary_file(directory / VOCAB_ITEMS, manifest.n_items)
    users = vocabulary_file(directory / VOCAB_USERS, manifest.n_users)
    metadata = metadata_file(directory / ITEMS, items)
    with reading(directory / SEEN):
        seen = seen_from(pl.read_parquet(directory / SEEN, columns=["user", "item"]), len(users), len(items))
    with reading(directory / FEATURE_SPEC):
        from booktower.data.features import FeatureSpec

        feature_spec = json.loads((directory / FEATURE_SPEC).read_text(encoding="utf-8"))
        FeatureSpec.from_json(feature_spec)  # parses, so the encoder will too
    parts = BundleParts(
        item_vectors=vectors_file(directory / ITEM_VECTORS, "items", manifest.n_items, manifest.dim),
        user_vectors=vectors_file(directory / USER_VECTORS, "users", manifest.n_users, manifest.dim),
        items=items, users=users,
        metadata=metadata.select("item_id", "title", "author", "categories"),
        seen=seen,
        popularity=metadata["train_count"].to_numpy().astype(np.int64),
        feature_spec=feature_spec,
        model_files=model_files(directory, manifest),
        n_model_items=manifest.n_model_items,
        info=manifest.info(),
        withdrawn=withdrawn_flags(directory / ITEMS, metadata, manifest),
        outside_reads=_outside_reads(directory, manifest, len(users)),
    )
    return parts, manifest


def _outside_reads(directory: Path, manifest: Manifest, n_users: int) -> pl.DataFrame | None:
    """Optional: bundles exported before it existed, or without such reads, have none."""
    if OUTSIDE_READS not in manifest.files:
        return None
    with reading(directory / OUTSIDE_READS):
        return read_outside_reads(directory / OUTSIDE_READS, n_users)


def load_bundle(directory: Path) -> tuple[BundleParts, dict[str, Any]]:
    """Verified parts and the manifest. Raises BundleError, naming the file, on any mismatch.

    The files are read under the bundle's shared lock. Where no lock is available, a bundle whose manifest
    changed while it was read (a writer swapped a new version in) is read again, so the parts always come from
    one version.
    """
    directory = Path(directory)
    for attempt in range(1, _READ_ATTEMPTS + 1):
        with bundle_lock(directory, exclusive=False):
            before = manifest_signature(directory)
            try:
                parts, manifest = _read_bundle(directory)
            except BundleError:
                if attempt == _READ_ATTEMPTS or manifest_signature(directory) == before:
                    raise  # the bundle itself is wrong, not a version swapped in mid-read
            else:
                if manifest_signature(directory) == before:
                    return parts, manifest.as_json()
        time.sleep(0.05 * attempt)
    raise BundleError(f"{directory} was rewritten during each of {_READ_ATTEMPTS} reads: wait for the process "
                      "writing it (`booktower index add` or `export`) to finish")
