"""Bundles: round trip, hash checks that refuse tampering, cold-start paths through the real towers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from booktower.models.encode import encode_items, encode_users
from booktower.serving.add_books import add_books
from booktower.serving.bundle import BundleError, load_bundle, verify_bundle, write_bundle
from booktower.serving.service import Recommender


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_round_trip(trained) -> None:
    data, model, directory, manifest = trained
    parts, loaded = load_bundle(directory)
    assert loaded["files"] == manifest["files"] and manifest["format_version"] == 1
    assert 0.0 <= manifest["ann"]["recall@10"] <= 1.0 and manifest["ann"]["speedup"] > 0
    assert parts.items == data.items and parts.users == data.users
    np.testing.assert_allclose(parts.item_vectors, encode_items(model, data.item_features).numpy(), rtol=1e-6)
    # a bundle serves production: every known interaction, the held-out test book included, is "seen"
    history, _ = data.histories("train", "valid", "test")
    assert np.array_equal(parts.seen.offsets, history.offsets) and np.array_equal(parts.seen.values, history.values)
    np.testing.assert_allclose(parts.user_vectors, encode_users(model, data.user_features, np.arange(data.n_users),
                                                                history).numpy(), rtol=1e-5, atol=1e-6)
    assert np.array_equal(parts.popularity, data.item_popularity())


@pytest.mark.parametrize("victim", ["item_vectors.safetensors", "model/model.safetensors", "items.parquet",
                                    "feature_spec.json", "vocab/users.parquet"])
def test_tampered_file_is_refused_by_name(trained, tmp_path: Path, victim: str) -> None:
    copy = _copy(trained[2], tmp_path / "b")
    with open(copy / victim, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match=victim.replace(".", r"\.")):
        verify_bundle(copy)


def test_missing_file_and_wrong_version_are_refused(trained, tmp_path: Path) -> None:
    copy = _copy(trained[2], tmp_path / "b")
    (copy / "seen.parquet").unlink()
    with pytest.raises(BundleError, match="seen.parquet"):
        load_bundle(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="version 99"):
        load_bundle(copy)
    manifest["format_version"] = 1
    manifest["files"]["../outside"] = {"sha256": "0"}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="outside"):
        verify_bundle(copy)
    with pytest.raises(BundleError, match="manifest.json is missing"):
        load_bundle(tmp_path / "nowhere")



def _rewrite(bundle: Path, name: str, content: bytes) -> None:
    """Replace a file and re-hash it in the manifest: a crafted bundle that passes the hash check."""
    from booktower.serving.bundle import sha256_file

    (bundle / name).write_bytes(content)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": sha256_file(bundle / name), "bytes": len(content)}
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _parquet(frame: pl.DataFrame) -> bytes:
    import io

    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def test_a_crafted_bundle_with_matching_hashes_is_still_refused(trained, tmp_path: Path) -> None:
    """Hashes only say the files are the ones the manifest names; the contents are checked too before serving."""
    data = trained[0]
    seen = pl.read_parquet(trained[2] / "seen.parquet")
    cases = {
        "outside the item vocabulary": _parquet(seen.with_columns(pl.lit(data.n_items + 5, pl.Int64).alias("item"))),
        "must be sorted": _parquet(seen.reverse()),
    }
    for message, content in cases.items():
        copy = _copy(trained[2], tmp_path / message.replace(" ", "-"))
        _rewrite(copy, "seen.parquet", content)
        verify_bundle(copy)  # the hashes agree ...
        with pytest.raises(BundleError, match=message):  # ... and the contents do not
            load_bundle(copy)
    copy = _copy(trained[2], tmp_path / "manifests")
    for text, message in [("{not json", "not valid JSON"), ('{"format": "other"}', "not a booktower-bundle manifest"),
                          ("[1, 2]", "not a booktower-bundle manifest")]:
        (copy / "manifest.json").write_text(text)
        with pytest.raises(BundleError, match=message):
            load_bundle(copy)
    manifest = json.loads((trained[2] / "manifest.json").read_text())
    del manifest["files"]["seen.parquet"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="does not list seen.parquet"):
        load_bundle(copy)

def test_anonymous_reader_goes_through_the_user_tower_without_an_id_row(trained) -> None:
    data, model, directory, _ = trained
    rec = Recommender.from_bundle(directory, index_kind="exact")
    history_ids = data.items.decode([3, 7, 11])
    rows = rec.for_history(history_ids, k=5)
    assert len(rows) == 5 and not set(history_ids) & {r.item_id for r in rows}
    # the same vector by hand: unknown reader (-1), features from the history, the model's encode path
    from booktower.data.featurize import user_features_from_history
    from booktower.data.types import Ragged

    hist = Ragged.from_lists([[3, 7, 11]])
    side = user_features_from_history(data.feature_spec, hist, data.item_popularity().astype(float))
    vector = encode_users(model, side, np.array([-1]), hist)[0].numpy()  # (d,)
    expected = np.argsort(-(encode_items(model, data.item_features).numpy() @ vector))
    expected = [i for i in expected if i not in (3, 7, 11)][:5]
    assert [r.item_id for r in rows] == data.items.decode(expected)


def test_known_reader_answers_use_exported_vectors(trained) -> None:
    data, _, directory, _ = trained
    rec = Recommender.from_bundle(directory, index_kind="exact")
    parts, _ = load_bundle(directory)
    user = data.users.ids[5]
    rows = rec.for_user(user, k=3)
    scores = parts.item_vectors @ parts.user_vectors[5]
    scores[parts.seen.row(5)] = -np.inf
    assert [r.item_id for r in rows] == data.items.decode(np.argsort(-scores)[:3])


def test_index_add_appends_content_only_books(trained, tmp_path: Path) -> None:
    data, _, directory, _ = trained
    copy = _copy(directory, tmp_path / "b")
    books = tmp_path / "new.csv"
    pl.DataFrame({"item_id": ["new-1", "new-2"], "title": ["the fantasy of dragons", "a history of rome"],
                  "author": ["writer 3", ""], "categories": ["Books|fantasy", "Books > history"],
                  "num:price": [9.5, None]}).write_csv(books)
    manifest = add_books(copy, books)
    assert manifest["n_items"] == data.n_items + 2 and manifest["n_model_items"] == data.n_items
    parts, _ = load_bundle(copy)  # hashes of the rewritten bundle check out
    assert parts.items.decode([data.n_items, data.n_items + 1]) == ["new-1", "new-2"]
    assert parts.popularity[-2:].tolist() == [0, 0]
    rec = Recommender.from_bundle(copy, index_kind="exact")
    assert rec.similar("new-1", k=1)[0].item_id != "new-1"
    everything = rec.similar("b3", k=rec.n_items)
    assert {"new-1", "new-2"} <= {r.item_id for r in everything}, "added books are retrievable"
    assert len(rec.for_history(["new-1", "b3"], k=5)) == 5, "an added book may appear in a history"
    with pytest.raises(Exception, match="already in the bundle"):
        add_books(copy, books)
    assert load_bundle(copy)[0].items == parts.items, "a failed add leaves the bundle as it was"


def test_write_bundle_replaces_atomically(trained, tmp_path: Path) -> None:
    parts, _ = load_bundle(trained[2])
    target = tmp_path / "b"
    write_bundle(parts, target)
    write_bundle(parts, target)
    # no temporary folders left behind; the lock file stays (deleting it would let two writers lock two files)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.lock", "b"]
    verify_bundle(target)


def test_new_books_tagged_on_add_form_their_own_slot(trained, tmp_path: Path) -> None:
    """The README's advice for new books: tag them when adding, then ask for that category only."""
    data, _, directory, _ = trained
    copy = _copy(directory, tmp_path / "b")
    books = tmp_path / "new.csv"
    pl.DataFrame({"item_id": ["new-1", "new-2", "new-3"],
                  "title": ["the fantasy of dragons", "a history of rome", "the poetry of spring"],
                  "author": ["writer 3", "", "writer 1"],
                  "categories": ["Books|new-arrivals", "Books|new-arrivals", "Books|new-arrivals"]}).write_csv(books)
    add_books(copy, books)
    rec = Recommender.from_bundle(copy, index_kind="exact")
    slot = rec.for_user(data.users.ids[0], k=10, categories=["new-arrivals"])
    assert sorted(r.item_id for r in slot) == ["new-1", "new-2", "new-3"]
    assert [r.score for r in slot] == sorted((r.score for r in slot), reverse=True)


