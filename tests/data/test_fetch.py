"""`booktower data fetch` against a local HTTP server (127.0.0.1) serving small files in the real format."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from pathlib import Path
from typing import ClassVar

import polars as pl
import pytest
from typer.testing import CliRunner

from booktower.data.errors import DataError
from booktower.data.fetch import download, fetch_amazon_2023_books


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP Range support (the stdlib handler has none); records the Range headers seen."""

    ranges: ClassVar[list[str | None]] = []
    honour_range = True

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        header = self.headers.get("Range")
        type(self).ranges.append(header)
        if header and self.honour_range:
            start = int(header.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            body = data[start:]
        else:
            self.send_response(200)
            body = data
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(tmp_path, fixtures_dir):
    root = tmp_path / "served"
    root.mkdir()
    for name in ("Books.jsonl", "meta_Books.jsonl"):
        (root / f"{name}.gz").write_bytes(gzip.compress((fixtures_dir / "amazon2023" / name).read_bytes()))
    handler = type("Handler", (_RangeHandler,), {"ranges": [], "honour_range": True})

    def factory(*args, **kwargs):
        return handler(*args, directory=str(root), **kwargs)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), factory)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root, handler
    httpd.shutdown()
    httpd.server_close()


def test_fetch_downloads_verifies_and_converts(server, tmp_path):
    url, root, _ = server
    out = tmp_path / "data"
    result = fetch_amazon_2023_books(out, base_url=url, progress=False)
    assert (out / "raw" / "Books.jsonl.gz").read_bytes() == (root / "Books.jsonl.gz").read_bytes()
    assert result["books"] == 8 and result["interactions"] == 36
    books = pl.read_csv(out / "books.csv", infer_schema=False)
    assert books.columns == ["title", "author", "average_rating", "rating_number", "price", "categories", "parent_asin"]
    row = books.filter(pl.col("parent_asin") == "0701169850").row(0, named=True)
    assert row["title"] == '["Chaucer"]'
    assert row["categories"] == '["Books","Literature & Fiction","History & Criticism"]'
    users = pl.read_csv(out / "users.csv", infer_schema=False)
    assert users.columns == ["parent_asin", "userId", "timestamp"] and users.height == 36
    assert not list((out / "raw").glob("*.part"))


def test_converted_files_prepare_with_the_default_config(server, tmp_path, repo_root):
    from booktower.config import load_config
    from booktower.data.prepare import prepare

    url, _, _ = server
    fetch_amazon_2023_books(tmp_path / "data", base_url=url, progress=False)
    cfg = load_config(repo_root / "configs" / "default.yaml", [
        f"data.source.interactions={tmp_path / 'data' / 'users.csv'}",
        f"data.source.items={tmp_path / 'data' / 'books.csv'}",
        "data.cache_dir=null", "data.min_user_interactions=1", "data.min_item_interactions=1",
    ]).data
    data, _ = prepare(cfg)
    assert data.n_users == 6 and data.n_items == 8 and not data.summary["warnings"]


def test_partial_download_resumes_with_a_range_request(server, tmp_path):
    url, root, handler = server
    full = (root / "Books.jsonl.gz").read_bytes()
    target = tmp_path / "Books.jsonl.gz"
    (tmp_path / "Books.jsonl.gz.part").write_bytes(full[:100])
    done = download(f"{url}/Books.jsonl.gz", target, sha256=hashlib.sha256(full).hexdigest(), progress=False)
    assert handler.ranges == ["bytes=100-"]
    assert done.resumed_from == 100 and target.read_bytes() == full


def test_server_without_range_support_restarts_cleanly(server, tmp_path):
    url, root, handler = server
    handler.honour_range = False
    full = (root / "Books.jsonl.gz").read_bytes()
    (tmp_path / "Books.jsonl.gz.part").write_bytes(b"garbage")
    done = download(f"{url}/Books.jsonl.gz", tmp_path / "Books.jsonl.gz", progress=False)
    assert done.resumed_from == 0 and (tmp_path / "Books.jsonl.gz").read_bytes() == full


