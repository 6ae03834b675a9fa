"""The CUDA path (issue 14): `pytest -m gpu` on a machine with an NVIDIA GPU.

Deselected by default (`pyproject.toml` addopts). Run on a machine without CUDA, every test here
fails with one line saying so: a GPU check is never skipped silently.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import student_section, teacher_config, train_student_interrupted

from sparse_distill.inference.student import Student
from sparse_distill.stages.config import config_from_dict
from sparse_distill.stages.evaluate import evaluate
from sparse_distill.stages.teach import teach
from sparse_distill.stages.train_student import train_student
from sparse_distill.stages.vocab import build_vocab
from sparse_distill.training.hf import load_classifier
from sparse_distill.training.teacher import read_targets

pytestmark = pytest.mark.gpu

TEXTS = ["A warm, funny film.", "A dull mess.", "", "not bad at all, really"] * 50


@pytest.fixture(autouse=True)
def _cuda() -> None:
    if not torch.cuda.is_available():
        pytest.fail("no CUDA device: run `pytest -m gpu` on a machine with an NVIDIA GPU")


def cuda_config(config_dict, tiny_classifier, run_dir, **student):
    data = teacher_config(dict(config_dict, run={"dir": str(run_dir), "seed": 13,
                                                 "device": "cuda"}),
                          tiny_classifier, finetune=False)
    data["student"] = {**student_section(), **student}
    return config_from_dict(data)


def test_a_student_on_cuda_gives_the_cpu_students_labels(trained_student):
    cpu = Student.load(trained_student)
    gpu = Student.load(trained_student, device="cuda")
    assert gpu.model.embedding.weight.is_cuda and gpu.device.type == "cuda"
    same = np.mean([a == b for a, b in zip(gpu.predict(TEXTS), cpu.predict(TEXTS), strict=True)])
    gap = np.abs(gpu.logits(TEXTS) - cpu.logits(TEXTS)).max()
    print(f"\nCUDA vs CPU student: labels agree on {same:.1%} of {len(TEXTS)} texts, "
          f"largest logit difference {gap:.2e}")
    assert same == 1.0 and gap <= 1e-4


def test_the_whole_pipeline_on_cuda_and_eval_times_each_device_apart(config_dict,
                                                                     tiny_classifier, tmp_path):
    cfg = cuda_config(config_dict, tiny_classifier, tmp_path / "run")
    build_vocab(cfg)
    teach(cfg)
    result = train_student(cfg)
    assert result.manifest["device"].startswith("cuda")
    metrics = evaluate(cfg).manifest["metrics"]
    assert metrics["speed"]["device"].startswith("cuda")
    assert metrics["speed_cpu"]["device"] == "cpu"
    report = (cfg.run_dir() / "eval" / "report.md").read_text()
    assert "## Speed on cuda" in report and "## Speed on cpu" in report


def test_the_tiny_teacher_fine_tunes_and_labels_on_cuda_in_bf16(config_dict, tiny_roberta,
                                                                tmp_path):
    data = teacher_config(dict(config_dict, run={"dir": str(tmp_path / "run"), "seed": 13,
                                                 "device": "cuda"}),
                          tiny_roberta, finetune=True, train_precision="bf16",
                          precision="bf16")
    cfg = config_from_dict(data)
    build_vocab(cfg)
    manifest = teach(cfg).manifest
    assert manifest["device"].startswith("cuda") and manifest["precision"] == "bf16"
    assert manifest["finetune"]["epochs"] == 2 and manifest["finetune"]["train_loss"] > 0
    logits, _ = read_targets(cfg.run_dir() / "teacher" / "targets")
    assert logits.dtype == np.float32 and np.isfinite(logits).all() and logits.std() > 0


def test_a_resumed_cuda_run_matches_an_uninterrupted_one(config_dict, tiny_classifier,
                                                          tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from sparse_distill.stages.train_student import train_student
    from sparse_distill.training import trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "CHECKPOINT_SECONDS", 0.0)  # as in the interrupted run
    whole = cuda_config(config_dict, tiny_classifier, tmp_path / "a")
    build_vocab(whole)
    teach(whole)
    train_student(whole)
    broken = cuda_config(config_dict, tiny_classifier, tmp_path / "b")
    build_vocab(broken)
    teach(broken)

    def has_cuda_rng(trainer):  # dropout on CUDA draws from the CUDA generator
        assert "cuda_rng" in torch.load(trainer.ckpt, weights_only=True)

    train_student_interrupted(broken, monkeypatch, on_kill=has_cuda_rng)
    # CUDA's sparse updates sum with atomics, so rounding may differ: within 1e-5, not bytes.
    for name in ("model-kd.safetensors", "model.safetensors"):
        a = load_file(str(tmp_path / "a" / "student" / name))
        b = load_file(str(tmp_path / "b" / "student" / name))
        for key in a:
            assert torch.allclose(a[key], b[key], atol=1e-5), (name, key)


def test_a_float16_checkpoint_is_labelled_from_float32_weights_on_cuda(tiny_classifier,
                                                                     tmp_path):
    from transformers import AutoModelForSequenceClassification

    AutoModelForSequenceClassification.from_pretrained(str(tiny_classifier)).half() \
        .save_pretrained(str(tmp_path))
    model = load_classifier(str(tmp_path), None, False).to("cuda")
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_more_processes_than_gpus_stop_before_any_work(config_dict, tiny_classifier, tmp_path,
                                                        monkeypatch):
    from sparse_distill.errors import SDistillError
    from sparse_distill.training.runtime import runtime

    n = torch.cuda.device_count()
    monkeypatch.setenv("WORLD_SIZE", str(n + 1))
    monkeypatch.setenv("RANK", str(n))
    monkeypatch.setenv("LOCAL_RANK", str(n))
    with pytest.raises(SDistillError, match=f"would use cuda:{n}, but this machine has {n}"):
        runtime("cuda")

