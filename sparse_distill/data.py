"""Reading labelled and unlabelled text: csv, tsv, jsonl, plain text, parquet, a saved Hugging Face
dataset directory, or a hub dataset name.

Every reader yields `Record`s with the line (or row) number, so that an empty, undecodable or
malformed line is reported with its file and line, then skipped or made fatal by
`data.on_bad_line`. Labels become strings and the label list is sorted once, here.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import gzip
import hashlib
import io
import itertools
import json
import re
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .config import Config, SourceConfig, expand_path
from .errors import DataError

SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                  ".txt": "txt", ".parquet": "parquet"}
COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open}
FILE_FORMATS = ("csv", "tsv", "jsonl", "txt", "parquet")
LABELED_ROLES = ("train", "dev", "test")
# csv's default field limit (128 KiB) is below the length of some real documents.
csv.field_size_limit(2**31 - 1)


@dataclass
class Record:
    line: int
    text: str | None
    label: str | None
    problem: str | None = None


@dataclass
class SourceStats:
    """What reading one source did: counts for the manifest, and the first bad lines to show."""

    key: str
    path: str
    format: str
    read: int = 0
    kept: int = 0
    bad: int = 0
    bad_examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "path": self.path, "format": self.format, "read": self.read,
                "kept": self.kept, "bad": self.bad, "bad_examples": self.bad_examples}


@dataclass
class Split:
    name: str
    texts: list[str]
    labels: list[str]
    stats: SourceStats


@dataclass
class LabeledData:
    train: Split
    dev: Split | None
    test: Split | None
    labels: list[str]

    def splits(self) -> list[Split]:
        return [s for s in (self.train, self.dev, self.test) if s is not None]


@dataclass
class PoolStats:
    """Counts of the unlabelled pool after de-duplication and the leakage guard."""

    sources: list[SourceStats] = field(default_factory=list)
    kept: int = 0
    duplicates: int = 0  # repeated within the pool, or already a training text
    leaked: int = 0  # also in dev or test: removed, never soft-labelled

    def as_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "duplicates_removed": self.duplicates,
                "leakage_removed": self.leaked, "sources": [s.as_dict() for s in self.sources]}


# ---------------------------------------------------------------------------------------------
# Formats and columns


def label_sort_key(label: str) -> tuple[int, float, str]:
    """Numeric labels sort as numbers ("2" before "10"), others alphabetically."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def resolve_format(src: SourceConfig, path: str) -> str:
    """The format of a source: explicit, a dataset directory, a file suffix, or a hub name."""
    if src.format != "auto":
        return src.format
    p = Path(path)
    if p.is_dir():
        return "hf"
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED:
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[suffixes[-1]]
    if not p.exists() and re.fullmatch(r"[\w.-]+(/[\w.-]+)?", path) and not suffixes:
        return "hub"
    return "unknown"


def _role(key: str) -> str:
    """'data.unlabeled[2]' -> 'unlabeled'."""
    return key.split(".")[1].split("[")[0]


def columns_for(cfg: Config, key: str, src: SourceConfig) -> tuple[str, str | None]:
    """(text column, label column or None): unset names fall back to train's, then text/label."""
    train = cfg.data.train
    text = src.text or train.text or "text"
    if _role(key) == "unlabeled":
        return text, None
    return text, src.label or train.label or "label"


def _open_binary(path: str) -> Any:
    if path == "-":  # stdin, left open for the caller
        return contextlib.nullcontext(sys.stdin.buffer)
    opener = COMPRESSED.get(Path(path).suffix.lower())
    return opener(path, "rb") if opener else open(path, "rb")  # type: ignore[operator]


def _open_text(path: str) -> IO[str]:
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


