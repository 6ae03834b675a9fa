"""The benchmark's baselines on tiny data: each learns, searches its grid on dev, keeps the best,
and is fed the text its users would feed it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparse_distill.evaluation.baselines import (
    fasttext_line,
    train_fasttext,
    train_model2vec,
    train_tfidf_lr,
)
from sparse_distill.training.data import LabeledData, SourceStats, Split


def _split(name: str, n: int, offset: int, good: str = "excellent", bad: str = "awful") -> Split:
    # Separable by one word, with a shared filler word: any working classifier gets it right.
    texts, labels = [], []
    for i in range(n):
        is_good = (i + offset) % 2 == 0
        texts.append(f"item {i + offset} was {good if is_good else bad} overall")
        labels.append("pos" if is_good else "neg")
    return Split(name=name, texts=texts, labels=labels, stats=SourceStats(name, "", "jsonl"))


def _separable() -> LabeledData:
    return LabeledData(train=_split("train", 60, 0), dev=_split("dev", 20, 100),
                       test=_split("test", 20, 200), labels=["neg", "pos"])


@pytest.fixture
def separable() -> LabeledData:
    return _separable()


@pytest.fixture(scope="module")
def tiny_bert_finetuned(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT as the teacher stage saves a fine-tuned teacher: a sequence-classification
    checkpoint, its encoder moved off the pretrained weights."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    directory = tmp_path_factory.mktemp("tiny-bert-finetuned")
    model = BertForSequenceClassification.from_pretrained(
        str(tiny_bert), num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    torch.manual_seed(2)
    with torch.no_grad():
        for param in model.bert.parameters():
            param.add_(0.05 * torch.randn_like(param))
    model.save_pretrained(str(directory))
    AutoTokenizer.from_pretrained(str(tiny_bert)).save_pretrained(str(directory))
    return directory


def test_tfidf_lr_learns_and_reports_its_choice(separable):
    predict, dev_acc, settings = train_tfidf_lr(separable, seed=0)
    assert dev_acc == 1.0
    assert predict(separable.test.texts) == separable.test.labels
    assert settings.startswith("word 1-") and "C=" in settings


def test_fasttext_learns_and_reports_its_choice(separable, tmp_path):
    predict, dev_acc, settings = train_fasttext(separable, seed=0, workdir=tmp_path)
    assert dev_acc == 1.0
    assert predict(separable.test.texts) == separable.test.labels
    assert "wordNgrams=" in settings


def _line_breaks() -> list[str]:
    """Every character Python ends a line at, found by asking str.splitlines, not listed here."""
    return [c for c in map(chr, range(0x110000)) if len(f"a{c}b".splitlines()) == 2]


def test_fasttext_line_makes_every_line_break_a_space_and_changes_nothing_else():
    breaks = _line_breaks()
    assert {"\n", "\r", "\u2028"} <= set(breaks)
    for c in breaks:
        assert fasttext_line(f"a{c}b") == "a b", repr(c)
    assert fasttext_line("one\r\ntwo\n") == "one  two "  # fastText splits on any run of spaces
    others = "".join(c for c in map(chr, range(0x110000)) if c not in set(breaks))
    assert fasttext_line(others) == others  # tabs, case, punctuation, accents: all as they were


def test_fasttext_reads_the_raw_text(tmp_path):
    # The label is the case of one word, and every text spans two lines: lower-casing would
    # make the classes one, and a text with a newline in it is refused by fastText's predict.
    def split(name: str, n: int, offset: int) -> Split:
        s = _split(name, n, offset, good="Fine", bad="fine")
        return Split(name, [t.replace(" was ", "\nwas ") for t in s.texts], s.labels, s.stats)

    data = LabeledData(train=split("train", 60, 0), dev=split("dev", 20, 100),
                       test=split("test", 20, 200), labels=["neg", "pos"])
    predict, dev_acc, _ = train_fasttext(data, seed=0, workdir=tmp_path)
    lines = (tmp_path / "fasttext.train.txt").read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ["__label__1 item 0 was Fine overall", "__label__0 item 1 was fine overall"]
    assert dev_acc == 1.0
    assert predict(data.test.texts) == data.test.labels


def test_model2vec_distils_the_encoder_of_a_classification_checkpoint(tiny_bert,
                                                                      tiny_bert_finetuned,
                                                                      tmp_path):
    # train_model2vec hands model2vec the fine-tuned teacher's folder as it is; model2vec loads it
    # with AutoModel. The encoder must be the checkpoint's, not a fresh random one.
    from model2vec.distill import distill
    from transformers import AutoTokenizer, BertForSequenceClassification

    encoder = tmp_path / "encoder"
    BertForSequenceClassification.from_pretrained(str(tiny_bert_finetuned)).bert.save_pretrained(
        str(encoder))
    AutoTokenizer.from_pretrained(str(tiny_bert_finetuned)).save_pretrained(str(encoder))
    from_checkpoint = distill(model_name=str(tiny_bert_finetuned), pca_dims=16).embedding
    np.testing.assert_array_equal(from_checkpoint, distill(model_name=str(encoder),
                                                           pca_dims=16).embedding)
    assert not np.allclose(from_checkpoint, distill(model_name=str(tiny_bert),
                                                    pca_dims=16).embedding, atol=1e-3)


def _tiny_encoders(tiny_bert: Path, tiny_bert_finetuned: Path) -> dict[str, str]:
    return {"pretrained": str(tiny_bert), "fine-tuned": str(tiny_bert_finetuned)}


@pytest.fixture(scope="module")
def model2vec_pick(tiny_bert: Path, tiny_bert_finetuned: Path) -> tuple[Any, float, str]:
    """train_model2vec's search over both tiny encoders, once for the tests that read it."""
    return train_model2vec(_separable(), _tiny_encoders(tiny_bert, tiny_bert_finetuned), seed=0,
                           pca_dims=16)