def test_checksum_mismatch_is_an_error_and_removes_the_part(server, tmp_path):
    url, _, _ = server
    with pytest.raises(DataError, match="SHA-256 mismatch") as exc:
        download(f"{url}/Books.jsonl.gz", tmp_path / "Books.jsonl.gz", sha256="0" * 64, progress=False)
    assert "Fix:" in str(exc.value)
    assert not (tmp_path / "Books.jsonl.gz").exists() and not (tmp_path / "Books.jsonl.gz.part").exists()


def test_missing_file_on_the_server_names_the_url(server, tmp_path):
    url, _, _ = server
    with pytest.raises(DataError, match="HTTP 404") as exc:
        download(f"{url}/nothing.gz", tmp_path / "nothing.gz", progress=False)
    assert f"{url}/nothing.gz" in str(exc.value)


def test_second_fetch_skips_verified_files(server, tmp_path):
    url, _, handler = server
    fetch_amazon_2023_books(tmp_path, base_url=url, progress=False)
    requests = len(handler.ranges)
    result = fetch_amazon_2023_books(tmp_path, base_url=url, progress=False, convert=False)
    assert len(handler.ranges) == requests
    assert result["Books.jsonl.gz"]["skipped"] is True


def test_truncated_gzip_is_reported_at_conversion(server, tmp_path):
    from booktower.data.fetch import convert_reviews

    _, root, _ = server
    broken = tmp_path / "Books.jsonl.gz"
    broken.write_bytes((root / "Books.jsonl.gz").read_bytes()[:-30])
    with pytest.raises(DataError, match="truncated or corrupt"):
        convert_reviews(broken, tmp_path / "users.csv")


def test_cli(server, tmp_path):
    from booktower.cli.app import app

    url, _, _ = server
    result = CliRunner().invoke(app, ["data", "fetch", "amazon-2023-books", "--output-dir", str(tmp_path),
                                      "--base-url", url])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "users.csv").exists()
    bad = CliRunner().invoke(app, ["data", "fetch", "nope", "--output-dir", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown dataset" in bad.output


@pytest.fixture
def offline(monkeypatch):
    """Every URL fails as on a machine without this network (no test reaches the real one)."""
    import urllib.error

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr("booktower.data.fetch.urllib.request.urlopen", refuse)


def _place(folder: Path, fixtures_dir: Path, names=("Books.jsonl", "meta_Books.jsonl")) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.gz").write_bytes(gzip.compress((fixtures_dir / "amazon2023" / name).read_bytes()))


@pytest.mark.parametrize("where", ["raw", "."])
def test_files_placed_by_hand_are_used_offline(offline, tmp_path, fixtures_dir, where):
    out = tmp_path / "data"
    _place(out / where, fixtures_dir)
    lines: list[str] = []
    result = fetch_amazon_2023_books(out, progress=False, log_line=lines.append)
    assert result["books"] == 8 and result["interactions"] == 36
    assert result["Books.jsonl.gz"]["placed_by_hand"] is True
    assert any("placed by hand" in line for line in lines)


def test_a_placed_file_of_the_other_kind_is_refused(offline, tmp_path, fixtures_dir):
    out = tmp_path / "data"
    _place(out / "raw", fixtures_dir, names=("Books.jsonl",))
    (out / "raw" / "Books.jsonl.gz").rename(out / "raw" / "meta_Books.jsonl.gz")  # the reviews, misnamed
    with pytest.raises(DataError, match=r"lack the fields \['categories'\] that meta_Books.jsonl.gz holds") as err:
        fetch_amazon_2023_books(out, progress=False)
    assert "raw/meta_Books.jsonl.gz" in str(err.value) and "Fix: put the published" in str(err.value)


def test_a_placed_file_must_match_the_given_sha256(offline, tmp_path, fixtures_dir):
    out = tmp_path / "data"
    _place(out / "raw", fixtures_dir)
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        fetch_amazon_2023_books(out, progress=False, checksums={"Books.jsonl.gz": "0" * 64})


def test_offline_error_names_where_to_place_the_files_and_the_base_url_route(offline, tmp_path):
    out = tmp_path / "data"
    with pytest.raises(DataError, match="could not reach") as err:
        fetch_amazon_2023_books(out, progress=False)
    fix = str(err.value).split("Fix:")[1]
    assert f"by hand to {out / 'raw' / 'meta_Books.jsonl.gz'}" in fix
    assert "--base-url file:///DIR" in fix and "meta_Books.jsonl.gz and Books.jsonl.gz" in fix
