"""`sdistill benchmark`: the pipeline against real baselines, written up as RESULTS.md and
RESULTS.json, every figure made by this command at the commit it names.

For each config: run the pipeline (stages that are up to date are skipped, and the file says
when each ran), then, in this one process, train the baselines (`evaluation.baselines`) on the
same train/dev split, and:
- score every model on the test split, with a 95% bootstrap interval over the test texts, and
  decide "beats" between the student and each peer by the paired bootstrap
  (`evaluation.uncertainty`);
- train the student and the DAN from scratch at more seeds (`seeds`), the students in variant
  runs that share the main run's teacher (`stages.variants`);
- time every model in one thread-fair sitting (`evaluation.fair`): one thread, and every core;
- profile the student beside scikit-learn's transform;
- train the ablation rows of `ablation` (variant runs: `benchmarks/ablation.yaml`);
- shrink and export the student and measure each variant (`stages.shrink_table`).
The GPU section is rendered from the JSON files `scripts/gpu_check.sh` writes beside the output
(`gpu/*.json`), and the sweeps section from those `sdistill sweep` wrote there (`sweeps/*.json`),
when there are any.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ..errors import DataError, SDistillError
from ..evaluation.baselines import (
    train_dan_scratch,
    train_fasttext,
    train_model2vec,
    train_tfidf_lr,
)
from ..evaluation.fair import Contender, Scale, fair_speed
from ..evaluation.metrics import Predict, accuracy, most_unseen, oov_rates, predictions
from ..evaluation.results import (
    AblationRow,
    DatasetResult,
    ModelResult,
    SeedRow,
    StageTime,
    figure_path,
    read_gpu_results,
    read_sweeps,
    render_results,
    write_figure,
)
from ..evaluation.timing import OtherLoad, machine, profile_student, throughput
from ..evaluation.uncertainty import bits_accuracy, bootstrap_interval, correct_bits, verdict
from ..evaluation.unseen_words import UnseenWordVectors, student_projection
from ..files import atomic_write_json, atomic_write_text
from ..inference.artifact import read_student
from ..inference.featurize import Vocabulary
from ..inference.student import Student
from ..inference.tokens import DEFAULT_TOKEN_PATTERN, segment
from ..progress import Reporter
from ..training.config import Config
from ..training.data import LabeledData, load_labeled
from ..training.hf import model_source
from ..training.runtime import runtime
from ..training.teacher import Teacher
from .config import apply_overrides, as_config, config_from_dict
from .pipeline import run_all
from .rundir import StageResult, teacher_source
from .shrink_table import measure_variants
from .variants import Variant, best_student, read_variants, run_variant, variant_config


@dataclass
class _Sitting:
    """One data set's measurements in progress: every model scored on the test split, and its
    fastest batch size found on the same texts, batch sizes and repeats; the thread-fair timing
    of all of them comes after (`fair_speed`)."""

    data: LabeledData
    texts: list[str]
    batch_sizes: list[int]
    repeats: int
    say: Callable[[str], None]
    models: list[ModelResult] = field(default_factory=list)
    contenders: list[Contender] = field(default_factory=list)

    def add(self, name: str, predict: Predict, dev_acc: float | None, settings: str,
            train_s: float | None = None, sizes: Sequence[int] | None = None,
            scale: Scale = "processes", set_threads: Callable[[int], None] | None = None
            ) -> None:
        test = self.data.test
        assert test is not None
        self.say(f"measuring {name}")
        bits = correct_bits(predictions(predict, test.texts, 128), test.labels)
        # The batch size it runs fastest at, as its users run it (its own threads); the figures
        # reported are the fair sitting's, at this batch size.
        _, bs = throughput(predict, self.texts, sizes or self.batch_sizes, self.repeats)
        self.models.append(ModelResult(
            name, bits_accuracy(bits), dev_acc, 0.0, bs, settings, train_s,
            test_correct=bits, interval=bootstrap_interval(bits), scale=scale))
        self.contenders.append(Contender(name, predict, bs, scale, set_threads))


def benchmark_config(cfg: Config | str | Path, report: Reporter | None = None,
                     on_step: Callable[[str], None] | None = None,
                     extra_students: dict[str, Path] | None = None, seeds: int = 3,
                     ablation: Sequence[Variant] = (), shrink: bool = True) -> DatasetResult:
    """Run the pipeline for `cfg`, train the baselines, measure every model on its test split.
    `extra_students`: more student directories (shrunk ones, say) measured beside the run's, as
    rows named by their keys. `seeds`: students and DANs from scratch trained at that many
    seeds (the config's and the next ones). `ablation`: variant runs measured beside the
    student. `shrink`: the student's shrunk and exported variants measured."""
    cfg = as_config(cfg)
    check_benchmarkable(cfg)
    report = report or Reporter()
    say = on_step or (lambda _: None)
    start = time.perf_counter()
    say("pipeline")
    results = run_all(cfg, report=report)
    pipeline_s = time.perf_counter() - start
    data = load_labeled(cfg)
    assert data.test is not None
    torch.manual_seed(cfg.run.seed)
    sitting = _Sitting(data, data.test.texts[:cfg.eval.speed_texts],
                       [b for b in cfg.eval.batch_sizes if b > 1] or [32], cfg.eval.repeats, say)
    teacher_device = _measure_teacher(cfg, sitting)
    students = _measure_students(cfg, results, sitting, extra_students or {})
    baselines_s = _measure_baselines(cfg, sitting, report)
    # The best by dev; on a tie the simpler KD student.
    best_student = max((m for m in sitting.models if m.name in students),
                       key=lambda m: m.dev_accuracy or 0.0)
    seed_rows = _seed_rows(cfg, data, sitting, best_student, seeds, report, say)
    # Trained before the sitting, so that each row's student is timed in it beside the rest.
    ablation_rows = [_ablation_row(cfg, row, data, best_student, sitting, report, say)
                     for row in ablation]
    say("timing every model: one thread, then every core")
    load = OtherLoad()
    load.start()
    fair = fair_speed(sitting.contenders, sitting.texts, rounds=sitting.repeats)
    say("profiling the student")
    profile = profile_student(students[best_student.name], sitting.texts,
                              best_student.batch_size, sitting.repeats)
    load.stop()
    for m in sitting.models:
        m.texts_per_s, m.texts_per_s_1 = fair.rates[m.name]["all"], fair.rates[m.name]["1"]
    for row in ablation_rows:
        rates = fair.rates[ablation_name(row.name)]
        row.texts_per_s, row.texts_per_s_1 = rates["all"], rates["1"]
    quarter = unseen_quarter(students[best_student.name], data.test.texts)
    shrink_rows: list[dict[str, Any]] = []
    if shrink:
        say("shrinking and exporting the student")
        with tempfile.TemporaryDirectory(prefix="sdistill-shrink-",
                                         dir=cfg.run_dir()) as work:
            shrink_rows = measure_variants(
                cfg.run_dir() / "student", data.test.texts, data.test.labels, Path(work),
                sitting.batch_sizes, sitting.repeats, on_step=say)
    return DatasetResult(
        name=dataset_name(cfg),
        config=str(getattr(cfg, "_path", "")), n={s.name: len(s.texts) for s in data.splits()},
        labels=len(data.labels), models=sitting.models, profile=profile,
        profile_batch_size=best_student.batch_size, pipeline_s=pipeline_s,
        baselines_s=baselines_s, stages=stage_times(results),
        fair=asdict(fair), seeds=seed_rows, ablation=ablation_rows, shrink=shrink_rows,
        config_hash=config_hash(cfg), unseen_quarter=quarter[0], unseen_quarter_rate=quarter[1],
        extra={"pool": results["teacher"].manifest.get("counts", {}).get("pool", {}).get("kept"),
               "best_student": best_student.name, "others_cpu_share": load.share(),
               "vocab_size": len(students[best_student.name].featurizer.vocab),
               "student_peak_gib": results["student"].manifest.get("memory", {}).get(
                   "peak_gib"),
               # The students and baselines run on the CPU, the teacher on run.device.
               "teacher_device": teacher_device})


def config_hash(cfg: Config) -> str:
    """sha256 (first 12 hex digits) of the resolved config, run.dir aside: what the figures
    were made from, wherever the run directory was."""
    data = cfg.to_dict()
    data["run"] = {k: v for k, v in data["run"].items() if k != "dir"}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def stage_times(results: dict[str, StageResult]) -> list[StageTime]:
    """Each stage's wall time from its manifest, with whether this run did the work (or found it
    up to date, made on the manifest's date) and whether the work resumed a stopped run (the
    time is then the last process's share only)."""
    out = []
    for stage, r in results.items():
        m = r.manifest
        resumed = bool((m.get("finetune") or {}).get("resumed_from")
                       or (m.get("labelling") or {}).get("resumed_shards")
                       or any((p or {}).get("resumed") for p in
                              (m.get("results") or {}).values() if isinstance(p, dict)))
        out.append(StageTime(stage, float(m.get("timings", {}).get("total_s", 0.0)),
                             ran_now=not r.skipped, created=str(m.get("created", "")),
                             resumed=resumed))
    return out


def _measure_teacher(cfg: Config, sitting: _Sitting) -> str:
    """The teacher as the pipeline runs it (bf16 where the CPU has it: same accuracy), on
    run.device; returns that device."""
    assert sitting.data.dev is not None
    t = cfg.teacher
    rt = runtime(cfg.run.device)
    teacher = Teacher.load(teacher_source(cfg.run_dir()), sitting.data.labels, t, rt.device)

    def predict(batch: list[str]) -> list[str]:
        return teacher.predict(batch, batch_size=len(batch))

    sitting.add("teacher", predict, accuracy(predict, sitting.data.dev.texts,
                                             sitting.data.dev.labels),
                f"{Path(t.model).name}, max_length {t.max_length}, {teacher.precision}, "
                f"on {rt.device}",
                sizes=[b for b in sitting.batch_sizes if b <= 128] or sitting.batch_sizes[:1],
                scale="threads", set_threads=torch.set_num_threads)
    return str(rt.device)


UNSEEN_WORDS_ROW = "student + teacher vectors for unseen words"


def student_threads(student: Student) -> Callable[[int], None]:
    def set_threads(n: int) -> None:
        student.threads = n

    return set_threads


def _measure_students(cfg: Config, results: dict[str, StageResult], sitting: _Sitting,
                      extra: dict[str, Path]) -> dict[str, Student]:
    """The run's students (KD, and KD+FT when fine-tuned) and the extra student directories;
    returns the run's by row name."""
    assert sitting.data.dev is not None
    student_dir = cfg.run_dir() / "student"
    trained = results["student"].manifest["results"]
    students = {"student (KD)": Student.load(student_dir, "model-kd.safetensors")}
    sitting.add("student (KD)", students["student (KD)"].predict, trained["kd"]["dev_accuracy"],
                f"d={cfg.student.embedding_dim}, hidden {cfg.student.hidden_dims}, "
                f"|V|={len(students['student (KD)'].featurizer.vocab):,}", scale="threads",
                set_threads=student_threads(students["student (KD)"]))
    if "kd_ft" in trained:
        # The fine-tune starts from the KD weights and keeps them unless dev improves.
        students["student (KD+FT)"] = Student.load(student_dir)
        sitting.add("student (KD+FT)", students["student (KD+FT)"].predict,
                    trained["kd_ft"]["dev_accuracy"], "fine-tuned on gold; KD weights kept "
                    "unless dev improved", scale="threads",
                    set_threads=student_threads(students["student (KD+FT)"]))
    if cfg.student.init == "teacher" and not cfg.student.buckets:
        # An option, measured beside the students: the better of them by dev, with a vector
        # from the teacher for each word its vocabulary lacks.
        kd_ft = trained.get("kd_ft", {}).get("dev_accuracy", -1.0)
        best = students["student (KD+FT)" if kd_ft > trained["kd"]["dev_accuracy"]
                        else "student (KD)"]
        teacher = teacher_source(cfg.run_dir())
        helped = UnseenWordVectors(
            best, student_projection(student_dir, teacher, cfg.run_dir() / "features" / "init",
                                     cfg.teacher.trust_remote_code),
            teacher, cfg.teacher.trust_remote_code)
        sitting.add(UNSEEN_WORDS_ROW, helped.predict,
                    accuracy(helped.predict, sitting.data.dev.texts, sitting.data.dev.labels),
                    "the best student by dev; each word its vocabulary lacks gets the teacher's "
                    "vector through the table's initial projection, cached per word (warm when "
                    "timed)", scale="threads", set_threads=torch.set_num_threads)
    for name, directory in extra.items():
        other = Student.load(directory)
        if other.labels != sitting.data.labels:
            raise DataError(f"{directory}: its labels {other.labels} are not this data set's "
                            f"{sitting.data.labels}")
        shrunk = read_student(directory).get("shrunk")
        sitting.add(name, other.predict, accuracy(other.predict, sitting.data.dev.texts,
                                                  sitting.data.dev.labels),
                    f"{shrunk['summary'] if shrunk else 'a student directory'}: {directory}",
                    scale="threads", set_threads=student_threads(other))
    return students


# The peers' rows with their own default tokenisation, beside the rows that tokenise as the
# student does (only where the two differ: the scripts rule).
DEFAULT_TOKENS_SUFFIX = " (default tokens)"


def _measure_baselines(cfg: Config, sitting: _Sitting, report: Reporter) -> float:
    """Train and measure each baseline; returns the seconds they took in all."""
    start = time.perf_counter()
    data, seed, say = sitting.data, cfg.run.seed, sitting.say
    with tempfile.TemporaryDirectory(prefix="sdistill-bench-") as tmp:
        say("training DAN from scratch")
        t0 = time.perf_counter()
        predict, dev_acc, settings, scratch = train_dan_scratch(cfg, data, Path(tmp), report)
        report.close()
        sitting.add("DAN from scratch (gold only)", predict, dev_acc, settings,
                    time.perf_counter() - t0, scale="threads",
                    set_threads=student_threads(scratch))
        # The peers tokenise as the student does; where that is not their default (the
        # scripts rule), their default tokenisation is a row of its own beside them.
        vocab = Vocabulary.load(cfg.run_dir() / "vocab")
        scripts = vocab.tokens == "scripts"
        # (TF-IDF's token pattern, fastText's segmenter, the row name's suffix)
        tokens = [(vocab.pattern, segment if scripts else None, "")]
        if scripts:
            tokens.append((DEFAULT_TOKEN_PATTERN, None, DEFAULT_TOKENS_SUFFIX))
        for pattern, _, suffix in tokens:
            say(f"training TF-IDF + logistic regression{suffix}")
            t0 = time.perf_counter()
            predict, dev_acc, settings = train_tfidf_lr(data, seed, pattern)
            sitting.add(f"TF-IDF + logistic regression{suffix}", predict, dev_acc,
                        settings + ("" if pattern == DEFAULT_TOKEN_PATTERN
                                    else f"; the student's tokens ({vocab.tokens} rule)"),
                        time.perf_counter() - t0)
        for _, segmenter, suffix in tokens:
            say(f"training fastText{suffix}")
            t0 = time.perf_counter()
            predict, dev_acc, settings = train_fasttext(data, seed, Path(tmp), segmenter)
            sitting.add(f"fastText supervised{suffix}", predict, dev_acc,
                        settings + ("" if segmenter is None
                                    else "; texts pre-segmented as the student's tokens"),
                        time.perf_counter() - t0)
    say("training model2vec")
    t0 = time.perf_counter()
    # The teacher's own encoder, distilled model2vec's way: as pretrained, and as fine-tuned.
    encoders = {f"pretrained {Path(cfg.teacher.model).name}": model_source(cfg.teacher.model)}
    tuned = teacher_source(cfg.run_dir())
    if tuned != encoders[next(iter(encoders))]:
        encoders["the fine-tuned teacher"] = tuned
    predict, dev_acc, settings = train_model2vec(data, encoders, seed)
    sitting.add("model2vec", predict, dev_acc, settings, time.perf_counter() - t0)
    return time.perf_counter() - start


def _variant_student(cfg: Config, variant: Config, data: LabeledData, report: Reporter
                     ) -> tuple[float, str, dict[str, StageResult], Student]:
    """Run a variant (sharing what it can with the run) and score its best student by dev on
    the test texts: (its dev accuracy, which test texts it got right, its stages, itself)."""
    assert data.test is not None
    stages = run_variant(cfg, variant, report)
    student, _, dev = best_student(stages["student"].output, stages["student"].manifest)
    return dev, correct_bits(predictions(student.predict, data.test.texts),
                             data.test.labels), stages, student


def _seed_rows(cfg: Config, data: LabeledData, sitting: _Sitting, best: ModelResult,
               seeds: int, report: Reporter, say: Callable[[str], None]) -> list[SeedRow]:
    """The student (best of KD / KD+FT by dev at each seed) and the DAN from scratch at `seeds`
    seeds: the run's own first, then students of student.seed = seed + 1, ... in variant runs
    sharing the run's teacher, and DANs of run.seed = seed + 1, ..."""
    assert data.test is not None
    scratch_row = next(m for m in sitting.models if m.name == "DAN from scratch (gold only)")
    first = cfg.student_seed()
    rows = [SeedRow("student", first, best.dev_accuracy or 0.0, best.test_accuracy,
                    best.test_correct),
            SeedRow("DAN from scratch (gold only)", cfg.run.seed, scratch_row.dev_accuracy or 0.0,
                    scratch_row.test_accuracy, scratch_row.test_correct)]
    for k in range(1, seeds):
        say(f"student at seed {first + k}")
        dev, bits, _, _ = _variant_student(
            cfg, variant_config(cfg, f"seed-{first + k}", [f"student.seed={first + k}"]), data,
            report)
        rows.append(SeedRow("student", first + k, dev, bits_accuracy(bits), bits))
        say(f"DAN from scratch at seed {cfg.run.seed + k}")
        reseeded = config_from_dict(
            apply_overrides(cfg.to_dict(), [f"run.seed={cfg.run.seed + k}"]), check_inputs=False)
        with tempfile.TemporaryDirectory(prefix="sdistill-bench-") as tmp:
            predict, dev, _, _ = train_dan_scratch(reseeded, data, Path(tmp), report)
            report.close()
        bits = correct_bits(predictions(predict, data.test.texts), data.test.labels)
        rows.append(SeedRow("DAN from scratch (gold only)", cfg.run.seed + k, dev,
                            bits_accuracy(bits), bits))
    return rows


def ablation_name(row: str) -> str:
    """An ablation row's student in the fair sitting."""
    return f"ablation: {row}"


def _ablation_row(cfg: Config, row: Variant, data: LabeledData, best: ModelResult,
                  sitting: _Sitting, report: Reporter, say: Callable[[str], None]
                  ) -> AblationRow:
    """A variant run's best student by dev, against the run's best student on the same test
    texts (paired bootstrap); the student joins the sitting, at the best student's batch
    size."""
    say(ablation_name(row.name))
    dev, bits, stages, student = _variant_student(
        cfg, variant_config(cfg, row.name, row.overrides), data, report)
    sitting.contenders.append(Contender(ablation_name(row.name), student.predict,
                                        best.batch_size, "threads", student_threads(student)))
    kind, p = verdict(bits, best.test_correct)
    return AblationRow(row.name, row.overrides, dev, bits_accuracy(bits),
                       bootstrap_interval(bits), kind, p, stage_times(stages), bits,
                       peak_gib=stages["student"].manifest.get("memory", {}).get("peak_gib"))


def unseen_quarter(student: Student, texts: list[str]) -> tuple[list[int], float]:
    """The quarter of `texts` whose n-grams the student's vocabulary lacks most (positions, in
    order), and their mean share unseen."""
    rates = oov_rates(student.featurizer.vocab, texts)  # (n_texts,)
    worst = most_unseen(rates)
    return [int(i) for i in worst], float(rates[worst].mean())


def check_benchmarkable(cfg: Config) -> None:
    missing = [key for key in ("dev", "test") if getattr(cfg.data, key) is None]
    if missing:
        where = getattr(cfg, "_path", "the config")
        raise SDistillError(f"{where}: benchmark needs data.dev (tuning) and data.test (the "
                            f"figures); add data.{missing[0]}")


def benchmark(configs: Sequence[str | Path | Config], out: str | Path, command: str = "",
              report: Reporter | None = None, on_step: Callable[[str], None] | None = None,
              extra_students: dict[str, Path] | None = None, seeds: int = 3,
              ablation: str | Path | bool | None = None, shrink: bool = True,
              update: bool = False) -> list[DatasetResult]:
    """Benchmark every config; write `out` (Markdown) and the same figures as JSON beside it.
    `extra_students` (with one config only): see `benchmark_config`. `ablation`: a YAML file of
    rows per data set (the config file's stem), `{rt: [{name: ..., set: [KEY=VALUE, ...]}]}`;
    by default the `ablation.yaml` beside `out` where there is one; False: none. `update`: keep
    the data sets of `out`'s JSON that these configs do not measure, each with the command,
    commit and date that made it (the returned list holds only the ones measured now)."""
    out = Path(out)
    kept = read_kept(out.with_suffix(".json")) if update else []
    if not configs:
        if not update or not kept:
            raise DataError("give the configs to benchmark, or --update alone to render "
                            f"{out} again from {out.with_suffix('.json')}, which must hold "
                            "data sets (the sweeps and GPU checks beside it are read again)")
        render_again(out, kept, command)
        return []
    if ablation is None and (out.parent / "ablation.yaml").is_file():
        ablation = out.parent / "ablation.yaml"
    ablation = None if ablation is False or ablation is None else Path(ablation)
    cfgs = [as_config(c) for c in configs]  # every config is checked before any work
    for cfg in cfgs:
        check_benchmarkable(cfg)
    if extra_students and len(cfgs) != 1:
        raise DataError("--student measures a student directory on one data set: give one "
                        f"config, not {len(cfgs)}")
    for name, directory in (extra_students or {}).items():
        read_student(directory, f"check --student {name}={directory}")
    rows = {id(cfg): read_variants(ablation, dataset_name(cfg)) if ablation else []
            for cfg in cfgs}
    results: list[DatasetResult] = []
    commit = git_commit()
    out.parent.mkdir(parents=True, exist_ok=True)
    figures: dict[str, str] = {}
    gpu = read_gpu_results(out.parent / "gpu")
    sweeps = read_sweeps(out.parent / "sweeps")
    command = command or " ".join(sys.argv)
    for d in kept:
        if figure_path(out, d.name).is_file():
            figures[d.name] = figure_path(out, d.name).name
    for cfg in cfgs:
        d = benchmark_config(cfg, report, on_step, extra_students, seeds, rows[id(cfg)], shrink)
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        d.commit, d.date, d.command = commit, when, command
        results.append(d)
        if write_figure(d, figure_path(out, d.name)):
            figures[d.name] = figure_path(out, d.name).name
        # Written after every data set: a long run that stops keeps what it finished.
        write_results(out, merge_datasets(kept, results), command, when, commit, figures, gpu,
                      sweeps, str(ablation) if ablation else None, seeds)
    return results


def write_results(out: Path, every: list[DatasetResult], command: str, when: str,
                  commit: str | None, figures: dict[str, str], gpu: list[dict[str, Any]],
                  sweeps: list[dict[str, Any]], ablation_file: str | None, seeds: int) -> None:
    """RESULTS.md and RESULTS.json, each written whole or not at all."""
    text = render_results(every, command, when, machine(), commit, figures, gpu, sweeps)
    atomic_write_text(out, text)
    atomic_write_json(out.with_suffix(".json"), {
        "date": when, "machine": machine(), "command": command, "commit": commit,
        "ablation_file": ablation_file, "seeds": seeds,
        "datasets": [asdict(d) for d in every], "gpu": gpu, "sweeps": sweeps})


def render_again(out: Path, kept: list[DatasetResult], command: str) -> None:
    """`--update` with no config: the data sets of `out`'s JSON as they are, with the sweeps and
    GPU checks beside it read again (a new sweep shows up without measuring anything)."""
    raw = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    figures = {d.name: figure_path(out, d.name).name for d in kept
               if figure_path(out, d.name).is_file()}
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    write_results(out, kept, command, when, git_commit(), figures,
                  read_gpu_results(out.parent / "gpu"), read_sweeps(out.parent / "sweeps"),
                  raw.get("ablation_file"), raw.get("seeds", 3))


def read_kept(path: Path) -> list[DatasetResult]:
    """The data sets of an earlier RESULTS.json, each labelled with the command, commit and
    date that made it (an older file records them once for all of its data sets)."""
    if not path.is_file():
        return []
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        kept = [DatasetResult.from_dict(d) for d in raw["datasets"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a RESULTS.json this version reads ({exc}); run without "
                        "--update to measure every data set again") from None
    for d in kept:
        d.commit = d.commit or raw.get("commit")
        d.date = d.date or raw.get("date", "")
        d.command = d.command or raw.get("command", "")
    return kept


def merge_datasets(kept: list[DatasetResult], new: list[DatasetResult]) -> list[DatasetResult]:
    """`kept` in its order with each data set measured again replaced, then the new ones."""
    fresh = {d.name: d for d in new}
    merged = [fresh.pop(d.name, d) for d in kept]
    return merged + [d for d in new if d.name in fresh]


def dataset_name(cfg: Config) -> str:
    """A data set's name in RESULTS.md and the ablation file: its config file's stem."""
    path = getattr(cfg, "_path", None)
    return Path(path).stem if path else cfg.run_dir().name


def git_commit() -> str | None:
    """The commit the figures were made at; "+changes" when the work tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + "+changes" if dirty else head) or None
