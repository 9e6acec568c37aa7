"""read_table's errors for a file a command-line option names (`index add --books`): that command has no config
and no --set, so every fix must be one the user applies to the file itself; the config path keeps its keys."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from booktower.data.errors import DataError
from booktower.data.readers import read_table

BOOKS = "item_id,title,price\nB1,Zoë,4.5\nB2,Other,3.0\n"


def _parquet(path: Path) -> bytes:
    pl.DataFrame({"item_id": ["B1", "B2"], "title": ["a", "b"]}).write_parquet(path)
    return path.read_bytes()[:-40]  # cut short, as an interrupted copy leaves it


def _truncated_jsonl_gz() -> bytes:
    lines = b"".join(b'{"item_id": "B%d", "title": "%s"}\n' % (i, str(i * 7919).encode() * 5) for i in range(3000))
    whole = gzip.compress(lines)
    return whole[: len(whole) // 2]


# name, content, what the message says, the words its fix must hold
CASES = {
    "latin1": ("books.csv", BOOKS.encode("latin-1"), "not valid UTF-8 (line 2,",
               ["re-save the file as UTF-8", "iconv -f cp1252 -t utf-8"]),
    "unclosed-quote": ("books.csv", b'item_id,title\nB1,"unclosed\nB2,ok\n',
                       "the row starting on line 2 is not valid CSV", ["',' (comma)", "double quotes"]),
    "extra-fields": ("books.tsv", b'item_id\ttitle\nB1\t"two\nlines"\nB2\tok\textra\n',
                     "line 4 has 3 fields, the header 2",
                     ["separator is the one its header line uses most", "tab", "the header's columns"]),
    "corrupt-parquet": ("books.parquet", None, "truncated or corrupt", ["export the Parquet file again"]),
    "broken-json-line": ("books.jsonl", b'{"item_id": "B1"}\n\n{"item_id": "B2"\n{"item_id": "B3"}\n',
                         "line 3 is not JSON", ["correct or delete line 3 of the file", "one JSON object"]),
    "json-list-line": ("books.jsonl", b'{"item_id": "B1"}\n["B2"]\n', "line 2 is not a JSON object",
                       ["correct or delete line 2 of the file"]),
    "mixed-types": ("books.jsonl", b'{"item_id": "B1", "price": 3}\n' * 3 + b'{"item_id": "B2", "price": {"a": 1}}\n',
                    "do not make one table", ["give each field one type on every line"]),
    "truncated-gz": ("books.jsonl.gz", _truncated_jsonl_gz(), "truncated or corrupt", ["compress the file again",
                                                                                        "gzip -t"]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_books_file_error_names_the_file_and_a_fix_to_the_file_itself(tmp_path, case):
    name, content, says, fix_words = case
    path = tmp_path / name
    path.write_bytes(_parquet(path) if content is None else content)
    with pytest.raises(DataError) as exc:
        read_table(path, "new books", named_by="--books")
    message = str(exc.value)
    problem, fix = message.split(". Fix: ")
    assert str(path) in problem and says in problem, message
    for words in fix_words:
        assert words in fix, message
    for unusable in ("data.source", "encoding:", "separator)", "data fetch", "config"):
        assert unusable not in message, message


@pytest.mark.parametrize(("name", "fix"), [
    ("latin1", "set data.source.encoding: latin1 (or re-save the file as UTF-8)"),
    ("unclosed-quote", "check the separator (data.source.separator), quoting and that every row has the header's "
                       "columns"),
    ("corrupt-parquet", "download or export it again (`booktower data fetch` resumes its downloads); "
                        "`gzip -t FILE` checks a .gz file"),
    ("broken-json-line", "download or export it again (`booktower data fetch` resumes its downloads); "
                         "`gzip -t FILE` checks a .gz file"),
])
def test_a_config_file_keeps_its_config_fixes(tmp_path, name, fix):
    file_name, content, _, _ = CASES[name]
    path = tmp_path / file_name
    path.write_bytes(_parquet(path) if content is None else content)
    with pytest.raises(DataError) as exc:
        read_table(path, "new books")
    assert str(exc.value).endswith(f"Fix: {fix}")


def test_a_wrong_separator_names_the_one_the_header_chose(tmp_path):
    path = tmp_path / "books.csv"
    path.write_text('"item_id;title|x"\n"B1;a|b"\n')  # quoted: read as one column, whose name holds ';'
    with pytest.raises(DataError) as exc:
        read_table(path, "new books", named_by="--books")
    message = str(exc.value)
    assert "separator looks wrong" in message and "here '|'" in message.split("Fix:")[1]
    assert "data.source" not in message


def test_a_suggested_command_quotes_a_path_with_spaces(tmp_path):
    path = tmp_path / "my books.csv"
    path.write_bytes(BOOKS.encode("latin-1"))
    with pytest.raises(DataError) as exc:
        read_table(path, "new books", named_by="--books")
    assert f"iconv -f cp1252 -t utf-8 '{path}' > 'my books-utf8.csv'" in str(exc.value)
