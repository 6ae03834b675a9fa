"""`sdistill benchmark`'s results: every model's figures on each data set, the targets they are
held to, and RESULTS.md with a figure per data set.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..files import write_then_replace
from .fair import FairSpeed
from .timing import PROFILE_PARTS
from .uncertainty import verdict


@dataclass
class ModelResult:
    name: str
    test_accuracy: float
    dev_accuracy: float | None
    # texts/s end to end on every core, and on one thread: the fair sitting's (evaluation.fair)
    texts_per_s: float
    batch_size: int
    settings: str = ""
    train_s: float | None = None
    texts_per_s_1: float = 0.0
    # "0"/"1" a test text: which it got right (the bootstrap's input)
    test_correct: str = ""
    interval: tuple[float, float] | None = None
    # how it used every core: its own threads, or one process a core
    scale: str = "processes"


@dataclass
class SeedRow:
    model: str
    seed: int
    dev_accuracy: float
    test_accuracy: float
    test_correct: str


@dataclass
class StageTime:
    stage: str
    seconds: float
    ran_now: bool
    created: str
    resumed: bool = False


@dataclass
class AblationRow:
    name: str
    overrides: list[str]
    dev_accuracy: float
    test_accuracy: float
    interval: tuple[float, float]
    # against the benchmark's best student on the same test texts (paired bootstrap)
    verdict: str
    p: float
    stages: list[StageTime] = field(default_factory=list)
    test_correct: str = ""
    # the fair sitting's, beside every other model
    texts_per_s_1: float = 0.0
    texts_per_s: float = 0.0
    # the student stage's peak resident memory (None: a stage that ran before it was recorded)
    peak_gib: float | None = None


@dataclass
class SweepRow:
    name: str
    overrides: list[str]
    weights: str  # which of the student's weights dev chose
    dev_accuracy: float
    test_accuracy: float | None
    unseen_quarter_accuracy: float | None
    texts_per_s_1: float
    texts_per_s: float
    peak_gib: float | None
    stages: list[StageTime]
    # the texts its teacher labelled: train, the pool (after a budget) and the perturbed copies
    labelled: int | None = None
    # its own teacher on test (a row that changes the teacher has another one); None: unknown
    teacher_test: float | None = None


@dataclass
class SweepResult:
    config: str
    config_hash: str
    rows: list[SweepRow]
    cores: int
    unseen_quarter_rate: float | None
    # the run's teacher on test (retention = a row's test / it); None: no test split
    teacher_test: float | None = None


@dataclass
class DatasetResult:
    name: str
    config: str
    n: dict[str, int]
    labels: int
    models: list[ModelResult]
    profile: dict[str, float]
    profile_batch_size: int
    pipeline_s: float
    baselines_s: float
    stages: list[StageTime] = field(default_factory=list)
    fair: dict[str, Any] = field(default_factory=dict)
    seeds: list[SeedRow] = field(default_factory=list)
    ablation: list[AblationRow] = field(default_factory=list)
    shrink: list[dict[str, Any]] = field(default_factory=list)
    config_hash: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # The test texts whose n-grams the run's vocabulary lacks most (the top quarter by share
    # unseen: `evaluation.metrics.oov_rates`), by position, and their mean share unseen.
    unseen_quarter: list[int] = field(default_factory=list)
    unseen_quarter_rate: float = 0.0
    # Where and when these figures were made: a data set kept by `benchmark --update` carries
    # its own, which may differ from the other data sets'.
    commit: str | None = None
    date: str = ""
    command: str = ""

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DatasetResult:
        """A data set's entry of RESULTS.json, back as objects (keys this version does not
        know are dropped; ones an older file lacks take their defaults)."""
        def interval(row: dict[str, Any]) -> dict[str, Any]:
            value = row.get("interval")
            return {**row, "interval": tuple(value) if value else None}

        stages = [StageTime(**_known(StageTime, s)) for s in raw.get("stages", [])]
        return cls(**{
            **_known(cls, raw),
            "models": [ModelResult(**_known(ModelResult, interval(m))) for m in raw["models"]],
            "seeds": [SeedRow(**_known(SeedRow, r)) for r in raw.get("seeds", [])],
            "stages": stages,
            "ablation": [AblationRow(**{
                **_known(AblationRow, interval(a)),
                "stages": [StageTime(**_known(StageTime, s)) for s in a.get("stages", [])]})
                for a in raw.get("ablation", [])]})

    def quarter(self, bits: str) -> str:
        """Accuracy on the most-unseen quarter of the test texts, from which texts were right."""
        if not self.unseen_quarter or not bits:
            return "-"
        return f"{sum(bits[i] == '1' for i in self.unseen_quarter) / len(self.unseen_quarter):.4f}"

    def model(self, name: str) -> ModelResult:
        return next(m for m in self.models if m.name == name)

    def sitting(self) -> FairSpeed:
        return FairSpeed.from_dict(self.fair)


def _known(cls: type, raw: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in raw.items() if k in names}


BASELINES = ("DAN from scratch (gold only)", "TF-IDF + logistic regression",
             "fastText supervised", "model2vec")


SHORT = {"DAN from scratch (gold only)": "DAN scratch", "TF-IDF + logistic regression":
         "TF-IDF + LR", "fastText supervised": "fastText", "model2vec": "model2vec"}


def profile_speed(d: DatasetResult) -> dict[str, float]:
    """The best student's texts/s from the profile, whose parts are timed one right after the
    other on the same texts and batches: end to end, model only, the featuriser on the
    student's threads and on one, and scikit-learn's transform."""
    p = d.profile
    return {"profile_e2e": 1000 / p["total"], "model_only": 1000 / p["model"],
            "featurize": 1000 / p["featurize"], "featurize_1": 1000 / p["featurize_1_thread"],
            "sklearn": 1000 / p["sklearn_transform"]}


def _points(a: float, b: float) -> str:
    return f"{100 * (a - b):+.1f} points"


def targets(d: DatasetResult) -> list[tuple[str, bool, str]]:
    """The issues' targets for one data set: (what, met, by how much). "beats" needs the paired
    bootstrap's p < 0.05 on the test texts; a lead without it is a tie. Speed ratios divide
    figures of the one fair sitting."""
    student = d.model(d.extra["best_student"])
    teacher = d.model("teacher")
    rows = [("student >= 0.97 x teacher", student.test_accuracy >= 0.97 * teacher.test_accuracy,
             f"retention {student.test_accuracy / teacher.test_accuracy:.3f}")]
    scratch = d.model("DAN from scratch (gold only)")
    rows.append(("student >= DAN from scratch + 2 points",
                 student.test_accuracy >= scratch.test_accuracy + 0.02,
                 _points(student.test_accuracy, scratch.test_accuracy)))
    for name in BASELINES:
        other = d.model(name)
        kind, p = verdict(student.test_correct, other.test_correct)
        rows.append((f"student beats {name} (paired bootstrap, p < 0.05)", kind == "beats",
                     f"{_points(student.test_accuracy, other.test_accuracy)}, p = {p:.3f}: "
                     f"{kind}"))
    speed = profile_speed(d)
    rows.append(("featuriser >= 10x scikit-learn's transform (both on one thread)",
                 speed["featurize_1"] >= 10 * speed["sklearn"],
                 f"{speed['featurize_1'] / speed['sklearn']:.1f}x"))
    fair = d.sitting()
    best = d.extra["best_student"]
    for name in ("fastText supervised", "model2vec"):
        for column, what in (("1", "one thread each"), ("all", f"{fair.cores} cores each")):
            ratio = fair.ratio(best, name, column)
            rows.append((f"student end to end >= {SHORT[name]}'s texts/s, {what}", ratio >= 1,
                         f"{ratio:.2f}x"))
    # A benchmark file written before devices were recorded ran everything on the CPU.
    where = d.extra.get("teacher_device", "cpu")
    ratio = fair.ratio(best, "teacher", "all")
    rows.append((f"student end to end >= 300x the teacher, {fair.cores} cores each"
                 if where == "cpu" else
                 f"student end to end (cpu) >= 300x the teacher ({where})", ratio >= 300,
                 f"{ratio:,.0f}x"))
    rows.append(("student end to end >= 50% of its model-only throughput",
                 speed["profile_e2e"] >= 0.5 * speed["model_only"],
                 f"{speed['profile_e2e'] / speed['model_only']:.0%} (profile: "
                 f"{speed['profile_e2e']:,.0f} / {speed['model_only']:,.0f})"))
    return rows


def write_figure(d: DatasetResult, path: Path) -> bool:
    """Test accuracy against end-to-end texts/s (log x) of every model; False without
    matplotlib (`pip install sparse-distill[plots]`)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    markers = {"teacher": "D", "student (KD)": "o", "student (KD+FT)": "o"}
    for m in d.models:
        best = m.name == d.extra["best_student"]
        ax.scatter([m.texts_per_s], [m.test_accuracy], s=90 if best else 50, zorder=3,
                   marker=markers.get(m.name, "s"), edgecolors="black" if best else "none",
                   label=f"{m.name}: {m.test_accuracy:.3f}, {m.texts_per_s:,.0f}/s")
    ax.set_xscale("log")
    ax.set_xlabel("texts/s, end to end on every CPU core, each at its fastest batch size (log)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{d.name}: accuracy against throughput")
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.1, y=0.15)
    # A legend, not labels beside the points: the fast models sit close together.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    try:
        write_then_replace(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)
    return True


