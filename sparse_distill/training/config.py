"""The config's schema: one typed dataclass per section, built and range-checked from plain data.

Every stage reads its own section plus the shared ones (run, data). Reading the YAML file,
`--set` overrides and the checks of the data files are `sparse_distill.stages.config`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..files import expand_path
from ..inference.tokens import COMPILED_PATTERNS, DEFAULT_TOKEN_PATTERN, unspaced_share

# vocab.tokens: auto splits unspaced scripts when at least this share of the training texts hold
# one of their characters: a task in such a language (nearly every text), not an English one
# with a stray name in Chinese.
AUTO_SCRIPTS_SHARE = 0.01


def _range(**bounds: float) -> dict[str, float]:
    """Field metadata for range checks: ge, gt, le, lt."""
    return dict(bounds)


@dataclass
class RunConfig:
    dir: str = "runs/default"
    seed: int = field(default=13, metadata=_range(ge=0))
    device: str = "auto"

    def _check(self) -> list[tuple[str, str]]:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            return [("device", f"expected auto, cpu, cuda, cuda:N or mps, got {self.device!r}")]
        return []


@dataclass
class SourceConfig:
    """One data source: a file, a saved Hugging Face dataset directory, or a hub dataset name."""

    path: str
    # Column names; when left out, dev/test/unlabelled sources use train's, and train uses
    # "text" / "label".
    text: str | None = None
    label: str | None = None
    format: Literal["auto", "csv", "tsv", "jsonl", "txt", "parquet", "hf", "hub"] = "auto"
    # For Hugging Face datasets: which split, and which configuration (subset) of a hub dataset.
    split: str | None = None
    subset: str | None = None


@dataclass
class AugmentConfig:
    """Perturbed copies of the training texts added to the pool (training.augment)."""

    copies: int = field(default=0, metadata=_range(ge=0))
    drop_prob: float = field(default=0.1, metadata=_range(ge=0.0, le=1.0))
    replace_prob: float = field(default=0.1, metadata=_range(ge=0.0, le=1.0))
    window_prob: float = field(default=0.25, metadata=_range(ge=0.0, le=1.0))
    window_min: int = field(default=1, metadata=_range(ge=1))
    window_max: int = field(default=5, metadata=_range(ge=1))
    # A word replaced by one of its `neighbours` nearest words in neighbour_model's input
    # embeddings (a model folder or hub id; the teacher's model is the natural choice).
    neighbour_prob: float = field(default=0.0, metadata=_range(ge=0.0, le=1.0))
    neighbour_model: str | None = None
    neighbours: int = field(default=10, metadata=_range(ge=1))
    # The copy continues with the end of another training text (cut points drawn at random).
    splice_prob: float = field(default=0.0, metadata=_range(ge=0.0, le=1.0))

    def _check(self) -> list[tuple[str, str]]:
        problems = []
        total = self.drop_prob + self.replace_prob + self.neighbour_prob
        if total > 1.0:
            problems.append(("replace_prob", "drop_prob + replace_prob + neighbour_prob must be "
                             f"<= 1, got {total:g}"))
        if self.neighbour_prob > 0 and not self.neighbour_model:
            problems.append(("neighbour_model", "needed when neighbour_prob > 0; set it to the "
                             "teacher's model, e.g. $SDISTILL_CACHE/models/minilm"))
        if self.window_max < self.window_min:
            problems.append(("window_max", f"must be >= window_min ({self.window_min}), got "
                             f"{self.window_max}"))
        return problems


@dataclass
class DataConfig:
    train: SourceConfig
    dev: SourceConfig | None = None
    test: SourceConfig | None = None
    unlabeled: list[SourceConfig] = field(default_factory=list)
    # An empty, undecodable or malformed line: skip it (counted and reported), or stop.
    on_bad_line: Literal["skip", "error"] = "skip"
    # Skipping stops being silent above this share of a source's lines: more bad lines than
    # that is a wrong or truncated file, and the stage stops before writing anything.
    max_bad_fraction: float = field(default=0.01, metadata=_range(ge=0.0, le=1.0))
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Label at most this many unlabelled texts (None: all of them), chosen by pool_select:
    # cross-entropy (the texts whose words are likelier under the training texts than under
    # the pool, Moore & Lewis 2010) or random (training.select). The perturbed copies of train
    # come on top.
    pool_budget: int | None = field(default=None, metadata=_range(ge=1))
    pool_select: Literal["cross-entropy", "random"] = "cross-entropy"


@dataclass
class VocabConfig:
    ngram_range: list[int] = field(default_factory=lambda: [1, 4])
    # The table's rows: the smallest count where dev stopped rising (rt: 300k 0.8047, 500k
    # 0.8141, 700k 0.8149, 1M 0.8157; trec: 300k 0.8679, 500k 0.8661, 1M 0.8661;
    # benchmarks/sweeps), so that the student stage at the default width fits a 4 GiB machine
    # (500k: rt 2.60, trec 2.27 GiB peak; 1M: 4.1-4.6). The shipped configs keep 1M.
    max_features: int | None = field(default=500_000, metadata=_range(ge=1))
    min_df: int = field(default=1, metadata=_range(ge=1))
    max_df: float = field(default=1.0, metadata=_range(gt=0.0, le=1.0))
    lowercase: bool = True
    token_pattern: str = DEFAULT_TOKEN_PATTERN
    # The token rule (inference.tokens). words: token_pattern alone (a Chinese clause is one
    # token). scripts: every character of a script written without spaces is a token. auto:
    # scripts where at least AUTO_SCRIPTS_SHARE of the training texts hold such a character,
    # words otherwise (or with a token_pattern of one's own). The two differ only on those
    # characters; a few of them in an English pool (WikiText's Japanese titles) would change a
    # few hundred of 1M n-grams, so an English task keeps the vocabulary it had.
    tokens: Literal["auto", "words", "scripts"] = "auto"
    # Unicode normalisation of every text before it is tokenised (vocabulary, featuriser):
    # nfkc makes full-width and half-width forms one (ＡＢＣ / ABC, ｶ / カ).
    normalize: Literal["none", "nfkc"] = "none"
    # Bounded memory: when more distinct n-grams than this are held while counting, the rarest are
    # pruned (recorded in the manifest; the vocabulary is exact when no pruning happened).
    max_candidates: int = field(default=20_000_000, metadata=_range(ge=1000))
    # Texts counted between two checks of max_candidates (and two progress updates); with a
    # token pattern other than the default, their n-grams are held as strings meanwhile.
    chunk_size: int = field(default=2_000, metadata=_range(ge=1))

    def _check(self) -> list[tuple[str, str]]:
        problems = []
        lo_hi = self.ngram_range
        if len(lo_hi) != 2 or not 1 <= lo_hi[0] <= lo_hi[1]:
            problems.append(("ngram_range", f"expected [min_n, max_n] with 1 <= min_n <= max_n, "
                                            f"got {lo_hi!r}"))
        try:
            compiled = re.compile(self.token_pattern)
            if compiled.groups > 1:
                problems.append(("token_pattern", "more than one capturing group; use (?:...) "
                                                  "for the others"))
        except re.error as exc:
            problems.append(("token_pattern", f"not a valid regular expression ({exc})"))
        if self.tokens == "scripts" and self.token_pattern not in COMPILED_PATTERNS:
            problems.append(("tokens", "'scripts' is a rule of its own and takes no "
                                       "token_pattern; drop vocab.token_pattern or set "
                                       "vocab.tokens: words"))
        return problems

    def token_rule(self, train: Iterable[str] = ()) -> str:
        """The rule `tokens` resolves to for these training texts: "words" or "scripts"."""
        if self.tokens != "auto":
            return self.tokens
        if self.token_pattern in COMPILED_PATTERNS and unspaced_share(train) >= AUTO_SCRIPTS_SHARE:
            return "scripts"
        return "words"


@dataclass
class TeacherConfig:
    # A local model directory or a Hugging Face Hub id (online only).
    model: str = "roberta-large"
    finetune: bool = True
    epochs: int = field(default=3, metadata=_range(ge=1))
    # 2e-5: the paper's (RoBERTa-large). auto: 2e-5 x 1024 / the encoder's hidden width
    # (training.teacher.teacher_lr), 5.3e-5 for MiniLM: its teacher's dev rose on trec (+2.8
    # points) and rt (+1.3) but collapsed on R8 (0.8689 against 0.9617, macro-F1 0.41 against
    # 0.79; benchmarks/teacher-lr.md), so it is an option, not the default.
    lr: float | Literal["auto"] = field(default=2.0e-5, metadata=_range(gt=0.0))
    batch_size: int = field(default=32, metadata=_range(ge=1))
    grad_accum: int = field(default=1, metadata=_range(ge=1))
    warmup_ratio: float = field(default=0.06, metadata=_range(ge=0.0, lt=1.0))
    weight_decay: float = field(default=0.01, metadata=_range(ge=0.0))
    max_length: int = field(default=256, metadata=_range(ge=8))
    # A text longer than max_length word pieces is read as up to this many windows of
    # max_length, spread over it, and labelled with the mean of their logits (1: truncate).
    max_windows: int = field(default=1, metadata=_range(ge=1))
    # auto: bf16 where the device computes it natively (CUDA, or a CPU with AVX512-BF16 / AMX),
    # else fp32 (fp16 on CUDA without bf16). Training uses train_precision.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    train_precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    label_batch_size: int = field(default=128, metadata=_range(ge=1))
    # Texts per soft-label shard: the unit of resumption and of work split across processes.
    shard_size: int = field(default=20_000, metadata=_range(ge=1))
    sort_by_length: bool = True
    # For a classifier loaded with finetune: false, its label names -> the data's labels.
    label_map: dict[str, str] = field(default_factory=dict)
    trust_remote_code: bool = False
    # Weights of the classes in fine-tuning's cross-entropy (training.losses.class_weights):
    # null (every text alike), balanced (n / (k x the class's count), rare classes count
    # more), or a mapping label -> weight (labels not named: 1).
    class_weight: Literal["balanced"] | dict[str, float] | None = None


@dataclass
class DistillConfig:
    # auto: 10 passes over the teacher-labelled corpus, at most 100,000 (student.AUTO_PASSES).
    steps: int | Literal["auto"] = field(default="auto", metadata=_range(ge=1))
    batch_size: int = field(default=2048, metadata=_range(ge=1))
    lr: float = field(default=5.0e-4, metadata=_range(gt=0.0))
    temperature: float = field(default=1.0, metadata=_range(gt=0.0))
    # kl: KL on the temperature-softened distributions (the paper); mse: squared error on the
    # logits (Tang et al. 2019), which ignores the temperature.
    loss: Literal["kl", "mse"] = "kl"
    # Weight of cross-entropy on gold labels (rows that have one) beside the KL term.
    alpha: float = field(default=0.0, metadata=_range(ge=0.0, le=1.0))
    warmup_ratio: float = field(default=0.05, metadata=_range(ge=0.0, lt=1.0))
    schedule: Literal["linear", "polynomial", "constant"] = "linear"
    # auto: every half pass over the corpus.
    eval_every: int | Literal["auto"] = field(default="auto", metadata=_range(ge=1))
    # Stop after this many evaluations without a better dev accuracy (0: never stop early).
    patience: int = field(default=4, metadata=_range(ge=0))


@dataclass
class FinetuneConfig:
    # 0 switches fine-tuning on gold labels off.
    epochs: int = field(default=10, metadata=_range(ge=0))
    batch_size: int = field(default=32, metadata=_range(ge=1))
    # 3e-4: of 1e-4 / 3e-4 / 1e-3, the rate whose worst shortfall on dev against the best of
    # the three is smallest over six sets (0.9 points, against 10.7 for 1e-4, which left a
    # student distilled from a far pool where it was on R8, and 1.6 for 1e-3, which undid rt's
    # distillation; benchmarks/sweeps/*-finetune-lr.md).
    lr: float = field(default=3.0e-4, metadata=_range(gt=0.0))
    # Epochs without a better dev accuracy before stopping (0: never stop early).
    patience: int = field(default=3, metadata=_range(ge=0))
    # As teacher.class_weight, for the student's cross-entropy on the gold labels.
    class_weight: Literal["balanced"] | dict[str, float] | None = None


@dataclass
class StudentConfig:
    # CPU-sized: dev stopped rising at d 256 (trec: d 512 0.8661 = d 256 0.8661, the sweep; rt:
    # d 1000 0.8000 against d 256 0.7976-0.8047, benchmarks/HISTORY.md), where the paper's
    # 1000 needs 4x the memory (configs/paper-gpu.yaml keeps it).
    embedding_dim: int = field(default=256, metadata=_range(ge=1))
    hidden_dims: list[int] = field(default_factory=lambda: [256])
    pooling: Literal["mean", "sum", "max"] = "mean"
    activation: Literal["relu", "tanh"] = "relu"
    dropout: float = field(default=0.1, metadata=_range(ge=0.0, lt=1.0))
    # The MLP's precision on CUDA (auto: bf16 where supported); the table stays float32.
    dense_precision: Literal["auto", "fp32", "bf16"] = "auto"
    # The table's starting rows: each n-gram's words as the teacher's encoder sees them
    # (training.embed_init), or random (the paper). teacher: dev was higher with it on all three
    # data sets tried (rt, trec, 20ng; benchmarks/HISTORY.md), for about a minute.
    init: Literal["random", "teacher"] = "teacher"
    # Hashed rows after the vocabulary's for what it lacks (fastText's buckets; 0: none, as in
    # the paper): its unseen word n-grams (bucket_ngrams) and the character n-grams, of lengths
    # subwords = [min, max] ([] for none), of its unseen words (inference.featurize.Unseen).
    buckets: int = field(default=0, metadata=_range(ge=0))
    # "Wide and deep": n_classes more columns a row, pooled with the rest and added to the
    # MLP's logits, a linear model over the same n-grams (inference.network.SparseDAN).
    wide: bool = False
    bucket_ngrams: bool = True
    subwords: list[int] = field(default_factory=lambda: [3, 5])
    # Fit a temperature on dev after training (training.calibration), kept in student.json and
    # used by predict_proba / `sdistill predict`: probabilities that say how often the student
    # is right. Labels are unchanged by it. Without dev there is nothing to fit: T stays 1.
    calibrate: bool = True
    # The student stage's own seed (None: run.seed). Students of several seeds can then share
    # one teacher, whose labels depend on run.seed: the benchmark's seed rows are made so.
    seed: int | None = field(default=None, metadata=_range(ge=0))
    distill: DistillConfig = field(default_factory=DistillConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def _check(self) -> list[tuple[str, str]]:
        bad = [d for d in self.hidden_dims if d < 1]
        errors = [("hidden_dims", f"every size must be >= 1, got {bad[0]}")] if bad else []
        if self.subwords and not (len(self.subwords) == 2
                                  and 1 <= self.subwords[0] <= self.subwords[1] <= 20):
            errors.append(("subwords", "must be [min, max] character n-gram lengths with "
                           f"1 <= min <= max <= 20, or [] for none; got {self.subwords}"))
        if self.buckets and not self.bucket_ngrams and not self.subwords:
            errors.append(("buckets", "nothing would go to the buckets: set "
                           "student.bucket_ngrams: true or student.subwords, or buckets: 0"))
        return errors


@dataclass
class EvalConfig:
    splits: list[Literal["train", "dev", "test"]] = field(default_factory=lambda: ["dev", "test"])
    # Speed: texts of the test split (else dev) timed at each batch size, median of `repeats`.
    speed_texts: int = field(default=1000, metadata=_range(ge=1))
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32, 128, 1024])
    repeats: int = field(default=3, metadata=_range(ge=1))


# Compatibility of config hashes: each (section, key, value) is left out of its section's hash
# at that value, which is what run directories made before the key existed did, so that they
# stay up to date.
HASHED_ONLY_WHEN_SET = [("student", "init", "random"), ("teacher", "max_windows", 1),
               ("data", "augment.neighbour_prob", 0.0), ("data", "augment.neighbour_model", None),
               ("data", "augment.neighbours", 10), ("data", "augment.splice_prob", 0.0),
               ("student", "buckets", 0), ("student", "bucket_ngrams", True),
               ("student", "subwords", [3, 5]), ("data", "max_bad_fraction", 0.01),
               ("student", "seed", None), ("student", "distill.loss", "kl"),
               ("student", "wide", False), ("data", "pool_budget", None),
               ("data", "pool_select", "cross-entropy"), ("vocab", "tokens", "auto"),
               ("vocab", "normalize", "none"), ("student", "calibrate", True),
               ("teacher", "class_weight", None), ("student", "finetune.class_weight", None)]


@dataclass
class Config:
    data: DataConfig
    run: RunConfig = field(default_factory=RunConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def sources(self) -> list[tuple[str, SourceConfig]]:
        """Every configured data source with its dotted key, train first."""
        out = [("data.train", self.data.train)]
        out += [(f"data.{s}", src) for s in ("dev", "test")
                if (src := getattr(self.data, s)) is not None]
        out += [(f"data.unlabeled[{i}]", src) for i, src in enumerate(self.data.unlabeled)]
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section_hash(self, *sections: str) -> str:
        """sha256 of the named sections (canonical JSON): what a stage's output depends on."""
        payload = {name: dataclasses.asdict(getattr(self, name)) for name in sections}
        # Without copies the augmentation settings change nothing, and runs made before
        # data.augment existed hashed none: left out, they stay up to date.
        if "data" in payload and self.data.augment.copies == 0:
            del payload["data"]["augment"]
        for section, key, default in HASHED_ONLY_WHEN_SET:
            *parents, name = key.split(".")
            if section not in payload:
                continue
            node = payload[section]
            for parent in parents:
                node = node.get(parent, {})
            if name in node and node[name] == default:
                del node[name]
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def run_dir(self) -> Path:
        return Path(expand_path(self.run.dir))

    def student_seed(self) -> int:
        """The seed of the student stage: student.seed, else run.seed."""
        return self.run.seed if self.student.seed is None else self.student.seed


