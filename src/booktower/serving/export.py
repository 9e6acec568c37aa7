"""Trained run -> serving bundle: encode every book and known reader once, measure the ANN index, write."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from booktower.config.data import ColumnMapping
from booktower.config.serving import IndexConfig, with_index_kind
from booktower.data.types import PreparedData
from booktower.serving._lock import bundle_lock
from booktower.serving.bundle import BundleParts, sha256_file, write_bundle
from booktower.serving.index import AnnReport, compare_with_exact
from booktower.serving.manifest import CatalogueColumns
from booktower.serving.outside_reads import collect_outside_reads
from booktower.serving.bundle_read import interrupted_write
from booktower.serving.withdraw import carry_withdrawals

log = logging.getLogger(__name__)


def model_files(model: Any) -> dict[str, bytes]:
    """The model as the files `models.io.save_model` writes (safetensors + JSON spec)."""
    from booktower.models.io import save_model

    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, Path(tmp))
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.suffix in (".safetensors", ".json")}


def parts_from_model(data: PreparedData, model: Any) -> BundleParts:
    """Item vectors for every book of the prepared data; reader vectors and seen-filtering from every interaction
    the run knows (train + validation + test).

    Evaluation holds the test book out; a bundle serves production traffic, where the reader's most recent book is
    part of their history (it shapes their vector) and must not be recommended back to them.
    """
    from booktower.models.encode import encode_items, encode_users

    if data.feature_spec is None:
        raise ValueError("the prepared data carries no feature spec: re-prepare it with this booktower version")
    history, _ = data.histories("train", "valid", "test")
    items = encode_items(model, data.item_features).cpu().numpy()  # (n_items, d)
    users = encode_users(model, data.user_features, np.arange(data.n_users), history).cpu().numpy()  # (U, d)
    return BundleParts(
        item_vectors=items.astype(np.float32), user_vectors=users.astype(np.float32), items=data.items,
        users=data.users, metadata=data.item_metadata, seen=history,
        popularity=data.item_popularity().astype(np.int64), feature_spec=data.feature_spec.to_json(),
        model_files=model_files(model), n_model_items=data.n_items,
    )


def pruned_books_note(n_items: int, catalogue_items: int | None) -> str:
    """Why the bundle may hold fewer books than the catalogue file, and how to serve the rest."""
    add = ("`booktower index add --bundle BUNDLE --books CATALOGUE --skip-existing` adds them from the catalogue file "
           "(content-only vectors, no retraining)")
    if catalogue_items is None:
        return (f"the bundle holds the {n_items} books that survived prepare (books with too few interactions are "
                f"pruned); {add}")
    if catalogue_items <= n_items:
        return f"the bundle holds {n_items} books; the catalogue file lists {catalogue_items}"
    return (f"the bundle holds {n_items} of the catalogue's {catalogue_items} books: {catalogue_items - n_items} had "
            f"too few interactions and were pruned at prepare; {add}")


def measure_index(parts: BundleParts, config: IndexConfig, rng: np.random.Generator, k: int = 10,
                  n_queries: int = 1000) -> AnnReport:
    """ANN recall@k and speed-up against exact, on the bundle's own items and a sample of its readers.

    With `kind: exact` configured, HNSW with the configured parameters is measured, so the report says what
    switching would cost.
    """
    approx = config if config.kind != "exact" else config.model_copy(update={"kind": "hnsw"})
    chosen = rng.choice(len(parts.user_vectors), size=min(n_queries, len(parts.user_vectors)), replace=False)
    return compare_with_exact(parts.item_vectors, parts.user_vectors[np.sort(chosen)], approx, k=k)


def export_parts(parts: BundleParts, output_dir: Path, config: IndexConfig, rng: np.random.Generator,
                 source: dict[str, Any] | None = None, catalogue: CatalogueColumns | None = None) -> dict[str, Any]:
    report = measure_index(parts, config, rng)
    parts.info = {"index": config.model_dump(mode="json"), "ann": report.as_dict(), "source": source or {},
                  "catalogue": (catalogue or CatalogueColumns()).model_dump(mode="json")}
    with bundle_lock(Path(output_dir), exclusive=True):  # no `index withdraw` between the carry and the write
        # a write killed in its swap left the previous version beside a missing bundle: its withdrawals still hold
        carry_withdrawals(interrupted_write(Path(output_dir)) or Path(output_dir), parts)
        return write_bundle(parts, output_dir)


def catalogue_columns(columns: ColumnMapping) -> CatalogueColumns:
    """The names a new-books file may share with the training catalogue."""
    return CatalogueColumns(item=columns.catalogue_id, title=columns.item_title, author=columns.item_author,
                            categories=columns.item_categories, nonnegative=list(columns.item_nonnegative))


def export_run(run_dir: Path, output_dir: Path, index_kind: str | None = None, seed: int | None = None) -> dict[str, Any]:
    """`booktower export`: load the run, encode, measure, write the bundle. Returns the manifest."""
    from booktower.training.run import load_run

    _refuse_changed_inputs(Path(run_dir))
    run = load_run(Path(run_dir))
    config = run.config.serving.index
    if index_kind is not None:
        config = with_index_kind(config, index_kind)
    log.info("encoding %d books and %d readers", run.data.n_items, run.data.n_users)
    log.info(pruned_books_note(run.data.n_items, run.data.summary.get("catalogue_items")))
    parts = parts_from_model(run.data, run.model)
    parts.outside_reads = collect_outside_reads(run.config.data, run.data.users, run.data.items)
    run_json = Path(run_dir) / "run.json"
    source = {"run": str(Path(run_dir).resolve()),
              "run_json_sha256": sha256_file(run_json) if run_json.is_file() else None,
              "catalogue_items": run.data.summary.get("catalogue_items")}
    rng = np.random.default_rng(run.config.seed if seed is None else seed)
    _warn_of_added_books(Path(output_dir))
    return export_parts(parts, Path(output_dir), config, rng, source, catalogue_columns(run.config.data.columns))


def _refuse_changed_inputs(run_dir: Path) -> None:
    """A bundle is built from the run's data as its files are now (every reader's history makes their vector and
    their masked books): files changed since training would serve other histories than the model learnt, and
    re-read books could come back. Refused before anything is read, naming the files."""
    from booktower.data.errors import DataError
    from booktower.evaluation.data_check import changed_inputs

    changes = changed_inputs(run_dir)
    if changes:
        raise DataError(f"the run's input files are not the ones it was trained on: {'; '.join(changes[:4])}",
                        path=run_dir / "run.json",
                        fix="put back the files the run was trained on (run.json names them with their sha256) and "
                            "export again, or train a new run on the current files and export that")


def _warn_of_added_books(output_dir: Path) -> None:
    """A bundle being replaced may hold books added with `index add`: the new bundle is the run's catalogue
    only, so say that they go (the export cannot re-add them: their files were the user's)."""
    from booktower.serving.bundle import BundleError, is_bundle_folder, read_manifest

    if not is_bundle_folder(output_dir):
        return
    try:
        added = read_manifest(output_dir).added_books
    except BundleError:
        return
    if added:
        log.warning("%s held %d books added with `booktower index add`; the new bundle holds the run's books "
                    "only: add them again (booktower index add --bundle %s --books FILE)", output_dir, added,
                    output_dir)
