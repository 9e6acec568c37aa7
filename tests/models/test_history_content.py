"""Pooling the content of the books read (model.history.content): the bag codes each book carries, the pooled
vectors against a naive per-reader loop on both gradient paths, and the codes travelling with a saved model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from booktower.config import ConfigError, load_config
from booktower.data.toy import random_prepared
from booktower.data.types import CategoricalField, Ragged, SideFeatures
from booktower.models.encode import encode_users
from booktower.models.history_content import HistoryContent, padded_codes
from booktower.models.io import load_model, save_model
from booktower.models.spec import MAX_BAG_WIDTH, content_widths
from booktower.training.pipeline import build_model
from booktower.training.scoring import histories_for


def _items() -> SideFeatures:
    """4 books: an author bag each (book 3 has two authors, book 2 none) and title tokens (book 1 has none)."""
    authors = CategoricalField("author", Ragged.from_lists([[1], [2], [], [1, 3]]), ["<other>", "a", "b", "c"])
    text = Ragged.from_lists([[5, 6], [], [7], [5, 5, 8]])
    return SideFeatures(np.zeros((4, 0), np.float32), [], [authors], text, 10)


def test_each_book_keeps_its_codes_padded_with_minus_one():
    codes = padded_codes(Ragged.from_lists([[4, 2], [], [7, 7, 1]]), 2)
    assert codes.tolist() == [[4, 2], [-1, -1], [7, 7]]  # a longer bag keeps its first codes
    assert content_widths(_items()) == ({"author": 2}, 3)
    long_title = Ragged.from_lists([list(range(100))])
    features = SideFeatures(np.zeros((1, 0), np.float32), [], [], long_title, 200)
    assert content_widths(features) == ({}, MAX_BAG_WIDTH)


@pytest.mark.parametrize("sparse", [True, False])
def test_pooled_content_matches_a_naive_weighted_mean_of_bag_means(sparse):
    content = HistoryContent(4, {"author": 2}, 3)
    content.fill(_items())
    gen = torch.Generator().manual_seed(3)
    authors = torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    tokens = torch.randn(10, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    history = torch.tensor([[-1, 0, 3], [3, 2, 1], [-1, -1, -1], [0, 0, 2]])
    weights = torch.tensor([[0, 0.25, 0.75], [0.2, 0.3, 0.5], [0, 0, 0], [0.5, 0.25, 0.25]], dtype=torch.float64)
    pooled = content([authors, tokens], history, weights, sparse)
    book_authors = [[1], [2], [], [1, 3]]
    book_tokens = [[5, 6], [], [7], [5, 5, 8]]

    def naive(table: torch.Tensor, bags: list[list[int]]) -> torch.Tensor:
        rows = []
        for reader, row_weights in zip(history.tolist(), weights):
            total = torch.zeros(3, dtype=torch.float64)
            for book, weight in zip(reader, row_weights):
                if book >= 0 and bags[book]:
                    total = total + weight * table[bags[book]].mean(0)
            rows.append(total)
        return torch.stack(rows)

    expected = [naive(authors, book_authors), naive(tokens, book_tokens)]
    for got, want in zip(pooled, expected):
        torch.testing.assert_close(got, want)
    grads = torch.autograd.grad(sum((p**2).sum() for p in pooled), [authors, tokens])
    references = torch.autograd.grad(sum((p**2).sum() for p in expected), [authors, tokens])
    for grad, reference in zip(grads, references):
        assert grad.is_sparse == sparse
        torch.testing.assert_close(grad.to_dense(), reference)
        if sparse:  # only the codes the books carry: lazy Adam would move a padding row by its momentum
            assert 0 not in grad.coalesce().indices()[0].tolist()


def test_a_batch_without_any_history_pools_to_zeros():
    content = HistoryContent(4, {"author": 2}, 0)
    content.fill(_items())
    table = torch.randn(4, 3, requires_grad=True)
    empty = torch.full((2, 3), -1)
    (pooled,) = content([table], empty, torch.zeros(2, 3), True)
    torch.testing.assert_close(pooled, torch.zeros(2, 3))


@pytest.fixture(scope="module")
def data():
    return random_prepared(n_users=40, n_items=30, per_user=6)


def test_content_pooling_is_an_input_of_the_reader_vector_and_is_saved_with_the_model(data, small_config, tmp_path):
    config = small_config("model.history.content=true")
    model = build_model(config, data, torch.device("cpu")).eval()
    assert model.history_content is not None and model.history_content.fields == ["author", "category"]
    users = np.arange(data.n_users)
    histories = histories_for(data, "test")
    before = encode_users(model, data.user_features, users, histories)
    # An author's table is what the pooled content reads: change it and the reader vectors move.
    with torch.no_grad():
        model.item_tower.categorical["author"].bag.weight.mul_(-1)
    assert not torch.allclose(encode_users(model, data.user_features, users, histories), before)
    with torch.no_grad():
        model.item_tower.categorical["author"].bag.weight.mul_(-1)
    save_model(model, tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    codes = model.history_content.code_tables()
    assert [torch.equal(a, b) for a, b in zip(loaded.history_content.code_tables(), codes)] == [True] * len(codes)
    assert (codes[0] >= 0).any()  # the buffers hold the data's codes, not their -1 initialisation
    torch.testing.assert_close(encode_users(loaded, data.user_features, users, histories), before)


def test_content_pooling_needs_a_history_and_bags_to_pool(data):
    with pytest.raises(ConfigError, match="model.history.content pools the history"):
        load_config(None, ["model.history.pooling=none", "model.history.content=true"])
    config = load_config(None, ["model.history.content=true", "model.item.use_features=false"])
    with pytest.raises(ConfigError, match="item tower has none"):
        build_model(config, data, torch.device("cpu"))


@pytest.mark.parametrize("pooling", ["mean", "recency", "attention"])
@pytest.mark.parametrize("sparse", [True, False])
def test_a_book_added_after_training_pools_as_a_trained_book_with_a_zero_id_vector(data, small_config, pooling,
                                                                                   sparse):
    """A served bundle's new book has content but no ID row: in a history it must weigh what a trained book
    weighs, with its own content and a zero ID vector (not be dropped, which would reweigh the others)."""
    config = small_config("model.history.content=true", f"model.history.pooling={pooling}",
                          "model.history.last_items=2")
    model = build_model(config, data, torch.device("cpu")).eval()
    if not sparse:
        model.use_dense_gradients()
    copied = 7  # the added book is a copy of this one's catalogue row
    model.add_content_only_books([codes[copied : copied + 1].numpy() for codes in model.history_content.code_tables()])
    added = data.n_items
    histories = Ragged.from_lists([[3, added, 5], [added], [2, 4, 6, added]])
    users = np.arange(3)
    got = encode_users(model, data.user_features, users, histories)
    # The reference: the copied book itself, in a model where its ID vector is zero.
    with torch.no_grad():
        model.item_tower.ids.table.weight[copied] = 0
    reference = Ragged.from_lists([[3, copied, 5], [copied], [2, 4, 6, copied]])
    torch.testing.assert_close(got, encode_users(model, data.user_features, users, reference))
    without = Ragged.from_lists([[3, 5], [], [2, 4, 6]])
    assert not torch.allclose(got, encode_users(model, data.user_features, users, without), atol=1e-4)


def test_appended_codes_must_fit_the_code_tables(data, small_config):
    model = build_model(small_config("model.history.content=true"), data, torch.device("cpu"))
    tables = [codes[:1].numpy() for codes in model.history_content.code_tables()]
    with pytest.raises(ValueError, match="widths"):
        model.add_content_only_books([tables[0][:, :1], *tables[1:]] if tables[0].shape[1] > 1 else tables[:1])
    too_big = [rows.copy() for rows in tables]
    too_big[0][0, 0] = model.item_tower.categorical["author"].bag.num_embeddings
    with pytest.raises(ValueError, match="author codes outside"):
        model.add_content_only_books(too_big)
    plain = build_model(small_config(), data, torch.device("cpu"))
    with pytest.raises(ValueError, match="does not pool the content"):
        plain.add_content_only_books(tables)
