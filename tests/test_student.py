from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import student_section, teacher_config, train_student_interrupted
from safetensors.torch import load_file

from sparse_distill.errors import StageError
from sparse_distill.inference.featurize import Bag, Unseen, Vocabulary
from sparse_distill.inference.network import SparseDAN, bag_tensors
from sparse_distill.inference.student import Student
from sparse_distill.stages.config import config_from_dict
from sparse_distill.stages.teach import teach
from sparse_distill.stages.train_student import train_student
from sparse_distill.stages.vocab import build_vocab
from sparse_distill.training.config import DistillConfig
from sparse_distill.training.losses import kd_loss
from sparse_distill.training.trainer import distill_schedule


def test_kd_loss_is_zero_for_equal_distributions_and_positive_otherwise():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0]])
    assert kd_loss(logits, logits.clone(), temperature=2.0).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert kd_loss(logits, other).item() > 0


def test_kd_loss_scales_by_t_squared():
    student, teacher = torch.tensor([[1.0, -1.0]]), torch.tensor([[-0.5, 2.0]])
    t = 3.0
    p_t = torch.softmax(teacher / t, -1)
    kl = (p_t * (torch.log(p_t) - torch.log_softmax(student / t, -1))).sum()
    assert kd_loss(student, teacher, temperature=t).item() == pytest.approx(kl.item() * t * t)


def test_corpus_rows_gather_like_python():
    bag = Bag(ids=np.array([5, 1, 2, 7, 7, 3], np.int32), offsets=np.array([0, 2, 2, 5, 6]),
              weights=np.array([1, 2, 1, 1, 3, 1], np.float32))
    got = bag.rows(np.array([3, 0, 1, 2]))
    assert got.offsets.tolist() == [0, 1, 3, 3, 6]
    assert got.ids.tolist() == [3, 5, 1, 2, 7, 7]
    assert got.weights.tolist() == [1, 1, 2, 1, 1, 3]


def test_a_tiny_student_learns_a_separable_task():
    torch.manual_seed(0)
    # Texts of class 0 contain id 0..4, class 1 contain id 5..9: linearly separable bags.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    ids = np.concatenate([rng.choice(5, 3, replace=False) + 5 * y for y in labels])
    offsets = np.arange(0, 3 * 200 + 1, 3)
    corpus = Bag(ids.astype(np.int32), offsets, np.ones(len(ids), np.float32))
    model = SparseDAN(10, 2, 8, [8], dropout=0.0)
    sparse = torch.optim.SparseAdam(list(model.embedding.parameters()), lr=0.05)
    dense = torch.optim.AdamW(model.dense_parameters(), lr=0.05)
    from sparse_distill.inference.network import bag_tensors

    for _ in range(60):
        idx = rng.choice(200, 32, replace=False)
        loss = torch.nn.functional.cross_entropy(
            model(*bag_tensors(corpus.rows(idx), "mean", torch.device("cpu"))),
            torch.from_numpy(labels[idx]))
        sparse.zero_grad()
        dense.zero_grad()
        loss.backward()
        assert model.embedding.weight.grad.is_sparse  # no dense gradient of the table
        sparse.step()
        dense.step()
    pred = model(*bag_tensors(corpus.rows(np.arange(200)), "mean", torch.device("cpu")))
    assert (pred.argmax(1).numpy() == labels).mean() == 1.0


def student_config(config_dict, tiny_classifier, **student):
    config_dict = teacher_config(config_dict, tiny_classifier, finetune=False)
    config_dict["student"] = {**student_section(), **student}
    return config_from_dict(config_dict)


def pipeline(cfg):
    build_vocab(cfg)
    teach(cfg)
    return train_student(cfg)


