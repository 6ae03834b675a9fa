"""The student stage's memory: its estimate against the peak it then measures, and a machine
without that much memory stopped before anything is allocated or written, with the setting
that fits."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from conftest import student_section, teacher_config

from sparse_distill.errors import StageError
from sparse_distill.stages import train_student as train_student_mod
from sparse_distill.stages.config import config_from_dict
from sparse_distill.stages.rundir import read_manifest
from sparse_distill.stages.teach import teach
from sparse_distill.stages.train_student import train_student
from sparse_distill.stages.vocab import build_vocab
from sparse_distill.training import trainer as trainer_mod
from sparse_distill.training.memory import StudentShape

# 2M hashed rows x d 64: a 0.5 GiB table and 1 GiB of SparseAdam moments, large enough to
# stand out of what torch itself holds.
BIG = {"buckets": 2_000_000, "embedding_dim": 64, "hidden_dims": [64]}


def _config(config_dict, tiny_classifier, **student):
    data = teacher_config(config_dict, tiny_classifier, finetune=False)
    data["student"] = {**student_section(), **student}
    cfg = config_from_dict(data)
    build_vocab(cfg)
    teach(cfg)
    return cfg, data


def test_the_estimate_is_within_a_fifth_of_the_measured_peak(config_dict, tiny_classifier,
                                                             tmp_path):
    cfg, data = _config(config_dict, tiny_classifier, **BIG)
    # In a process of its own, as a user runs it: a test process's earlier tests leave freed
    # memory that the stage would reuse unseen.
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "sparse_distill", "train-student", str(path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    memory = read_manifest(cfg.run_dir() / "student")["memory"]
    estimate, peak = memory["estimate_gib"], memory["peak_gib"]
    assert estimate["table"] == pytest.approx(2_000_000 * 64 * 4 / 2**30, rel=0.01)
    assert estimate["optimizer"] >= 2 * estimate["table"]
    assert peak > estimate["held"] + 2.5 * estimate["table"]  # the moments were allocated
    assert estimate["peak"] == pytest.approx(peak, rel=0.2)


def test_too_little_memory_stops_before_the_table_with_a_setting_that_fits(
        config_dict, tiny_classifier, monkeypatch):
    cfg, _ = _config(config_dict, tiny_classifier, **BIG)
    shapes: list[StudentShape] = []
    real_shape = train_student_mod.student_shape
    monkeypatch.setattr(train_student_mod, "student_shape",
                        lambda *a: shapes.append(real_shape(*a)) or shapes[-1])
    # Between what d 32 and d 64 need: asked after the shape is known.
    monkeypatch.setattr(train_student_mod, "available_gib", lambda: (
        shapes[0].estimate(32).peak + shapes[0].estimate(64).peak) / 2)
    with pytest.raises(StageError) as err:
        train_student(cfg)
    message = str(err.value)
    assert "\n" not in message and "GiB is available" in message
    assert "student.embedding_dim: " in message and "vocab.max_features" not in message
    # The width it names fits what is available, and the next multiple of 32 does not.
    dim = int(message.split("student.embedding_dim: ")[1].split()[0])
    available = train_student_mod.available_gib()
    assert dim == 32 and shapes[0].estimate(dim).peak <= available
    assert not (cfg.run_dir() / "student").exists()
    assert not (cfg.run_dir() / "student.partial").exists()
    monkeypatch.setenv("SDISTILL_MEMORY_CHECK", "0")  # the user's way past it
    assert (train_student(cfg).output / "model.safetensors").is_file()


def test_too_little_disk_stops_before_training_and_names_the_fixes(config_dict, tiny_classifier,
                                                                    monkeypatch):
    import shutil
    from collections import namedtuple

    cfg, _ = _config(config_dict, tiny_classifier, **{**BIG, "buckets": 200_000})
    estimates = []
    real_check = train_student_mod.check_memory
    monkeypatch.setattr(train_student_mod, "check_memory",
                        lambda *a: estimates.append(real_check(*a)) or estimates[-1])
    usage = namedtuple("usage", "total used free")
    real_usage = shutil.disk_usage
    # Room for 7 of the 8 tables the checkpoints take at their peak.
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(
        0, 0, int(7 * estimates[0].table * (1 << 30))))
    with pytest.raises(StageError) as err:
        train_student(cfg)
    message = str(err.value)
    assert "\n" not in message and "GiB of disk in " in message and "student.partial" in message
    assert "vocab.max_features" in message and "SDISTILL_MEMORY_CHECK=0" in message
    assert not (cfg.run_dir() / "student.partial").exists()
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(
        0, 0, int(8.01 * estimates[0].table * (1 << 30))))
    sizes = []
    real_save = trainer_mod.PhaseTrainer.save

    def measured_save(self):  # the directory as a checkpoint lands beside the old one
        real_save(self)
        sizes.append(sum(f.stat().st_size for f in self.ckpt.parent.iterdir()))

    monkeypatch.setattr(trainer_mod, "CHECKPOINT_SECONDS", 0.0)
    monkeypatch.setattr(trainer_mod.PhaseTrainer, "save", measured_save)
    assert (train_student(cfg).output / "model.safetensors").is_file()
    monkeypatch.setattr(shutil, "disk_usage", real_usage)
    # After each save: the new checkpoint plus the bests; the write itself held the old one too.
    table_bytes = estimates[-1].table * (1 << 30)
    assert max(sizes) + 3 * table_bytes <= 8 * table_bytes * 1.05


def test_the_settings_it_names_are_the_largest_that_fit():
    shape = StudentShape(rows=1_000_000, hidden_dims=[256], n_labels=2, wide=False,
                         corpus_gib=0.1, batch_ngrams=50_000, teacher_gib=0.1, held_gib=0.5)
    for available in (2.0, 4.0, 8.0):
        d = shape.fitting_dim(1000, available)
        assert d is not None and d % 32 == 0
        assert shape.estimate(d).peak <= available < shape.estimate(d + 32).peak
    assert shape.fitting_dim(1000, 0.5) is None
    rows = shape.fitting_rows(256, 2.0)
    assert shape.estimate(256, rows).peak <= 2.0 < shape.estimate(256, rows + 1000).peak
    # A wide table has a column a label more a row.
    wide = StudentShape(**{**shape.__dict__, "wide": True, "n_labels": 20})
    assert wide.estimate(256).table == pytest.approx(shape.estimate(276).table)


def test_weights_read_into_the_model_are_the_ones_written(tmp_path):
    import torch

    from sparse_distill.inference.network import SparseDAN, load_weights_into, save_weights

    torch.manual_seed(0)
    trained, fresh = SparseDAN(50, 3, 8, [4]), SparseDAN(50, 3, 8, [4])
    save_weights(trained.state_dict(), tmp_path / "w.safetensors")
    table = fresh.embedding.weight
    load_weights_into(fresh, tmp_path / "w.safetensors")
    assert fresh.embedding.weight is table  # read into the model's own memory
    for name, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
    with pytest.raises(ValueError, match=r"embedding\.weight"):
        load_weights_into(SparseDAN(51, 3, 8, [4]), tmp_path / "w.safetensors")


def test_memory_an_earlier_student_freed_is_given_back_before_the_next():
    import torch

    from sparse_distill.files import resident_gib
    from sparse_distill.training.trainer import return_freed_memory, reuse_freed_memory

    reuse_freed_memory()  # as training sets it: freed blocks stay with the process
    tables = [torch.ones(1 << 27) for _ in range(2)]  # 2 x 0.5 GiB
    del tables
    kept = resident_gib()
    assert return_freed_memory()
    assert kept - resident_gib() > 0.8  # GiB
