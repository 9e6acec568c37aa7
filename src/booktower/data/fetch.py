"""Download the public Amazon Reviews 2023 Books files and convert them to the default CSV format.

Downloads resume (HTTP Range) from a `.part` file, are verified (size against the server's length, optional
SHA-256, and the gzip CRC while converting) and only then renamed into place. A file placed by hand in OUTPUT/raw/
or OUTPUT/ (for a machine without this network) is used instead of downloading, once its first records hold
the file's fields (and its SHA-256 matches, when given). Conversion streams the JSON lines in batches, so the
multi-GB dumps convert in bounded memory.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from tqdm import tqdm

from booktower.data.errors import DataError
from booktower.data.formats import META_SCHEMA, REVIEW_SCHEMA, flatten_amazon_meta
from booktower.data.readers import iter_ndjson_batches
from booktower.data.textparse import json_list_strings
from booktower.utils.atomic import atomic_path

log = logging.getLogger(__name__)

# Published by the McAuley lab: https://amazon-reviews-2023.github.io/
DEFAULT_URLS = {
    "meta_Books.jsonl.gz": "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023/raw/meta_categories/meta_Books.jsonl.gz",
    "Books.jsonl.gz": "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023/raw/review_categories/Books.jsonl.gz",
}
DATASETS = {"amazon-2023-books": DEFAULT_URLS}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Download:
    url: str
    path: Path
    size: int
    sha256: str
    resumed_from: int


def dataset_urls(dataset: str, base_url: str | None) -> dict[str, str]:
    """File name -> URL. `base_url` replaces the published location: files are then at BASE/<file name>."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}", fix=f"use one of {sorted(DATASETS)}")
    if base_url is None:
        return dict(DATASETS[dataset])
    return {name: f"{base_url.rstrip('/')}/{name}" for name in DATASETS[dataset]}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, start: int, timeout: float, target: Path | None = None) -> tuple[object, int, int]:
    """Returns (response, offset the body starts at, total size or -1). `target`: where the file goes, named in
    the hint for a download by hand."""
    try:
        request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    except ValueError as exc:  # no scheme: a bare path or a typo
        raise DataError(f"{url} is not a URL ({exc})", path=url,
                        fix="give --base-url as http(s)://... or file:///absolute/path") from None
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # the partial file already holds everything
            return None, start, start
        raise DataError(f"the server answered HTTP {exc.code} for {url}", path=url,
                        fix="check the URL (--base-url) or try again later") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DataError(f"could not reach {url}: {exc}", path=url, fix=_offline_fix(url, target)) from None
    if response.status == 206:
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
        return response, start, int(total) if total.isdigit() else -1
    length = response.headers.get("Content-Length")
    return response, 0, int(length) if length and length.isdigit() else -1  # server ignored Range: restart


def _offline_fix(url: str, target: Path | None) -> str:
    """Both ways to fetch without this network: the file placed by hand where the next run looks for it, or a
    folder of the files given as --base-url."""
    if target is None:
        return "check the network or the URL"
    names = " and ".join(next(iter(DATASETS.values())))
    return (f"check the network, or download {url} by hand to {target} and run the same command again (a file "
            f"placed there, or in {target.parent.parent}, is used instead of downloading), or pass "
            f"--base-url file:///DIR for a folder DIR that holds {names}")


