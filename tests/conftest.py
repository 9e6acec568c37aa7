"""Shared fixtures: the real-data folder (skipping cleanly when absent) and small file writers."""

from __future__ import annotations

from pathlib import Path

import pytest

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