# ---------------------------------------------------------------------------------------------
# Building typed dataclasses from plain YAML data


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in typing.get_args(tp) else "")
    if origin is list:
        (item,) = typing.get_args(tp)
        inner = _type_name(item)
        return "a list of " + inner.removeprefix("an ").removeprefix("a ")
    return {bool: "true or false", int: "an int", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp)))


class _Invalid(Exception):
    """Internal: a value did not convert; the problem is already recorded."""


def _convert(tp: Any, value: Any, key: str, problems: list[str]) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, problems)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and type(None) in typing.get_args(tp):
            return None
        if len(args) == 1:
            return _convert(args[0], value, key, problems)
        for arg in args:  # the first that takes the value, e.g. an int or "auto"
            try:
                return _convert(arg, value, key, [])
            except _Invalid:
                continue
        problems.append(f"{key}: expected {_type_name(tp)}, got {value!r}")
        raise _Invalid
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            did = f"; did you mean {hint[0]!r}?" if hint else ""
            problems.append(f"{key}: expected {_type_name(tp)}, got {value!r}{did}")
            raise _Invalid
        return value
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            problems.append(f"{key}: expected a mapping, got {value!r}")
            raise _Invalid
        converted, failed = {}, False
        for k, v in value.items():
            try:
                converted[_convert(key_tp, k, f"{key}.{k}", problems)] = \
                    _convert(value_tp, v, f"{key}.{k}", problems)
            except _Invalid:
                failed = True
        if failed:
            raise _Invalid
        return converted
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            problems.append(f"{key}: expected {_type_name(tp)}, got {value!r}")
            raise _Invalid
        out, failed = [], False
        for i, item in enumerate(value):
            try:
                out.append(_convert(item_tp, item, f"{key}[{i}]", problems))
            except _Invalid:
                failed = True
        if failed:
            raise _Invalid
        return out
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp, True)
    if not ok:
        problems.append(f"{key}: expected {_type_name(tp)}, got {value!r}")
        raise _Invalid
    return float(value) if tp is float else value


