"""Which text encoding a file is in, and what to tell a user whose file is not UTF-8: the byte-order marks of
UTF-16/32, Windows-1252's bytes 0x80-0x9f, and the command that re-saves a file as UTF-8."""

from __future__ import annotations

import codecs
import logging
import re
import shlex
from pathlib import Path
from typing import get_args

from booktower.config.data import SourceConfig

log = logging.getLogger("booktower.data.readers")

CODECS = {"utf8": "utf-8", "latin1": "latin-1", "cp1252": "cp1252"}
"""Python's names of the values data.source.encoding takes."""
# UTF-32 LE's mark begins with UTF-16 LE's: it is tried first.
WIDE_MARKS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
              (codecs.BOM_UTF16_BE, "UTF-16"))


def wide_encoding(head: bytes) -> str | None:
    """"UTF-16" or "UTF-32" when `head` starts with their byte-order mark, or has a NUL in every other byte of its
    first KiB as UTF-16 without a mark does (plain text in any 8-bit encoding holds no NUL)."""
    for mark, name in WIDE_MARKS:
        if head.startswith(mark):
            return name
    sample = head[:1024]
    half = len(sample) // 2
    if half >= 2 and max(sample[0::2].count(0), sample[1::2].count(0)) >= 0.4 * half:
        return "UTF-16"
    return None


def cp1252_allowed() -> bool:
    """Whether data.source.encoding takes cp1252 (its values are config/data.py's to declare)."""
    return "cp1252" in get_args(SourceConfig.model_fields["encoding"].annotation)


def c1_bytes(data: bytes) -> list[int]:
    """The bytes 0x80-0x9f that are not part of a UTF-8 character: Windows-1252's ’ “ ” – € ..., which latin1
    reads as invisible control characters. Python decodes each undecodable byte b to U+DC00+b here."""
    text = data.decode("utf-8", errors="surrogateescape")
    return sorted({ord(c) - 0xDC00 for c in re.findall("[\udc80-\udc9f]", text)})


def recode_command(path: Path, source: str) -> str:
    """A shell command that writes `path`, read as `source`, as UTF-8 beside it (`books.csv` -> `books-utf8.csv`)."""
    gz = path.name.lower().endswith(".gz")
    stem, dot, ext = (path.name[:-3] if gz else path.name).rpartition(".")
    target = shlex.quote(f"{stem or ext}-utf8{dot}{ext if stem else ''}")
    quoted = shlex.quote(str(path))
    recode = f"zcat {quoted} | iconv -f {source} -t utf-8" if gz else f"iconv -f {source} -t utf-8 {quoted}"
    return f"{recode} > {target}"


def not_utf8_fix(path: Path, named_by: str | None, sample: bytes) -> str:
    """The fix for a file that is not UTF-8, with the 8-bit encoding its bytes fit: cp1252 when it holds bytes
    0x80-0x9f (a spreadsheet's "CSV" on Windows; latin1 would turn its quotes into control characters), else
    latin1. A command's option has no encoding setting: its file must become UTF-8."""
    if named_by:
        # cp1252 either way: it reads latin1's printable bytes (0xa0-0xff) as the same characters
        return (f"re-save the file as UTF-8, as {named_by} files are read: in a spreadsheet, Save As \"CSV UTF-8\"; "
                f"in a shell, `{recode_command(path, 'cp1252')}`")
    c1 = c1_bytes(sample)
    if not c1:
        return "set data.source.encoding: latin1 (or re-save the file as UTF-8)"
    shown = ", ".join(f"0x{b:02x} ({bytes([b]).decode('cp1252', errors='replace')})" for b in c1[:4])
    if cp1252_allowed():
        return (f"set data.source.encoding: cp1252: its bytes {shown} are Windows-1252 characters, which latin1 "
                "would read as control characters (or re-save the file as UTF-8)")
    return (f"re-save the file as UTF-8 (in a shell: `{recode_command(path, 'cp1252')}`): it is Windows-1252, "
            f"whose bytes {shown} latin1 (data.source.encoding) would read as control characters")


def utf8_error(data: bytes) -> tuple[int, int] | None:
    """(line, byte offset) where `data`, the file's first bytes, stops being UTF-8; None where it does not."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason != "unexpected end of data":  # a character cut where the sample ends is no error
            return data[:exc.start].count(b"\n") + 1, exc.start
    return None


def warn_control_characters(text: str, path: Path, role: str) -> None:
    """Latin1 reads every byte, so a Windows-1252 file read as latin1 raises nothing: its ’ “ ” – € become
    invisible control characters (U+0080-U+009F) in titles and ids. No real text holds those."""
    first = re.search("[\x80-\x9f]", text)
    if first is None:
        return
    at, found = first.start(), re.findall("[\x80-\x9f]", text)
    line = text.count("\n", 0, at) + 1
    around = text[max(at - 30, text.rfind("\n", 0, at) + 1):at + 30].split("\n")[0]
    fix = "set data.source.encoding: cp1252" if cp1252_allowed() else \
        f"re-save the file as UTF-8 (`{recode_command(path, 'cp1252')}`) and read that"
    log.warning("file %s: the %s file, read as latin1, holds %s control characters U+0080-U+009F (the first on line "
                "%d: %r): it is most likely Windows-1252, whose bytes 0x80-0x9f are ’ “ ” – € and others. Fix: %s",
                path, role, f"{len(found):,}", line, around, fix)
