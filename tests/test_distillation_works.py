"""Distillation transfers the teacher's labelling (issue 28 item 4): on the fixture, the student
distilled from a teacher's soft labels agrees with that teacher more often than the same DAN
trained from scratch on the same gold labels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import DATA, base_config, teacher_config

from sparse_distill.evaluation.baselines import train_dan_scratch
from sparse_distill.inference.student import Student
from sparse_distill.progress import Reporter
from sparse_distill.stages.config import config_from_dict
from sparse_distill.stages.rundir import teacher_source
from sparse_distill.stages.teach import teach
from sparse_distill.stages.train_student import train_student
from sparse_distill.stages.vocab import build_vocab
from sparse_distill.training.data import PoolStats, iter_pool, load_labeled
from sparse_distill.training.teacher import Teacher

LABELS = ["neg", "pos"]
DISTILL_STEPS = 200  # ~35 passes over train + pool at batch 8: the student fits the targets


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread: the agreements below were measured so, and a sum split over another
    number of threads rounds differently, which can flip a text near the decision boundary; on
    2 shared cores one thread is also the fastest."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_teacher(encoder: Path, out: Path, seed: int) -> Path:
    """The tiny RoBERTa with a classification head fitted to train's gold labels, saved to `out`.

    Trained here with a plain loop rather than by the teacher stage's fine-tuning: the random
    tiny model needs ~20 epochs to predict anything but one class, for which transformers'
    Trainer (a checkpoint and an evaluation per epoch) took 49 s of CPU on 2 busy cores; this
    loop takes ~1 s.
    The stage's fine-tuning is test_teacher's subject; its labelling, from the teacher's forward
    pass, runs below."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rows = [json.loads(line) for line in (DATA / "train.jsonl").read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(str(encoder))
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(encoder), num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)})
    batch = tokenizer([r["text"] for r in rows], padding=True, truncation=True, max_length=32,
                      return_tensors="pt")
    gold = torch.tensor([LABELS.index(r["label"]) for r in rows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(60):  # full batch; enough to fit train on every seed tried
        loss = model(**batch, labels=gold).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def agreements(work: Path, encoder: Path, seed: int) -> dict[str, Any]:
    """vocab, teach (the trained teacher, loaded) and train-student on the fixture, and the DAN
    trained from scratch on gold: the teacher's labels and each student's agreement with them on
    test and on the pool, and the teacher's accuracy on train and test."""
    teacher_dir = train_teacher(encoder, work / "teacher-model", seed)
    data = teacher_config(base_config(work / "run"), teacher_dir, finetune=False)
    data["run"]["seed"] = seed
    data["student"] = {
        "embedding_dim": 16, "hidden_dims": [16], "dropout": 0.1,
        # Random rows, as the scratch DAN's: the teacher reaches the student through its soft
        # labels only, the thing under test (init: teacher also copies its encoder's view).
        "init": "random",
        # One evaluation, at the end: the fully distilled student. Picking a checkpoint by dev's
        # 6 texts would keep whichever early one first scored 0.5.
        "distill": {"steps": DISTILL_STEPS, "batch_size": 8, "lr": 0.01,
                    "eval_every": DISTILL_STEPS, "patience": 0},
        # No fine-tuning on gold: that is the scratch DAN's signal, not distillation's. The
        # scratch DAN trains at finetune.batch_size; 1 gives it the most updates per epoch.
        "finetune": {"epochs": 0, "batch_size": 1}}
    cfg = config_from_dict(data)
    build_vocab(cfg)
    teach(cfg)
    train_student(cfg)

    labeled = load_labeled(cfg)
    assert labeled.labels == LABELS and labeled.test is not None
    teacher = Teacher.load(teacher_source(cfg.run_dir()), labeled.labels, cfg.teacher,
                           torch.device("cpu"))
    distilled = Student.load(cfg.run_dir() / "student")
    _, _, _, scratch = train_dan_scratch(cfg, labeled, work / "scratch", Reporter())
    result: dict[str, Any] = {
        "teacher_accuracy": {split.name: _share(teacher.predict(split.texts), split.labels)
                             for split in (labeled.train, labeled.test)}}
    for name, texts in (("test", labeled.test.texts),
                        ("pool", list(iter_pool(cfg, labeled, PoolStats())))):
        said = teacher.predict(texts)
        result[name] = {"teacher": said,
                        "distilled": _share(distilled.predict(texts), said),
                        "scratch": _share(scratch.predict(texts), said),
                        # the best any constant prediction does
                        "majority": max(_share([label] * len(texts), said) for label in LABELS)}
    return result


def _share(a: list[str], b: list[str]) -> float:
    """The fraction of positions where a and b hold the same label."""
    return float(np.mean(np.asarray(a) == np.asarray(b)))


def test_a_distilled_student_agrees_with_its_teacher_more_than_one_trained_on_gold(
        tmp_path: Path, tiny_roberta: Path, one_thread: None) -> None:
    got = agreements(tmp_path, tiny_roberta, seed=13)
    # Not vacuous: the teacher learnt train, is wrong on some of test (agreeing with it is not
    # agreeing with gold), and says both labels on the pool (no constant agrees with it there).
    assert got["teacher_accuracy"]["train"] == 1.0, got
    assert got["teacher_accuracy"]["test"] < 1.0, got
    assert set(got["pool"]["teacher"]) == set(LABELS), got
    # Compared on the pool (17 texts): what distillation transfers is the teacher's labelling of
    # unlabelled text, which the distilled student learnt from soft labels only and the scratch
    # DAN never saw (its vocabulary is train's). Not on test: its 6 texts are too few, and
    # neither student generalises the teacher's labelling there at this size.
    # Measured, seeds 1-13 (pool; test):
    #   distilled  1.00 on every seed;      0.33-0.67
    #   scratch    0.41-0.76, 0.53 at 13;   0.17-0.83
    #   majority   0.53-0.76, 0.53 at 13;   0.67-0.83
    # The scratch DAN hardly moves from its starting point on the fixture (lr <= 1e-3, stopped
    # after 4 epochs with train accuracy 0.5) and says one label or nearly, hence the majority
    # bar beside it. Targets shuffled across texts, with their columns swapped, zeroed, or gold
    # in the teacher's place leave the distilled student at 0.00-0.71 (seeds 1, 6, 13): below
    # both bars. The margin of 0.2 holds on every seed measured (smallest gap 0.24, seed 6).
    pool = got["pool"]
    assert pool["distilled"] >= pool["scratch"] + 0.2, got
    assert pool["distilled"] >= pool["majority"] + 0.2, got