def test_an_anonymous_readers_metadata_reaches_the_user_tower(tmp_path) -> None:
    """Reader metadata in a request (`features`) enters the user tower as the training features did: numbers as
    numbers, levels as levels, by name; names the model does not know are ignored, null values count as missing
    (the training median, the `<other>` level), as a request without metadata does, and a number that is not one
    is refused (it is the caller's bug, not an unknown age)."""
    import torch

    from booktower.config.model import ModelConfig
    from booktower.config.serving import IndexConfig
    from booktower.data.featurize import user_features_from_history
    from booktower.data.toy import random_prepared
    from booktower.data.types import Ragged
    from booktower.models import TwoTower, spec_from_config
    from booktower.serving.export import export_parts, parts_from_model

    torch.manual_seed(0)
    data = random_prepared(n_users=60, n_items=40, per_user=8, reader_metadata=True)
    model = TwoTower(spec_from_config(ModelConfig(), data.user_features, data.item_features, data.n_users, data.n_items))
    export_parts(parts_from_model(data, model), tmp_path / "b", IndexConfig(kind="exact"), np.random.default_rng(0))
    rec = Recommender.from_bundle(tmp_path / "b", index_kind="exact")
    seen = [3, 7, 11]
    items = encode_items(model, data.item_features).numpy()
    popularity = data.item_popularity().astype(float)

    def by_hand(age: float | None, occupation: str | None) -> list[tuple[str, float]]:
        rows = pl.DataFrame({"num:age": [age], "cat:occupation": [occupation]},
                            schema={"num:age": pl.Float64, "cat:occupation": pl.String})
        hist = Ragged.from_lists([seen])
        side = user_features_from_history(data.feature_spec, hist, popularity, None, rows)
        scores = items @ encode_users(model, side, np.array([-1]), hist)[0].numpy()
        top = [i for i in np.argsort(-scores) if i not in seen][:10]
        return list(zip(data.items.decode(top), scores[top].tolist()))

    def served(features: dict | None) -> list[tuple[str, float]]:
        return [(r.item_id, r.score) for r in rec.for_history(data.items.decode(seen), k=10, features=features)]

    def assert_same(got, expected) -> None:
        assert [i for i, _ in got] == [i for i, _ in expected]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], rtol=1e-5, atol=1e-6)

    young = served({"age": 19, "occupation": "student"})
    assert_same(young, by_hand(19.0, "student"))
    assert_same(served({"age": 75.0, "occupation": "retired"}), by_hand(75.0, "retired"))
    assert [s for _, s in young] != pytest.approx([s for _, s in served({"age": 75.0, "occupation": "retired"})])
    missing = by_hand(None, None)
    assert_same(served({"age": None, "shoe_size": 44, "occupation": None}), missing)
    assert_same(served(None), missing)
    assert_same(served({"age": "19", "occupation": "student"}), young)
    for wrong in ("old", True, float("nan")):
        with pytest.raises(ValueError, match=f"reader feature 'age' is numeric: {wrong!r} is not a finite number"):
            served({"age": wrong})