def figure_path(out: Path, name: str) -> Path:
    return out.with_name(f"{out.stem}-{name}.png")


def _acc(m: ModelResult) -> str:
    """An accuracy with its 95% bootstrap interval."""
    if m.interval is None:
        return f"{m.test_accuracy:.4f}"
    return f"{m.test_accuracy:.4f} ({m.interval[0]:.3f}-{m.interval[1]:.3f})"


def _minutes(stages: list[StageTime]) -> str:
    """Each stage's wall time, and whether this run did it."""
    parts = []
    for t in stages:
        when = "this run" if t.ran_now else f"up to date, made {t.created[:16].replace('T', ' ')}"
        parts.append(f"{t.stage} {t.seconds / 60:.1f} min ({when}"
                     + ("; resumed: the last process's share" if t.resumed else "") + ")")
    return ", ".join(parts)


def render_results(datasets: list[DatasetResult], command: str, when: str, host: str,
                   commit: str | None, figures: dict[str, str] | None = None,
                   gpu: list[dict[str, Any]] | None = None,
                   sweeps: list[dict[str, Any]] | None = None) -> str:
    """RESULTS.md: every figure from `datasets` (and the GPU checks' and sweeps' JSON files),
    nothing else."""
    figures = figures or {}
    cores = {d.sitting().cores for d in datasets}
    lines = ["# Benchmark results", "",
             f"- Date: {when}", f"- Machine: {host}",
             f"- Command: `{command}`" + (f" at commit `{commit}`" if commit else ""),
             *_kept(datasets, commit, command),
             "- Configs (sha256 of the resolved config, run.dir aside): " + ", ".join(
                 f"`{d.config or d.name}` {d.config_hash}" for d in datasets) + ".",
             "- Accuracy on each data set's test split, every model tuned or selected on dev, "
             "with a 95% bootstrap interval over the test texts. \"beats\" means the paired "
             "bootstrap (both models on the same resampled test texts, 10,000 resamples) gives "
             "p < 0.05; a lead without it is a tie.",
             "- Speed: every model timed end to end (raw text in, label out) on the same test "
             "texts in one sitting, at its fastest batch size, with one thread and with every "
             f"core ({', '.join(str(c) for c in sorted(cores))}), the rounds interleaving the "
             "models; the median of the rounds. A model that splits its own work (the "
             "students' chunks, the teacher's torch threads) gets the cores as threads; "
             "fastText, TF-IDF + LR and model2vec, whose prediction runs on one thread, run "
             "one process a core, each on its share of the texts. fastText reads the raw text "
             "(line breaks made spaces) and splits it its own way. Every speed ratio divides "
             "two figures of that one sitting.",
             "- What else ran while models were timed (other processes' share of the CPUs, "
             "from /proc/stat): " + ", ".join(
                 f"{d.name} {d.extra['others_cpu_share']:.1%}"
                 if d.extra.get("others_cpu_share") is not None else f"{d.name} not measured"
                 for d in datasets) + ".", ""]
    lines += ["## Accuracy (test, 95% interval; the student is the best of KD / KD+FT by dev)",
              "", "| data set | teacher | student | retention | "
              + " | ".join(SHORT[n] for n in BASELINES) + " |",
              "|---|---|---|---|" + "---|" * len(BASELINES)]
    for d in datasets:
        teacher, student = d.model("teacher"), d.model(d.extra["best_student"])
        lines.append(f"| {d.name} | {_acc(teacher)} | {_acc(student)} | "
                     f"{student.test_accuracy / teacher.test_accuracy:.3f} | "
                     + " | ".join(_acc(d.model(n)) for n in BASELINES) + " |")
    lines += ["", *_seed_table(datasets)]
    lines += ["## Speed: one sitting, one thread and every core (texts/s, end to end)", "",
              "| data set | cores | student, 1 thread | student, all cores | fastText, 1 | "
              "fastText, all | student / fastText, 1 | student / fastText, all | model2vec, 1 "
              "| model2vec, all | TF-IDF + LR, 1 | TF-IDF + LR, all | teacher, 1 | teacher, all | "
              "student / teacher, all |", "|---|" + "---|" * 14]
    for d in datasets:
        fair, best = d.sitting(), d.extra["best_student"]
        r = fair.rates
        lines.append(
            f"| {d.name} | {fair.cores} | {r[best]['1']:,.0f} | {r[best]['all']:,.0f} | "
            f"{r['fastText supervised']['1']:,.0f} | {r['fastText supervised']['all']:,.0f} | "
            f"{fair.ratio(best, 'fastText supervised', '1'):.2f}x | "
            f"{fair.ratio(best, 'fastText supervised', 'all'):.2f}x | "
            f"{r['model2vec']['1']:,.0f} | {r['model2vec']['all']:,.0f} | "
            f"{r['TF-IDF + logistic regression']['1']:,.0f} | "
            f"{r['TF-IDF + logistic regression']['all']:,.0f} | "
            f"{r['teacher']['1']:,.0f} | {r['teacher']['all']:,.0f} | "
            f"{fair.ratio(best, 'teacher', 'all'):,.0f}x |")
    lines += ["", "## The student's featuriser against scikit-learn's transform (the profile)",
              "", "| data set | student in the profile: end to end / model only | featuriser "
              "| featuriser, 1 thread | scikit-learn transform | featuriser (1 thread) / "
              "scikit-learn |", "|---|---|---|---|---|---|"]
    for d in datasets:
        sp = profile_speed(d)
        lines.append(f"| {d.name} | {sp['profile_e2e']:,.0f} / {sp['model_only']:,.0f} = "
                     f"{sp['profile_e2e'] / sp['model_only']:.0%} | {sp['featurize']:,.0f} | "
                     f"{sp['featurize_1']:,.0f} | {sp['sklearn']:,.0f} | "
                     f"{sp['featurize_1'] / sp['sklearn']:.1f}x |")
    lines.append("")
    for d in datasets:
        lines += dataset_section(d, figures.get(d.name))
    lines += pool_curve_section(sweeps or [])
    lines += sweeps_section(sweeps or [])
    lines += gpu_section(gpu or [])
    return "\n".join(lines)