def test_stage_writes_a_self_contained_student(config_dict, tiny_classifier, tmp_path):
    cfg = student_config(config_dict, tiny_classifier)
    result = pipeline(cfg)
    out = result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "log.jsonl", "manifest.json", "model-kd.safetensors", "model.safetensors",
        "projection.safetensors", "student.json", "vocab"]
    card = (out / "README.md").read_text()
    assert card.startswith("# Text classifier: neg, pos")
    assert 'Student.load("THIS_DIRECTORY")' in card and "sdistill predict THIS_DIRECTORY" in card
    teacher = json.loads((out / "student.json").read_text())["teacher"]
    assert teacher == {"source": str(tiny_classifier), "finetuned": False}
    assert f"`{tiny_classifier}`" in card and "Test figures: run `sdistill eval" in card
    m = result.manifest
    assert set(m["results"]) == {"kd", "kd_ft", "calibration"}
    assert m["results"]["kd"]["steps"] == 24
    meta = json.loads((out / "student.json").read_text())
    assert meta["calibration"] == m["results"]["calibration"]
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["phase"] == "distill"] == [8, 16, 24]
    assert all({"loss", "dev_accuracy", "samples_per_s"} <= set(r) for r in log)
    # The directory alone predicts, after a move, identically to the trained weights run with
    # the run's own vocabulary (not the directory's copy of it).
    texts = ["A warm, funny film.", "A dull mess.", "", "warm film, dull plot"]
    arch = json.loads((out / "student.json").read_text())["architecture"]
    trained = SparseDAN(arch["vocab_size"], 2, arch["embedding_dim"], arch["hidden_dims"],
                        dropout=0.0, initialise=False)
    trained.load_state_dict(load_file(str(out / "model.safetensors")), assign=True)
    bag = Vocabulary.load(cfg.run_dir() / "vocab").featurizer()(texts)
    with torch.no_grad():
        expected = trained.eval()(*bag_tensors(bag, "mean", torch.device("cpu"))).numpy()
    moved = tmp_path / "moved"
    out.rename(moved)
    student = Student.load(moved)
    np.testing.assert_allclose(student.logits(texts), expected, rtol=1e-6, atol=1e-7)
    assert set(student.predict(texts)) <= {"neg", "pos"}
    proba = student.predict_proba(texts)
    assert proba.shape == (4, 2) and np.allclose(proba.sum(1), 1.0, atol=1e-6)
    assert not (cfg.run_dir() / "student.partial").exists()


def test_a_student_with_buckets_saves_them_and_uses_them_at_prediction(config_dict,
                                                                      tiny_classifier):
    cfg = student_config(config_dict, tiny_classifier, buckets=64, subwords=[2, 4])
    out = pipeline(cfg).output
    arch = json.loads((out / "student.json").read_text())["architecture"]
    n_vocab = len(Vocabulary.load(out / "vocab"))
    assert arch["vocab_size"] == n_vocab + 64
    assert arch["unseen"] == {"buckets": 64, "ngrams": True, "subwords": [2, 4]}
    student = Student.load(out)
    assert student.featurizer.unseen == Unseen(64, True, (2, 4))
    assert student.model.embedding.weight.shape[0] == n_vocab + 64
    # A word the vocabulary lacks reaches the model through its buckets.
    ids, _, _ = student.tensors(["zqxwvut"])
    assert len(ids) > 0 and bool((ids >= n_vocab).all())
    assert student.predict(["zqxwvut", "A dull mess."])[1] in {"neg", "pos"}
    # Without buckets the same run directory's corpus features are kept apart.
    features = sorted(p.name for p in (cfg.run_dir() / "features").iterdir())
    train_student(student_config(config_dict, tiny_classifier), force=True)
    assert len(sorted(p.name for p in (cfg.run_dir() / "features").iterdir())) == \
        len(features) + 1


def test_resume_equals_an_uninterrupted_run(config_dict, tiny_classifier, tmp_path, monkeypatch):
    from sparse_distill.training import trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "CHECKPOINT_SECONDS", 0.0)  # as in the interrupted run
    whole = student_config(dict(config_dict, run={"dir": str(tmp_path / "a")}), tiny_classifier)
    pipeline(whole)
    broken = student_config(dict(config_dict, run={"dir": str(tmp_path / "b")}), tiny_classifier)
    build_vocab(broken)
    teach(broken)
    train_student_interrupted(broken, monkeypatch)  # killed after the checkpoint of step 16
    for name in ("model-kd.safetensors", "model.safetensors"):
        a = (tmp_path / "a" / "student" / name).read_bytes()
        b = (tmp_path / "b" / "student" / name).read_bytes()
        assert a == b, name


def test_student_refuses_a_stale_vocab(config_dict, tiny_classifier):
    cfg = student_config(config_dict, tiny_classifier)
    pipeline(cfg)
    config_dict = json.loads(json.dumps(cfg.to_dict()))
    config_dict["vocab"]["min_df"] = 2
    changed = config_from_dict(config_dict)
    with pytest.raises(StageError, match=re.escape("run `sdistill vocab CONFIG --force` first")):
        train_student(changed, force=True)