def _check_range(key: str, value: Any, meta: Any, problems: list[str]) -> None:
    if value is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    for op, bound in meta.items():
        ok = {"ge": value >= bound, "gt": value > bound,
              "le": value <= bound, "lt": value < bound}.get(op, True)
        if not ok:
            sign = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[op]
            problems.append(f"{key}: must be {sign} {bound}, got {value!r}")


def _build(cls: Any, data: Any, key: str, problems: list[str]) -> Any:
    if not isinstance(data, dict):
        problems.append(f"{key or 'config'}: expected a mapping, got {data!r}")
        raise _Invalid
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{key}." if key else ""
    for name in data:
        if name not in fields:
            hint = difflib.get_close_matches(str(name), list(fields), n=1)
            did = f"did you mean {hint[0]!r}? " if hint else ""
            problems.append(f"{prefix}{name}: unknown key; {did}(valid keys: {', '.join(fields)})")
    kwargs: dict[str, Any] = {}
    failed = False
    for name, f in fields.items():
        if name not in data:
            no_default = (f.default is dataclasses.MISSING
                          and f.default_factory is dataclasses.MISSING)
            if no_default:
                problems.append(f"{prefix}{name}: missing; add it to the config "
                                f"(expected {_type_name(hints[name])})")
                failed = True
            continue
        try:
            kwargs[name] = _convert(hints[name], data[name], prefix + name, problems)
            _check_range(prefix + name, kwargs[name], f.metadata, problems)
        except _Invalid:
            failed = True
    if failed:
        raise _Invalid
    obj = cls(**kwargs)
    check = getattr(obj, "_check", None)
    if check is not None:
        problems.extend(f"{prefix}{k}: {msg}" for k, msg in check())
    return obj


def build_config(data: Any, problems: list[str]) -> Config | None:
    """The typed `Config` of plain data (YAML's); every problem found is appended to
    `problems`, one line each. None when the config could not be built."""
    try:
        return _build(Config, data, "", problems)
    except _Invalid:
        return None


def data_section_only(data: Any) -> Config | None:
    """A config of `data`'s data section alone (None if that is invalid too): when another
    section is invalid, its files can still be checked, so that all problems come at once."""
    if isinstance(data, dict) and "data" in data:
        with contextlib.suppress(_Invalid):
            return Config(data=_build(DataConfig, data["data"], "data", []))
    return None