def test_every_bundle_file_and_folder_has_the_umask_permissions(trained) -> None:
    """safetensors, mkstemp and mkdtemp all make owner-only files: a bundle must be readable by the account that
    serves it, as files written under the umask are."""
    import os
    import stat

    from booktower.utils.atomic import _umask

    bundle, mask = trained[2], _umask()
    for path in [bundle, *bundle.rglob("*")]:
        expected = (0o777 if path.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(os.stat(path).st_mode) == expected, path


def test_a_model_pooling_book_content_serves_the_vectors_it_trained_with(tmp_path) -> None:
    """model.history.content keeps each book's author/category/title codes in the weights file: the bundle's
    encoder reads them there, with no catalogue passed in."""
    import torch

    from booktower.config.model import ModelConfig
    from booktower.config.serving import IndexConfig
    from booktower.data.featurize import user_features_from_history
    from booktower.data.toy import random_prepared
    from booktower.data.types import Ragged
    from booktower.models import TwoTower, spec_from_config
    from booktower.serving.encoder import ModelEncoder
    from booktower.serving.export import export_parts, parts_from_model

    torch.manual_seed(0)
    data = random_prepared(n_users=30, n_items=25, per_user=6)
    config = ModelConfig.model_validate({"history": {"content": True}})
    model = TwoTower(spec_from_config(config, data.user_features, data.item_features, data.n_users, data.n_items))
    model.fill_history_content(data.item_features)
    export_parts(parts_from_model(data, model), tmp_path / "b", IndexConfig(kind="exact"), np.random.default_rng(0))
    encoder = ModelEncoder.from_parts(load_bundle(tmp_path / "b")[0])
    histories = Ragged.from_lists([[3, 7, 11], [0]])
    side = user_features_from_history(data.feature_spec, histories, data.item_popularity().astype(float))
    expected = encode_users(model, side, np.array([-1, -1]), histories).numpy()
    np.testing.assert_allclose(encoder.user_vectors(histories), expected, rtol=1e-5, atol=1e-6)
    # the codes matter: the same model without them (as a bundle would be if they were not saved) differs
    model.history_content.codes_0.fill_(-1)
    assert not np.allclose(encode_users(model, side, np.array([-1, -1]), histories).numpy(), expected, atol=1e-4)
