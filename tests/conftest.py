"""Shared fixtures. Tests never touch the network: the hub is switched off before any import."""

from __future__ import annotations

import json
import os
import re

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

from pathlib import Path
from typing import Any

import pytest
import yaml

DATA = Path(__file__).parent / "data"
# Texts for the vocabulary and featuriser tests: repeats, punctuation, 1-char tokens, an empty
# text, accents.
CORPUS = [
    "The film is a delight, a real delight.",
    "A dull film; the plot is dull and the acting is dull.",
    "I loved it. Loved it!",
    "Not a film I would see again, not at all.",
    "x y z",  # 1-char tokens are dropped by the default token pattern
    "",
    "Café crème, naïve façade — ÉTÉ 2022 films",
]


@pytest.fixture
def data_dir() -> Path:
    return DATA


def base_config(run_dir: Path) -> dict[str, Any]:
    """A small valid config over the committed fixtures."""
    return {
        "run": {"dir": str(run_dir), "seed": 13},
        "data": {
            "train": {"path": str(DATA / "train.jsonl")},
            "dev": {"path": str(DATA / "dev.jsonl")},
            "test": {"path": str(DATA / "test.jsonl")},
            "unlabeled": [{"path": str(DATA / "pool.txt")}],
        },
        "vocab": {"ngram_range": [1, 2], "max_features": 500},
    }


@pytest.fixture
def config_dict(tmp_path: Path) -> dict[str, Any]:
    return base_config(tmp_path / "run")