def _kept(datasets: list[DatasetResult], commit: str | None, command: str) -> list[str]:
    """A line naming the data sets whose figures an earlier command made (`benchmark --update`
    kept them), each with its command, commit and date; none when every one is this command's."""
    older: dict[tuple[str, str | None, str], list[str]] = {}
    for d in datasets:
        if d.command and (d.command, d.commit) != (command, commit):
            older.setdefault((d.command, d.commit, d.date), []).append(d.name)
    if not older:
        return []
    measured = any(d.command == command and d.commit == commit for d in datasets)
    return ["- Kept from earlier runs (" + ("this command measured the others" if measured else
                                            "this command measured none, only rendered them")
            + "): " + "; ".join(
        f"{', '.join(names)} by `{cmd}`" + (f" at commit `{at}`" if at else "") + f", {date}"
        for (cmd, at, date), names in older.items()) + "."]


def _seed_table(datasets: list[DatasetResult]) -> list[str]:
    if not any(len({r.seed for r in d.seeds if r.model == "student"}) > 1 for d in datasets):
        return []
    lines = ["## Seeds (test accuracy; the student is the best of KD / KD+FT by dev at each "
             "seed, sharing the run's teacher)", "",
             "| data set | model | seeds | test at each seed | mean | min-max | dev at each "
             "seed |", "|---|---|---|---|---|---|---|"]
    for d in datasets:
        for model in ("student", "DAN from scratch (gold only)"):
            rows = [r for r in d.seeds if r.model == model]
            if not rows:
                continue
            tests = [r.test_accuracy for r in rows]
            lines.append(f"| {d.name} | {model} | {', '.join(str(r.seed) for r in rows)} | "
                         f"{', '.join(f'{t:.4f}' for t in tests)} | "
                         f"{statistics.mean(tests):.4f} | {min(tests):.4f}-{max(tests):.4f} | "
                         f"{', '.join(f'{r.dev_accuracy:.4f}' for r in rows)} |")
    return [*lines, ""]


