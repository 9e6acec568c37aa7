"""Books added to a bundle (`index add`) in an anonymous reader's history: with a model that pools the content of a
history, an added book's author, categories, metadata and title shape the reader's vector as a trained book's do,
with a zero ID vector; its codes travel in the bundle, in index order, across later adds."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from booktower.data.featurize import user_features_from_history
from booktower.data.types import Ragged
from booktower.models.encode import encode_users
from booktower.serving.added_content import ADDED_CONTENT
from booktower.serving.add_books import add_books
from booktower.serving.bundle import BundleError, load_bundle, sha256_file, write_bundle
from booktower.serving.encoder import ModelEncoder


def _add(bundle: Path, tmp_path: Path, catalogue: pl.DataFrame, name: str = "new") -> None:
    books = tmp_path / f"{name}.csv"
    catalogue.with_columns(pl.col("categories").list.join("|")).write_csv(books)
    add_books(bundle, books)


def _encoder(bundle: Path) -> ModelEncoder:
    return ModelEncoder.from_parts(load_bundle(bundle)[0], bundle)


def _histories(bundle: Path, *ids: list[str]) -> Ragged:
    items = load_bundle(bundle)[0].items
    return Ragged.from_lists([[items.index(i) for i in row] for row in ids])


def test_an_added_book_pools_as_its_trained_twin_with_a_zero_id_vector(content_bundle, tmp_path: Path) -> None:
    data, bundle, catalogue = content_bundle
    bundle = shutil.copytree(bundle, tmp_path / "b")
    _add(bundle, tmp_path, catalogue.filter(pl.col("item_id") == "b7").with_columns(item_id=pl.lit("NEW")))
    twin, b3, b5 = (data.items.index(i) for i in ("b7", "b3", "b5"))
    encoder = _encoder(bundle)
    histories = _histories(bundle, ["b3", "NEW", "b5"], ["NEW"])
    got = encoder.user_vectors(histories)
    # The reference: the trained twin in the history, its ID vector zeroed, through the model itself.
    model = _encoder(tmp_path / "b").model
    with torch.no_grad():
        model.item_tower.ids.table.weight[twin] = 0
    twins = Ragged.from_lists([[b3, twin, b5], [twin]])
    side = user_features_from_history(encoder.spec, histories, encoder.popularity)
    expected = encode_users(model, side, np.full(2, -1), twins).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got[0], encoder.user_vectors(_histories(bundle, ["b3", "b5"]))[0], atol=1e-4)


def test_added_codes_keep_their_rows_across_adds_and_reloads(content_bundle, tmp_path: Path) -> None:
    _, bundle, catalogue = content_bundle
    bundle = shutil.copytree(bundle, tmp_path / "b")
    _add(bundle, tmp_path, catalogue[[2, 9]].with_columns(item_id=pl.Series(["N1", "N2"])), "first")
    first = _encoder(bundle).user_vectors(_histories(bundle, ["b1", "N1"], ["N2"]))
    _add(bundle, tmp_path, catalogue[[4]].with_columns(item_id=pl.lit("N3")), "second")
    encoder = _encoder(bundle)
    np.testing.assert_allclose(encoder.user_vectors(_histories(bundle, ["b1", "N1"], ["N2"])), first,
                               rtol=1e-5, atol=1e-6)
    stored = load_bundle(bundle)[0].model_files[ADDED_CONTENT]
    expected = encoder.encode_books(catalogue[[2, 9, 4]]).codes
    from safetensors.numpy import load

    tensors = load(stored)
    assert [tensors[f"codes_{i}"].tolist() for i in range(len(expected))] == [c.tolist() for c in expected]


def test_books_added_without_codes_are_skipped_and_later_adds_keep_their_rows(content_bundle, tmp_path) -> None:
    """A bundle whose earlier additions kept no codes (an older booktower): those books stay out of the pooling,
    and a later add's codes still land on its own books."""
    _, bundle, catalogue = content_bundle
    bundle = shutil.copytree(bundle, tmp_path / "b")
    _add(bundle, tmp_path, catalogue[[2, 15]].with_columns(item_id=pl.Series(["OLD1", "OLD2"])), "old")
    parts, _ = load_bundle(bundle)
    older = {name: content for name, content in parts.model_files.items() if name != ADDED_CONTENT}
    write_bundle(replace(parts, model_files=older), bundle)
    _add(bundle, tmp_path, catalogue[[9, 9]].with_columns(item_id=pl.Series(["NEW1", "NEW2"])), "new")
    encoder = _encoder(bundle)
    old1, old2, new1, new2 = encoder.user_vectors(
        _histories(bundle, ["b1", "OLD1"], ["b1", "OLD2"], ["b1", "NEW1"], ["b1", "NEW2"]))
    # Same history features (two books, one never trained on): only the pooled content can tell them apart.
    np.testing.assert_allclose(old1, old2, rtol=1e-5, atol=1e-6)  # neither pooled
    np.testing.assert_allclose(new1, new2, rtol=1e-5, atol=1e-6)  # both pooled, the same content
    assert not np.allclose(new1, old1, atol=1e-4)
    stored = [encoder.model.history_content.code_tables()[i][-4:].tolist() for i in range(4)]
    nine = encoder.encode_books(catalogue[[9]]).codes
    assert stored == [[[-1] * len(c[0])] * 2 + c.tolist() * 2 for c in nine]


