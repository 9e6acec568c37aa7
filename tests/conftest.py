"""Shared fixtures: the real-data folder (skipping cleanly when absent), small file writers, and tiny training
configs with one torch thread (the CI machine is small and shared; more threads only contend)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from booktower.config import BooktowerConfig, load_config

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def shared_data_path(*parts: str) -> Path:
    """A path under ../shared/data; skips the calling test when the folder (or the file) is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    if not path.exists():
        pytest.skip(f"../shared/data/{'/'.join(parts)} not present")
    return path


@pytest.fixture
def shared_data() -> Path:
    """The read-only real-data folder `../shared/data` (tests using it skip when it is absent)."""
    return shared_data_path()


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def write_file(tmp_path: Path):
    """write_file(name, text or bytes) -> path in tmp_path."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return _write


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


@pytest.fixture(params=["pytorch", "c"])
def kernels(request, monkeypatch) -> str:
    """Runs a test twice: on booktower's PyTorch path and on its C kernels (skipped where they cannot be built)."""
    from booktower import native

    monkeypatch.setenv(native.ENV_SWITCH, "1" if request.param == "c" else "0")
    if request.param == "c" and native.library() is None:
        pytest.skip("booktower's C kernels could not be built here (no working C compiler)")
    return request.param
