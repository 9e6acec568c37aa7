"""`booktower index add | withdraw | restore`: change what a served bundle holds and recommends, in place."""

from __future__ import annotations

from pathlib import Path

import typer

from booktower.cli import _paths
from booktower.cli._common import console, fail, setup_logging
from booktower.cli.serve_cmds import _bundle_errors
from booktower.utils.wording import counted

index_app = typer.Typer(help="Change a served bundle's books: add new ones, withdraw or restore them. A running "
                             "`booktower serve` picks the change up at its next reload check.",
                        no_args_is_help=True)

CHANGED_BUNDLE = typer.Option(..., "--bundle", callback=_paths.changed_bundle_dir,
                              help="A bundle folder written by `booktower export`.")
ID_FILE = typer.Option(None, "--books", help="A file of books (CSV, TSV, Parquet, JSON lines) with an item_id "
                                             "column, or the training catalogue's id column.")
IDS = typer.Option(None, "--id", help="A book id; repeat for more.")
IGNORE_UNKNOWN = typer.Option(False, "--ignore-unknown", help="Skip ids the bundle does not hold (counted) "
                                                              "instead of refusing the whole change.")


@index_app.command("add")
def index_add_command(bundle: Path = CHANGED_BUNDLE,
                      books: Path = typer.Option(..., "--books", help="New books, shaped like the training catalogue (its column names, or item_id, "
                                                  "title, author, categories; the model's metadata columns)."),
                      skip_existing: bool = typer.Option(
                          False, "--skip-existing", help="Skip books the bundle already holds (counted) instead of "
                                                         "refusing the file: pass the whole training catalogue to add "
                                                         "the books prepare pruned.")) -> None:
    """Add new books to a bundle (content-only vectors, no retraining); the bundle is rewritten atomically."""
    from booktower.serving.add_books import add_books

    setup_logging()
    with _bundle_errors():
        manifest = add_books(bundle, books, skip_existing)  # it logs how many this file added
    console.print(f"{bundle}: now {manifest['n_items']:,} books ({manifest.get('added_books', 0):,} added after "
                  "training, by every add so far)")


@index_app.command("withdraw")
def index_withdraw_command(bundle: Path = CHANGED_BUNDLE, books: Path | None = ID_FILE,
                           ids: list[str] | None = IDS, ignore_unknown: bool = IGNORE_UNKNOWN) -> None:
    """Never recommend these books again (out of stock, out of print) until `index restore`. They stay in the
    bundle: readers who read them are still described by them, and /items/{id}/similar still answers for them."""
    _change(bundle, books, ids, ignore_unknown, withdraw=True, everything=False)


@index_app.command("restore")
def index_restore_command(bundle: Path = CHANGED_BUNDLE, books: Path | None = ID_FILE,
                          ids: list[str] | None = IDS, ignore_unknown: bool = IGNORE_UNKNOWN,
                          everything: bool = typer.Option(False, "--all", help="Restore every withdrawn book.")) -> None:
    """Recommend withdrawn books again."""
    _change(bundle, books, ids, ignore_unknown, withdraw=False, everything=everything)


def _change(bundle: Path, books: Path | None, ids: list[str] | None, ignore_unknown: bool, withdraw: bool,
            everything: bool) -> None:
    from booktower.serving.bundle import read_manifest
    from booktower.serving.withdraw import change_withdrawn, read_book_ids

    setup_logging()
    if everything and (books or ids):
        fail("--all restores every book: pass it without --books or --id")
    if not everything and not books and not ids:
        fail("name the books: --books FILE (an item_id column) and/or --id ID (repeatable)"
             + ("" if withdraw else ", or --all to restore every withdrawn book"))
    if any(not i.strip() for i in ids or []):
        fail("--id '' names no book. Fix: pass a book id, e.g. --id 0441172717")
    with _bundle_errors():
        catalogue = read_manifest(bundle).catalogue  # first: a folder that is no bundle gets no lock file beside it
        named = list(ids or [])
        if books is not None:
            named += read_book_ids(books, catalogue)
        named = [i.strip() for i in dict.fromkeys(named) if i.strip()]
        change = change_withdrawn(bundle, named, withdraw, ignore_unknown, everything)
    verb = "withdrawn" if withdraw else "restored"
    already = f", {change.unchanged:,} {'already withdrawn' if withdraw else 'not withdrawn'}" if change.unchanged else ""
    skipped = f", {len(change.unknown):,} not in the bundle skipped (e.g. {change.unknown[:3]})" if change.unknown else ""
    pending = (f" ({counted(change.pending, 'more withdrawn book')} not in the bundle, remembered for when "
               "`index add` adds them again)" if change.pending else "")
    console.print(f"{bundle}: {counted(change.changed, 'book')} {verb}{already}{skipped}; {change.withdrawn_now:,} of "
                  f"{counted(change.n_items, 'book')} withdrawn now{pending}")
    if change.withdrawn_now == change.n_items:
        console.print("warning: every book is withdrawn, so every answer is empty until `booktower index restore`")


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
