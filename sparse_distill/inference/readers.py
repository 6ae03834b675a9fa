"""Raw text files, read line by line: txt, jsonl, csv and tsv, plain or compressed (.gz, .bz2).

Every reader yields `Record`s with the line (or row) number, so that an empty, undecodable or
malformed line is reported with its file and line instead of stopping the read. `predict` reads
its input here; the training data readers (`sparse_distill.training.data`) build on the same
functions for labelled and unlabelled sources.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import gzip
import io
import itertools
import json
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import DataError

SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                  ".txt": "txt", ".parquet": "parquet"}


COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open}


def name_suffixes(path: str) -> list[str]:
    """A file name's suffixes in lower case, a compression suffix left out (".CSV.gz": [".csv"])."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    return suffixes[:-1] if suffixes and suffixes[-1] in COMPRESSED else suffixes


def format_from_name(path: str) -> str | None:
    """The format a file's name says, or None."""
    suffixes = name_suffixes(path)
    return SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None


# csv's default field limit (128 KiB) is below the length of some real documents.
csv.field_size_limit(2**31 - 1)


@dataclass
class Record:
    line: int
    text: str | None
    label: str | None
    problem: str | None = None


def open_binary(path: str) -> Any:
    if path == "-":  # stdin, left open for the caller
        return contextlib.nullcontext(sys.stdin.buffer)
    opener = COMPRESSED.get(Path(path).suffix.lower())
    return opener(path, "rb") if opener else open(path, "rb")  # type: ignore[operator]


def open_text(path: str) -> IO[str]:
    # surrogateescape keeps undecodable bytes so that the line can be reported, not lost.
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape",
                                newline="")
    opener = COMPRESSED.get(Path(path).suffix.lower())
    # utf-8-sig: a byte-order mark at the start (Excel writes one) is not part of the header
    if opener:
        return opener(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline="")
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


BOM = b"\xef\xbb\xbf"


def numbered(f: Any) -> Iterator[tuple[int, bytes]]:
    """A binary file's lines numbered from 1, without a byte-order mark at the start (Windows
    tools write one; it would otherwise make the first line bad JSON). Built of C iterators: a
    Python generator here costs ~4% of a jsonl reader's throughput."""
    first = f.readline()
    return enumerate(itertools.chain((first.removeprefix(BOM),) if first else (), f), 1)


def undecodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def sniff(path: str, fmt: str) -> str | None:
    """What a text file looks like instead of `fmt`, from its first 4 KiB (None: it may be it).

    Catches the files whose rows would all be bad: compressed without its suffix, binary, or
    another text format than its name says."""
    with open(path, "rb") as f:
        head = f.read(4096)
    compressed = Path(path).suffix.lower() in COMPRESSED
    if not compressed:
        for magic, kind, suffix in ((b"\x1f\x8b", "gzip", ".gz"), (b"BZh", "bzip2", ".bz2"),
                                    (b"PK\x03\x04", "zip", None), (b"PAR1", "parquet", None)):
            if head.startswith(magic):
                fix = (f"name it {Path(path).name}{suffix}" if suffix else
                       "give a csv, tsv, jsonl, txt or parquet file" if kind == "zip" else
                       "name it .parquet or set format: parquet")
                return f"is {kind} data, not {fmt} text; {fix}"
    else:
        with open_binary(path) as f:
            try:
                head = f.read(4096)
            except (OSError, EOFError) as exc:
                return (f"is not valid {Path(path).suffix.lstrip('.')} data ({one_line(exc)}); "
                        "check the file, or drop that suffix from its name if it is plain text")
    if not head.strip(BOM + b" \t\r\n"):
        return "is empty (or only blank lines); check that this is the right file"
    if b"\x00" in head:
        return (f"looks binary (NUL bytes in its first {len(head):,} bytes), not {fmt} text; "
                "check that this is the right file")
    lines = [x for x in head.removeprefix(BOM).decode("utf-8", "replace").splitlines()[:5]
             if x.strip()]
    if fmt == "jsonl" and lines and not any(x.lstrip().startswith("{") for x in lines):
        other = "tsv" if "\t" in lines[0] else "csv" if "," in lines[0] else "txt"
        return (f"is not JSON lines (no line of its first {len(lines)} starts with '{{'; it "
                f"looks like {other}); name it .{other} or set format: {other}")
    return None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


EMPTY_TEXT = "empty text"


def not_utf8(exc: UnicodeDecodeError) -> str:
    return f"not valid UTF-8 (byte {exc.start})"