def download(url: str, target: Path, *, sha256: str | None = None, timeout: float = 60.0,
             progress: bool = True) -> Download:
    """Download `url` to `target`, resuming `target.part`; verify size (and SHA-256 when given) before renaming."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    response, offset, total = _open(url, start, timeout, target)
    if response is not None:
        with response, open(part, "ab" if offset else "wb") as out, tqdm(
            total=total if total > 0 else None, initial=offset, unit="B", unit_scale=True,
            desc=target.name, disable=not progress,
        ) as bar:
            for block in iter(lambda: response.read(_CHUNK), b""):
                out.write(block)
                bar.update(len(block))
    size = part.stat().st_size
    if total >= 0 and size != total:
        raise DataError(f"downloaded {size:,} bytes but the server announced {total:,}", path=part,
                        fix="run the same command again: the download resumes where it stopped")
    digest = _sha256(part)
    if sha256 is not None and digest != sha256.lower():
        part.unlink()
        raise DataError(f"SHA-256 mismatch: expected {sha256}, got {digest} (the partial file was removed)",
                        path=target, fix="run the command again to download the file afresh; check --sha256")
    part.replace(target)
    (target.with_name(target.name + ".sha256")).write_text(f"{digest}  {target.name}\n")
    return Download(url, target, size, digest, start if offset else 0)


def convert_meta(meta: Path, books_csv: Path, batch_bytes: int = 64 << 20) -> int:
    """meta_Books.jsonl.gz -> books.csv (title and categories as JSON-list strings, author name)."""
    rows = 0
    with atomic_path(books_csv) as tmp, open(tmp, "wb") as out:
        for batch in iter_ndjson_batches(meta, META_SCHEMA, batch_bytes):
            flat = flatten_amazon_meta(batch)
            # The default format holds the title as a one-element JSON list, like the real books.csv rows.
            title = flat.select(pl.when(pl.col("title").is_null()).then(pl.lit([], dtype=pl.List(pl.String)))
                                .otherwise(pl.concat_list("title")).alias("title")).to_series()
            table = flat.select(
                json_list_strings(title).alias("title"),
                "author", "average_rating", "rating_number", "price",
                json_list_strings(flat["categories"]).alias("categories"),
                "parent_asin",
            )
            table.write_csv(out, include_header=rows == 0)
            rows += table.height
    return rows


def convert_reviews(reviews: Path, users_csv: Path, batch_bytes: int = 64 << 20) -> int:
    """Books.jsonl.gz -> users.csv (parent_asin, userId, timestamp in ms)."""
    rows = 0
    with atomic_path(users_csv) as tmp, open(tmp, "wb") as out:
        for batch in iter_ndjson_batches(reviews, REVIEW_SCHEMA, batch_bytes):
            table = batch.select("parent_asin", pl.col("user_id").alias("userId"), "timestamp")
            table.write_csv(out, include_header=rows == 0)
            rows += table.height
    return rows


def _already_verified(target: Path, expected: str | None) -> bool:
    """`target` was downloaded by an earlier run, which recorded its SHA-256, and is still that file."""
    recorded = target.with_name(target.name + ".sha256")
    if not (target.exists() and recorded.exists()):
        return False
    digest = recorded.read_text().split()[0]
    return digest == _sha256(target) and (expected is None or expected.lower() == digest)


# The fields each file's records must hold: a file of the other kind, or another dataset, fails at once.
_PLACED_FIELDS = {
    "meta_Books.jsonl.gz": ("parent_asin", "categories"),
    "Books.jsonl.gz": ("parent_asin", "user_id", "timestamp"),
}


def placed_by_hand(output_dir: Path, name: str) -> Path | None:
    """A file of the dataset that the user put into OUTPUT/raw/ or OUTPUT/ themselves (no download record)."""
    for candidate in (output_dir / "raw" / name, output_dir / name):
        # A file with a record is an earlier download that no longer verifies: downloaded again, as before.
        if candidate.is_file() and not candidate.with_name(name + ".sha256").exists():
            return candidate
    return None


def check_placed_file(path: Path, name: str, sha256: str | None) -> None:
    """A hand-placed file is checked as far as is cheap: its SHA-256 against --sha256 when given, and its first
    records must be JSON holding this file's fields. The gzip checksum of the whole file, which catches a
    truncated copy, is verified when it is converted (as for a download)."""
    from booktower.data.readers import ndjson_keys

    if sha256 is not None and (digest := _sha256(path)) != sha256.lower():
        raise DataError(f"SHA-256 mismatch: expected {sha256}, got {digest}", path=path,
                        fix=f"replace it with the published {name}, or check --sha256")
    if path.stat().st_size == 0:
        raise DataError("the file is empty", path=path, fix=f"put the published {name} there, or remove the "
                        "file to download it")
    keys = set(ndjson_keys(path, name, n_lines=20))
    missing = [field for field in _PLACED_FIELDS.get(name, ()) if field not in keys]
    if missing:
        raise DataError(f"the records of this file lack the fields {missing} that {name} holds (it has "
                        f"{sorted(keys)[:12]})", path=path,
                        fix=f"put the published {name} there (meta_Books.jsonl.gz is the catalogue, "
                            "Books.jsonl.gz the reviews), or remove the file to download it")


def fetch_amazon_2023_books(
    output_dir: Path, *, base_url: str | None = None, checksums: dict[str, str] | None = None,
    convert: bool = True, progress: bool = True, log_line: Callable[[str], None] = log.info,
) -> dict[str, object]:
    """Download both files into OUTPUT/raw/ (skipping verified complete ones) and write OUTPUT/books.csv + users.csv."""
    checksums = checksums or {}
    raw = output_dir / "raw"
    results: dict[str, object] = {}
    sources: dict[str, Path] = {}
    for name, url in dataset_urls("amazon-2023-books", base_url).items():
        target = raw / name
        sources[name] = target
        if _already_verified(target, checksums.get(name)):
            log_line(f"{target} is already downloaded and verified")
            results[name] = {"path": str(target), "skipped": True}
            continue
        placed = placed_by_hand(output_dir, name)
        if placed is not None:
            check_placed_file(placed, name, checksums.get(name))
            log_line(f"using {placed}, placed by hand (not downloaded): its first records are "
                     + ("checked" if name not in checksums else "checked and its SHA-256 matches --sha256")
                     + (", and its gzip checksum is verified while converting" if convert else
                        "; its gzip checksum is verified when it is converted"))
            sources[name] = placed
            results[name] = {"path": str(placed), "placed_by_hand": True}
            continue
        done = download(url, target, sha256=checksums.get(name), progress=progress)
        log_line(f"downloaded {done.size:,} bytes to {target} (sha256 {done.sha256[:12]}..."
                 + (f", resumed at {done.resumed_from:,}" if done.resumed_from else "") + ")")
        results[name] = {"path": str(target), "bytes": done.size, "sha256": done.sha256, "resumed_from": done.resumed_from}
    if convert:
        results["books"] = convert_meta(sources["meta_Books.jsonl.gz"], output_dir / "books.csv")
        results["interactions"] = convert_reviews(sources["Books.jsonl.gz"], output_dir / "users.csv")
        log_line(f"wrote {results['books']:,} books to {output_dir / 'books.csv'} and "
                 f"{results['interactions']:,} interactions to {output_dir / 'users.csv'}")
    return results