ONE_STEP = """
import re, torch
from sparse_distill.inference.network import SparseDAN
# VmHWM is this process's own peak RSS. ru_maxrss is not: Linux carries the parent's peak into a
# child across vfork + exec, so after a large pytest process it can exceed the child's own.
def peak_kib():
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\\s+(\\d+)", f.read()).group(1))
before = peak_kib()
model = SparseDAN(1_000_000, 2, 64, [64], dropout=0.0)
sparse = torch.optim.SparseAdam(list(model.embedding.parameters()))
dense = torch.optim.AdamW(model.dense_parameters())
ids = torch.randint(0, 1_000_000, (2048 * 30,))
offsets = torch.arange(0, 2048 * 30 + 1, 30)
loss = model(ids, offsets, torch.full((len(ids),), 1 / 30)).logsumexp(1).mean()
loss.backward()
assert model.embedding.weight.grad.is_sparse
sparse.step()
dense.step()
print((peak_kib() - before) / 1024)
"""


def test_a_million_row_table_trains_a_step_in_bounded_memory():
    # A fresh process, so that the peak RSS is this step's and not an earlier test's.
    proc = subprocess.run([sys.executable, "-c", ONE_STEP], capture_output=True, text=True,
                          timeout=120, check=True)
    grown_mib = float(proc.stdout.strip())
    table_mib = 1_000_000 * 64 * 4 / 2**20  # 244 MiB
    # The table and SparseAdam's two moments are 3 tables (measured: 3.7 with the sparse
    # gradient and the update's temporaries); the same step with a dense gradient and Adam
    # measured 6.4 tables here.
    assert 2.5 * table_mib < grown_mib < 4.5 * table_mib, grown_mib


def test_weights_are_written_without_a_copy_and_load_with_safetensors(tmp_path):
    from safetensors.torch import load_file

    from sparse_distill.inference.network import save_weights

    state = {"embedding.weight": torch.randn(50, 8), "mlp.1.bias": torch.randn(8),
             "half": torch.randn(3, 2).to(torch.bfloat16), "count": torch.arange(5)}
    save_weights(state, tmp_path / "w.safetensors")
    loaded = load_file(str(tmp_path / "w.safetensors"))
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temp file left


def test_cli_train_student_summary_and_rerun(config_dict, tiny_classifier, write_config):
    from typer.testing import CliRunner

    from sparse_distill.cli import app

    cfg = student_config(config_dict, tiny_classifier)
    build_vocab(cfg)
    teach(cfg)
    path = write_config(json.loads(json.dumps(cfg.to_dict())))
    result = CliRunner().invoke(app, ["train-student", str(path)])
    assert result.exit_code == 0, result.output
    assert "KD dev accuracy" in result.output and "KD+FT dev accuracy" in result.output
    assert f"next:   sdistill eval {path}" in result.output
    # stderr is not a terminal here, as in a log file: progress comes as plain lines.
    assert re.search(r"\] distill: started of 24 steps\n", result.output)
    assert re.search(r"\] distill: done, 24 steps in \d+s; loss [\d.]+, dev [\d.]+", result.output)
    assert "] finetune: started of " in result.output
    again = CliRunner().invoke(app, ["train-student", str(path)])
    assert again.exit_code == 0 and "is up to date" in again.output


def test_a_fine_tune_resumed_after_a_crash_equals_an_uninterrupted_one(config_dict,
                                                                        tiny_classifier,
                                                                        tmp_path, monkeypatch):
    from sparse_distill.stages.train_student import train_student
    from sparse_distill.training import trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint every evaluation
    whole = student_config(dict(config_dict, run={"dir": str(tmp_path / "a")}), tiny_classifier)
    pipeline(whole)
    broken = student_config(dict(config_dict, run={"dir": str(tmp_path / "b")}), tiny_classifier)
    build_vocab(broken)
    teach(broken)
    real_save = trainer_mod.PhaseTrainer.save

    finished_kd = []

    def die_in_fine_tuning(self):
        real_save(self)
        if self.phase == "finetune":
            # The finished distillation's checkpoint no longer holds tables, only its state.
            finished_kd.append(torch.load(self.ckpt.with_name("distill.ckpt"), weights_only=True))
            raise KeyboardInterrupt  # killed after fine-tuning's first epoch

    monkeypatch.setattr(trainer_mod.PhaseTrainer, "save", die_in_fine_tuning)
    with pytest.raises(KeyboardInterrupt):
        train_student(broken)
    monkeypatch.setattr(trainer_mod.PhaseTrainer, "save", real_save)
    assert list(finished_kd[0]) == ["state"] and finished_kd[0]["state"]["finished"]
    resumed = train_student(broken).manifest
    whole = json.loads((tmp_path / "a" / "student" / "manifest.json").read_text())["results"]
    # the same results, and each phase says it resumed (its time is then this process's share:
    # the finished KD phase's checkpoint, the fine-tune's after its first epoch)
    assert [resumed["results"][p].pop("resumed") for p in ("kd", "kd_ft")] == [True, True]
    assert [whole[p].pop("resumed") for p in ("kd", "kd_ft")] == [False, False]
    assert resumed["results"] == whole
    assert (tmp_path / "b" / "student" / "model.safetensors").read_bytes() == \
        (tmp_path / "a" / "student" / "model.safetensors").read_bytes()


