from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import student_section, teacher_config
from safetensors.torch import load_file

from sparse_distill.inference.featurize import Vocabulary
from sparse_distill.stages.config import config_from_dict
from sparse_distill.stages.teach import teach
from sparse_distill.stages.train_student import train_student
from sparse_distill.stages.vocab import build_vocab
from sparse_distill.training import embed_init


def vocabulary(ngrams: list[str]) -> Vocabulary:
    n = len(ngrams)
    return Vocabulary(ngrams, np.ones(n, np.int64), np.ones(n, np.int64), (1, 2), True,
                      r"(?u)\b\w\w+\b")


def test_ngrams_become_bags_of_their_words():
    words, ids, offsets = embed_init.vocabulary_words(vocabulary(["good", "not good", "not"]))
    assert words == ["good", "not"]
    assert ids.tolist() == [0, 1, 0, 1] and offsets.tolist() == [0, 1, 3, 4]


def test_projection_keeps_the_main_directions_at_the_random_init_scale(tmp_path):
    rng = np.random.default_rng(0)
    # 500 vectors that vary mostly along 3 directions of a 10-dimensional space.
    basis = np.linalg.qr(rng.normal(size=(10, 10)))[0]  # (10, 10)
    x = (rng.normal(size=(500, 10)) * [9, 5, 3, .1, .1, .1, .1, .1, .1, .1]) @ basis.T + 4.0
    projection = embed_init.fit_projection(x.astype(np.float32), 3)
    y = projection(x.astype(np.float32))  # (500, 3)
    assert y.shape == (500, 3)
    assert np.linalg.norm(y, axis=1).mean() == pytest.approx(1.0, rel=1e-5)
    centred = x - x.mean(0)
    # The three components keep nearly all of the variance, in decreasing order.
    scale = np.linalg.norm(centred, axis=1).mean()
    assert (y ** 2).sum() * scale ** 2 / (centred ** 2).sum() > 0.99
    assert np.all(np.diff(y.var(0)) < 0)
    wide = embed_init.fit_projection(x.astype(np.float32), 16)(x.astype(np.float32))
    assert wide.shape == (500, 16) and not wide[:, 10:].any()  # past the vectors' width: zeros
    # Saved and loaded, it maps new vectors as it mapped these.
    projection.save(tmp_path / "p.safetensors")
    again = embed_init.Projection.load(tmp_path / "p.safetensors")
    assert np.array_equal(again(x[:7].astype(np.float32)), y[:7])


def test_teacher_table_composes_ngrams_and_caches_word_vectors(tiny_classifier, tmp_path,
                                                              monkeypatch):
    vocab = vocabulary(["great", "film", "great film", "dull", "dull film"])
    table, _ = embed_init.teacher_table(vocab, str(tiny_classifier), 8, tmp_path,
                                        torch.device("cpu"))  # (5, 8)
    assert table.shape == (5, 8)
    torch.testing.assert_close(table[2], (table[0] + table[1]) / 2)
    torch.testing.assert_close(table[4], (table[3] + table[1]) / 2)
    assert len({tuple(r) for r in table[[0, 1, 3]].tolist()}) == 3  # distinct words, distinct rows

    # The word vectors are cached per teacher and words: no second pass through the encoder.
    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder ran again")

    monkeypatch.setattr(embed_init, "encode_words", no_encoder)
    again, _ = embed_init.teacher_table(vocab, str(tiny_classifier), 8, tmp_path,
                                        torch.device("cpu"))
    torch.testing.assert_close(again, table, rtol=0, atol=0)
    # Another word list of the same teacher: only its new words go through the encoder.
    monkeypatch.undo()
    encoded: list[list[str]] = []
    real = embed_init.encode_words

    def counted(encoder, tokenizer, words, *args, **kwargs):
        encoded.append(list(words))
        return real(encoder, tokenizer, words, *args, **kwargs)

    monkeypatch.setattr(embed_init, "encode_words", counted)
    words = ["film", "superb", "great"]
    vectors = embed_init.word_vectors(str(tiny_classifier), words, tmp_path,
                                      torch.device("cpu"), False)
    assert encoded == [["superb"]]
    first = embed_init.word_vectors(str(tiny_classifier), ["great", "film", "dull"], tmp_path,
                                    torch.device("cpu"), False)
    assert np.array_equal(vectors[[2, 0]], first[:2])  # copied, not encoded again
    fresh = embed_init.word_vectors(str(tiny_classifier), ["superb"], tmp_path / "empty",
                                    torch.device("cpu"), False)
    np.testing.assert_allclose(vectors[1:2], fresh, rtol=0, atol=1e-5)


def test_student_init_teacher_starts_the_table_from_the_teacher(config_dict, tiny_classifier):
    data = teacher_config(config_dict, tiny_classifier, finetune=False)
    # An lr too small to move the weights: the saved table is the starting one.
    data["student"] = {**student_section(), "init": "teacher", "embedding_dim": 16,
                       "distill": {"steps": 2, "batch_size": 8, "eval_every": 2, "lr": 1e-12},
                       "finetune": {"epochs": 0}}
    cfg = config_from_dict(data)
    build_vocab(cfg)
    teach(cfg)
    result = train_student(cfg)
    assert result.manifest["timings"]["init_s"] > 0
    table = load_file(str(result.output / "model.safetensors"))["embedding.weight"]
    expected, projection = embed_init.teacher_table(
        Vocabulary.load(cfg.run_dir() / "vocab"), str(tiny_classifier), 16,
        cfg.run_dir() / "features" / "init", torch.device("cpu"))
    torch.testing.assert_close(table, expected, rtol=0, atol=1e-6)
    saved = embed_init.Projection.load(result.output / "projection.safetensors")
    assert torch.equal(saved.components, projection.components)
