"""Crafted bundles whose files pass the sha256 check (the manifest re-hashed over them, or the manifest itself
edited: nothing hashes it) are refused with a BundleError naming the file and the fix, never a raw traceback.
Only the files the manifest lists are read."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from booktower.serving.add_books import add_books
from booktower.serving.bundle import BundleError, load_bundle, sha256_file
from booktower.serving.service import Recommender


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _edit_manifest(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(bundle: Path) -> None:
        manifest = _manifest(bundle)
        change(manifest)
        (bundle / "manifest.json").write_text(json.dumps(manifest))
    return edit


def _replace(name: str, content: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    """Replace a file and re-hash it in the manifest, as someone who meant it would."""
    def edit(bundle: Path) -> None:
        path = bundle / name
        path.write_bytes(content(path.read_bytes()))
        manifest = _manifest(bundle)
        manifest["files"][name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        (bundle / "manifest.json").write_text(json.dumps(manifest))
    return edit


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def _duplicate_first_id(raw: bytes) -> bytes:
    frame = pl.read_parquet(io.BytesIO(raw))
    column = frame.columns[0]
    ids = frame[column].to_list()
    return _parquet(pl.DataFrame({column: [ids[0], ids[0], *ids[2:]]}))


def _nan_weights(raw: bytes) -> bytes:
    from safetensors.torch import load, save

    tensors = {name: t.clone() for name, t in load(raw).items()}
    for tensor in tensors.values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))
    return save(tensors)


def _model_json(change: Callable[[dict], None]) -> Callable[[bytes], bytes]:
    def edit(raw: bytes) -> bytes:
        spec = json.loads(raw)
        change(spec)
        return json.dumps(spec).encode()
    return edit


CRAFTED = {
    "no n_model_items": (_edit_manifest(lambda m: m.pop("n_model_items")), "manifest.json", "n_model_items"),
    "no dim": (_edit_manifest(lambda m: m.pop("dim")), "manifest.json", "dim"),
    "n_model_items text": (_edit_manifest(lambda m: m.update(n_model_items="abc")), "manifest.json", "n_model_items"),
    "n_model_items too big": (_edit_manifest(lambda m: m.update(n_model_items=10**6)), "manifest.json", "n_model_items"),
    "index kind": (_edit_manifest(lambda m: m["index"].update(kind="evil")), "manifest.json", "index.kind"),
    "index key": (_edit_manifest(lambda m: m["index"].update(__class__="os.system")), "manifest.json", "index.__class__"),
    "hnsw_m 0": (_edit_manifest(lambda m: m["index"].update(hnsw_m=0)), "manifest.json", "index.hnsw_m"),
    "files a list": (_edit_manifest(lambda m: m.update(files=["a"])), "manifest.json", "files"),
    "model file unlisted": (_edit_manifest(lambda m: m["files"].pop("model/model.safetensors")), "manifest.json",
                            "model/model.safetensors"),
    "truncated vectors": (_replace("item_vectors.safetensors", lambda raw: raw[:1000]), "item_vectors.safetensors", ""),
    "random seen": (_replace("seen.parquet", lambda raw: bytes(range(256)) * 2), "seen.parquet", ""),
    "empty feature spec": (_replace("feature_spec.json", lambda raw: b"{}"), "feature_spec.json", ""),
    "model.json extra key": (_replace("model/model.json", _model_json(lambda s: s.update(dim=9999))), "model/model.json", ""),
    "model.json other size": (_replace("model/model.json", _model_json(lambda s: s["item"].update(n_ids=7))),
                              "model/model.json", "item ID rows"),
    "truncated weights": (_replace("model/model.safetensors", lambda raw: raw[:1000]), "model/model.safetensors", ""),
    "duplicate item id": (_replace("vocab/items.parquet", _duplicate_first_id), "vocab/items.parquet", "duplicate"),
    "attention heads 0": (_replace("model/model.json", _model_json(lambda s: s["history"].update(
        pooling="attention", attention_heads=0))), "model/model.json", "built"),
    "weights NaN": (_replace("model/model.safetensors", lambda raw: _nan_weights(raw)), "model/model.safetensors", "NaN"),
    "format_version true": (_edit_manifest(lambda m: m.update(format_version=True)), "manifest.json", "version"),
    "categories as lists": (_replace("items.parquet", lambda raw: _parquet(pl.read_parquet(io.BytesIO(raw)).with_columns(
        pl.col("categories").str.split(" > ")))), "items.parquet", "categories"),
    "metadata out of order": (_replace("items.parquet", lambda raw: _parquet(pl.read_parquet(io.BytesIO(raw)).reverse())),
                              "items.parquet", "item_id"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_bundles_are_refused_naming_the_file_and_the_fix(trained, tmp_path: Path, case: str) -> None:
    edit, file, detail = CRAFTED[case]
    bundle = shutil.copytree(trained[2], tmp_path / "b")
    edit(bundle)
    with pytest.raises(BundleError) as caught:
        Recommender.from_bundle(bundle)
    message = str(caught.value)
    assert f"b/{file}" in message and detail in message and "re-export" in message, message


def test_only_listed_model_files_are_read_or_carried_on(trained, tmp_path: Path) -> None:
    """A stray file in model/ (even a pickle) is neither loaded nor listed in the manifest `index add` writes."""
    bundle = shutil.copytree(trained[2], tmp_path / "b")
    (bundle / "model" / "notes.json").write_text('{"stray": true}')
    (bundle / "model" / "x.pkl").write_bytes(b"\x80\x04K\x01.")  # pickle.dumps(1): must never be opened
    parts, _ = load_bundle(bundle)
    assert sorted(parts.model_files) == ["model.json", "model.safetensors"]
    books = tmp_path / "new.csv"
    pl.DataFrame({"item_id": ["n1"], "title": ["a history"], "author": ["x"], "categories": ["Books"]}).write_csv(books)
    manifest = add_books(bundle, books)
    assert sorted(n for n in manifest["files"] if n.startswith("model/")) == ["model/model.json", "model/model.safetensors"]
    assert not (bundle / "model" / "x.pkl").exists() and not (bundle / "model" / "notes.json").exists()


def test_a_bundle_is_written_through_a_symlink_or_from_inside_it(trained, tmp_path: Path, monkeypatch) -> None:
    """`index add --bundle .` and a symlinked bundle path change the real bundle, under the real bundle's lock."""
    from booktower.serving._lock import lock_path

    bundle = shutil.copytree(trained[2], tmp_path / "b")
    link = tmp_path / "link"
    link.symlink_to(bundle, target_is_directory=True)
    assert lock_path(link) == lock_path(bundle) == lock_path(tmp_path / "x" / ".." / "b")
    books = tmp_path / "new.csv"
    pl.DataFrame({"item_id": ["n1"], "title": ["a history"], "author": ["x"], "categories": ["Books"]}).write_csv(books)
    add_books(link, books)
    assert link.is_symlink() and Recommender.from_bundle(bundle).n_items == len(trained[0].items) + 1
    monkeypatch.chdir(bundle)
    books2 = tmp_path / "new2.csv"
    pl.DataFrame({"item_id": ["n2"], "title": ["b"], "author": ["y"], "categories": ["Books"]}).write_csv(books2)
    add_books(Path("."), books2)
    assert Recommender.from_bundle(bundle).n_items == len(trained[0].items) + 2


def test_a_folder_with_another_programs_manifest_is_not_replaced(trained, tmp_path: Path) -> None:
    from booktower.serving.bundle import load_bundle, write_bundle

    parts, _ = load_bundle(trained[2])
    app = tmp_path / "webapp"
    app.mkdir()
    (app / "manifest.json").write_text('{"name": "my web app"}')
    (app / "index.html").write_text("<html></html>")
    with pytest.raises(BundleError, match="not a booktower bundle"):
        write_bundle(parts, app)
    assert (app / "index.html").exists()