@pytest.fixture
def write_config(tmp_path: Path):
    """Write a config dict to a YAML file and return its path."""

    def write(data: dict[str, Any], name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return path

    return write


def _fixture_texts() -> list[str]:
    texts = []
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):
        texts += [yaml.safe_load(line)["text"] for line in (DATA / name).read_text().splitlines()]
    return texts + (DATA / "pool.txt").read_text().splitlines()


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised RoBERTa with a byte-level BPE tokenizer trained here."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    directory = tmp_path_factory.mktemp("tiny-roberta")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_fixture_texts(), vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(directory))
    # transformers 5 takes `vocab` / `merges` (it ignores the old `vocab_file` / `merges_file`
    # and would build a tokenizer of 5 special tokens, which turns every text into <s> </s>).
    tokenizer = RobertaTokenizerFast(vocab=str(directory / "vocab.json"),
                                     merges=str(directory / "merges.txt"))
    assert len(tokenizer) == 400
    tokenizer.save_pretrained(str(directory))
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=37,
                           max_position_embeddings=130, type_vocab_size=1, pad_token_id=1,
                           bos_token_id=0, eos_token_id=2)
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised BERT with a WordPiece tokenizer trained here: the shape of the
    real MiniLM teacher, for tools that read a BERT vocabulary (model2vec's distillation)."""
    directory = tmp_path_factory.mktemp("tiny-bert")
    words = [f"item {i} was excellent overall awful" for i in range(300)]
    return save_tiny_bert(directory, _fixture_texts() + words, vocab_size=300)


def save_tiny_bert(directory: Path, texts: list[str], vocab_size: int) -> Path:
    """A tiny randomly initialised BERT in `directory`, its WordPiece vocabulary trained on
    `texts` (BERT's basic tokenizer puts each CJK character apart)."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=1)
    wordpiece.save_model(str(directory))
    tokenizer = BertTokenizerFast(vocab=str(directory / "vocab.txt"))
    assert len(tokenizer) == wordpiece.get_vocab_size()
    tokenizer.save_pretrained(str(directory))
    config = BertConfig(vocab_size=wordpiece.get_vocab_size(), hidden_size=32,
                        num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                        max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(directory))
    return directory


def chinese_config(run_dir: Path, **vocab: Any) -> dict[str, Any]:
    """A small valid config over the Chinese fixtures (tests/data/zh), no tokenisation setting."""
    zh = DATA / "zh"
    return {"run": {"dir": str(run_dir), "seed": 13},
            "data": {"train": {"path": str(zh / "train.jsonl")},
                     "dev": {"path": str(zh / "dev.jsonl")},
                     "test": {"path": str(zh / "test.jsonl")},
                     "unlabeled": [{"path": str(zh / "pool.txt")}]},
            "vocab": {"ngram_range": [1, 2], "max_features": 3000, **vocab}}


@pytest.fixture(scope="session")
def tiny_classifier(tiny_roberta: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny RoBERTa with a (random) classification head for the labels neg/pos."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    directory = tmp_path_factory.mktemp("tiny-classifier")
    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(tiny_roberta), num_labels=2, id2label={0: "neg", 1: "pos"},
        label2id={"neg": 0, "pos": 1})
    model.save_pretrained(str(directory))
    AutoTokenizer.from_pretrained(str(tiny_roberta)).save_pretrained(str(directory))
    return directory


def teacher_config(config_dict: dict[str, Any], model: Path, **teacher: Any) -> dict[str, Any]:
    """A config whose teacher is a tiny local model, sized for tests."""
    config_dict["teacher"] = {"model": str(model), "epochs": 2, "batch_size": 8,
                              "max_length": 32, "label_batch_size": 8, "shard_size": 10,
                              "lr": 1.0e-3, **teacher}
    return config_dict


def student_section() -> dict[str, Any]:
    """A student sized for tests."""
    return {"embedding_dim": 16, "hidden_dims": [16], "dropout": 0.1,
            "distill": {"steps": 24, "batch_size": 8, "eval_every": 8, "lr": 0.01},
            "finetune": {"epochs": 2, "batch_size": 4, "lr": 0.001}}


@pytest.fixture(scope="session")
def trained_student(tiny_classifier: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RUN/student of the whole pipeline (vocab, tiny teacher, student) on the fixtures."""
    from sparse_distill.stages.config import config_from_dict
    from sparse_distill.stages.teach import teach
    from sparse_distill.stages.train_student import train_student
    from sparse_distill.stages.vocab import build_vocab

    data = teacher_config(base_config(tmp_path_factory.mktemp("pipeline") / "run"),
                          tiny_classifier, finetune=False)
    data["student"] = student_section()
    cfg = config_from_dict(data)
    build_vocab(cfg)
    teach(cfg)
    return train_student(cfg).output


@pytest.fixture(scope="session")
def wide_student(tiny_classifier: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`trained_student`'s pipeline with `student.wide: true` (the linear part beside the DAN)."""
    from sparse_distill.stages.config import config_from_dict
    from sparse_distill.stages.teach import teach
    from sparse_distill.stages.train_student import train_student
    from sparse_distill.stages.vocab import build_vocab

    data = teacher_config(base_config(tmp_path_factory.mktemp("wide") / "run"),
                          tiny_classifier, finetune=False)
    data["student"] = {**student_section(), "wide": True}
    cfg = config_from_dict(data)
    build_vocab(cfg)
    teach(cfg)
    return train_student(cfg).output


def train_student_interrupted(cfg: Any, monkeypatch: pytest.MonkeyPatch,
                              on_kill: Any = None) -> None:
    """train_student(cfg) killed right after its second distillation checkpoint (`on_kill(trainer)`
    runs first), then run again to the end: the resume path the resume tests compare."""
    from sparse_distill.stages.train_student import train_student
    from sparse_distill.training import trainer as trainer_mod

    real_save = trainer_mod.PhaseTrainer.save
    saves = []

    def save_then_die(self: Any) -> None:
        real_save(self)
        saves.append(self.phase)
        if saves == ["distill", "distill"]:
            if on_kill is not None:
                on_kill(self)
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_mod, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint every evaluation
    monkeypatch.setattr(trainer_mod.PhaseTrainer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_student(cfg)
    monkeypatch.setattr(trainer_mod.PhaseTrainer, "save", real_save)
    train_student(cfg)


# Values that measure time or the machine, not the result (`memory`: the student stage's
# estimated and measured peak, which depend on what else the process holds).
VOLATILE = re.compile(
    r"(_s|_per_s|seconds|^created|^date|^when|^speed.*|^timings|^resumed.*|^rss.*|^memory)$")


def comparable(path: Path) -> Any:
    """A file's content with time and machine measurements taken out."""
    if path.suffix == ".json" or path.suffix == ".jsonl":
        text = path.read_text(encoding="utf-8")
        rows = ([json.loads(line) for line in text.splitlines() if line.strip()]
                if path.suffix == ".jsonl" else [json.loads(text)])
        return [_drop_volatile(r) for r in rows]
    if path.suffix == ".md":
        # Reports and cards: every figure on a line about time or speed is masked.
        lines = [re.sub(r"\d{4}-\d\d-\d\dT[\d:.+-]+", "#", line)  # when it was made
                 for line in path.read_text(encoding="utf-8").splitlines()]
        timed = re.compile(r"(/s|seconds|\d s\b|\bms\b|speed|RSS|UTC|load|Date|idle|other proc)",
                           re.I)
        ratio = re.compile(r"\d[\d,.]*x\b")  # speedups
        return [re.sub(r"\d[\d,.]*", "#", line)
                if timed.search(line) or ratio.search(line) else line for line in lines]
    if path.suffix == ".png":
        return "figure"  # drawn from the timings
    return path.read_bytes()


def _drop_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_volatile(v) for k, v in value.items() if not VOLATILE.search(k)}
    if isinstance(value, list):
        return [_drop_volatile(v) for v in value]
    return value


def differences(old: Any, new: Any, where: str = "") -> list[str]:
    """Where two comparable() values differ, down to the leaves."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted({*old, *new}, key=str)
                for d in differences(old.get(k), new.get(k), f"{where}.{k}")]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True))
                for d in differences(a, b, f"{where}[{i}]")]
    return [] if old == new else [f"{where}: {old!r:.200} -> {new!r:.200}"]
