"""Speed of single parts, each measured in one process (`sdistill speed ...`): several students
side by side, the student's training loop, teacher labelling, and a teacher against a paper-size
student on one device.

Each function returns its figures and prints nothing. Figures are end to end (reading the texts'
tokens or n-grams included) unless named model-only; rates are medians after a warm-up
(`timing.median_rate`) unless said otherwise.
"""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import DataError, SDistillError
from ..files import resident_gib
from ..inference.featurize import Bag
from ..inference.network import SparseDAN
from ..inference.readers import format_from_name, read_text_file
from ..inference.student import Student, inference_device
from ..progress import Reporter
from ..training.config import StudentConfig, TeacherConfig, VocabConfig
from ..training.corpus import CUDA_PREFETCH, ahead, batch_maker, batches_from
from ..training.hf import load_classifier, load_tokenizer, model_labels
from ..training.losses import step_loss
from ..training.runtime import bf16_native
from ..training.teacher import Teacher
from ..training.trainer import PhaseTrainer, reuse_freed_memory
from ..training.vocab import count_ngrams, select_vocabulary
from .timing import measure_speed, median_rate

# ---------------------------------------------------------------------------------------------
# Shared


def code_version() -> str:
    """This package's version and, in a git checkout, its commit (with "+ local changes" when
    its tracked files differ from it): which code a figure was measured with."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():  # an installed copy: no commit to name
        return __version__

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, check=False).stdout.strip()
        except OSError:  # no git on this machine
            return ""

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return __version__
    dirty = git("status", "--porcelain", "--untracked-files=no", "sparse_distill")
    return f"{__version__} (git {head}{' + local changes' if dirty else ''})"


def read_texts(path: Path, limit: int | None = None, text_column: str = "text") -> list[str]:
    """The texts of a txt, jsonl, csv or tsv file (the first `limit` of them), bad lines
    (empty, not UTF-8, no text field) skipped."""
    fmt = format_from_name(str(path))
    if fmt is None:
        raise DataError(f"{path}: cannot tell its format from its name; give a .txt, .jsonl, "
                        ".csv or .tsv file")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    texts: list[str] = []
    for record in read_text_file(str(path), fmt, text_column):
        if limit is not None and len(texts) >= limit:
            break
        if record.text is not None:
            texts.append(record.text)
    return texts


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu, {torch.get_num_threads()} threads"


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it times that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# Students side by side


@dataclass
class StudentSpeed:
    name: str
    directory: Path
    table_rows: int
    load_s: float  # loading and a first batch, which brings the table's pages in
    memory_added_gib: float | None  # resident memory the load added (Linux); None elsewhere
    texts_per_s: float  # median of the rounds
    ratio: float  # texts_per_s over the first student's


@dataclass
class StudentComparison:
    n_texts: int
    batch_size: int
    repeats: int
    device: str
    students: list[StudentSpeed]


def table_rows(student: Student) -> int:
    model = student.model
    return (model.embedding.weight if model.embedding is not None else model.packed).shape[0]


def compare_students(directories: dict[str, Path], texts: list[str], batch_size: int = 1024,
                     repeats: int = 7, min_texts: int = 20_000, device: str = "cpu",
                     report: Reporter | None = None) -> StudentComparison:
    """End-to-end texts/s of each student on the same texts (repeated to at least
    `min_texts`), at `batch_size`, as ratios to the first: what an option (buckets, sub-words,
    a shrunk table) costs in speed.

    The students are loaded into one process and timed in interleaved rounds (each round times
    every student once), so that a slower or busier stretch of the machine falls on all of
    them alike; each rate is the median of `repeats` rounds."""
    report = report or Reporter()
    if not directories:
        raise SDistillError("no student to time: give at least one NAME=DIR")
    if not texts:
        raise DataError("no texts to time the students on: give a file with at least one text")
    texts = texts * -(-min_texts // len(texts))
    loaded: dict[str, Student] = {}
    loads: dict[str, tuple[float, float | None]] = {}
    for name, directory in directories.items():
        before, start = resident_gib(), time.perf_counter()
        loaded[name] = Student.load(directory, device=device)
        loaded[name].predict(texts[:batch_size])
        seconds, after = time.perf_counter() - start, resident_gib()
        loads[name] = (seconds, after - before if after is not None and before is not None
                       else None)
    batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
    rates: dict[str, list[float]] = {name: [] for name in loaded}
    report.start("rounds", repeats * len(loaded), unit="runs")
    for _ in range(repeats):
        for name, student in loaded.items():
            start = time.perf_counter()
            for batch in batches:
                student.predict(batch)
            rates[name].append(len(texts) / (time.perf_counter() - start))
            report.update(1)
    report.close()
    medians = {name: statistics.median(r) for name, r in rates.items()}
    first = next(iter(medians.values()))
    rows = [StudentSpeed(name, Path(directories[name]), table_rows(student), loads[name][0],
                         loads[name][1], medians[name], medians[name] / first)
            for name, student in loaded.items()]
    any_student = next(iter(loaded.values()))
    return StudentComparison(len(texts), batch_size, repeats, device_name(any_student.device),
                             rows)


# ---------------------------------------------------------------------------------------------
# The training loop


@dataclass
class LoopSpeed:
    dim: int
    samples_per_s: float  # the loop as `trainer.run_phase` runs it
    steps_samples_per_s: float  # the same steps on batches made beforehand: the device's own
    host_wait_share: float  # 1 - loop time / steps' own time: the device waiting on the host
    peak_gib: float | None  # peak GPU memory allocated (model, Adam state, batches); CUDA only
    loss: float  # mean loss of the timed steps: that they trained on something


@dataclass
class TrainLoopSpeed:
    device: str
    vocab_size: int
    batch_size: int
    n_texts: int
    ngrams: int
    steps: int
    warmup: int
    prefetch: int
    gather: str
    rows: list[LoopSpeed]


def speed_record(command: str, device: str, tables: dict[str, list[Any]],
                 setting: dict[str, Any]) -> dict[str, Any]:
    """A measurement as `sdistill benchmark` renders it in RESULTS.md's GPU section: the
    command, when and with which code, and its tables (rows of dataclasses or dicts)."""
    import dataclasses
    from datetime import datetime, timezone

    def row(r: Any) -> dict[str, Any]:
        return dataclasses.asdict(r) if dataclasses.is_dataclass(r) else dict(r)

    return {"command": command, "device": device, "code_version": code_version(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "setting": setting, "tables": {k: [row(r) for r in v] for k, v in tables.items()}}


GATHERS = {"auto": None, "host": False, "device": True}


def synthetic_corpus(n_texts: int, n_ids: int, vocab_size: int, seed: int = 0) -> Bag:
    """`n_texts` texts of `n_ids` ids each, drawn from a Zipf law over the vocabulary (the shape
    of real n-gram counts; a draw past the vocabulary counts as its last id), every count 1: a
    corpus that needs no data on the machine."""
    rng = np.random.default_rng(seed)
    ids = (np.minimum(rng.zipf(1.3, n_texts * n_ids), vocab_size) - 1).astype(np.int32)
    offsets = np.arange(0, n_texts * n_ids + 1, n_ids, dtype=np.int64)  # (n_texts + 1,)
    return Bag(ids, offsets, np.ones(len(ids), np.float32))


def _loop_speed(dim: int, corpus: Bag, targets: np.ndarray, device: torch.device,
                vocab_size: int, batch_size: int, steps: int, warmup: int, prefetch: int,
                resident: bool | None, report: Reporter) -> LoopSpeed:
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # The MLP in bf16 where train-student would run it so (student.dense_precision: auto).
    model = SparseDAN(vocab_size, targets.shape[1], dim, [dim], dropout=0.1,
                      dense_bf16=device.type == "cuda" and bf16_native(device)).to(device)
    s = StudentConfig(embedding_dim=dim, hidden_dims=[dim])
    gold = np.full(len(corpus), -1, np.int64)  # no gold labels: distillation only
    prepare = batch_maker(corpus, targets, gold, 0, 0.0, s.pooling, device, resident)
    report.start(f"d {dim}", warmup + 2 * steps, unit="steps")
    # PhaseTrainer names its checkpoint files in a work directory; nothing is saved here.
    with tempfile.TemporaryDirectory() as work:
        trainer = PhaseTrainer(model, s, 5e-4, warmup + steps, 0, "constant", device,
                               Path(work), "distill")
        # Summed on the device, as run_phase does: reading it every step would wait for the GPU.
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)

        def loop(first: int, last: int) -> float:
            _sync(device)
            start = time.perf_counter()
            batches = batches_from(len(corpus), batch_size, 0, first, last)
            for _, (_, inputs) in ahead(batches, prepare, prefetch):
                loss = step_loss(model, inputs, True, "kl", 1.0, 0.0)
                trainer.step(loss)
                loss_sum.add_(loss.detach())
                report.update(1)
            _sync(device)
            return time.perf_counter() - start

        loop(0, warmup)
        loss_sum.zero_()
        loop_s = loop(warmup, warmup + steps)
        loss = float(loss_sum) / steps
        # The same steps with every batch made beforehand: what the device itself needs.
        ready = [prepare(idx)[1] for _, idx in batches_from(len(corpus), batch_size, 0, warmup,
                                                             warmup + steps)]
        _sync(device)
        start = time.perf_counter()
        for inputs in ready:
            trainer.step(step_loss(model, inputs, True, "kl", 1.0, 0.0))
            report.update(1)
        _sync(device)
        steps_s = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return LoopSpeed(dim, steps * batch_size / loop_s, steps * batch_size / steps_s,
                     max(0.0, 1 - steps_s / loop_s), peak, loss)


def train_loop_speed(dims: Sequence[int] = (256, 1000), device: str = "auto",
                     vocab_size: int = 1_000_000, batch_size: int = 2048,
                     n_texts: int = 200_000, ngrams: int = 40, steps: int = 50,
                     warmup: int = 10, gather: str = "auto", prefetch: int | None = None,
                     report: Reporter | None = None) -> TrainLoopSpeed:
    """Samples/s of the student's distillation loop for each embedding size d in `dims` (one
    hidden layer of d), and the share of its time the device waits on the host.

    The loop is the library's own, as `trainer.run_phase` runs it (`batches_from`,
    `batch_maker`, `ahead`, `step_loss`, `PhaseTrainer.step`; on CUDA the next batches are
    prepared on other threads while a step runs). Its corpus is synthetic
    (`synthetic_corpus`), with random soft targets over 2 classes, so that it runs on a bare
    machine. `gather`: where batches are gathered, "host", "device" (`corpus.ResidentCorpus`)
    or "auto" (the library's choice); `prefetch`: batches prepared ahead (None: the library's).
    Each d times `steps` steps after `warmup`, then the same steps on batches made beforehand.
    """
    report = report or Reporter()
    if gather not in GATHERS:
        raise SDistillError(f"gather {gather!r}: expected one of {', '.join(GATHERS)}")
    if batch_size > n_texts:
        raise SDistillError(f"batch size {batch_size:,} is more than the corpus's {n_texts:,} "
                            "texts: raise the texts or lower the batch size")
    where = inference_device(device)
    if prefetch is None:
        prefetch = CUDA_PREFETCH if where.type == "cuda" else 0
    reuse_freed_memory()  # as train-student does: it changes SparseAdam's step time
    corpus = synthetic_corpus(n_texts, ngrams, vocab_size)
    targets = np.random.default_rng(1).standard_normal((n_texts, 2)).astype(np.float32)
    rows = []
    for dim in dims:
        rows.append(_loop_speed(dim, corpus, targets, where, vocab_size, batch_size, steps,
                                warmup, prefetch, GATHERS[gather], report))
        if where.type == "cuda":  # the next size starts from the same empty device
            torch.cuda.empty_cache()
    report.close()
    return TrainLoopSpeed(device_name(where), vocab_size, batch_size, n_texts, ngrams, steps,
                          warmup, prefetch, gather, rows)


# ---------------------------------------------------------------------------------------------
# Teacher labelling


@dataclass
class TextSet:
    name: str
    texts: list[str]
    max_length: int


@dataclass
class LabellingSpeed:
    teacher: str
    texts: str  # the TextSet's name
    max_length: int
    n: int
    precision: str
    by_length: bool  # batches sorted by length (else in input order)
    texts_per_s: float
    ratio: float  # texts_per_s over the first setting's on the same texts and teacher


def as_teacher(model: Any, tokenizer: Any, device: torch.device, max_length: int,
               batch_size: int, precision: str, by_length: bool = True) -> Teacher:
    """A loaded classifier as the library's `Teacher`, reading texts as these settings say
    (its columns in the model's own label order)."""
    labels = model_labels(model)
    settings = TeacherConfig(max_length=max_length, label_batch_size=batch_size,
                             precision=precision, sort_by_length=by_length)
    return Teacher(model, tokenizer, np.arange(len(labels)), labels, settings,
                   torch.device("cpu"), "fp32").to(device)


def labelling_speed(name: str, model: Any, tokenizer: Any, sets: list[TextSet],
                    device: torch.device, batch_size: int, repeats: int,
                    precisions: Sequence[str] = ("fp32", "bf16"),
                    orders: Sequence[bool] = (False, True), report: Reporter | None = None
                    ) -> tuple[list[LabellingSpeed], dict[str, float]]:
    """Teacher labelling texts/s (`Teacher.logits`) of each text set in each precision and
    batch order, and for each set, the share of texts on which the other precisions predict
    the class the first one does (in the last order)."""
    report = report or Reporter()
    rows: list[LabellingSpeed] = []
    agreement: dict[str, float] = {}
    report.start(f"labelling ({name})", len(sets) * len(precisions) * len(orders),
                 unit="settings")
    for text_set in sets:
        first = None
        predicted: dict[str, np.ndarray] = {}
        for precision in precisions:
            for by_length in orders:
                teacher = as_teacher(model, tokenizer, device, text_set.max_length, batch_size,
                                     precision, by_length)
                last: list[np.ndarray] = []

                def run(teacher: Teacher = teacher, texts: list[str] = text_set.texts,
                        last: list[np.ndarray] = last) -> None:
                    last[:] = [teacher.logits(texts)]

                rate = median_rate(run, len(text_set.texts), repeats)
                first = first or rate
                predicted[precision] = last[0].argmax(axis=1)  # (n,) the last order's
                rows.append(LabellingSpeed(name, text_set.name, text_set.max_length,
                                           len(text_set.texts), precision, by_length, rate,
                                           rate / first))
                report.update(1)
        base = predicted[precisions[0]]
        agreement[text_set.name] = min(float((p == base).mean()) for p in predicted.values())
    report.close()
    return rows, agreement


@dataclass
class TeacherSpeed:
    model: str
    device: str
    batch_size: int
    repeats: int
    rows: list[LabellingSpeed]
    agreement: dict[str, float]  # text set -> bf16 and fp32 same prediction, sorted by length


def _need(path: Path, fetch: str) -> Path:
    if not path.exists():
        raise DataError(f"{path} is missing; fetch it with: sdistill data fetch {fetch} (or "
                        "point --cache-dir / $SDISTILL_CACHE at the cache that holds it)")
    return path


def teacher_speed(cache: Path, model: Path | None = None, device: str = "cpu",
                  batch_size: int = 128, repeats: int = 3, short_texts: int = 2000,
                  long_texts: int = 400, report: Reporter | None = None) -> TeacherSpeed:
    """Teacher labelling texts/s, fp32 vs bf16, batches sorted by length vs in input order, on
    real texts from the fetch cache: `short_texts` Rotten Tomatoes snippets at max_length 64
    (test, then train) and `long_texts` 20 Newsgroups posts at max_length 256; and how often
    bf16 predicts what fp32 does.

    `model`: a teacher classifier folder; default, the cache's MiniLM encoder with a fresh
    2-class head (a head's weights do not change the speed)."""
    fetch = "rt 20ng" + ("" if model else " minilm")
    rt, ng = cache / "data" / "rt", cache / "data" / "20ng"
    source = str(_need(model or cache / "models" / "minilm", fetch))
    sets = [TextSet("rt", (read_texts(_need(rt / "test.jsonl", fetch), short_texts)
                           + read_texts(_need(rt / "train.jsonl", fetch), short_texts)
                           )[:short_texts], 64),
            TextSet("20ng", read_texts(_need(ng / "test.jsonl", fetch), long_texts), 256)]
    where = inference_device(device)
    tokenizer = load_tokenizer(source, False)
    classifier = load_classifier(source, None if model else ["neg", "pos"], False).to(where)
    rows, agreement = labelling_speed(Path(source).name, classifier, tokenizer, sets, where,
                                      batch_size, repeats, report=report)
    return TeacherSpeed(source, device_name(where), batch_size, repeats, rows, agreement)


# ---------------------------------------------------------------------------------------------
# Teacher vs a paper-size student on one device


LABELS = ["neg", "pos"]
TEACHERS = ("minilm", "roberta-large")


@dataclass
class InferenceSpeed:
    teacher: str
    precision: str
    batch_size: int
    teacher_per_s: float
    teacher_model_only_per_s: float
    student_per_s: float
    student_model_only_per_s: float

    @property
    def ratio(self) -> float:
        return self.student_per_s / self.teacher_per_s

    @property
    def model_only_ratio(self) -> float:
        return self.student_model_only_per_s / self.teacher_model_only_per_s


@dataclass
class GpuSpeed:
    device: str
    repeats: int
    snippets: int
    snippet_words: float
    documents: int
    document_words: float
    document_tokens: float  # at max_length 256, in MiniLM's word pieces
    vocab_size: int
    dim: int
    student_threads: int  # the featuriser's
    labelling: list[LabellingSpeed]
    inference: list[InferenceSpeed]


def documents(snippets: list[str], words: int) -> list[str]:
    """Consecutive snippets joined until each document has at least `words` words (a last,
    shorter rest is dropped)."""
    docs, current, count = [], [], 0
    for text in snippets:
        current.append(text)
        count += len(text.split())
        if count >= words:
            docs.append(" ".join(current))
            current, count = [], 0
    return docs


def roberta_large() -> Any:
    """RoBERTa-Large's architecture (24 layers, hidden 1024) with random weights and a 2-class
    head: the speed of the trained model, without its 1.4 GB of weights."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=50265, hidden_size=1024, num_hidden_layers=24,
                           num_attention_heads=16, intermediate_size=4096,
                           max_position_embeddings=514, type_vocab_size=1,
                           num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                           label2id={lab: i for i, lab in enumerate(LABELS)})
    return RobertaForSequenceClassification(config).float()


def paper_student(texts: list[str], vocab_size: int, dim: int, device: torch.device) -> Student:
    """A student of the paper's shape (|V| n-grams, d, one hidden layer of d) with random
    weights. Its vocabulary is every 1-4-gram of `texts`, filled up to `vocab_size` with n-grams
    that never occur, so that the featuriser's table has the full size."""
    cfg = VocabConfig(max_features=vocab_size)
    vocab = select_vocabulary(count_ngrams(texts, cfg), cfg)
    fill = vocab_size - len(vocab)
    # "qx" + digits: a token the texts never hold, so the filler only sizes the table.
    vocab = dataclasses.replace(
        vocab, ngrams=vocab.ngrams + [f"qx{i}" for i in range(fill)],
        df=np.concatenate([vocab.df, np.ones(fill, np.int64)]),
        tf=np.concatenate([vocab.tf, np.ones(fill, np.int64)]))
    torch.manual_seed(0)
    model = SparseDAN(vocab_size, len(LABELS), dim, [dim], "mean", "relu", 0.0).to(device)
    return Student(model, vocab, LABELS, "mean")


def _teacher_vs_student(which: str, model: Any, tokenizer: Any, student: Student,
                        texts: list[str], device: torch.device, label_batch_size: int,
                        batch_sizes: Sequence[int], repeats: int, report: Reporter
                        ) -> list[InferenceSpeed]:
    """Inference texts/s of teacher (fp32, then bf16) and student on `texts` at max_length 256."""
    rows = []
    for precision in ("fp32", "bf16"):
        teacher = as_teacher(model, tokenizer, device, 256, label_batch_size, precision)
        speed = measure_speed(texts, teacher, student, list(batch_sizes), repeats, report)
        for bs in batch_sizes:
            t, s = (speed["by_batch_size"][who][str(bs)] for who in ("teacher", "student"))
            rows.append(InferenceSpeed(which, precision, bs, t["samples_per_s"],
                                       t["model_only_samples_per_s"], s["samples_per_s"],
                                       s["model_only_samples_per_s"]))
    return rows


def gpu_speed(cache: Path, device: str = "auto", teachers: Sequence[str] = TEACHERS,
              repeats: int = 3, short_texts: int = 8192, long_texts: int = 1024,
              doc_words: int = 200, label_batch_size: int = 128,
              batch_sizes: Sequence[int] = (1024, 32), vocab_size: int = 1_000_000,
              dim: int = 1000, report: Reporter | None = None) -> GpuSpeed:
    """Teachers and a paper-size student (`paper_student`: |V| 1M, d 1000 by default) on one
    device: teacher labelling texts/s in fp32 and bf16, sorted by length, of Rotten Tomatoes
    snippets at max_length 64 and of documents at 256; and inference texts/s of teacher and
    student on the documents at each of `batch_sizes` (`timing.measure_speed`, as
    `sdistill eval` times), end to end and model only.

    Teachers: "minilm" (the cache's MiniLM with a fresh 2-class head) and "roberta-large"
    (`roberta_large`); both read MiniLM's word pieces, since no RoBERTa tokenizer ships offline
    (a text's token count, which sets the cost, is about the same). Documents are consecutive
    snippets joined to at least `doc_words` words (an IMDB review's length, the paper's 607x
    setting), cycled to `long_texts`.
    """
    report = report or Reporter()
    unknown = [t for t in teachers if t not in TEACHERS]
    if unknown or not teachers:
        raise SDistillError(f"teachers {list(teachers)}: expected one or more of "
                            f"{', '.join(TEACHERS)}")
    fetch = "rt minilm"
    rt = cache / "data" / "rt"
    snippets = [t for split in ("train", "dev", "test")
                for t in read_texts(_need(rt / f"{split}.jsonl", fetch))]
    minilm = str(_need(cache / "models" / "minilm", fetch))
    short = snippets[:short_texts]
    docs = documents(snippets, doc_words)
    if not docs:
        raise DataError(f"{rt}: its snippets hold fewer than {doc_words:,} words in all: lower "
                        "the document length")
    # Enough documents for every timing: cycled when the snippets run out.
    long = [docs[i % len(docs)] for i in range(long_texts)]
    where = inference_device(device)
    tokenizer = load_tokenizer(minilm, False)
    tokens = np.mean([len(ids) for ids in tokenizer(long[:200], truncation=True,
                                                    max_length=256)["input_ids"]])
    student = paper_student(docs + short, vocab_size, dim, where)
    labelling: list[LabellingSpeed] = []
    inference: list[InferenceSpeed] = []
    sets = [TextSet("snippets", short, 64), TextSet("documents", long, 256)]
    for which in teachers:
        model = (load_classifier(minilm, LABELS, False) if which == "minilm"
                 else roberta_large()).to(where).eval()
        rows, _ = labelling_speed(which, model, tokenizer, sets, where, label_batch_size,
                                  repeats, orders=(True,), report=report)
        labelling += rows
        inference += _teacher_vs_student(which, model, tokenizer, student, long, where,
                                         label_batch_size, batch_sizes, repeats, report)
        del model
        if where.type == "cuda":  # the next teacher starts from an empty device
            torch.cuda.empty_cache()
    report.close()
    return GpuSpeed(device_name(where), repeats, len(short),
                    float(np.mean([len(t.split()) for t in short])), len(long),
                    float(np.mean([len(t.split()) for t in long])), float(tokens), vocab_size,
                    dim, student.threads, labelling, inference)
