"""A file in another encoding than UTF-8 is told apart: UTF-16/32 (Excel's "Unicode Text") must be re-saved,
Windows-1252 is named as such (latin1 would keep its quotes as control characters), latin1 stays latin1."""

from __future__ import annotations

import gzip
import logging

import pytest

from booktower.config.data import DataConfig
from booktower.data import _encodings as encodings
from booktower.data.errors import DataError, DropLedger
from booktower.data.ingest import load_raw
from booktower.data.readers import read_table

BOOKS = "item_id,title\nB1,Harry Potter and the Sorcerer’s Stone\nB2,“Quoted” – dashed\n"
LOG = "user_id\titem_id\ttimestamp\nu1\tB1\t1500000000\nu1\tB2\t1500000001\n"


@pytest.mark.parametrize(("codec", "name"), [("utf-16", "UTF-16"), ("utf-16-le", "UTF-16"), ("utf-16-be", "UTF-16"),
                                             ("utf-32", "UTF-32")])
@pytest.mark.parametrize("encoding", ["utf8", "latin1"])
def test_a_utf16_or_utf32_file_is_named_with_how_to_resave_it(tmp_path, codec, name, encoding):
    path = tmp_path / "log.txt"
    path.write_bytes(LOG.encode(codec))  # "utf-16" writes a byte-order mark, "utf-16-le" none
    with pytest.raises(DataError) as exc:
        read_table(path, "interactions", encoding=encoding)
    problem, fix = str(exc.value).split(". Fix: ")
    assert str(path) in problem and f"the interactions file is {name} text" in problem
    assert 'Save As "CSV UTF-8"' in fix and f"iconv -f {name} -t utf-8 {path} > log-utf8.txt" in fix
    assert "latin1" not in fix and "\\x00" not in str(exc.value)


def test_a_utf16_json_lines_file_and_a_books_option_get_the_same_diagnosis(tmp_path):
    jsonl = tmp_path / "log.jsonl"
    jsonl.write_bytes('{"user_id": "u1"}\n'.encode("utf-16"))
    with pytest.raises(DataError, match="the interactions file is UTF-16 text"):
        read_table(jsonl, "interactions")
    books = tmp_path / "books.csv"
    books.write_bytes(BOOKS.encode("utf-16"))
    with pytest.raises(DataError, match=r"UTF-16 text.*pass that to --books"):
        read_table(books, "new books", named_by="--books")


def test_prepare_names_a_utf16_log_before_reading_its_columns(tmp_path):
    log = tmp_path / "log.txt"
    log.write_bytes(LOG.encode("utf-16"))
    config = DataConfig.model_validate({"source": {"interactions": str(log), "items": None}, "cache_dir": None,
                                        "columns": {"user": "user_id", "item": "item_id", "timestamp_unit": "s"}})
    with pytest.raises(DataError, match="the interactions file is UTF-16 text"):
        load_raw(config, DropLedger())


def test_a_windows_1252_file_read_as_utf8_is_named_windows_1252(tmp_path, monkeypatch):
    path = tmp_path / "books.csv"
    path.write_bytes(BOOKS.encode("cp1252"))
    monkeypatch.setattr(encodings, "cp1252_allowed", lambda: False)
    with pytest.raises(DataError) as exc:
        read_table(path, "items")
    fix = str(exc.value).split(". Fix: ")[1]
    assert "it is Windows-1252" in fix and "0x92 (’)" in fix and f"iconv -f cp1252 -t utf-8 {path}" in fix
    assert "encoding: latin1" not in fix
    monkeypatch.setattr(encodings, "cp1252_allowed", lambda: True)
    with pytest.raises(DataError, match="Fix: set data.source.encoding: cp1252"):
        read_table(path, "items")


def test_a_latin1_file_read_as_utf8_still_gets_latin1(tmp_path):
    path = tmp_path / "books.csv"
    path.write_bytes("item_id,title\nB1,Zoë\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not valid UTF-8 \(line 2.*Fix: set data.source.encoding: latin1"):
        read_table(path, "items")


def test_a_bad_byte_past_the_first_64_kib_is_located(tmp_path):
    path = tmp_path / "books.csv"
    rows = "".join(f"B{i},Title {i}\n" for i in range(8000))
    path.write_bytes(("item_id,title\n" + rows).encode() + "B9,Sorcerer’s\n".encode("cp1252"))
    with pytest.raises(DataError, match=r"not valid UTF-8 \(the first on line 8002, byte \d+ of the file\)"):
        read_table(path, "items")


def test_cp1252_is_read_as_windows_1252(tmp_path):
    path = tmp_path / "books.csv.gz"
    path.write_bytes(gzip.compress(BOOKS.encode("cp1252")))
    frame = read_table(path, "items", encoding="cp1252")
    assert frame["title"].to_list() == ["Harry Potter and the Sorcerer’s Stone", "“Quoted” – dashed"]


def test_a_byte_windows_1252_lacks_is_named_with_its_line(tmp_path):
    path = tmp_path / "books.csv"
    path.write_bytes(b"item_id,title\nB1,ok\nB2,odd \x81 byte\n")
    with pytest.raises(DataError, match=r"byte 0x81 on line 3 .*has no character in it.*encoding: latin1"):
        read_table(path, "items", encoding="cp1252")


def test_a_windows_1252_file_read_as_latin1_is_warned_about(tmp_path, caplog):
    path = tmp_path / "books.csv"
    path.write_bytes(BOOKS.encode("cp1252"))
    with caplog.at_level(logging.WARNING, logger="booktower"):
        frame = read_table(path, "items", encoding="latin1")
    assert frame["title"][0] == "Harry Potter and the Sorcerer\x92s Stone"  # read, as asked
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert str(path) in warning and "read as latin1, holds 4 control characters" in warning
    assert "the first on line 2" in warning and "Sorcerer\\x92s Stone" in warning
    assert "Windows-1252" in warning and "Fix:" in warning


def test_a_real_latin1_file_reads_without_a_warning_gzipped_too(tmp_path, caplog):
    path = tmp_path / "books.csv.gz"
    path.write_bytes(gzip.compress("item_id,title\nB1,Zoë à Noël\n".encode("latin-1")))
    with caplog.at_level(logging.WARNING, logger="booktower"):
        frame = read_table(path, "items", encoding="latin1")
    assert frame["title"].to_list() == ["Zoë à Noël"]
    assert not caplog.records


def test_a_windows_1252_catalogue_reads_with_encoding_cp1252(tmp_path):
    path = tmp_path / "books.csv"
    path.write_bytes(BOOKS.encode("cp1252"))
    frame = read_table(path, "items", encoding="cp1252")
    assert "’" in "".join(frame["title"].to_list())
