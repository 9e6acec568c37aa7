"""`data fetch`: a --base-url that is not a URL is refused with the file:// spelling of the same folder."""

from __future__ import annotations


def test_fetch_refuses_a_bare_folder_as_base_url_and_shows_its_url(cli, tmp_path) -> None:
    outcome = cli("data", "fetch", "amazon-2023-books", "-o", tmp_path / "data", "--base-url", tmp_path)
    assert outcome.refused(f"--base-url '{tmp_path}' is not a URL", f"--base-url {tmp_path.as_uri()}")
    assert not (tmp_path / "data").exists()


def test_fetch_accepts_url_schemes_in_any_case() -> None:
    from booktower.cli.data_cmds import base_url_check

    for url in ("http://mirror/books", "HTTPS://mirror/books", "file:///srv/books"):
        assert base_url_check(url) == url
    assert base_url_check(None) is None
