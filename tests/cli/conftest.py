"""Running the `booktower` command in-process, and a tiny exported bundle to recommend from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from booktower.cli.app import app


@dataclass(frozen=True)
class Outcome:
    """What one command printed and how it exited."""

    code: int
    output: str
    exception: BaseException | None

    @property
    def flat(self) -> str:
        """The output without whitespace and panel borders: rich wraps long lines at 80 columns, anywhere."""
        return "".join(self.output.replace("│", " ").split())

    def says(self, *parts: str) -> bool:
        return all("".join(part.split()) in self.flat for part in parts)

    def refused(self, *parts: str) -> bool:
        """A clean refusal: exit status 2, an `error:` line saying every part, no traceback."""
        return (self.code == 2 and "Traceback" not in self.output and not _crashed(self.exception)
                and self.says("error:", *parts))


def _crashed(exception: BaseException | None) -> bool:
    return exception is not None and not isinstance(exception, SystemExit)


@pytest.fixture
def cli():
    """cli("recommend", "--bundle", ...) -> Outcome."""

    def run(*args: str | Path) -> Outcome:
        result = CliRunner().invoke(app, [str(a) for a in args])
        return Outcome(result.exit_code, result.output, result.exception)

    return run


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[str]]:
    """(bundle_dir, user ids, item ids): an untrained, seeded two-tower model on random data, exported."""
    import torch

    from booktower.config.model import ModelConfig
    from booktower.config.serving import IndexConfig
    from booktower.data.toy import random_prepared
    from booktower.models import TwoTower, spec_from_config
    from booktower.serving.export import export_parts, parts_from_model

    torch.manual_seed(0)
    data = random_prepared(n_users=30, n_items=40, per_user=6)
    spec = spec_from_config(ModelConfig(), data.user_features, data.item_features, data.n_users, data.n_items)
    parts = parts_from_model(data, TwoTower(spec))
    directory = tmp_path_factory.mktemp("bundle") / "b"
    export_parts(parts, directory, IndexConfig(kind="exact"), np.random.default_rng(0))
    return directory, data.users.ids.to_list(), data.items.ids.to_list()
