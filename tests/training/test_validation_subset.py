"""`training.max_valid_users`: the epochs are validated on a fixed subset of readers, and the run says so, since
metrics.json scores every reader and the two numbers differ."""

from __future__ import annotations

import logging

from booktower.data.toy import random_prepared
from booktower.training.pipeline import train_run


def test_a_validation_subset_is_announced_with_its_size(small_config, tmp_path, caplog):
    data = random_prepared(n_users=40, n_items=30, per_user=6)
    with caplog.at_level(logging.INFO, logger="booktower"):
        train_run(small_config("training.epochs=1", "training.max_valid_users=10"), tmp_path / "subset", data=data)
    assert "validating on a fixed 10 of the 40 validation readers (training.max_valid_users)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="booktower"):
        train_run(small_config("training.epochs=1"), tmp_path / "all", data=data)
    assert "validating on a fixed" not in caplog.text
