"""Reading labelled and unlabelled text: csv, tsv, jsonl, plain text, parquet, a saved Hugging Face
dataset directory, or a hub dataset name.

Every reader yields `Record`s with the line (or row) number, so that an empty, undecodable or
malformed line is reported with its file and line, then skipped or made fatal by
`data.on_bad_line`. Labels become strings and the label list is sorted once, here.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..files import expand_path, user_path_error
from ..inference.readers import (
    Record,
    format_from_name,
    guarded,
    make_record,
    name_suffixes,
    numbered,
    one_line,
    open_binary,
    open_text,
    read_csv,
    read_jsonl,
    read_txt,
    sniff,
)
from ..inference.tokens import pattern
from .config import Config, SourceConfig

FILE_FORMATS = ("csv", "tsv", "jsonl", "txt", "parquet")
LABELED_ROLES = ("train", "dev", "test")


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
    # data.pool_budget: how the unlabelled texts were chosen ({} when all were kept)
    selection: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "duplicates_removed": self.duplicates,
                "leakage_removed": self.leaked, "sources": [s.as_dict() for s in self.sources],
                **({"selection": self.selection} if self.selection else {})}


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
    found = format_from_name(path)
    if found is not None:
        return found
    if not p.exists() and re.fullmatch(r"[\w.-]+(/[\w.-]+)?", path) and not name_suffixes(path):
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
        with open_text(path) as f:
            header = next(csv.reader(f, delimiter="\t" if fmt == "tsv" else ","), [])
        return [h.strip() for h in header]
    if fmt == "jsonl":
        with open_binary(path) as f:
            for _, raw in numbered(f):
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


def check_sources(cfg: Config) -> list[str]:
    """Every missing file, unreadable format and missing column of the config, one line each."""
    problems = []
    for key, src in cfg.sources():
        role = _role(key)
        try:
            path = expand_path(src.path)
        except KeyError as exc:
            problems.append(str(user_path_error(f"{key}.path", exc)))
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
                                f"the Hugging Face Hub failed ({one_line(exc)}); check the name, "
                                "or download the data and give its local path")
            else:
                problems.append(f"{key}.path: cannot read {path} as {fmt} ({one_line(exc)}); "
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


def _iter_table(columns: Iterable[dict[str, list[Any]]], text_col: str, label_col: str | None,
                decode_label: Callable[[Any], Any]) -> Iterator[Record]:
    row = 0
    for batch in columns:
        labels = batch[label_col] if label_col else [None] * len(batch[text_col])
        for text, label in zip(batch[text_col], labels, strict=True):
            row += 1
            yield make_record(row, text, decode_label(label), label_col, text_col)


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


def iter_records(cfg: Config, key: str, src: SourceConfig) -> tuple[Iterator[Record], str, str]:
    """(records, expanded path, format) of one configured source."""
    path = expand_path(src.path)
    fmt = resolve_format(src, path)
    text_col, label_col = columns_for(cfg, key, src)
    role = _role(key)
    if fmt == "txt":
        records = read_txt(path, text_col, label_col)
    elif fmt == "jsonl":
        records = read_jsonl(path, text_col, label_col)
    elif fmt in ("csv", "tsv"):
        records = read_csv(path, text_col, label_col, "\t" if fmt == "tsv" else ",")
    elif fmt == "parquet":
        records = _read_parquet(path, text_col, label_col)
    else:
        records = _read_hf(src, path, fmt, role, text_col, label_col)
    return guarded(records, path), path, fmt


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
    # Here, not at the top: augmentation needs torch, which reading a config need not load.
    from .augment import augment_texts
    from .select import select

    held_out = {text_key(t) for s in (labeled.dev, labeled.test) if s is not None
                for t in s.texts}
    train_keys = {text_key(t) for t in labeled.train.texts}
    seen = set(train_keys)

    def admit(text: str, counts: PoolStats) -> bool:
        key = text_key(text)
        if key in held_out:
            counts.leaked += 1
        elif key in seen:
            counts.duplicates += 1
        else:
            seen.add(key)
            counts.kept += 1
            return True
        return False

    def unlabeled(counts: PoolStats) -> Iterator[str]:
        """One pass over data.unlabeled, de-duplicated and guarded, counted in `counts`."""
        seen.clear()
        seen.update(train_keys)
        for i, src in enumerate(cfg.data.unlabeled):
            for text, _ in iter_texts(cfg, f"data.unlabeled[{i}]", src, counts.sources):
                if admit(text, counts):
                    yield text

    d = cfg.data
    if d.pool_budget is None:
        yield from unlabeled(stats)
    else:
        passes: list[PoolStats] = []

        def one_pass() -> Iterator[str]:
            passes.append(PoolStats())
            return unlabeled(passes[-1])

        chosen = select(one_pass, labeled.train.texts, d.pool_budget, d.pool_select,
                        cfg.run.seed,
                        pattern(cfg.vocab.token_rule(labeled.train.texts),
                                cfg.vocab.token_pattern),
                        cfg.vocab.lowercase)
        last = passes[-1]  # every pass reads the same texts: the last one's counts stand
        stats.sources, stats.duplicates, stats.leaked = last.sources, last.duplicates, last.leaked
        stats.kept = len(chosen)
        stats.selection = {"rule": d.pool_select, "budget": d.pool_budget,
                           "candidates": last.kept, "dropped": last.kept - len(chosen)}
        yield from chosen
    aug = cfg.data.augment
    if aug.copies > 0:
        source = SourceStats(key="data.augment", path=f"{aug.copies} perturbed copies of train",
                             format="augment")
        stats.sources.append(source)
        for text in augment_texts(labeled.train.texts, aug, cfg.run.seed):
            source.read += 1
            if admit(text, stats):
                source.kept += 1
                yield text
