"""Class weights (issue 31, item 3): teacher.class_weight and student.finetune.class_weight,
none / balanced / a mapping, in the cross-entropy of both fine-tunings."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import student_section, teacher_config

from sparse_distill.errors import ConfigError
from sparse_distill.stages.config import config_from_dict
from sparse_distill.stages.teach import teach
from sparse_distill.stages.train_student import train_student
from sparse_distill.stages.vocab import build_vocab
from sparse_distill.training.losses import class_weights, gold_loss
from sparse_distill.training.teacher import _weighted_loss, read_targets


def test_balanced_weights_are_scikit_learns_and_average_one():
    from sklearn.utils.class_weight import compute_class_weight

    train = ["a"] * 6 + ["b"] * 3 + ["c"]
    w = class_weights("balanced", ["a", "b", "c"], train, "k")
    assert np.allclose(w, compute_class_weight("balanced", classes=np.array(["a", "b", "c"]),
                                               y=np.array(train)))
    assert np.mean([w[["a", "b", "c"].index(y)] for y in train]) == pytest.approx(1.0)
    assert class_weights(None, ["a", "b"], train, "k") is None
    assert class_weights({"b": 3.0}, ["a", "b", "c"], train, "k").tolist() == [1.0, 3.0, 1.0]


def test_a_wrong_mapping_is_one_line_naming_the_key():
    with pytest.raises(ConfigError, match=r"teacher.class_weight: 'z' not among the training "
                                          r"labels \('a', 'b'\)"):
        class_weights({"z": 2.0}, ["a", "b"], ["a", "b"], "teacher.class_weight")
    with pytest.raises(ConfigError, match=r"weights must be > 0, got b: 0\.0"):
        class_weights({"b": 0.0}, ["a", "b"], ["a", "b"], "teacher.class_weight")


def test_the_weighted_losses_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.5, 1.5], [1.0, 1.0]])
    gold = torch.tensor([0, 1, 1])
    w = torch.tensor([1.0, 4.0])
    per_text = F.cross_entropy(logits, gold, reduction="none")  # (3,)
    expected = (per_text * w[gold]).sum() / 3
    assert torch.allclose(gold_loss(logits, gold, w), expected)
    assert torch.allclose(gold_loss(logits, gold), per_text.mean())
    loss = _weighted_loss(w.numpy())
    assert torch.allclose(loss({"logits": logits}, gold), expected)
    # under gradient accumulation, divided by the whole accumulated batch's texts
    assert torch.allclose(loss({"logits": logits}, gold, num_items_in_batch=6), expected / 2)


def test_both_fine_tunings_take_the_weights(config_dict, tiny_roberta, tmp_path):
    weights = {"pos": 1000.0, "neg": 0.001}
    data = teacher_config(config_dict, tiny_roberta, class_weight=weights)
    data["student"] = student_section()
    data["student"]["finetune"]["class_weight"] = weights
    cfg = config_from_dict(data)
    build_vocab(cfg)
    teach(cfg)
    # a teacher that gains nothing from "neg" texts calls every text "pos"
    logits, rows = read_targets(cfg.run_dir() / "teacher" / "targets")
    assert Counter(r["label"] for r in rows if r["split"] == "train")["neg"] > 5
    assert (logits.argmax(axis=1) == ["neg", "pos"].index("pos")).all()
    weighted = train_student(cfg).output
    # the same teacher and student without the student's weights
    plain = config_from_dict({**data, "run": {**data["run"], "dir": str(tmp_path / "plain")},
                              "student": student_section()})
    build_vocab(plain)
    shutil.copytree(cfg.run_dir() / "teacher", tmp_path / "plain" / "teacher")
    unweighted = train_student(plain).output

    def ft_losses(student_dir):
        return [r["loss"] for r in map(json.loads, (student_dir / "log.jsonl").open())
                if r["phase"] == "finetune"]

    assert ft_losses(weighted) != ft_losses(unweighted)
    bad = config_from_dict({**data, "student": {**student_section(), "finetune": {
        **student_section()["finetune"], "class_weight": {"maybe": 2.0}}}})
    with pytest.raises(ConfigError, match=r"student\.finetune\.class_weight: 'maybe'"):
        train_student(bad, force=True)