def _numbered(f: Any) -> Iterator[tuple[int, bytes]]:
    """A binary file's lines numbered from 1, without a byte-order mark at the start (Windows
    tools write one; it would otherwise make the first line bad JSON). Built of C iterators: a
    Python generator here costs ~4% of a jsonl reader's throughput."""
    first = f.readline()
    return enumerate(itertools.chain((first.removeprefix(BOM),) if first else (), f), 1)


def _undecodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _hf_dataset(src: SourceConfig, path: str, fmt: str, role: str) -> Any:
    """A `datasets.Dataset` for one split of a saved dataset directory or a hub dataset."""
    import datasets

    if fmt == "hf":
        ds = datasets.load_from_disk(path)
    else:
        ds = datasets.load_dataset(path, name=src.subset)
    if isinstance(ds, datasets.DatasetDict):
        defaults = {"train": ["train"], "dev": ["validation", "dev", "valid"], "test": ["test"],
                    "unlabeled": ["unsupervised", "unlabeled", "train"]}[role]
        wanted = [src.split] if src.split else defaults
        for name in wanted:
            if name in ds:
                return ds[name]
        raise DataError(f"{path}: no split {' or '.join(map(repr, wanted))} "
                        f"(splits: {', '.join(ds)}); set the source's split: to one of them")
    return ds


def _hub_columns(src: SourceConfig, path: str) -> list[str]:
    import datasets

    builder = datasets.load_dataset_builder(path, name=src.subset)
    return list(builder.info.features or {})


