"""Training tests: tiny data, one torch thread (the CI machine is small and shared; more threads only contend)."""

from __future__ import annotations

import pytest
import torch

from booktower.config import BooktowerConfig, load_config

FAST = [
    "training.progress=false", "training.num_threads=1", "training.batch_size=128",
    "training.negatives.num_negatives=16", "training.early_stopping.patience=0",
    "data.features.text_buckets=256",
]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_config(*overrides: str) -> BooktowerConfig:
    """Defaults shrunk for tiny data, plus `overrides`."""
    return load_config(None, [*FAST, *overrides])


@pytest.fixture(name="small_config")
def _small_config_fixture():
    return small_config
