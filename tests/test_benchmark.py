"""The benchmark's own code on tiny data: figures add up, tables render (the baselines are
tested in test_baselines.py)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
from conftest import student_section, teacher_config
from typer.testing import CliRunner

from sparse_distill.cli import app
from sparse_distill.evaluation.fair import FairSpeed
from sparse_distill.evaluation.results import (
    DatasetResult,
    ModelResult,
    StageTime,
    figure_path,
    render_results,
    targets,
    write_figure,
)
from sparse_distill.evaluation.timing import OtherLoad, throughput


def test_throughput_picks_the_fastest_batch_size():
    calls: list[int] = []

    def predict(batch: list[str]) -> list[str]:
        calls.append(len(batch))
        # A fixed cost per call: larger batches are faster per text.
        sum(range(20_000))
        return ["x"] * len(batch)

    rate, bs = throughput(predict, ["t"] * 64, [1, 64], repeats=1)
    assert bs == 64 and rate > 0
    assert 1 in calls and 64 in calls


N_TEST = 1000


def _bits(acc: float, skip: int = 0) -> str:
    """acc x 1,000 texts right, after the first `skip`. Without a skip, a model with a higher
    accuracy is right on every text a lower one is right on: a lead of 10 texts is sure. With
    skip 40, the two models each get texts the other misses, and 10 texts of a difference
    within 40 + 30 or 40 + 50 that differ is within the noise."""
    right = round(acc * N_TEST)
    return "0" * skip + "1" * right + "0" * (N_TEST - right - skip)


# texts/s of one sitting: (1 thread, 2 cores)
RATES = {"teacher": (50.0, 100.0), "student (KD)": (25_000.0, 40_000.0),
         "DAN from scratch (gold only)": (5_000.0, 10_000.0),
         "TF-IDF + logistic regression": (10_000.0, 20_000.0),
         "fastText supervised": (20_000.0, 50_000.0), "model2vec": (8_000.0, 20_000.0)}


def _result(student: float, scratch: float, fasttext: float, tfidf: float,
            m2v: float = 0.80) -> DatasetResult:
    accs = {"teacher": 0.90, "student (KD)": student, "DAN from scratch (gold only)": scratch,
            "TF-IDF + logistic regression": tfidf, "fastText supervised": fasttext,
            "model2vec": m2v}
    models = [ModelResult(name, acc, acc, RATES[name][1], 32, "s", texts_per_s_1=RATES[name][0],
                          test_correct=_bits(acc, 40 if name == "fastText supervised" else 0),
                          interval=(acc - 0.02, acc + 0.02),
                          scale="threads" if name in ("teacher", "student (KD)") else
                          "processes")
              for name, acc in accs.items()]
    fair = FairSpeed(cores=2, texts=500, rounds=3, started=0.0, ended=1.0,
                     rates={n: {"1": r[0], "all": r[1]} for n, r in RATES.items()})
    return DatasetResult(
        name="toy", config="configs/toy.yaml", n={"train": 10, "dev": 5, "test": N_TEST},
        labels=2, models=models,
        # s per 1,000 texts: featurise 10 ms = 100k/s (one thread: 16 ms), scikit-learn 200 ms
        # = 5k/s (12.5x); model 10 ms = 100k/s model only; end to end 40k/s = 40% of it
        profile={"featurize": 0.01, "tensors": 0.001, "model": 0.01, "other": 0.004,
                 "total": 0.025, "featurize_1_thread": 0.016, "sklearn_transform": 0.2},
        profile_batch_size=128, pipeline_s=60.0, baselines_s=30.0,
        stages=[StageTime("vocab", 30.0, True, "2026-01-01T00:00:00+00:00"),
                StageTime("teacher", 600.0, False, "2025-12-31T10:20:00+00:00", resumed=True)],
        fair=asdict(fair), config_hash="0123456789ab",
        extra={"pool": 1000, "best_student": "student (KD)", "others_cpu_share": 0.004},
        unseen_quarter=list(range(0, N_TEST, 4)), unseen_quarter_rate=0.42)


def test_targets_compare_the_best_student_with_each_reference():
    met = {what: ok for what, ok, _ in targets(_result(0.88, 0.85, 0.87, 0.86))}
    beats = "(paired bootstrap, p < 0.05)"
    assert met == {"student >= 0.97 x teacher": True,  # 0.88 / 0.90 = 0.978
                   "student >= DAN from scratch + 2 points": True,  # +3
                   f"student beats DAN from scratch (gold only) {beats}": True,
                   f"student beats TF-IDF + logistic regression {beats}": True,  # +20 texts
                   f"student beats fastText supervised {beats}": False,  # +40 -30 texts: a tie
                   f"student beats model2vec {beats}": True,
                   "featuriser >= 10x scikit-learn's transform (both on one thread)": True,
                   "student end to end >= fastText's texts/s, one thread each": True,  # 25k/20k
                   "student end to end >= fastText's texts/s, 2 cores each": False,  # 40k/50k
                   "student end to end >= model2vec's texts/s, one thread each": True,
                   "student end to end >= model2vec's texts/s, 2 cores each": True,
                   "student end to end >= 300x the teacher, 2 cores each": True,  # 400x
                   "student end to end >= 50% of its model-only throughput": False}  # 40%
    margins = {what: margin for what, _, margin in targets(_result(0.86, 0.85, 0.87, 0.80))}
    assert margins["student >= 0.97 x teacher"] == "retention 0.956"
    assert margins["student >= DAN from scratch + 2 points"] == "+1.0 points"
    fasttext = margins[f"student beats fastText supervised {beats}"]
    assert fasttext.startswith("-1.0 points, p = 0.") and fasttext.endswith(": tie")
    assert margins[f"student beats DAN from scratch (gold only) {beats}"] == \
        "+1.0 points, p = 0.000: beats"
    assert margins[f"student beats TF-IDF + logistic regression {beats}"] == \
        "+6.0 points, p = 0.000: beats"
    assert margins["featuriser >= 10x scikit-learn's transform (both on one thread)"] == "12.5x"
    assert margins["student end to end >= fastText's texts/s, one thread each"] == "1.25x"
    assert margins["student end to end >= fastText's texts/s, 2 cores each"] == "0.80x"
    assert margins["student end to end >= 300x the teacher, 2 cores each"] == "400x"
    assert margins["student end to end >= 50% of its model-only throughput"] == \
        "40% (profile: 40,000 / 100,000)"


def test_results_render_every_row_target_and_profile_part():
    text = render_results([_result(0.88, 0.85, 0.87, 0.88)], "sdistill benchmark configs/toy.yaml",
                          "2026-01-01 00:00 UTC", "a CPU", "abc1234", {"toy": "RESULTS-toy.png"})
    assert text.startswith("# Benchmark results")
    assert "`sdistill benchmark configs/toy.yaml` at commit `abc1234`" in text
    assert "`configs/toy.yaml` 0123456789ab" in text
    assert "share of the CPUs, from /proc/stat): toy 0.4%." in text
    # the most-unseen quarter (every 4th text here) scored from each model's right texts
    assert "| student (KD) (best student by dev) | 0.8800 (0.860-0.900) | 0.8800 | 0.978 | " \
           "0.8800 | 25,000 | 40,000 (threads) | 32 | 400.0x |" in text
    assert "| fastText supervised | 0.8700 (0.850-0.890) | 0.8700 | 0.967 | 0.8720 |" in text
    assert "the 250 test texts whose n-grams the student's vocabulary lacks most (on average " \
           "42% of them)" in text
    assert "50,000 (processes)" in text and "500.0x" in text
    assert "| student >= 0.97 x teacher | yes | retention 0.978 |" in text
    assert "| featurise (compiled: n-grams + lookup + counts) | 10.0 | 40% |" in text
    assert "| total | 25.0 | |" in text
    assert "| toy | 0.9000 (0.880-0.920) | 0.8800 (0.860-0.900) | 0.978 | 0.8500 (0.830-0.870) " \
           "| 0.8800 (0.860-0.900) | 0.8700 (0.850-0.890) | 0.8000 (0.780-0.820) |" in text
    # the one sitting's figures and their ratios
    assert "| toy | 2 | 25,000 | 40,000 | 20,000 | 50,000 | 1.25x | 0.80x | 8,000 | 20,000 | " \
           "10,000 | 20,000 | 50 | 100 | 400x |" in text
    assert "| toy | 40,000 / 100,000 = 40% | 100,000 | 62,500 | 5,000 | 12.5x |" in text
    assert "vocab 0.5 min (this run)" in text
    assert "teacher 10.0 min (up to date, made 2025-12-31 10:20; resumed: the last process's " \
           "share)" in text
    assert "![toy: accuracy against throughput](RESULTS-toy.png)" in text
    assert "No GPU figures at this commit" in text


def test_figure_plots_every_model(tmp_path):
    path = figure_path(tmp_path / "RESULTS.md", "toy")
    assert path.name == "RESULTS-toy.png"
    assert write_figure(_result(0.88, 0.85, 0.87, 0.88), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["RESULTS-toy.png"]  # no temporary left


def test_other_load_is_the_machines_busy_time_less_this_process():
    readings = iter([(100.0, 5.0, 0.0), (103.0, 6.0, 2.0),  # 2 s: 3 busy, 1 of them ours
                     (103.0, 6.0, 2.0), (104.0, 7.0, 3.0)])  # 1 s: all of it ours
    now: list[tuple[float, float, float]] = []

    def tick(i: int) -> float:
        if i == 0:
            now[:] = [next(readings)]
        return now[0][i]

    load = OtherLoad(busy=lambda: tick(0), own=lambda: tick(1), clock=lambda: tick(2), cpus=2)
    for _ in range(2):
        load.start()
        load.stop()
    assert load.share() == pytest.approx(2.0 / (3.0 * 2))  # others: 2 CPU-s of 6
    assert OtherLoad(busy=lambda: None).share() is None
    real = OtherLoad()
    real.start()
    sum(range(200_000))
    real.stop()
    assert real.share() is None or 0.0 <= real.share() <= 1.0


def test_the_load_of_the_benchmarks_own_workers_is_not_anothers():
    import subprocess
    import sys

    load = OtherLoad()
    load.start()
    # A child of this process busy for half a second (as the sitting's forked workers are).
    subprocess.run([sys.executable, "-c", "import time\nend = time.process_time() + 0.5\n"
                    "while time.process_time() < end: pass"], check=True)
    load.stop()
    if load.share() is None:
        pytest.skip("no /proc/stat here")
    # Counted as another's, the child alone would make it at least 0.5 / (wall x CPUs).
    assert load.others < 0.25


def test_benchmark_needs_dev_and_test(config_dict, tiny_classifier, write_config, tmp_path):
    data = teacher_config(config_dict, tiny_classifier, finetune=False)
    data["student"] = student_section()
    del data["data"]["test"]
    data["eval"] = {"splits": ["dev"]}
    out = tmp_path / "RESULTS.md"
    result = CliRunner().invoke(app, ["benchmark", str(write_config(data)), "-o", str(out)])
    assert result.exit_code == 1
    assert "data.test" in result.output
    assert not out.exists() and not Path(str(out.with_suffix(".json"))).exists()


def test_update_keeps_the_data_sets_it_does_not_measure(config_dict, write_config, tmp_path,
                                                       monkeypatch):
    """`benchmark --update` measures its configs' data sets and keeps every other one of the
    earlier RESULTS.json, each said to come from the command and commit that made it; without
    it, the file holds only what this command measured."""
    import json
    from dataclasses import replace

    import sparse_distill.stages.benchmark as bench

    out = tmp_path / "bench" / "RESULTS.md"
    out.parent.mkdir()
    earlier = [asdict(replace(_result(0.88, 0.85, 0.87, 0.86), name=name))
               for name in ("old", "toy")]
    out.with_suffix(".json").write_text(json.dumps({
        "date": "2026-01-01 00:00 UTC", "machine": "a CPU", "commit": "aaaaaaa",
        "command": "sdistill benchmark old.yaml toy.yaml", "datasets": earlier}))
    measured = replace(_result(0.80, 0.85, 0.87, 0.86), name="toy")
    monkeypatch.setattr(bench, "benchmark_config", lambda *a, **k: replace(measured))
    monkeypatch.setattr(bench, "git_commit", lambda: "bbbbbbb")
    config = write_config(config_dict, "toy.yaml")

    (d,) = bench.benchmark([config], out, command="sdistill benchmark toy.yaml --update",
                           ablation=False, shrink=False, update=True)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert [(x["name"], x["commit"], x["models"][1]["test_accuracy"]) for x in
            saved["datasets"]] == [("old", "aaaaaaa", 0.88), ("toy", "bbbbbbb", 0.80)]
    assert saved["datasets"][0]["command"] == "sdistill benchmark old.yaml toy.yaml"
    assert (d.name, d.commit) == ("toy", "bbbbbbb")
    text = out.read_text()
    assert "- Kept from earlier runs (this command measured the others): old by `sdistill " \
           "benchmark old.yaml toy.yaml` at commit `aaaaaaa`, 2026-01-01 00:00 UTC." in text
    assert "## old" in text and "## toy" in text

    bench.benchmark([config], out, command="sdistill benchmark toy.yaml", ablation=False,
                    shrink=False)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert [x["name"] for x in saved["datasets"]] == ["toy"]
    assert "Kept from earlier runs" not in out.read_text()


def _sweep_row(name: str, overrides: list[str], dev: float, test: float,
               labelled: int) -> dict:
    return {"name": name, "overrides": overrides, "weights": "KD", "dev_accuracy": dev,
            "test_accuracy": test, "unseen_quarter_accuracy": None, "texts_per_s_1": 1.0,
            "texts_per_s": 2.0, "peak_gib": None, "labelled": labelled,
            "stages": [{"stage": "student", "seconds": 60.0, "ran_now": True,
                        "created": "2026-01-02T00:00:00+00:00", "resumed": False}]}


def test_update_without_configs_renders_again_with_the_pool_curve_of_the_sweeps(
        tmp_path, monkeypatch):
    """`benchmark --update` and no config measures nothing: RESULTS.md is rendered again from
    its JSON, with the sweeps beside it; the pool-size table comes from the latest sweep with
    pool-budget rows, its whole-pool size what the config's row labelled beyond the budget
    rows' train and copies."""
    import json

    import sparse_distill.stages.benchmark as bench
    from sparse_distill.errors import DataError

    out = tmp_path / "bench" / "RESULTS.md"
    (out.parent / "sweeps").mkdir(parents=True)
    with pytest.raises(DataError, match="--update alone"):
        bench.benchmark([], out, update=True)  # nothing to render yet
    out.with_suffix(".json").write_text(json.dumps({
        "date": "2026-01-01 00:00 UTC", "machine": "a CPU", "commit": "aaaaaaa", "seeds": 3,
        "command": "sdistill benchmark toy.yaml", "datasets": [asdict(_result(
            0.88, 0.85, 0.87, 0.86))]}))
    sweep = {"machine": "a CPU", "command": "sdistill sweep", "commit": "ccccccc",
             "config": "configs/toy.yaml", "config_hash": "0123456789ab", "cores": 2,
             "unseen_quarter_rate": None, "teacher_test": 0.80}
    older = {**sweep, "date": "2026-01-01 00:00 UTC", "rows": [
        _sweep_row("the config's student", [], 0.70, 0.70, 1500),
        _sweep_row("pool 10", ["data.pool_budget=10"], 0.50, 0.50, 510)]}
    newer = {**sweep, "date": "2026-01-02 00:00 UTC", "rows": [
        _sweep_row("the config's student", [], 0.78, 0.76, 1500),
        _sweep_row("pool 100", ["data.pool_budget=100"], 0.74, 0.72, 600),
        _sweep_row("pool 100 at random", ["data.pool_budget=100", "data.pool_select=random"],
                   0.70, 0.64, 600),
        _sweep_row("d 64", ["student.embedding_dim=64"], 0.75, 0.70, 1500)]}
    for name, raw in (("toy-old", older), ("toy-pool", newer)):
        (out.parent / "sweeps" / f"{name}.json").write_text(json.dumps(raw))
    monkeypatch.setattr(bench, "git_commit", lambda: "bbbbbbb")

    assert bench.benchmark([], out, command="sdistill benchmark --update", update=True) == []
    text = out.read_text()
    assert "this command measured none, only rendered them): toy by `sdistill benchmark " \
           "toy.yaml` at commit `aaaaaaa`" in text
    assert "| toy | 100 | 0.7200 (0.900) | 0.7400 | 0.6400 (0.800) | 0.7000 |" in text
    assert "| toy | the whole pool (1,000) | 0.7600 (0.950) | 0.7800 |" in text
    assert "| toy | 10 |" not in text  # the older sweep's row: another sitting
    assert text.count("### Sweep of `configs/toy.yaml`") == 2
    assert "### Sweep of `configs/toy.yaml`: pool 10\n" in text  # its rows name each sweep
    assert "### Sweep of `configs/toy.yaml`: pool 100; pool 100 at random; d 64\n" in text
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["datasets"][0]["commit"] == "aaaaaaa" and len(saved["sweeps"]) == 2