def make_record(line: int, text: Any, label: Any, label_col: str | None, text_col: str
                ) -> Record:
    if text is None:
        return Record(line, None, None, f"no {text_col!r} field")
    if not isinstance(text, str):
        return Record(line, None, None, f"{text_col!r} is not a string ({text!r})")
    if undecodable(text):
        return Record(line, None, None, "not valid UTF-8")
    if not text.strip():
        return Record(line, None, None, EMPTY_TEXT)
    if label_col is None:
        return Record(line, text, None)
    if label is None or (isinstance(label, str) and not label.strip()):
        return Record(line, None, None, f"no {label_col!r} value")
    if isinstance(label, float) and label.is_integer():
        label = int(label)
    label = str(label).strip()
    if undecodable(label):
        return Record(line, None, None, "label is not valid UTF-8")
    return Record(line, text, label)


def read_txt(path: str, text_col: str, label_col: str | None) -> Iterator[Record]:
    with open_binary(path) as f:
        for line, raw in numbered(f):
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                yield Record(line, None, None, not_utf8(exc))
                continue
            yield make_record(line, text, None, None, text_col)


def read_txt_batches(path: str, size: int) -> Iterator[tuple[list[int], list[str], list[Record]]]:
    """A txt file (or stdin, "-"), one text a line, in batches of `size` lines: (the good lines'
    numbers, their texts, the bad lines as Records). The checks of `read_text_file`, without a
    Record for every good line: for `predict` on millions of lines."""
    numbers: list[int] = []
    texts: list[str] = []
    bad: list[Record] = []
    line = 0
    with open_binary(path) as f, cut_short(path, lambda: line):
        for line, raw in numbered(f):
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                bad.append(Record(line, None, None, not_utf8(exc)))
            else:
                if text.strip():  # strict UTF-8 leaves no surrogate to check for
                    numbers.append(line)
                    texts.append(text)
                else:
                    bad.append(Record(line, None, None, EMPTY_TEXT))
            if len(numbers) + len(bad) == size:
                yield numbers, texts, bad
                numbers, texts, bad = [], [], []
    if numbers or bad:
        yield numbers, texts, bad


def read_jsonl(path: str, text_col: str, label_col: str | None) -> Iterator[Record]:
    with open_binary(path) as f:
        for line, raw in numbered(f):
            try:
                decoded = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Record(line, None, None, not_utf8(exc))
                continue
            if not decoded.strip():
                yield Record(line, None, None, "empty line")
                continue
            try:
                obj = json.loads(decoded)
            except json.JSONDecodeError as exc:
                yield Record(line, None, None, f"not valid JSON ({exc.msg}, column {exc.colno})")
                continue
            if not isinstance(obj, dict):
                yield Record(line, None, None, "expected a JSON object")
                continue
            label = obj.get(label_col) if label_col else None
            yield make_record(line, obj.get(text_col), label, label_col, text_col)


def read_csv(path: str, text_col: str, label_col: str | None, delimiter: str
              ) -> Iterator[Record]:
    with open_text(path) as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = [h.strip() for h in next(reader, [])]
        ti = header.index(text_col)
        li = header.index(label_col) if label_col else None
        for row in reader:
            line = reader.line_num
            if not row or not any(cell.strip() for cell in row):
                yield Record(line, None, None, "empty line")
                continue
            if len(row) != len(header):
                yield Record(line, None, None, f"expected {len(header)} fields, got {len(row)}")
                continue
            yield make_record(line, row[ti], row[li] if li is not None else None, label_col,
                              text_col)


@contextlib.contextmanager
def cut_short(path: str, last_line: Callable[[], int]) -> Iterator[None]:
    """A file that stops being readable partway (compressed data cut short or damaged, an I/O
    error) as one DataError naming it and the last line read."""
    try:
        yield
    except (EOFError, OSError, zlib.error, csv.Error) as exc:
        raise DataError(f"{path}: cannot read past line {last_line():,} ({one_line(exc)}); the "
                        "file is cut short or damaged: fetch or write it again") from None


def guarded(records: Iterator[Record], path: str) -> Iterator[Record]:
    """`records`, through `cut_short`."""
    last = 0
    with cut_short(path, lambda: last):
        for rec in records:
            last = rec.line
            yield rec


def read_text_file(path: str, fmt: str, text_col: str = "text") -> Iterator[Record]:
    """Stream the texts of a txt, jsonl, csv or tsv file (no labels), bad lines included."""
    if fmt == "txt":
        return guarded(read_txt(path, text_col, None), path)
    if fmt == "jsonl":
        return guarded(read_jsonl(path, text_col, None), path)
    if fmt in ("csv", "tsv"):
        return guarded(read_csv(path, text_col, None, "\t" if fmt == "tsv" else ","), path)
    raise DataError(f"{path}: cannot read texts from a {fmt!r} file; use txt, jsonl, csv or tsv")