def peek_columns(src: SourceConfig, path: str, fmt: str, role: str) -> list[str] | None:
    """Column names of a source without reading it all (None for plain text)."""
    if fmt == "txt":
        return None
    if fmt in ("csv", "tsv"):
        with _open_text(path) as f:
            header = next(csv.reader(f, delimiter="\t" if fmt == "tsv" else ","), [])
        return [h.strip() for h in header]
    if fmt == "jsonl":
        with _open_binary(path) as f:
            for _, raw in _numbered(f):
                try:
                    obj = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    continue
                if isinstance(obj, dict):
                    return list(obj)
        return []
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if fmt == "hf":
        return list(_hf_dataset(src, path, fmt, role).column_names)
    return _hub_columns(src, path)


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
        with _open_binary(path) as f:
            try:
                head = f.read(4096)
            except (OSError, EOFError) as exc:
                return (f"is not valid {Path(path).suffix.lstrip('.')} data ({_one_line(exc)}); "
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


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def check_sources(cfg: Config) -> list[str]:
    """Every missing file, unreadable format and missing column of the config, one line each."""
    problems = []
    for key, src in cfg.sources():
        role = _role(key)
        try:
            path = expand_path(src.path)
        except KeyError as exc:
            problems.append(f"{key}.path: environment variable ${exc.args[0]} is not set; "
                            "set it or write the path out")
            continue
        fmt = resolve_format(src, path)
        text_col, label_col = columns_for(cfg, key, src)
        if fmt in (*FILE_FORMATS, "hf") and not Path(path).exists():
            hint = ("; fetch it with `sdistill data fetch NAME` (see `sdistill data list`)"
                    if "SDISTILL_CACHE" in src.path else "; fix the path (relative paths are "
                    "read from the current directory)")
            problems.append(f"{key}.path: file not found: {path}{hint}")
            continue
        if fmt == "unknown":
            problems.append(f"{key}.format: cannot tell the format of {path} from its name; set "
                            f"{key}.format to one of {', '.join(FILE_FORMATS)}, hf, hub")
            continue
        if fmt == "txt" and label_col is not None:
            problems.append(f"{key}.path: {path} is plain text, which has no label column; give "
                            "labelled data as csv, tsv, jsonl, parquet or a dataset")
            continue
        looks = sniff(path, fmt) if fmt in ("txt", "jsonl", "csv", "tsv") else None
        if looks:  # before its columns: "column 'text' not found" would suggest the wrong fix
            problems.append(f"{key}.path: {path} {looks}")
            continue
        try:
            columns = peek_columns(src, path, fmt, role)
        except DataError as exc:
            problems.append(f"{key}.split: {exc}")
            continue
        except Exception as exc:  # any reader failure becomes a config problem, not a traceback
            if fmt == "hub":
                problems.append(f"{key}.path: {path!r} is not a local file, and loading it from "
                                f"the Hugging Face Hub failed ({_one_line(exc)}); check the name, "
                                "or download the data and give its local path")
            else:
                problems.append(f"{key}.path: cannot read {path} as {fmt} ({_one_line(exc)}); "
                                f"fix the file or set {key}.format")
            continue
        if columns is None:
            continue
        if fmt == "jsonl" and not columns:  # "columns: none" would suggest renaming one
            problems.append(f"{key}.path: {path} has no line that is a JSON object; check that "
                            "this is the right file, or set its format")
            continue
        shown = ", ".join(columns) or "none"
        for what, col in (("text", text_col), ("label", label_col)):
            if col is not None and col not in columns:
                inherited = (key != "data.train" and getattr(src, what) is None
                             and getattr(cfg.data.train, what) is not None)
                origin = f" (taken from data.train.{what})" if inherited else ""
                problems.append(f"{key}.{what}: column {col!r}{origin} not found in {path} "
                                f"(columns: {shown}); set {key}.{what} to one of them")
    return problems


# ---------------------------------------------------------------------------------------------
# Readers: each yields Records with line numbers


EMPTY_TEXT = "empty text"


def not_utf8(exc: UnicodeDecodeError) -> str:
    return f"not valid UTF-8 (byte {exc.start})"


def _record(line: int, text: Any, label: Any, label_col: str | None, text_col: str) -> Record:
    if text is None:
        return Record(line, None, None, f"no {text_col!r} field")
    if not isinstance(text, str):
        return Record(line, None, None, f"{text_col!r} is not a string ({text!r})")
    if _undecodable(text):
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
    if _undecodable(label):
        return Record(line, None, None, "label is not valid UTF-8")
    return Record(line, text, label)


def _read_txt(path: str, text_col: str, label_col: str | None) -> Iterator[Record]:
    with _open_binary(path) as f:
        for line, raw in _numbered(f):
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                yield Record(line, None, None, not_utf8(exc))
                continue
            yield _record(line, text, None, None, text_col)


def read_txt_batches(path: str, size: int) -> Iterator[tuple[list[int], list[str], list[Record]]]:
    """A txt file (or stdin, "-"), one text a line, in batches of `size` lines: (the good lines'
    numbers, their texts, the bad lines as Records). The checks of `read_text_file`, without a
    Record for every good line: for `predict` on millions of lines."""
    numbers: list[int] = []
    texts: list[str] = []
    bad: list[Record] = []
    line = 0
    with _open_binary(path) as f, _cut_short(path, lambda: line):
        for line, raw in _numbered(f):
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


def _read_jsonl(path: str, text_col: str, label_col: str | None) -> Iterator[Record]:
    with _open_binary(path) as f:
        for line, raw in _numbered(f):
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
            yield _record(line, obj.get(text_col), label, label_col, text_col)


def _read_csv(path: str, text_col: str, label_col: str | None, delimiter: str
              ) -> Iterator[Record]:
    with _open_text(path) as f:
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
            yield _record(line, row[ti], row[li] if li is not None else None, label_col, text_col)


def _iter_table(columns: Iterable[dict[str, list[Any]]], text_col: str, label_col: str | None,
                decode_label: Callable[[Any], Any]) -> Iterator[Record]:
    row = 0
    for batch in columns:
        labels = batch[label_col] if label_col else [None] * len(batch[text_col])
        for text, label in zip(batch[text_col], labels, strict=True):
            row += 1
            yield _record(row, text, decode_label(label), label_col, text_col)


def _read_parquet(path: str, text_col: str, label_col: str | None) -> Iterator[Record]:
    import pyarrow.parquet as pq

    cols = [text_col] + ([label_col] if label_col else [])
    batches = (b.to_pydict() for b in pq.ParquetFile(path).iter_batches(columns=cols))
    yield from _iter_table(batches, text_col, label_col, lambda x: x)


def _read_hf(src: SourceConfig, path: str, fmt: str, role: str, text_col: str,
             label_col: str | None) -> Iterator[Record]:
    import datasets

    ds = _hf_dataset(src, path, fmt, role)
    feature = ds.features.get(label_col) if label_col else None
    # Class-label features store ints; the data's own names are the labels users expect.
    names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    cols = [text_col] + ([label_col] if label_col else [])
    batches = ds.select_columns(cols).iter(batch_size=1000)

    def decode(x: Any) -> Any:
        return names[x] if names is not None and isinstance(x, int) and x >= 0 else x

    yield from _iter_table(batches, text_col, label_col, decode)


@contextlib.contextmanager
def _cut_short(path: str, last_line: Callable[[], int]) -> Iterator[None]:
    """A file that stops being readable partway (compressed data cut short or damaged, an I/O
    error) as one DataError naming it and the last line read."""
    try:
        yield
    except (EOFError, OSError, zlib.error, csv.Error) as exc:
        raise DataError(f"{path}: cannot read past line {last_line():,} ({_one_line(exc)}); the "
                        "file is cut short or damaged: fetch or write it again") from None


def _guarded(records: Iterator[Record], path: str) -> Iterator[Record]:
    """`records`, through `_cut_short`."""
    last = 0
    with _cut_short(path, lambda: last):
        for rec in records:
            last = rec.line
            yield rec


def read_text_file(path: str, fmt: str, text_col: str = "text") -> Iterator[Record]:
    """Stream the texts of a txt, jsonl, csv or tsv file (no labels), bad lines included."""
    if fmt == "txt":
        return _guarded(_read_txt(path, text_col, None), path)
    if fmt == "jsonl":
        return _guarded(_read_jsonl(path, text_col, None), path)
    if fmt in ("csv", "tsv"):
        return _guarded(_read_csv(path, text_col, None, "\t" if fmt == "tsv" else ","), path)
    raise DataError(f"{path}: cannot read texts from a {fmt!r} file; use txt, jsonl, csv or tsv")


def iter_records(cfg: Config, key: str, src: SourceConfig) -> tuple[Iterator[Record], str, str]:
    """(records, expanded path, format) of one configured source."""
    path = expand_path(src.path)
    fmt = resolve_format(src, path)
    text_col, label_col = columns_for(cfg, key, src)
    role = _role(key)
    if fmt == "txt":
        records = _read_txt(path, text_col, label_col)
    elif fmt == "jsonl":
        records = _read_jsonl(path, text_col, label_col)
    elif fmt in ("csv", "tsv"):
        records = _read_csv(path, text_col, label_col, "\t" if fmt == "tsv" else ",")
    elif fmt == "parquet":
        records = _read_parquet(path, text_col, label_col)
    else:
        records = _read_hf(src, path, fmt, role, text_col, label_col)
    return _guarded(records, path), path, fmt


def iter_texts(cfg: Config, key: str, src: SourceConfig, stats_out: list[SourceStats]
               ) -> Iterator[tuple[str, str | None]]:
    """(text, label) of the good records of one source; bad ones are counted, or fatal."""
    records, path, fmt = iter_records(cfg, key, src)
    stats = SourceStats(key=key, path=path, format=fmt)
    stats_out.append(stats)
    where = "row" if fmt in ("parquet", "hf", "hub") else "line"
    for rec in records:
        stats.read += 1
        if rec.problem is not None:
            msg = f"{path}:{rec.line}: {rec.problem}" if where == "line" else \
                f"{path}: row {rec.line}: {rec.problem}"
            if cfg.data.on_bad_line == "error":
                raise DataError(f"{msg}; fix the {where}, or set data.on_bad_line: skip to skip "
                                f"bad {where}s")
            stats.bad += 1
            if len(stats.bad_examples) < 20:
                stats.bad_examples.append(msg)
            continue
        stats.kept += 1
        yield rec.text, rec.label  # type: ignore[misc]
    limit = cfg.data.max_bad_fraction
    if stats.bad and stats.bad > limit * stats.read:
        first = "; ".join(m.removeprefix(f"{path}:") for m in stats.bad_examples[:3])
        raise DataError(
            f"{path}: {stats.bad:,} of {stats.read:,} {where}s are bad "
            f"({stats.bad / stats.read:.1%}, above data.max_bad_fraction {limit:.1%}), first: "
            f"{first}; fix or replace the file, or raise data.max_bad_fraction to accept it")


def read_split(cfg: Config, name: str) -> Split | None:
    src = getattr(cfg.data, name)
    if src is None:
        return None
    stats: list[SourceStats] = []
    pairs = list(iter_texts(cfg, f"data.{name}", src, stats))
    texts = [t for t, _ in pairs]
    labels = [lab for _, lab in pairs]
    if not texts:
        raise DataError(f"data.{name}: {stats[0].path} has no usable rows "
                        f"({stats[0].bad} bad lines); check the file and its columns")
    return Split(name, texts, labels, stats[0])  # type: ignore[arg-type]


def load_labeled(cfg: Config) -> LabeledData:
    """Train, dev and test with a sorted label list; a dev/test label unseen in train is an
    error."""
    train = read_split(cfg, "train")
    assert train is not None  # data.train is required by the config schema
    labels = sorted(set(train.labels), key=label_sort_key)
    known = set(labels)
    dev, test = read_split(cfg, "dev"), read_split(cfg, "test")
    problems = []
    for split in (dev, test):
        if split is None:
            continue
        unseen = sorted(set(split.labels) - known, key=label_sort_key)
        if unseen:
            problems.append(f"data.{split.name}: label(s) {', '.join(map(repr, unseen))} in "
                            f"{split.stats.path} do not occur in the training data (labels: "
                            f"{', '.join(labels)}); fix the labels or add training examples")
    if problems:
        raise DataError("\n".join(problems))
    return LabeledData(train, dev, test, labels)


def text_key(text: str) -> bytes:
    """Identity of a text for de-duplication and the leakage guard: case and spacing ignored."""
    return hashlib.blake2b(" ".join(text.casefold().split()).encode("utf-8", "surrogatepass"),
                           digest_size=8).digest()


def iter_pool(cfg: Config, labeled: LabeledData, stats: PoolStats) -> Iterator[str]:
    """The unlabelled texts, then the augmented copies of train (data.augment), de-duplicated,
    without any text of train, dev or test.

    Streams: memory is one 8-byte key per kept text, whatever the pool's size.
    """
    from .augment import augment_texts

    held_out = {text_key(t) for s in (labeled.dev, labeled.test) if s is not None
                for t in s.texts}
    seen = {text_key(t) for t in labeled.train.texts}

    def admit(text: str) -> bool:
        key = text_key(text)
        if key in held_out:
            stats.leaked += 1
        elif key in seen:
            stats.duplicates += 1
        else:
            seen.add(key)
            stats.kept += 1
            return True
        return False

    for i, src in enumerate(cfg.data.unlabeled):
        for text, _ in iter_texts(cfg, f"data.unlabeled[{i}]", src, stats.sources):
            if admit(text):
                yield text
    aug = cfg.data.augment
    if aug.copies > 0:
        source = SourceStats(key="data.augment", path=f"{aug.copies} perturbed copies of train",
                             format="augment")
        stats.sources.append(source)
        for text in augment_texts(labeled.train.texts, aug, cfg.run.seed):
            source.read += 1
            if admit(text):
                source.kept += 1
                yield text
