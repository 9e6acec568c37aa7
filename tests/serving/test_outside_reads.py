"""A book prepare pruned, added back with `index add`, is never recommended to the readers who read it before
training: the export keeps their reads of books it does not hold, and the add moves them into their histories."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from booktower.config import load_config
from booktower.serving.add_books import add_books
from booktower.serving.bundle import load_bundle
from booktower.serving.export import export_run
from booktower.serving.outside_reads import OUTSIDE_READS
from booktower.serving.service import Recommender
from booktower.training.pipeline import train_run

READERS = [f"r{n}" for n in range(12)]
BOOKS = [f"b{n}" for n in range(10)]


def _write_data(folder: Path) -> Path:
    """Twelve readers of ten books (five each), and `rare`, read by r0 and r1 only: pruned below 3 readers; r2 also
    read `absent`, which the catalogue lacks (dropped at prepare)."""
    rows = []
    for n, reader in enumerate(READERS):
        for step in range(5):
            rows.append((reader, BOOKS[(n + step) % len(BOOKS)], 1_600_000_000 + 100 * step))
    rows += [("r0", "rare", 1_500_000_000), ("r1", "rare", 1_600_000_050), ("r2", "absent", 1_600_000_060)]
    folder.mkdir(parents=True)
    pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row").write_csv(folder / "log.csv")
    pl.DataFrame({"item_id": [*BOOKS, "rare"], "title": [f"title {b}" for b in [*BOOKS, "rare"]]}).write_csv(
        folder / "books.csv")
    (folder / "config.yaml").write_text(f"""
data:
  cache_dir: {folder / 'cache'}
  min_user_interactions: 1
  min_item_interactions: 3
  source: {{format: csv, interactions: {folder / 'log.csv'}, items: {folder / 'books.csv'}}}
  columns: {{user: user_id, item: item_id, timestamp: timestamp, timestamp_unit: s, item_author: null,
             item_categories: null, item_numeric: [], item_count_columns: [], item_nonnegative: []}}
training: {{progress: false, num_threads: 1, epochs: 1, batch_size: 16, negatives: {{num_negatives: 4}}}}
""")
    return folder / "config.yaml"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("outside")
    config = _write_data(folder / "data")
    train_run(load_config(config), folder / "run")
    export_run(folder / "run", folder / "bundle")
    return folder / "bundle", folder / "data" / "books.csv"


def test_the_export_keeps_known_readers_reads_of_pruned_books(exported):
    bundle, _ = exported
    parts, manifest = load_bundle(bundle)
    assert "rare" not in parts.items and OUTSIDE_READS in manifest["files"]
    reads = sorted(zip(parts.users.decode(parts.outside_reads["user"].to_numpy()), parts.outside_reads["item_id"]))
    assert reads == [("r0", "rare"), ("r1", "rare"), ("r2", "absent")]  # a book missing from the catalogue too


def test_an_added_pruned_book_is_never_served_to_its_earlier_readers(exported, tmp_path):
    import shutil

    bundle, catalogue = exported
    copy = shutil.copytree(bundle, tmp_path / "b")
    add_books(copy, catalogue, skip_existing=True)
    rec = Recommender.from_bundle(copy, index_kind="exact")
    everything = rec.n_items
    for reader in ("r0", "r1"):
        assert "rare" not in {r.item_id for r in rec.for_user(reader, k=everything)}
        assert "rare" in set(rec.parts.items.decode(rec.read_by(reader)))
    assert "rare" in {r.item_id for r in rec.for_user("r5", k=everything)}  # the others may get it
    parts, _ = load_bundle(copy)
    assert parts.outside_reads["item_id"].to_list() == ["absent"]  # moved into the histories once its book came


def test_an_export_from_input_files_changed_since_training_is_refused(tmp_path):
    from booktower.data.errors import DataError

    config = _write_data(tmp_path / "data")
    train_run(load_config(config), tmp_path / "run")
    log = tmp_path / "data" / "log.csv"
    log.write_text("\n".join(log.read_text().splitlines()[:-1]) + "\n")  # one read less
    with pytest.raises(DataError, match=r"not the ones it was trained on: input .*log\.csv changed.*put back"):
        export_run(tmp_path / "run", tmp_path / "bundle")
    log.unlink()
    with pytest.raises(DataError, match=r"input .*log\.csv is gone"):
        export_run(tmp_path / "run", tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
