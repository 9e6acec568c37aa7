"""`booktower recommend --bundle B --out FILE`: what the bundle serves many known readers, written to a file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from booktower.cli._common import console, fail


def write_bundle_lists(bundle: Path, users: list[str], all_users: bool, history: Optional[str],
                       categories: list[str], k: int, out: Optional[Path],
                       max_per_author: Optional[int] = None) -> None:
    from booktower.cli.eval_cmds import table_writer
    from booktower.cli.serve_cmds import _bundle_errors

    if out is None:
        fail("--all-users writes a list per reader to a file. Fix: add --out FILE.csv or --out FILE.parquet")
    if history is not None:
        fail("--out with --bundle writes known readers' lists; an anonymous --history prints. Fix: drop --out, "
             "or pass --user / --all-users")
    if all_users == bool(users):
        fail("with --bundle and --out pass --all-users or at least one --user (not both)")
    write = table_writer(out)  # before the bundle is loaded
    from booktower.serving.batch import batch_lists
    from booktower.serving.service import Recommender

    with _bundle_errors():
        rec = Recommender.from_bundle(bundle, index_kind="exact")
        if k > rec.n_items:
            fail(f"--k {k} is larger than the bundle's catalogue ({rec.n_items} books). Fix: pass --k {rec.n_items} "
                 "or less")
        indices = (np.arange(len(rec.parts.users)) if all_users
                   else np.array([rec.user_index(u) for u in dict.fromkeys(users)], dtype=np.int64))
        rec.category_items(categories)  # an unknown tag fails here, naming the near ones
        frame = batch_lists(rec, indices, k, categories, max_per_author=max_per_author)
        write(frame, out)
    console.print(f"wrote {out} ({frame.height:,} rows: {len(indices):,} readers x up to top-{k}"
                  f"{', tags ' + ', '.join(categories) if categories else ''}"
                  f"{f', at most {max_per_author} per author' if max_per_author else ''})")
    if frame.height == 0:
        console.print("warning: no reader got a book: every book is read, withdrawn or outside the categories")
