"""Hugging Face models and tokenizers, loaded from a local folder (or the hub, online), with
every loading failure turned into one line that says what to give instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, SDistillError
from ..files import expand_path, user_path_error


def load_error(source: str, exc: Exception) -> SDistillError:
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    if Path(source).exists():
        return SDistillError(f"teacher.model: {source} could not be loaded as a Hugging Face "
                             f"model ({first}); it needs config.json, weights and a tokenizer")
    return SDistillError(f"teacher.model: {source!r} is not a local directory and could not be "
                         f"loaded from the Hugging Face Hub ({first}); use a local model folder "
                         "(e.g. `sdistill data fetch minilm`, then teacher.model: "
                         "$SDISTILL_CACHE/models/minilm)")


def model_source(model: str) -> str:
    """A local model folder (with `~` and `$VARS` expanded), else the hub id as written."""
    try:
        path = expand_path(model)
    except KeyError as exc:
        raise user_path_error("teacher.model", exc) from None
    return path if Path(path).exists() else model


def load_tokenizer(source: str, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as exc:  # any loading failure is the user's path or network: one line
        raise load_error(source, exc) from None


def load_classifier(source: str, labels: list[str] | None, trust_remote_code: bool) -> Any:
    """A sequence classifier; with `labels`, its head is (re)made for them (to be fine-tuned).

    Its weights are float32 whatever the checkpoint's dtype (transformers 5 would keep a float16
    checkpoint in float16, and fine-tune it so): lower precision is autocast's, per
    `teacher.precision` and `teacher.train_precision`, over float32 weights."""
    # Here, not at the top: resolving a teacher's folder (stages.rundir) needs no torch.
    import torch
    from transformers import AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "dtype": torch.float32}
    if labels is not None:
        kwargs.update(num_labels=len(labels), id2label=dict(enumerate(labels)),
                      label2id={lab: i for i, lab in enumerate(labels)},
                      ignore_mismatched_sizes=True)
    try:
        return AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    except Exception as exc:  # any loading failure is the user's path or network: one line
        raise load_error(source, exc) from None


def label_order(model_labels: list[str], labels: list[str], label_map: dict[str, str]
                ) -> np.ndarray:
    """Column of the model's logits for each data label (data label order).

    The model's names (its config's id2label) must match the data's, directly or through
    `teacher.label_map`; otherwise the error lists both sets and how to map them.
    """
    mapped = [label_map.get(name, name) for name in model_labels]
    if sorted(mapped) != sorted(labels) or len(set(mapped)) != len(mapped):
        raise DataError(
            f"teacher.model: its labels {model_labels} do not match the data's labels {labels}; "
            "map them with teacher.label_map (model label: data label), e.g. "
            + "teacher.label_map: {" + ", ".join(f"{m}: {d}" for m, d in
                                                 zip(model_labels, labels, strict=False)) + "}")
    return np.asarray([mapped.index(lab) for lab in labels], dtype=np.int64)


def model_labels(model: Any) -> list[str]:
    id2label = model.config.id2label
    return [str(id2label[i]) for i in range(len(id2label))]