def test_threads_split_a_large_call_and_give_the_same_logits(trained_student):
    import threading

    import torch


    texts = [f"a warm film {i} with a dull plot" if i % 3 else "awful" for i in range(1500)]
    one = Student.load(trained_student, threads=1)
    two = Student.load(trained_student, threads=2)
    assert [len(c) for c in two.chunks(texts)] == [750, 750]  # a share a thread
    assert [len(c) for c in one.chunks(texts)] == [1024, 476]  # at most batch_size a chunk
    before = torch.get_num_threads()
    expected = one.logits(texts)
    assert np.array_equal(two.logits(texts), expected)  # bit for bit
    assert torch.get_num_threads() == before  # torch's setting comes back
    # Concurrent callers share the threads and leave torch as they found it.
    results: list[np.ndarray] = []
    workers = [threading.Thread(target=lambda: results.append(two.logits(texts)))
               for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert all(np.array_equal(r, expected) for r in results) and len(results) == 3
    assert torch.get_num_threads() == before
    assert two.predict(texts[:1]) == one.predict(texts[:1])  # a small call: inline


def test_auto_schedule_is_ten_passes_evaluated_every_half_pass():
    # rt's corpus: 278,263 texts at batch 2048 is 135.9 steps a pass.
    assert distill_schedule(DistillConfig(), 278_263) == (1359, 68)
    assert distill_schedule(DistillConfig(steps=3000, eval_every=250), 278_263) == (3000, 250)
    assert distill_schedule(DistillConfig(batch_size=8), 5) == (7, 1)
    assert distill_schedule(DistillConfig(), 10**9)[0] == 100_000  # the paper's cap
    assert distill_schedule(DistillConfig(steps=10), 10**6) == (10, 10)  # eval at least at the end


def test_defaults_stop_early_when_dev_stops_improving(config_dict, tiny_classifier, monkeypatch):
    from sparse_distill.training import trainer as trainer_mod

    # An lr too small to move the weights: dev accuracy never improves on the first evaluation,
    # so distillation stops after 1 + patience evaluations of the auto schedule.
    cfg = student_config(config_dict, tiny_classifier,
                         distill={"steps": "auto", "eval_every": "auto", "batch_size": 8,
                                  "lr": 1e-12, "patience": 2},
                         finetune={"epochs": 0})
    saves = []
    real_save = trainer_mod.PhaseTrainer.save
    monkeypatch.setattr(trainer_mod.PhaseTrainer, "save",
                        lambda self: (saves.append(self.state["step"]), real_save(self)))
    result = pipeline(cfg)
    kd = result.manifest["results"]["kd"]
    n_rows = result.manifest["counts"]["targets"]
    assert kd["planned_steps"] == -(-10 * n_rows // 8)
    assert kd["eval_every"] == -(-n_rows // 16)
    assert kd["steps"] == 3 * kd["eval_every"] < kd["planned_steps"]
    log = [json.loads(x) for x in (result.output / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [kd["eval_every"] * i for i in (1, 2, 3)]
    assert saves == [kd["steps"]]  # a checkpoint at the stop; the evaluations before, seconds apart


@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_batches_gathered_on_the_device_equal_the_hosts(pooling, monkeypatch):
    from sparse_distill.training.corpus import ResidentCorpus, batch_maker

    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 9, 50)  # empty rows too
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    corpus = Bag(rng.integers(0, 1000, offsets[-1]).astype(np.int32), offsets,
                 rng.integers(1, 4, offsets[-1]).astype(np.float32))
    targets = rng.standard_normal((50, 3)).astype(np.float32)
    gold = rng.integers(0, 3, 50)
    monkeypatch.setattr(ResidentCorpus, "CHUNK_ROWS", 7)  # rows moved in several chunks
    cpu = torch.device("cpu")
    for kd in (targets, None):  # distillation, then fine-tuning on the 20 labelled rows
        host = batch_maker(corpus, kd, gold, 20, 0.5, pooling, cpu, resident=False)
        device = batch_maker(corpus, kd, gold, 20, 0.5, pooling, cpu, resident=True)
        for idx in (rng.permutation(50 if kd is not None else 20)[:16], np.array([3])):
            a, b = host(idx)[1], device(idx)[1]
            assert len(a) == len(b) == (6 if kd is not None else 4)
            assert all(x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_batches_draw_each_epochs_permutation_once_and_prefetch_changes_nothing():
    from sparse_distill.training.corpus import ahead, batches_from

    got = list(batches_from(10, 3, seed=7, start_step=2, total_steps=9))
    # The definition: epoch e's order is default_rng([seed, e]).permutation; 3 batches an epoch.
    expected = [(step, np.random.default_rng([7, step // 3]).permutation(10)[
        (step % 3) * 3:(step % 3) * 3 + 3]) for step in range(2, 9)]
    assert [s for s, _ in got] == [s for s, _ in expected]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, expected, strict=True))

    delays = iter(np.random.default_rng(0).uniform(0, 0.01, 100))

    def prepare(idx):
        # Batches prepared on several threads finish out of order; they must come back in order.
        time.sleep(next(delays))
        return idx, (torch.from_numpy(idx * 2),)

    plain = list(ahead(batches_from(10, 3, 7, 0, 9), prepare, prefetch=0))
    for prefetch in (1, 5):
        early = list(ahead(batches_from(10, 3, 7, 0, 9), prepare, prefetch))
        assert [s for s, _ in plain] == [s for s, _ in early] == list(range(9))
        assert all(torch.equal(a[1][0], b[1][0])
                   for (_, a), (_, b) in zip(plain, early, strict=True))
    assert list(ahead(batches_from(10, 3, 7, 9, 9), prepare, prefetch=3)) == []


@pytest.mark.parametrize("kind", ["kl", "mse"])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_kd_mixes_in_cross_entropy_on_the_gold_rows_only(alpha, kind):
    from sparse_distill.training.corpus import batch_maker
    from sparse_distill.training.losses import step_loss

    torch.manual_seed(0)
    # Rows 0-2 are labelled texts, rows 3-5 pool texts: alpha weighs the gold rows' cross-entropy
    # against the whole batch's KL.
    corpus = Bag(np.arange(12, dtype=np.int32) % 7, np.arange(0, 13, 2), np.ones(12, np.float32))
    targets = torch.randn(6, 3).numpy()
    gold = np.array([2, 0, 1, 0, 0, 0])
    model = SparseDAN(7, 3, 4, [4], dropout=0.0)
    idx = np.array([4, 1, 5, 2])
    _, inputs = batch_maker(corpus, targets, gold, 3, alpha, "mean", torch.device("cpu"),
                            resident=False)(idx)
    logits = model(*inputs[:3])
    teacher = torch.from_numpy(targets[idx])
    kd = kd_loss(logits, teacher) if kind == "kl" else ((logits - teacher) ** 2).mean()
    ce = torch.nn.functional.cross_entropy(logits[[1, 3]], torch.tensor([0, 1]))
    want = kd if alpha == 0 else (1 - alpha) * kd + alpha * ce
    assert step_loss(model, inputs, True, kind, 1.0, alpha).item() == pytest.approx(want.item())


def test_mse_distillation_keeps_the_logits_scale_that_kl_ignores():
    from sparse_distill.training.losses import distill_loss

    teacher = torch.tensor([[2.0, -1.0, 0.5]])
    shifted = teacher + 3.0  # the same softmax, other logits
    assert distill_loss(shifted, teacher, "kl", 1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distill_loss(shifted, teacher, "mse", 1.0).item() == pytest.approx(9.0)
    # The temperature softens KL's targets; squared error on logits has none to soften.
    assert distill_loss(shifted, teacher, "mse", 4.0).item() == pytest.approx(9.0)


def test_a_wide_student_adds_its_linear_columns_to_the_dans_logits(wide_student):
    from sparse_distill.inference.artifact import read_student

    student = Student.load(wide_student)
    arch = read_student(wide_student)["architecture"]
    d, n_labels = arch["embedding_dim"], len(student.labels)
    table = load_file(str(wide_student / "model.safetensors"))["embedding.weight"]
    assert arch["wide"] and table.shape[1] == d + n_labels
    # Trained: the linear columns moved from their zero start.
    assert table[:, d:].abs().sum() > 0
    texts = ["a warm, funny film", "a dull mess", "zzz"]
    ids, offsets, weights = student.tensors(texts)
    pooled = torch.nn.functional.embedding_bag(ids, table, offsets, mode="sum",
                                               per_sample_weights=weights,
                                               include_last_offset=True)  # (3, d + labels)
    with torch.no_grad():
        deep = student.model.mlp.eval()(pooled[:, :d])  # (3, labels)
    assert np.allclose(student.logits(texts), (deep + pooled[:, d:]).numpy(), atol=1e-5)
