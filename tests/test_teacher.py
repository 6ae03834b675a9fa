from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import teacher_config

from sparse_distill.errors import DataError, SDistillError
from sparse_distill.stages.config import config_from_dict
from sparse_distill.stages.teach import teach
from sparse_distill.training.hf import label_order
from sparse_distill.training.teacher import read_targets


def shard_bytes(run_dir: Path) -> dict[str, bytes]:
    targets = run_dir / "teacher" / "targets"
    return {p.name: p.read_bytes() for p in sorted(targets.glob("shard-*.npy"))}


def test_finetune_evaluate_label_and_skip_rerun(config_dict, tiny_roberta):
    cfg = config_from_dict(teacher_config(config_dict, tiny_roberta))
    result = teach(cfg)
    m = result.manifest
    out = cfg.run_dir() / "teacher"
    assert result.output == out and not (cfg.run_dir() / "teacher.partial").exists()
    assert m["teacher"]["finetuned"] and m["finetune"]["epochs"] == 2
    assert m["finetune"]["lr"] == 1.0e-3  # the config's (conftest.teacher_config)
    assert [e["epoch"] for e in m["finetune"]["dev_by_epoch"]] == [1.0, 2.0]
    assert set(m["eval"]) == {"dev", "test"}
    assert 0.0 <= m["eval"]["test"]["accuracy"] <= 1.0 and m["eval"]["test"]["n"] == 6
    # The saved teacher carries the data's labels, and its checkpoints are gone.
    saved = json.loads((out / "model" / "config.json").read_text())
    assert saved["id2label"] == {"0": "neg", "1": "pos"}
    assert not (out / "checkpoints").exists()
    # Targets: train then the guarded pool, in shards of 10, with an index.
    logits, rows = read_targets(out / "targets")
    assert logits.shape == (28 + 17, 2) and logits.dtype == np.float32
    assert np.isfinite(logits).all()
    index = json.loads((out / "targets" / "index.json").read_text())
    assert [s["rows"] for s in index["shards"]] == [10, 10, 10, 10, 5]
    assert index["labels"] == ["neg", "pos"] and index["train_rows"] == 28
    assert rows[0]["split"] == "train" and rows[0]["label"] in ("neg", "pos")
    assert rows[28]["split"] == "unlabeled" and rows[28]["label"] is None
    assert m["counts"]["targets"] == 45 and m["labelling"]["resumed_shards"] == 0
    again = teach(cfg)
    assert again.skipped and again.manifest["created"] == m["created"]


def test_auto_lr_scales_with_the_encoders_width():
    from types import SimpleNamespace

    from sparse_distill.training.config import TeacherConfig
    from sparse_distill.training.teacher import teacher_lr

    auto = TeacherConfig(lr="auto")
    # RoBERTa-large's width gets the paper's rate; MiniLM's (384) 2.67x it
    assert teacher_lr(auto, SimpleNamespace(hidden_size=1024)) == pytest.approx(2.0e-5)
    assert teacher_lr(auto, SimpleNamespace(hidden_size=384)) == pytest.approx(2.0e-5 * 1024 / 384)
    assert teacher_lr(auto, SimpleNamespace(d_model=512)) == pytest.approx(4.0e-5)
    assert teacher_lr(auto, SimpleNamespace()) == pytest.approx(2.0e-5)
    assert teacher_lr(TeacherConfig(lr=3.0e-5), SimpleNamespace(hidden_size=384)) == 3.0e-5


def test_loaded_classifier_labels_match_or_map(config_dict, tiny_classifier, tmp_path):
    cfg = config_from_dict(teacher_config(config_dict, tiny_classifier, finetune=False))
    m = teach(cfg).manifest
    assert m["finetune"] is None and m["teacher"]["label_columns"] == [0, 1]
    assert not (cfg.run_dir() / "teacher" / "model").exists()  # the source is used in place


def test_label_mismatch_lists_both_sets():
    with pytest.raises(DataError, match=re.escape(
            "teacher.model: its labels ['LABEL_0', 'LABEL_1'] do not match the data's labels "
            "['neg', 'pos']; map them with teacher.label_map (model label: data label), e.g. "
            "teacher.label_map: {LABEL_0: neg, LABEL_1: pos}")):
        label_order(["LABEL_0", "LABEL_1"], ["neg", "pos"], {})
    # Mapped, and in another order than the data's: the columns are permuted.
    assert label_order(["POSITIVE", "NEGATIVE"], ["neg", "pos"],
                       {"POSITIVE": "pos", "NEGATIVE": "neg"}).tolist() == [1, 0]


