"""Readers against generated files (issue 16): csv, tsv, jsonl and txt, plain, .gz and .bz2,
with NUL bytes, a BOM, CRLF, quotes, ragged rows, long lines, truncation, empty files and wrong
column names. Every case gives the right rows or a DataError / ConfigError; never another
exception, and never a row silently changed."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sparse_distill.errors import SDistillError
from sparse_distill.stages.config import config_from_dict
from sparse_distill.training.data import load_labeled

ALPHABET = st.characters(blacklist_categories=("Cs",))  # any code point but lone surrogates
TEXTS = st.text(ALPHABET, max_size=60) | st.sampled_from(
    ["", " ", "a,b", 'say "hi"', "tab\there", "line\nbreak", "cr\rlf\r\n", "\x00nul", "\ufeffbom",
     "x" * 5000])
ROWS = st.lists(st.tuples(TEXTS, st.sampled_from(["pos", "neg", " ", ""])), min_size=0,
                max_size=12)


def encode(rows: list[tuple[str, str]], fmt: str, header: list[str]) -> bytes:
    if fmt == "jsonl":
        return "".join(json.dumps(dict(zip(header, row, strict=True))) + "\n"
                       for row in rows).encode("utf-8", "surrogatepass")
    if fmt == "txt":
        return "".join(t.replace("\n", " ").replace("\r", " ") + "\n"
                       for t, _ in rows).encode("utf-8")
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t" if fmt == "tsv" else ",")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


@contextmanager
def scratch() -> Iterator[Path]:
    """A fresh directory for one generated case (hypothesis reruns a test many times, so
    pytest's per-test tmp_path would be shared by all of them), removed after it."""
    with tempfile.TemporaryDirectory(prefix="sdistill-fuzz-") as directory:
        yield Path(directory)


def write(path: Path, data: bytes, compression: str, cut: float | None) -> Path:
    """The file as it lands on disk, compressed, then cut to a share of its bytes if `cut`
    (a download or a copy that stopped halfway)."""
    if compression == "gz":
        data, path = gzip.compress(data), path.with_name(path.name + ".gz")
    elif compression == "bz2":
        data, path = bz2.compress(data), path.with_name(path.name + ".bz2")
    if cut is not None:
        data = data[:int(len(data) * cut)]
    path.write_bytes(data)
    return path


def expected(rows: list[tuple[str, str]], fmt: str) -> list[tuple[str, str]]:
    """The rows a correct reader keeps: a text with a non-space character and a label."""
    keep = []
    for text, label in rows:
        if fmt == "txt":
            text = text.replace("\n", " ").replace("\r", " ")
        if text.strip() and label.strip():
            keep.append((text, label.strip()))
    return keep


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS, fmt=st.sampled_from(["csv", "tsv", "jsonl"]),
       compression=st.sampled_from(["", "gz", "bz2"]), bom=st.booleans(), crlf=st.booleans(),
       cut=st.none() | st.floats(0.0, 1.0),
       wrong_column=st.sampled_from([False, False, False, True]), ragged=st.booleans())
def test_labelled_files_give_their_rows_or_one_clear_error(rows, fmt, compression, bom, crlf,
                                                            cut, wrong_column, ragged):
    header = ["text", "label"] if not wrong_column else ["txt", "label"]
    data = encode(rows, fmt, header)
    if ragged:  # a stray field (csv/tsv) or stray text (jsonl) at the end of the first row
        first = data.find(b"\n")
        data = data[:first] + b',"x"' + data[first:] if first >= 0 else data
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    if bom:
        data = b"\xef\xbb\xbf" + data
    with scratch() as tmp:
        check_labelled(rows, fmt, write(tmp / f"train.{fmt}", data, compression, cut), tmp,
                       crlf, cut, wrong_column, ragged)


def check_labelled(rows, fmt, path, tmp, crlf, cut, wrong_column, ragged):
    config = {"run": {"dir": str(tmp / "run")}, "data": {"train": {"path": str(path)},
                                                          "max_bad_fraction": 1.0}}
    try:
        got = load_labeled(config_from_dict(config))
    except SDistillError as exc:
        event(f"error: {type(exc).__name__}: " + str(exc).split(str(path))[-1][:45])
        for line in str(exc).splitlines():  # one line per problem, each naming the file
            assert str(path) in line or "data.train" in line, line
        return
    assert not wrong_column  # a missing column is always an error
    pairs = list(zip(got.train.texts, got.train.labels, strict=True))
    event("rows read")
    if cut is None and not crlf and not ragged:  # a BOM is not part of the first row
        assert pairs == expected(rows, fmt)
    else:  # every row read is a row written, unchanged (a cut may end the last one early)
        written = expected(rows, fmt)
        for pair in pairs[:-1] if cut is not None else pairs:
            assert pair in written or (crlf and (pair[0].replace("\r\n", "\n"), pair[1])
                                       in written), pair


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(TEXTS, max_size=12), compression=st.sampled_from(["", "gz", "bz2"]),
       bom=st.booleans(), crlf=st.booleans(), cut=st.none() | st.floats(0.0, 1.0),
       junk=st.none() | st.binary(min_size=1, max_size=40))
def test_text_files_give_their_lines_or_one_clear_error(lines, compression, bom, crlf, cut,
                                                        junk):
    texts = [t.replace("\n", " ").replace("\r", " ") for t in lines]
    data = "".join(t + "\n" for t in texts).encode("utf-8")
    if junk is not None:  # arbitrary bytes (invalid UTF-8, NULs) as a line of their own
        data += junk.replace(b"\n", b" ") + b"\n"
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    if bom:
        data = b"\xef\xbb\xbf" + data
    with scratch() as tmp:
        check_lines(texts, write(tmp / "pool.txt", data, compression, cut), bom, cut, junk)


def check_lines(texts, path, bom, cut, junk):
    from sparse_distill.inference.readers import read_text_file

    try:
        records = list(read_text_file(str(path), "txt"))
    except SDistillError as exc:
        event("error")
        assert "\n" not in str(exc) and str(path) in str(exc), str(exc)
        return
    event("lines read")
    good = [r.text for r in records if r.problem is None]
    assert all(r.problem for r in records if r.text is None)
    if texts and not bom:  # a file's first U+FEFF is its byte-order mark, not text
        texts[0] = texts[0].removeprefix("\ufeff")
    written = [t for t in texts if t.strip()]
    for i, text in enumerate(good):
        last = i == len(good) - 1 and (cut is not None or junk is not None)
        assert text in written or (last and any(w.startswith(text) for w in written)) or (
            last and junk is not None), text
    if cut is None and junk is None:
        assert good == written
