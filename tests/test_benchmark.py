"""The benchmark's own code on tiny data: baselines train, figures add up, tables render."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import student_section, teacher_config
from typer.testing import CliRunner

from sparse_distill.cli import app
from sparse_distill.evaluation.baselines import (
    fasttext_text,
    train_fasttext,
    train_model2vec,
    train_tfidf_lr,
)
from sparse_distill.evaluation.results import (
    DatasetResult,
    ModelResult,
    figure_path,
    render_results,
    targets,
    write_figure,
)
from sparse_distill.evaluation.timing import OtherLoad, throughput
from sparse_distill.inference.student import Student
from sparse_distill.training.data import LabeledData, SourceStats, Split


def _split(name: str, n: int, offset: int) -> Split:
    # Separable by one word, with a shared filler word: any working classifier gets it right.
    texts, labels = [], []
    for i in range(n):
        good = (i + offset) % 2 == 0
        texts.append(f"item {i + offset} was {'excellent' if good else 'awful'} overall")
        labels.append("pos" if good else "neg")
    return Split(name=name, texts=texts, labels=labels, stats=SourceStats(name, "", "jsonl"))


@pytest.fixture
def separable() -> LabeledData:
    return LabeledData(train=_split("train", 60, 0), dev=_split("dev", 20, 100),
                       test=_split("test", 20, 200), labels=["neg", "pos"])


def test_tfidf_lr_learns_and_reports_its_choice(separable):
    predict, dev_acc, settings = train_tfidf_lr(separable, seed=0)
    assert dev_acc == 1.0
    assert predict(separable.test.texts) == separable.test.labels
    assert settings.startswith("word 1-") and "C=" in settings


def test_fasttext_learns_and_reports_its_choice(separable, tmp_path):
    predict, dev_acc, settings = train_fasttext(separable, seed=0, workdir=tmp_path)
    assert dev_acc == 1.0
    assert predict(separable.test.texts) == separable.test.labels
    assert "wordNgrams=" in settings


def test_model2vec_learns_and_reports_its_choice(separable, tiny_bert):
    predict, dev_acc, settings = train_model2vec(separable, str(tiny_bert), seed=0, pca_dims=16)
    # Dev accuracy is measured through the numpy pipeline that predict wraps, on items it never
    # trained on. Test accuracy is not asserted: its item numbers are word pieces the tiny
    # tokenizer never saw, and model2vec's training is not repeatable run to run (12 to 15 of 20
    # seen), so a bound there would be a coin toss, not a check.
    assert dev_acc >= 0.9  # chance is 0.5
    predictions = predict(separable.test.texts)
    assert len(predictions) == len(separable.test.texts) and set(predictions) <= {"neg", "pos"}
    assert settings.startswith(f"distilled from {tiny_bert.name}")


def test_fasttext_preprocessing_splits_punctuation_and_lowercases():
    assert fasttext_text("Great, GREAT film!\nReally.") == "great , great film ! really ."


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


def _result(student: float, scratch: float, fasttext: float, tfidf: float,
            m2v: float = 0.80) -> DatasetResult:
    def m(name: str, acc: float, rate: float) -> ModelResult:
        return ModelResult(name, acc, acc, rate, 32, "s")

    return DatasetResult(
        name="toy", config="configs/toy.yaml", n={"train": 10, "dev": 5, "test": 5}, labels=2,
        models=[m("teacher", 0.90, 100.0), m("student (KD)", student, 40_000.0),
                m("DAN from scratch (gold only)", scratch, 10_000.0),
                m("TF-IDF + logistic regression", tfidf, 20_000.0),
                m("fastText supervised", fasttext, 50_000.0), m("model2vec", m2v, 20_000.0)],
        # s per 1,000 texts: featurise 10 ms = 100k/s (one thread: 16 ms), scikit-learn 200 ms
        # = 5k/s (12.5x); model 10 ms = 100k/s model only; end to end 40k/s = 40% of it
        profile={"featurize": 0.01, "tensors": 0.001, "model": 0.01, "other": 0.004,
                 "total": 0.025, "featurize_1_thread": 0.016, "sklearn_transform": 0.2},
        profile_batch_size=128, pipeline_s=60.0, baselines_s=30.0,
        extra={"pool": 1000, "best_student": "student (KD)", "others_cpu_share": 0.004})


def test_targets_compare_the_best_student_with_each_reference():
    met = {what: ok for what, ok, _ in targets(_result(0.88, 0.85, 0.87, 0.88))}
    assert met == {"student >= 0.97 x teacher": True,  # 0.88 / 0.90 = 0.978
                   "student >= DAN from scratch + 2 points": True,  # +3
                   "student >= TF-IDF + logistic regression": True,
                   "student >= fastText supervised": True,
                   "student >= model2vec": True,
                   "featuriser >= 10x scikit-learn's transform (both on one thread)": True,
                   "student end to end >= fastText's texts/s": False,  # 40k < 50k
                   "student end to end >= model2vec's texts/s": True,  # 40k > 20k
                   "student end to end >= 300x the teacher": True,  # 400x
                   "student end to end >= 50% of its model-only throughput": False}  # 40%
    missed = targets(_result(0.86, 0.85, 0.87, 0.80))
    assert [ok for _, ok, _ in missed][:5] == [False, False, True, False, True]
    assert missed[0][2] == "retention 0.956" and missed[1][2] == "+1.0 points"
    assert missed[3][2] == "-1.0 points"
    margins = {what: margin for what, _, margin in missed}
    assert margins["featuriser >= 10x scikit-learn's transform (both on one thread)"] == "12.5x"
    assert margins["student end to end >= fastText's texts/s"] == "0.80x"
    assert margins["student end to end >= 300x the teacher"] == "400x"
    assert margins["student end to end >= 50% of its model-only throughput"] == \
        "40% (profile: 40,000 / 100,000)"


def test_results_render_every_row_target_and_profile_part():
    text = render_results([_result(0.88, 0.85, 0.87, 0.88)], "sdistill benchmark configs/toy.yaml",
                          "2026-01-01 00:00 UTC", "a CPU", "abc1234", {"toy": "RESULTS-toy.png"})
    assert text.startswith("# Benchmark results")
    assert "`sdistill benchmark configs/toy.yaml` at commit `abc1234`" in text
    assert "share of the CPUs, from /proc/stat): toy 0.4%." in text
    assert "| student (KD) (best student by dev) | 0.8800 | 0.8800 | 0.978 | 40,000 | 32 | " \
           "400.0x |" in text
    assert "| fastText supervised | 0.8700 |" in text and "500.0x" in text
    assert "| student >= 0.97 x teacher | yes | retention 0.978 |" in text
    assert "| featurise (compiled: n-grams + lookup + counts) | 10.0 | 40% |" in text
    assert "| total | 25.0 | |" in text
    assert "| toy | 0.9000 | 0.8800 | 0.978 | 0.8500 | 0.8800 | 0.8700 | 0.8000 |" in text
    assert "| toy | 40,000 | 40,000 / 100,000 = 40% | 100,000 | 62,500 | 5,000 | 12.5x | " \
           "50,000 | 20,000 | 20,000 | 100 | 400.0x |" in text
    assert "![toy: accuracy against throughput](RESULTS-toy.png)" in text


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


def test_benchmark_command_end_to_end(config_dict, tiny_classifier, write_config, tmp_path,
                                      trained_student):
    data = teacher_config(config_dict, tiny_classifier, finetune=False)
    data["student"] = student_section()
    data["eval"] = {"speed_texts": 6, "batch_sizes": [2, 4], "repeats": 1}
    out = tmp_path / "bench" / "RESULTS.md"
    out.parent.mkdir()
    kept = "<!-- kept across benchmark reruns -->\n## Ablation\n| a | b |\n"
    out.write_text("an earlier report\n" + kept)
    # A shrunk student directory measured beside the run's (same labels, another run).
    from sparse_distill.inference.shrink import shrink

    shrink(trained_student, tmp_path / "small", keep_share=0.5, dtype="int8")
    result = CliRunner().invoke(app, ["benchmark", str(write_config(data)), "-o", str(out),
                                      "--student", f"shrunk={tmp_path / 'small'}"])
    assert result.exit_code == 0, result.output
    assert f"replaced {out}" in result.output  # said, not silent
    text = out.read_text()
    assert "an earlier report" not in text and text.endswith("\n" + kept)
    figures = json.loads(out.with_suffix(".json").read_text())
    (dataset,) = figures["datasets"]
    names = [m["name"] for m in dataset["models"]]
    assert names == ["teacher", "student (KD)", "student (KD+FT)", "shrunk",
                     "DAN from scratch (gold only)", "TF-IDF + logistic regression",
                     "fastText supervised", "model2vec"]
    eval_metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    by_name = {m["name"]: m for m in dataset["models"]}
    # The same models, measured again in the benchmark's process, agree with eval's accuracy.
    test = eval_metrics["splits"]["test"]
    assert by_name["teacher"]["test_accuracy"] == pytest.approx(test["teacher"]["accuracy"])
    assert by_name["student (KD)"]["test_accuracy"] == pytest.approx(
        test["student_kd"]["accuracy"])
    assert by_name["student (KD+FT)"]["test_accuracy"] == pytest.approx(
        test["student"]["accuracy"])
    assert by_name["shrunk"]["settings"].startswith("kept ")
    rows = [json.loads(x) for x in Path(data["data"]["test"]["path"]).read_text().splitlines()]
    shrunk_pred = Student.load(tmp_path / "small").predict([r["text"] for r in rows])
    assert by_name["shrunk"]["test_accuracy"] == pytest.approx(
        sum(p == str(r["label"]) for p, r in zip(shrunk_pred, rows, strict=True)) / len(rows))
    for m in dataset["models"]:
        assert 0.0 <= m["test_accuracy"] <= 1.0 and m["texts_per_s"] > 0
        assert m["batch_size"] in (2, 4)
        assert f"| {m['name']}" in text
    profile = dataset["profile"]
    assert profile["total"] > 0 and all(v >= 0 for v in profile.values())
    assert "| target | met | margin |" in text and "ms per 1,000 texts" in text
    figure = out.with_name(f"RESULTS-{dataset['name']}.png")
    assert figure.read_bytes()[:4] == b"\x89PNG" and f"]({figure.name})" in text


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