def test_a_model_without_content_pooling_keeps_no_codes(trained, tmp_path: Path) -> None:
    bundle = shutil.copytree(trained[2], tmp_path / "b")
    _add(bundle, tmp_path, pl.DataFrame({"item_id": ["NEW"], "title": ["a tale"], "author": ["w"],
                                         "categories": [["Books"]]}))
    assert ADDED_CONTENT not in load_bundle(bundle)[0].model_files


@pytest.mark.parametrize("shape", [(2, 1), (1, 1)])
def test_added_codes_of_the_wrong_shape_are_a_bundle_error_naming_the_file(content_bundle, tmp_path, shape) -> None:
    from safetensors.numpy import save

    _, bundle, catalogue = content_bundle
    bundle = shutil.copytree(bundle, tmp_path / "b")
    _add(bundle, tmp_path, catalogue[[2]].with_columns(item_id=pl.lit("NEW")))
    target = bundle / "model" / ADDED_CONTENT
    target.write_bytes(save({"codes_0": np.zeros(shape, dtype=np.int32)}))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][f"model/{ADDED_CONTENT}"] = {"sha256": sha256_file(target), "bytes": target.stat().st_size}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=f"model/{ADDED_CONTENT} holds .* need int32"):
        _encoder(bundle)


def test_added_books_have_no_training_popularity_for_the_history_features(trained, tmp_path: Path) -> None:
    """A new book's training count is unknown, not 0: as 0 it dragged a reader's mean popularity down and with it
    the recommendations (test NDCG@20 0.0325 -> 0.0073 on a log with a fifth of the books new, docs/results.md)."""
    bundle = shutil.copytree(trained[2], tmp_path / "b")
    _add(bundle, tmp_path, pl.DataFrame({"item_id": ["NEW"], "title": ["a tale"], "author": ["w"],
                                         "categories": [["Books"]]}))
    encoder = _encoder(bundle)
    parts, _ = load_bundle(bundle)
    assert np.isnan(encoder.popularity[parts.items.index("NEW")])
    np.testing.assert_array_equal(encoder.popularity[: parts.n_model_items], parts.popularity[: parts.n_model_items])
    first = parts.items.decode([0])[0]
    side_with_new = user_features_from_history(encoder.spec, _histories(bundle, [first, "NEW"]), encoder.popularity)
    side_alone = user_features_from_history(encoder.spec, _histories(bundle, [first]), encoder.popularity)
    names = side_alone.numeric_names
    column = names.index("mean_log_item_popularity")
    np.testing.assert_allclose(side_with_new.numeric[:, column], side_alone.numeric[:, column])
