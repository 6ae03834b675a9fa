"""The student's losses, one function each: distillation on the teacher's logits (KL on softened
distributions, or squared error on the logits themselves; either with an optional share of
cross-entropy on the gold labels of the rows that have one), and cross-entropy on gold labels
for fine-tuning, optionally weighted by class.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..inference.network import SparseDAN


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened distributions, times T^2.

    The T^2 factor keeps the gradient's scale independent of T (Hinton et al. 2015), so changing
    the temperature does not silently change the effective learning rate.
    """
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=-1)  # (batch, classes)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=-1)  # (batch, classes)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * t * t


def mse_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the logits (Ba & Caruana 2014; Tang et al. 2019 found it
    better than KL for small students distilled from BERT): the target keeps the logits' scale,
    which the softmax throws away, so a confident teacher's margins are learnt as they are."""
    return F.mse_loss(student_logits, teacher_logits)


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str,
                 temperature: float) -> torch.Tensor:
    """`student.distill.loss`: "kl" (`kd_loss` at `temperature`) or "mse" (`mse_loss`)."""
    if kind == "mse":
        return mse_loss(student_logits, teacher_logits)
    return kd_loss(student_logits, teacher_logits, temperature)


def mixed_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                  gold_rows: torch.Tensor, gold: torch.Tensor, kind: str, temperature: float,
                  alpha: float) -> torch.Tensor:
    """(1 - alpha) x `distill_loss` over the whole batch + alpha x cross-entropy on the rows
    that have a gold label (`gold_rows`: their positions in the batch; pool texts have none).

    `student.distill.alpha` > 0: the gold labels of the training texts pull beside the teacher,
    where the teacher is wrong on them."""
    kd = distill_loss(student_logits, teacher_logits, kind, temperature)
    ce = F.cross_entropy(student_logits.index_select(0, gold_rows), gold)
    return (1 - alpha) * kd + alpha * ce


def class_weights(setting: str | dict[str, float] | None, labels: list[str],
                  train_labels: list[str], key: str) -> np.ndarray | None:
    """(n_labels,) float32 weights of the classes (in `labels` order) for `setting`
    (teacher.class_weight / student.finetune.class_weight, named by `key` in errors): None for
    none; "balanced": n / (k x count), scikit-learn's rule, so that a class's texts weigh as
    much in all as any other's and the weighted mean over the training texts stays 1; a mapping:
    its weights, 1 for the labels it does not name."""
    if setting is None:
        return None
    if setting == "balanced":
        index = {label: i for i, label in enumerate(labels)}
        counts = np.bincount([index[label] for label in train_labels], minlength=len(labels))
        return (len(train_labels) / (len(labels) * np.maximum(counts, 1))).astype(np.float32)
    assert isinstance(setting, dict)
    unknown = sorted(set(setting) - set(labels))
    if unknown:
        raise ConfigError([f"{key}: {', '.join(map(repr, unknown))} not among the training "
                           f"labels ({', '.join(map(repr, labels))}); name those labels"])
    bad = [f"{label}: {w}" for label, w in setting.items() if not w > 0]
    if bad:
        raise ConfigError([f"{key}: weights must be > 0, got {', '.join(bad)}"])
    return np.array([setting.get(label, 1.0) for label in labels], np.float32)


def gold_loss(student_logits: torch.Tensor, gold: torch.Tensor,
              weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy on gold labels: the fine-tuning phase (and the DAN trained from scratch).
    With class `weight` (n_classes,): sum of w[gold] x loss / batch, which is 1 x the mean in
    expectation for `class_weights`' balanced weights (torch's own weighted mean divides by the
    batch's sum of weights, so that a batch of only rare texts would weigh as one of common)."""
    if weight is None:
        return F.cross_entropy(student_logits, gold)
    return F.cross_entropy(student_logits, gold, weight=weight, reduction="sum") / len(gold)


def step_loss(model: SparseDAN, inputs: tuple[torch.Tensor, ...], kd: bool, kind: str,
              temperature: float, alpha: float, weight: torch.Tensor | None = None
              ) -> torch.Tensor:
    """The loss of one step on `corpus.batch_maker`'s inputs: bag tensors, then the teacher's
    logits (KD) or the gold labels (fine-tuning, with class `weight`), then for KD with
    alpha > 0 the gold rows."""
    logits = model(*inputs[:3])  # (batch, classes)
    if not kd:
        return gold_loss(logits, inputs[3], weight)
    if len(inputs) > 4:
        return mixed_kd_loss(logits, inputs[3], inputs[4], inputs[5], kind, temperature, alpha)
    return distill_loss(logits, inputs[3], kind, temperature)