def dataset_section(d: DatasetResult, figure: str | None) -> list[str]:
    """A data set's own section: every model's row, the targets, the student's profile, the
    ablation rows and the shrunk students."""
    teacher = d.model("teacher")
    fair = d.sitting()
    lines = [f"## {d.name}", "",
             f"{d.labels} classes; train {d.n.get('train', 0):,}, dev {d.n.get('dev', 0):,}, "
             f"test {d.n.get('test', 0):,}; unlabelled pool after de-duplication "
             f"{d.extra.get('pool') or 0:,} texts. "
             + (f"The most-unseen quarter: the {len(d.unseen_quarter):,} test texts whose "
                "n-grams the student's vocabulary lacks most (on average "
                f"{d.unseen_quarter_rate:.0%} of them). " if d.unseen_quarter else "")
             # a config built in Python has no file to name
             + (f"Config `{d.config}`. " if d.config else "") + "Stage times (wall time, "
             "from each stage's manifest): " + _minutes(d.stages)
             + f"; baselines {d.baselines_s / 60:.1f} min (this run).", "",
             f"| model | test acc (95% interval) | dev acc | retention | most-unseen quarter | "
             f"texts/s, 1 thread | texts/s, {fair.cores} cores | batch | speedup "
             f"({fair.cores} cores) | settings |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m in d.models:
        mark = " (best student by dev)" if m.name == d.extra["best_student"] else ""
        dev = "-" if m.dev_accuracy is None else f"{m.dev_accuracy:.4f}"
        how = "threads" if m.scale == "threads" else "processes"
        lines.append(f"| {m.name}{mark} | {_acc(m)} | {dev} | "
                     f"{m.test_accuracy / teacher.test_accuracy:.3f} | "
                     f"{d.quarter(m.test_correct)} | "
                     f"{m.texts_per_s_1:,.0f} | {m.texts_per_s:,.0f} ({how}) | {m.batch_size} | "
                     f"{fair.ratio(m.name, 'teacher', 'all'):,.1f}x | {m.settings} |")
    lines += ["", "| target | met | margin |", "|---|---|---|"]
    lines += [f"| {what} | {'yes' if ok else 'NO'} | {margin} |"
              for what, ok, margin in targets(d)]
    p = d.profile
    lines += ["", f"Where the student's end-to-end time goes (batch {d.profile_batch_size}, "
              "ms per 1,000 texts):", "", "| part | ms | share |", "|---|---|---|"]
    for part, label in PROFILE_PARTS.items():
        lines.append(f"| {label} | {1000 * p[part]:.1f} | {p[part] / p['total']:.0%} |")
    lines += [f"| total | {1000 * p['total']:.1f} | |",
              f"| (the featuriser alone on one thread) | {1000 * p['featurize_1_thread']:.1f} "
              "| |",
              f"| (scikit-learn's transform on the same texts, which the featuriser "
              f"replaces) | {1000 * p['sklearn_transform']:.1f} | |", ""]
    if figure:
        lines += [f"![{d.name}: accuracy against throughput]({figure})", ""]
    lines += ablation_section(d)
    if d.shrink:
        lines += [f"### {d.name}: the student shrunk and exported", "",
                  *render_variants(d.shrink), ""]
    return lines


def ablation_section(d: DatasetResult) -> list[str]:
    """The ablation rows: each a variant run of the config (`--set` overrides), its best
    student by dev against the benchmark's best student on the same test texts."""
    if not d.ablation:
        return []
    best = d.model(d.extra["best_student"])
    teacher = d.model("teacher")
    lines = [f"### {d.name}: ablation (each row the config with these overrides)", "",
             "| row | overrides | dev | test (95% interval) | retention | most-unseen quarter "
             "| against the config's student (paired bootstrap) | texts/s, 1 thread | "
             "student stage: peak RSS | student stage |",
             "|---|---|---|---|---|---|---|---|---|---|",
             f"| the config's student | - | {best.dev_accuracy or 0:.4f} | {_acc(best)} | "
             f"{best.test_accuracy / teacher.test_accuracy:.3f} | "
             f"{d.quarter(best.test_correct)} | - | {best.texts_per_s_1:,.0f} | "
             f"{_gib(d.extra.get('student_peak_gib'))} | "
             + _minutes([t for t in d.stages if t.stage == "student"]) + " |"]
    for row in d.ablation:
        stage = [t for t in row.stages if t.stage == "student"]
        lines.append(f"| {row.name} | `{' '.join(row.overrides)}` | {row.dev_accuracy:.4f} | "
                     f"{row.test_accuracy:.4f} ({row.interval[0]:.3f}-{row.interval[1]:.3f}) | "
                     f"{row.test_accuracy / teacher.test_accuracy:.3f} | "
                     f"{d.quarter(row.test_correct)} | "
                     f"{_points(row.test_accuracy, best.test_accuracy)}, p = {row.p:.3f}: "
                     f"{row.verdict} | {row.texts_per_s_1:,.0f} | {_gib(row.peak_gib)} | "
                     f"{_minutes(stage)} |")
    return [*lines, ""]


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} GiB"