def test_resume_after_a_crash_writes_identical_targets(config_dict, tiny_classifier, tmp_path,
                                                       monkeypatch):
    from sparse_distill.training import teacher as teacher_mod

    whole = config_from_dict(teacher_config(dict(config_dict, run={"dir": str(tmp_path / "a")}),
                                            tiny_classifier, finetune=False))
    teach(whole)
    crashed = config_from_dict(teacher_config(dict(config_dict, run={"dir": str(tmp_path / "b")}),
                                              tiny_classifier, finetune=False))
    real_save = teacher_mod.save_npy
    calls = []

    def save_then_die(path, array):
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while labelling the third shard
        calls.append(path)
        real_save(path, array)

    monkeypatch.setattr(teacher_mod, "save_npy", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        teach(crashed)
    partial = tmp_path / "b" / "teacher.partial" / "targets"
    assert sorted(p.name for p in partial.glob("shard-*.npy")) == ["shard-00000.npy",
                                                                   "shard-00001.npy"]
    assert not (tmp_path / "b" / "teacher").exists()
    monkeypatch.setattr(teacher_mod, "save_npy", real_save)
    resumed = teach(crashed)
    assert resumed.manifest["labelling"]["resumed_shards"] == 2
    assert resumed.manifest["labelling"]["resumed_texts"] == 20
    assert resumed.manifest["labelling"]["texts"] == 45  # the run's, not only this process's
    assert shard_bytes(tmp_path / "b") == shard_bytes(tmp_path / "a")
    assert len(shard_bytes(tmp_path / "a")) == 5


def test_partial_state_from_another_config_is_discarded(config_dict, tiny_classifier,
                                                        monkeypatch):
    from sparse_distill.training import teacher as teacher_mod

    cfg = config_from_dict(teacher_config(config_dict, tiny_classifier, finetune=False))
    monkeypatch.setattr(teacher_mod, "save_npy", lambda *a: (_ for _ in ()).throw(OSError))
    with pytest.raises(OSError):
        teach(cfg)
    monkeypatch.undo()
    changed = config_from_dict(teacher_config(config_dict, tiny_classifier, finetune=False,
                                              shard_size=7))
    m = teach(changed).manifest
    assert m["counts"]["shards"] == 7 and m["labelling"]["resumed_shards"] == 0


def test_finetune_resumes_from_its_last_epoch_checkpoint(config_dict, tiny_roberta, monkeypatch):
    from transformers import TrainerCallback

    from sparse_distill.training import teacher as teacher_mod

    cfg = config_from_dict(teacher_config(config_dict, tiny_roberta))
    real_callback = teacher_mod._progress_callback

    class DieAfterFirstSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise KeyboardInterrupt

    monkeypatch.setattr(teacher_mod, "_progress_callback", lambda *a: DieAfterFirstSave())
    with pytest.raises(KeyboardInterrupt):
        teach(cfg)
    checkpoints = cfg.run_dir() / "teacher.partial" / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["checkpoint-4"]  # epoch 1 of 2
    monkeypatch.setattr(teacher_mod, "_progress_callback", real_callback)
    m = teach(cfg).manifest
    assert m["finetune"]["resumed_from"] == "checkpoint-4" and m["finetune"]["steps"] == 8


def test_hub_id_offline_is_one_clear_error(config_dict):
    cfg = config_from_dict(teacher_config(config_dict, Path("roberta-large")))
    cfg.teacher.model = "roberta-large"
    with pytest.raises(SDistillError) as info:
        teach(cfg)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("teacher.model: 'roberta-large' is not a local directory and "
                              "could not be loaded from the Hugging Face Hub (")
    assert "sdistill data fetch minilm" in message


def _run_teach(config: Path, nproc: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1]))
    if nproc == 1:
        cmd = [sys.executable, "-m", "sparse_distill", "teach", str(config)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               str(nproc), "--no-python", sys.executable, "-m", "sparse_distill", "teach",
               str(config)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


def test_two_processes_label_exactly_like_one(config_dict, tiny_classifier, write_config,
                                               tmp_path):
    one = teacher_config(dict(config_dict, run={"dir": str(tmp_path / "one")}), tiny_classifier,
                         finetune=False)
    two = teacher_config(dict(config_dict, run={"dir": str(tmp_path / "two")}), tiny_classifier,
                         finetune=False)
    single = _run_teach(write_config(one, "one.yaml"), 1)
    assert single.returncode == 0, single.stderr[-3000:]
    double = _run_teach(write_config(two, "two.yaml"), 2)
    assert double.returncode == 0, double.stderr[-3000:]
    assert "2 process(es)" in double.stdout
    assert shard_bytes(tmp_path / "two") == shard_bytes(tmp_path / "one")
    for name in ("index.json", "texts.jsonl"):
        assert (tmp_path / "two" / "teacher" / "targets" / name).read_bytes() == \
            (tmp_path / "one" / "teacher" / "targets" / name).read_bytes()
    shutil.rmtree(tmp_path / "one")


def test_cli_teach_prints_a_summary_and_the_next_command(config_dict, tiny_classifier,
                                                         write_config):
    from typer.testing import CliRunner

    from sparse_distill.cli import app

    path = write_config(teacher_config(config_dict, tiny_classifier, finetune=False))
    result = CliRunner().invoke(app, ["teach", str(path)])
    assert result.exit_code == 0, result.output
    assert "test accuracy / macro-F1" in result.output
    assert "45 texts in 5 shards (train 28 + unlabelled 17)" in result.output
    assert f"next:   sdistill train-student {path}" in result.output
    rerun = CliRunner().invoke(app, ["teach", str(path), "--set", "teacher.shard_size=20"])
    assert rerun.exit_code == 1 and "config section 'teacher' changed" in rerun.output


def test_windows_cover_a_long_text_and_average_by_length(tiny_classifier):
    import torch

    from sparse_distill.training.hf import load_classifier, load_tokenizer
    from sparse_distill.training.teacher import encode_windows, predict_logits

    tokenizer = load_tokenizer(str(tiny_classifier), False)
    model = load_classifier(str(tiny_classifier), None, False)
    long_text = " ".join(f"a great film number {i} but dull" for i in range(40))
    texts = ["short and sweet", long_text, ""]
    truncated, owner = encode_windows(tokenizer, texts, 16, 1)
    assert owner.tolist() == [0, 1, 2] and max(map(len, truncated)) == 16

    windows, owner = encode_windows(tokenizer, texts, 16, 5)
    nothing, no_owner = encode_windows(tokenizer, [], 16, 5)
    assert nothing == [] and no_owner.shape == (0,)
    firsts = np.searchsorted(owner, np.arange(3))
    assert [windows[i] for i in firsts] == truncated  # the first window is the truncated text
    assert np.bincount(owner).tolist() == [1, 5, 1]
    every, _ = encode_windows(tokenizer, [long_text], 16, 1000)
    assert windows[firsts[1] + 4] == every[-1]  # spread to the end, not the first five
    assert len(every) > 5

    def run(max_windows: int) -> np.ndarray:
        return predict_logits(model, tokenizer, texts, max_length=16, batch_size=3,
                              device=torch.device("cpu"), precision="fp32",
                              max_windows=max_windows)

    one, five = run(1), run(5)
    # Short texts: unchanged (up to the float noise of being batched with other windows).
    np.testing.assert_allclose(one[[0, 2]], five[[0, 2]], rtol=1e-5, atol=1e-7)
    mine = windows[firsts[1]:firsts[1] + 5]
    each = np.stack([predict_logits(model, tokenizer, [""], max_length=16, batch_size=1,
                                    device=torch.device("cpu"), precision="fp32",
                                    encoded=([w], np.zeros(1, np.int64)))[0] for w in mine])
    weights = np.asarray([len(w) for w in mine], dtype=np.float64)
    np.testing.assert_allclose(five[1], weights @ each / weights.sum(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(five[1], one[1])


def test_teach_with_windows_labels_long_texts_from_all_of_them(config_dict, tiny_classifier):
    plain = teach(config_from_dict(teacher_config(config_dict, tiny_classifier,
                                                  finetune=False, max_length=8)))
    config_dict["run"]["dir"] = str(Path(config_dict["run"]["dir"]).with_name("windows"))
    windowed = teach(config_from_dict(teacher_config(config_dict, tiny_classifier,
                                                     finetune=False, max_length=8,
                                                     max_windows=4)))
    import torch

    from sparse_distill.training.config import TeacherConfig
    from sparse_distill.training.teacher import Teacher

    a, rows = read_targets(plain.output / "targets")
    b, _ = read_targets(windowed.output / "targets")
    assert a.shape == b.shape
    texts = [r["text"] for r in rows]
    teacher = Teacher.load(str(tiny_classifier), ["neg", "pos"],
                           TeacherConfig(max_length=8, max_windows=4), torch.device("cpu"))
    long = np.asarray([len(ids) > 8 for ids in teacher.tokenizer(texts)["input_ids"]])
    assert long.any()
    # The stage labels every window: its logits are those of all the windows of a long text.
    np.testing.assert_allclose(b, teacher.logits(texts), rtol=1e-5, atol=1e-6)
    changed = ~np.isclose(a, b, rtol=1e-5, atol=1e-7).all(axis=1)  # (rows,)
    # Short texts keep their logits; long ones change (a random tiny model gives some long
    # texts' windows near-equal logits, so most, not all, of them move).
    assert not changed[~long].any() and changed[long].mean() > 0.8


def test_a_float16_checkpoint_loads_in_float32(tiny_classifier, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    from sparse_distill.training.hf import load_classifier

    half = AutoModelForSequenceClassification.from_pretrained(str(tiny_classifier)).half()
    half.save_pretrained(str(tmp_path))
    assert AutoModelForSequenceClassification.from_pretrained(str(tmp_path)).dtype == \
        torch.float16  # what transformers 5 does unasked
    for labels in (None, ["neg", "pos"]):
        model = load_classifier(str(tmp_path), labels, False)
        assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch):
    import torch

    from sparse_distill.training.runtime import runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(SDistillError, match=re.escape(
            "run.device: process 1 of 2 would use cuda:1, but this machine has 1 CUDA "
            "device(s); launch at most that many processes")):
        runtime("auto")
    assert not torch.distributed.is_initialized()
