"""The student's losses, one function each: distillation on the teacher's logits (KL, with an
optional share of cross-entropy on the gold labels of the rows that have one), and cross-entropy
on gold labels for fine-tuning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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


def step_loss(model: SparseDAN, inputs: tuple[torch.Tensor, ...], kd: bool,
              temperature: float, alpha: float) -> torch.Tensor:
    """The loss of one step on `batch_maker`'s inputs."""
    logits = model(*inputs[:3])  # (batch, classes)
    if not kd:
        return F.cross_entropy(logits, inputs[3])
    loss = kd_loss(logits, inputs[3], temperature)
    if len(inputs) > 4:  # cross-entropy on the batch's gold-labelled rows
        ce = F.cross_entropy(logits.index_select(0, inputs[4]), inputs[5])
        loss = (1 - alpha) * loss + alpha * ce
    return loss
