"""An ensemble scores a reader and a book by the sum of its members' scores, as one inner product of their vectors
laid end to end; it saves and loads as one model; members that cannot share an index are refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from booktower.data.toy import random_prepared
from booktower.models.encode import encode_items, encode_users
from booktower.models.ensemble import Ensemble, ensemble_of, spec_from_dict
from booktower.models.io import load_model, save_model
from booktower.training.batching import user_histories
from booktower.training.pipeline import build_model


@pytest.fixture(scope="module")
def data():
    return random_prepared(n_users=40, n_items=30, per_user=6)


def _member(small_config, data, seed: int, *overrides: str):
    torch.manual_seed(seed)  # members differ as seeds do: in their initial weights
    return build_model(small_config(f"seed={seed}", *overrides), data, torch.device("cpu")).eval()


def _scores(model, data) -> torch.Tensor:
    users = encode_users(model, data.user_features, np.arange(data.n_users), user_histories(data.n_users, data.split.train))
    return users @ encode_items(model, data.item_features).T  # (n_users, n_items)


def test_the_ensemble_score_is_the_sum_of_its_members_scores(small_config, data):
    members = [_member(small_config, data, seed) for seed in (1, 2, 3)]
    ensemble = ensemble_of(members)
    expected = sum(_scores(member, data) / member.temperature for member in members)
    assert torch.allclose(_scores(ensemble, data), expected, atol=1e-5)
    assert ensemble.spec.output_dim == 3 * members[0].spec.output_dim


def test_members_of_other_widths_and_history_lengths_combine(small_config, data):
    narrow = _member(small_config, data, 1, "model.output_dim=16", "model.dat.augment_dim=16",
                     "model.history.max_length=3")
    wide = _member(small_config, data, 2, "model.output_dim=48", "model.dat.augment_dim=48",
                   "model.history.max_length=20")
    ensemble = ensemble_of([narrow, wide])
    assert ensemble.spec.history.max_length == 20 and ensemble.spec.output_dim == 64
    # each member still reads only its own last max_length books
    expected = _scores(narrow, data) / narrow.temperature + _scores(wide, data) / wide.temperature
    assert torch.allclose(_scores(ensemble, data), expected, atol=1e-4)


def test_each_member_weighs_in_by_its_own_logits(small_config, data):
    """Members of other temperatures (or unnormalised vectors) add their logits, not their raw products: the one
    with the lower temperature, whose training sharpened its scores, counts for more."""
    sharp = _member(small_config, data, 1, "model.temperature=0.05")
    soft = _member(small_config, data, 2, "model.temperature=0.5", "model.normalize=false")
    ensemble = ensemble_of([sharp, soft])
    expected = _scores(sharp, data) / 0.05 + _scores(soft, data) / 0.5
    assert torch.allclose(_scores(ensemble, data), expected, rtol=1e-5, atol=1e-4)


def test_an_ensemble_saves_and_loads_as_one_model(small_config, data, tmp_path):
    ensemble = ensemble_of([_member(small_config, data, seed) for seed in (1, 2)])
    save_model(ensemble, tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert isinstance(loaded, Ensemble)
    assert torch.equal(_scores(loaded, data), _scores(ensemble, data))


def test_a_single_models_spec_still_loads_as_a_single_model(small_config, data, tmp_path):
    model = _member(small_config, data, 1)
    save_model(model, tmp_path / "model")
    assert not isinstance(load_model(tmp_path / "model"), Ensemble)
    assert spec_from_dict(model.spec.to_dict()) == model.spec


def test_members_must_share_a_vocabulary_and_pooled_content(small_config, data):
    first = _member(small_config, data, 1, "model.history.content=true")
    other_catalogue = dataclasses.replace(first.spec, item=dataclasses.replace(first.spec.item, n_ids=31))
    with pytest.raises(ValueError, match="member 2 has 40 readers and 31 books.*share one vocabulary"):
        Ensemble([first.spec, other_catalogue])
    without_content = _member(small_config, data, 2, "model.history.content=false")
    with pytest.raises(ValueError, match="member 2 pools other book content"):
        Ensemble([first.spec, without_content.spec])
    with pytest.raises(ValueError, match="at least 2 members, got 1"):
        Ensemble([first.spec])