SHRINK_HEADER = ["| student | bytes on disk | share | RSS after load / first batch GiB | load s "
                 "| test accuracy | share of full | agreement with full | texts/s (batch) |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]


def render_variants(rows: list[dict[str, Any]]) -> list[str]:
    """The shrink table: `stages.shrink_table.measure_variants`'s rows, one line each."""

    def num(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    lines = list(SHRINK_HEADER)
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['name']} | not measured: {r['skipped']} |" + " |" * 7)
            continue
        lines.append(
            f"| {r['name']} | {r['bytes'] / 2**20:,.1f} MiB | {r['bytes_share']:.1%} | "
            f"{num(r['rss_load_gib'], '.2f')} / {num(r['rss_first_gib'], '.2f')} | "
            f"{r['load_s']:.2f} | {r['accuracy']:.4f} | {num(r['accuracy_share'], '.3f')} | "
            f"{r['agreement']:.4f} | {r['texts_per_s']:,.0f} ({r['batch_size']}) |")
    return lines



GPU_FILES = ("train.json", "gpu.json")


def read_gpu_results(folder: Path) -> list[dict[str, Any]]:
    """The GPU checks' results (`scripts/gpu_check.sh` writes them with `sdistill speed train
    --json` and `speed gpu --json`), [] when there are none."""
    out = []
    for name in GPU_FILES:
        path = folder / name
        if path.is_file():
            out.append({"file": name, **json.loads(path.read_text(encoding="utf-8"))})
    return out


def gpu_section(gpu: list[dict[str, Any]]) -> list[str]:
    lines = ["## GPU", ""]
    if not gpu:
        return [*lines, "No GPU figures at this commit: `scripts/gpu_check.sh`, run on a machine "
                "with an NVIDIA GPU, writes `benchmarks/gpu/*.json`, which the next `sdistill "
                "benchmark` renders here.", ""]
    for result in gpu:
        lines += [f"### `{result['command']}` ({result['file']}: {result['date']}, "
                  f"{result['device']}, {result['code_version']})", ""]
        for title, rows in result["tables"].items():
            if not rows:
                continue
            columns = list(rows[0])
            lines += [f"{title}:", "", "| " + " | ".join(columns) + " |",
                      "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows]
            lines.append("")
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


README_BEGIN = "<!-- benchmarks/RESULTS.json figures (sdistill benchmark --readme) -->"
README_END = "<!-- end of the figures from benchmarks/RESULTS.json -->"


def readme_figures(results: dict[str, Any]) -> str:
    """README's benchmark figures, made from RESULTS.json's contents alone (a test holds the
    README to them): per data set, every model's test accuracy with its interval and its
    texts/s at one thread and every core, and the student against each peer."""
    lines = [README_BEGIN,
             f"`{results['command']}` at commit `{results['commit']}`, {results['date']}, "
             f"{results['machine']} (`benchmarks/RESULTS.md` has every figure):", ""]
    for raw in results["datasets"]:
        models = [ModelResult(**{**m, "interval": tuple(m["interval"]) if m.get("interval")
                                 else None}) for m in raw["models"]]
        fair = FairSpeed.from_dict(raw["fair"])
        best = raw["extra"]["best_student"]
        student = next(m for m in models if m.name == best)
        if raw.get("commit") and (raw.get("command"), raw["commit"]) != (
                results["command"], results["commit"]):
            lines += [f"{raw['name']}: `{raw['command']}` at commit `{raw['commit']}`, "
                      f"{raw['date']}.", ""]
        lines += [f"| {raw['name']} | test accuracy (95% interval) | texts/s, 1 thread | "
                  f"texts/s, {fair.cores} cores | student against it (paired bootstrap) |",
                  "|---|---|---|---|---|"]
        for m in models:
            against = ""
            if m.name in BASELINES:
                kind, p = verdict(student.test_correct, m.test_correct)
                against = f"{_points(student.test_accuracy, m.test_accuracy)}, p = {p:.3f}: {kind}"
            lines.append(f"| {m.name} | {_acc(m)} | {m.texts_per_s_1:,.0f} | "
                         f"{m.texts_per_s:,.0f} | {against} |")
        lines.append("")
    return "\n".join([*lines, README_END])


def update_readme(readme: Path, results: dict[str, Any]) -> None:
    """Replace README's block of benchmark figures with `readme_figures(results)`."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"{readme}: no block between {README_BEGIN!r} and {README_END!r}")
    write_then_replace(readme, lambda tmp: tmp.write_text(
        text[:start] + readme_figures(results) + text[end + len(README_END):],
        encoding="utf-8"))


# RESULTS.json keys whose values are timings, memory or when/where they were taken: what two
# runs of the benchmark at one commit may differ in. The batch size is the fastest one found.
TIMED_KEYS = frozenset({
    "date", "machine", "texts_per_s", "texts_per_s_1", "batch_size", "train_s", "fair",
    "profile", "profile_batch_size", "pipeline_s", "baselines_s", "seconds", "created",
    "ran_now", "resumed", "others_cpu_share", "rss_load_gib", "rss_first_gib", "load_s",
    "directory", "command", "peak_gib", "student_peak_gib"})


def untimed(value: Any) -> Any:
    """RESULTS.json's contents without its timings (`TIMED_KEYS`): what must be identical when
    the benchmark runs again at the same commit on the same data."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in TIMED_KEYS}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def render_sweep(result: SweepResult, command: str, when: str, host: str, commit: str | None,
                 level: str = "#") -> str:
    """The rows as a Markdown table, with how they were made; `level`: its heading's."""
    ref = result.rows[0]
    # The rows' names in the heading: RESULTS.md holds several sweeps of one config.
    names = "; ".join(r.name for r in result.rows[1:])
    lines = [f"{level} Sweep of `{result.config or 'a config'}`" + (f": {names}" if names else ""),
             "",
             f"- Date: {when}; machine: {host}",
             f"- Command: `{command}`" + (f" at commit `{commit}`" if commit else ""),
             f"- Config hash {result.config_hash}. Each row is the config with its overrides, "
             "sharing the run's vocabulary and teacher where they are unchanged; its student is "
             "the better of KD / KD+FT by dev. Choose on dev; test is reported, not chosen on.",
             "- Speed: every row's student timed end to end on the same test texts in one "
             f"sitting, at one thread and on {result.cores} cores, the rounds interleaved.",
             *([f"- The most-unseen quarter: the test texts whose n-grams the config's "
                f"vocabulary lacks most (on average {result.unseen_quarter_rate:.0%})."]
               if result.unseen_quarter_rate is not None else []),
             *([f"- Retention: test accuracy / the row's own teacher's (the config's: "
                f"{result.teacher_test:.4f})."] if result.teacher_test else []),
             "- Labelled texts: what the row's teacher labelled (train, the pool after a "
             "budget, the perturbed copies of train).", "",
             "| row | overrides | weights | labelled texts | dev | dev vs the config | test | "
             f"retention | most-unseen quarter | texts/s, 1 thread | texts/s, {result.cores} cores "
             "| student stage peak RSS | student stage |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result.rows:
        stage = r.stages[0]
        teacher = r.teacher_test or result.teacher_test
        retention = "-" if r.test_accuracy is None or not teacher else \
            f"{r.test_accuracy / teacher:.3f}"
        lines.append(
            f"| {r.name} | `{' '.join(r.overrides) or '-'}` | {r.weights} | "
            + ("-" if r.labelled is None else f"{r.labelled:,}") + " | "
            f"{r.dev_accuracy:.4f} | {100 * (r.dev_accuracy - ref.dev_accuracy):+.1f} points | "
            + ("-" if r.test_accuracy is None else f"{r.test_accuracy:.4f}") + f" | {retention} | "
            + ("-" if r.unseen_quarter_accuracy is None else f"{r.unseen_quarter_accuracy:.4f}")
            + f" | {r.texts_per_s_1:,.0f} | {r.texts_per_s:,.0f} | "
            + ("-" if r.peak_gib is None else f"{r.peak_gib:.2f} GiB")
            + f" | {stage.seconds / 60:.1f} min"
            + ("" if stage.ran_now else " (up to date)")
            + (" (resumed: the last process's share)" if stage.resumed else "") + " |")
    return "\n".join([*lines, ""])


def read_sweeps(folder: Path) -> list[dict[str, Any]]:
    """The JSON files `sdistill sweep -o benchmarks/sweeps/NAME.md` wrote, by name."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]


def _pool_rows(raw: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    """A sweep's rows that only set a pool budget (and how it is chosen), by (budget, rule)."""
    found = {}
    for row in raw["rows"]:
        sets = dict(o.split("=", 1) for o in row["overrides"])
        if "data.pool_budget" in sets and set(sets) <= {"data.pool_budget", "data.pool_select"}:
            found[int(sets["data.pool_budget"]),
                  sets.get("data.pool_select", "cross-entropy")] = row
    return found


def pool_curve_section(sweeps: list[dict[str, Any]]) -> list[str]:
    """Test accuracy against the pool texts labelled, chosen by cross-entropy or at random, for
    each config: from its latest sweep with pool-budget rows, beside that sweep's own row for the
    config (the whole pool), so that every figure of a data set comes from one sitting."""
    latest: dict[str, dict[str, Any]] = {}
    for raw in sorted(sweeps, key=lambda r: r["date"]):
        if _pool_rows(raw):
            latest[raw["config"]] = raw
    if not latest:
        return []
    lines = ["## How much of the pool to label", "",
             "The student's test accuracy (retention: / the teacher's; dev, which a choice would "
             "use, beside it) when the teacher labels only N texts of the pool "
             "(`data.pool_budget`), chosen by `data.pool_select`: `cross-entropy` (Moore & Lewis) "
             "or `random`; the perturbed copies of train come on top. The last row of each data "
             "set labels the whole pool. From `sdistill sweep` (benchmarks/sweeps/); each data "
             "set's rows come from one sweep, which the section below names.", "",
             "| data set | pool texts | by cross-entropy: test (retention) | dev | at random: "
             "test (retention) | dev |", "|---|---|---|---|---|---|"]

    def cell(row: dict[str, Any] | None, teacher: float | None) -> str:
        if row is None or row["test_accuracy"] is None:
            return "- | -"
        # The row's own teacher where the sweep recorded it, as in the sweep's own table.
        teacher = row.get("teacher_test") or teacher
        kept = f" ({row['test_accuracy'] / teacher:.3f})" if teacher else ""
        return f"{row['test_accuracy']:.4f}{kept} | {row['dev_accuracy']:.4f}"

    for config, raw in latest.items():
        rows, teacher = _pool_rows(raw), raw.get("teacher_test")
        name = Path(config).stem
        for budget in sorted({b for b, _ in rows}):
            lines.append(f"| {name} | {budget:,} | "
                         f"{cell(rows.get((budget, 'cross-entropy')), teacher)} | "
                         f"{cell(rows.get((budget, 'random')), teacher)} |")
        whole = next((r for r in raw["rows"] if not r["overrides"]), None)
        if whole is not None:
            # Its pool: what the whole run labelled less what a budget row labelled beyond its
            # budget (train and the copies, the same in every row).
            (budget, _), some = next(iter(rows.items()))
            size = ("" if whole.get("labelled") is None or some.get("labelled") is None
                    else f" ({whole['labelled'] - (some['labelled'] - budget):,})")
            lines.append(f"| {name} | the whole pool{size} | {cell(whole, teacher)} | "
                         "(the same texts) | |")
    return [*lines, ""]


def sweeps_section(sweeps: list[dict[str, Any]]) -> list[str]:
    """Each sweep's table, as that command wrote it (its own date and commit)."""
    if not sweeps:
        return []
    lines = ["## Sweeps: the shipped configs against the options they could take", "",
             "Made by `sdistill sweep` (`benchmarks/sweep.yaml`) into `benchmarks/sweeps/`, and "
             "rendered here from its JSON; each says when and at which commit it ran.", ""]
    for raw in sweeps:
        rows = [SweepRow(**{**r, "stages": [StageTime(**t) for t in r["stages"]]})
                for r in raw["rows"]]
        result = SweepResult(raw["config"], raw["config_hash"], rows, raw["cores"],
                             raw["unseen_quarter_rate"], raw.get("teacher_test"))
        lines.append(render_sweep(result, raw["command"], raw["date"], raw["machine"],
                                  raw["commit"], level="###"))
    return lines