def test_model2vec_searches_both_encoders(separable, model2vec_pick):
    predict, dev_acc, settings = model2vec_pick
    # Dev accuracy is measured through the numpy pipeline that predict wraps, on items it never
    # trained on. Test accuracy is not asserted: its item numbers are word pieces the tiny
    # tokenizer never saw.
    assert dev_acc >= 0.9  # chance is 0.5
    predictions = predict(separable.test.texts)
    assert len(predictions) == len(separable.test.texts) and set(predictions) <= {"neg", "pos"}
    assert settings.startswith(("distilled from pretrained (", "distilled from fine-tuned ("))
    assert ", PCA to 16 dims, head " in settings and ", lr=" in settings


def test_model2vec_picks_the_same_when_run_again(separable, model2vec_pick, tiny_bert,
                                                 tiny_bert_finetuned):
    predict, dev_acc, settings = model2vec_pick
    again, dev_acc_again, settings_again = train_model2vec(
        separable, _tiny_encoders(tiny_bert, tiny_bert_finetuned), seed=0, pca_dims=16)
    assert (dev_acc_again, settings_again) == (dev_acc, settings)
    assert again(separable.test.texts) == predict(separable.test.texts)


class _FakeStatic:
    def __init__(self, folder: str) -> None:
        self.folder = folder


class _FakePipeline:
    """Right on the first `correct` dev texts, wrong on the others; names itself on any other."""

    def __init__(self, gold: dict[str, str], correct: int, name: str) -> None:
        self.gold, self.correct, self.name = gold, correct, name

    def predict(self, texts: list[str]) -> np.ndarray:
        order = list(self.gold)
        return np.asarray([
            self.name if t not in self.gold
            else self.gold[t] if order.index(t) < self.correct
            else {"pos": "neg", "neg": "pos"}[self.gold[t]] for t in texts])


def test_model2vec_keeps_the_best_setting_on_dev(separable, monkeypatch):
    # Dev scores out of 20 by the order of the fits; the best (18) first comes at the 8th fit,
    # the second encoder's second, and ties again at the 10th: the first is kept.
    scores = [11, 3, 14, 9, 17, 2, 12, 18, 5, 18, 7, 1]
    gold = dict(zip(separable.dev.texts, separable.dev.labels, strict=True))
    distilled: list[tuple[str, int]] = []
    fits: list[dict[str, Any]] = []

    def distill(model_name: str, pca_dims: int) -> _FakeStatic:
        distilled.append((model_name, pca_dims))
        return _FakeStatic(model_name)

    class FakeClassifier:
        @classmethod
        def from_static_model(cls, *, model: _FakeStatic, **head: Any) -> FakeClassifier:
            classifier = cls()
            classifier.setting = {"folder": model.folder, **head}
            return classifier

        def fit(self, X: list[str], y: list[str], **kwargs: Any) -> FakeClassifier:
            assert (X, y) == (separable.train.texts, separable.train.labels)
            assert (kwargs.pop("X_val"), kwargs.pop("y_val")) == (separable.dev.texts,
                                                                  separable.dev.labels)
            self.setting.update(kwargs)
            fits.append(self.setting)
            return self

        def to_pipeline(self) -> _FakePipeline:
            return _FakePipeline(gold, scores[len(fits) - 1], f"fit {len(fits)}")

    monkeypatch.setattr("model2vec.distill.distill", distill)
    monkeypatch.setattr("model2vec.train.StaticModelForClassification", FakeClassifier)
    encoders = {"pretrained minilm": "/models/minilm", "fine-tuned teacher": "/runs/t/model"}
    predict, dev_acc, settings = train_model2vec(separable, encoders, seed=7, pca_dims=64)

    assert distilled == [("/models/minilm", 64), ("/runs/t/model", 64)]  # each once
    assert len(fits) == 12
    assert [f["folder"] for f in fits] == ["/models/minilm"] * 6 + ["/runs/t/model"] * 6
    assert all(f["random_seed"] == 7 for f in fits)
    per_encoder = [tuple(sorted(f.items())) for f in fits[:6]]
    assert len(set(per_encoder)) == 6  # six different head settings...
    assert [{k: v for k, v in f.items() if k != "folder"} for f in fits[6:]] == \
        [{k: v for k, v in f.items() if k != "folder"} for f in fits[:6]]  # ...for each encoder
    assert dev_acc == 18 / 20
    assert predict(["a text not in dev"]) == ["fit 8"]
    best = fits[7]
    assert settings.startswith("distilled from fine-tuned teacher (model), PCA to 64 dims, ")
    assert f"lr={best['learning_rate']:g}" in settings
    assert f"{best['n_layers']} hidden layer" in settings