def test_update_refuses_a_results_file_it_cannot_read(config_dict, write_config, tmp_path):
    from sparse_distill.errors import DataError
    from sparse_distill.stages.benchmark import benchmark

    out = tmp_path / "RESULTS.md"
    out.with_suffix(".json").write_text('{"datasets": [{"name": "rt"}]}')
    with pytest.raises(DataError, match=r"RESULTS\.json this version reads.*without --update"):
        benchmark([write_config(config_dict, "toy.yaml")], out, update=True)


@pytest.mark.slow
def test_benchmark_on_real_trec(tmp_path):
    """Real TREC-6 and the real MiniLM teacher, cut down to ~12 minutes on 2 CPU cores (the
    first 50,000 general-English pool sentences, 20 copies a question, 2 teacher epochs, 1,500 KD
    steps): every model beats chance by far, and the distilled student beats the same DAN
    trained on the gold labels alone. (With no general pool, 5 copies and 600 steps it did not:
    KD 0.864 against 0.868.)"""
    import itertools

    from sparse_distill.files import default_cache_dir
    from sparse_distill.stages.assets import fetch
    from sparse_distill.stages.benchmark import benchmark
    from sparse_distill.stages.config import load_config

    cache = default_cache_dir()
    for name in ("trec", "pool-general", "minilm"):
        fetch(name, cache)
    pool = tmp_path / "pool.txt"
    with (cache / "data" / "pool-general" / "pool.txt").open(encoding="utf-8") as f:
        pool.write_text("".join(itertools.islice(f, 50_000)), encoding="utf-8")
    cfg = load_config(Path(__file__).parents[1] / "configs" / "trec.yaml", [
        f"run.dir={tmp_path / 'trec'}", f"data.unlabeled=[{{path: {pool}}}]",
        "teacher.epochs=2", "student.distill.steps=1500", "student.distill.eval_every=250",
        "eval.speed_texts=500"])
    (d,) = benchmark([cfg], tmp_path / "RESULTS.md", command="test")
    acc = {m.name: m.test_accuracy for m in d.models}
    assert min(acc.values()) > 0.6  # 6 classes: chance is ~0.2
    assert acc["student (KD)"] > acc["DAN from scratch (gold only)"]
    assert d.model("student (KD)").texts_per_s > 10 * d.model("teacher").texts_per_s
    assert "## trec" in (tmp_path / "RESULTS.md").read_text()
