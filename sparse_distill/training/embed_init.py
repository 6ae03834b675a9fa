"""Teacher-initialised n-gram embeddings (`student.init: teacher`).

A randomly initialised table knows about an n-gram only what the pool's few texts containing it
teach during distillation, and a rarely seen n-gram stays near its random start: noise at test
time. Starting every row from the teacher's own view of its words puts a rare n-gram near its
synonyms before the first step. The recipe is model2vec's, applied to the (fine-tuned) teacher:
each word of the vocabulary goes through the teacher's encoder alone and its word pieces' last
hidden states are averaged; PCA takes the vectors to the student's width; an n-gram's row is the
mean of its words' rows. Words are few (~50,000 for a 1M n-gram vocabulary) so this costs one
short forward pass per word, not per n-gram; the word vectors are cached per teacher and word
(a word any cached list has is not encoded again), and the composition (a vectorised mean over
1M n-grams) is redone per run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from ..files import sha256_file, staged_dir
from ..inference.featurize import Vocabulary
from ..progress import Reporter
from .hf import load_classifier, load_tokenizer


def vocabulary_words(vocab: Vocabulary) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The distinct words of the vocabulary's n-grams, and each n-gram as a bag of word ids:
    (words, ids (nnz,) int64, offsets (|V| + 1,) int64)."""
    index: dict[str, int] = {}
    parts = [g.split(" ") for g in vocab.ngrams]
    flat = [index.setdefault(w, len(index)) for p in parts for w in p]
    lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))  # (|V|,)
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return list(index), np.asarray(flat, dtype=np.int64), offsets


@torch.inference_mode()
def encode_words(encoder: Any, tokenizer: Any, words: list[str], device: torch.device,
                 batch_size: int = 512, report: Reporter | None = None) -> np.ndarray:
    """(len(words), hidden) float32: each word encoded alone, its pieces' last states averaged
    (special tokens left out; a word the tokenizer makes nothing of gets its special tokens')."""
    report = report or Reporter()
    encoded = tokenizer(words, truncation=True, max_length=32, return_special_tokens_mask=True)
    lengths = np.fromiter(map(len, encoded["input_ids"]), dtype=np.int64, count=len(words))
    order = np.argsort(-lengths, kind="stable")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = np.empty((len(words), encoder.config.hidden_size), dtype=np.float32)
    encoder.eval()
    report.start("teacher init: words", len(words), unit="words")
    for start in range(0, len(words), batch_size):
        idx = order[start:start + batch_size]
        width = int(lengths[idx].max())
        ids = np.full((len(idx), width), pad_id, dtype=np.int64)  # (batch, width)
        mask = np.zeros((len(idx), width), dtype=np.int64)  # (batch, width)
        keep = np.zeros((len(idx), width), dtype=np.float32)  # (batch, width)
        for row, i in enumerate(idx):
            n = lengths[i]
            ids[row, :n] = encoded["input_ids"][i]
            mask[row, :n] = 1
            special = np.asarray(encoded["special_tokens_mask"][i], dtype=bool)  # (n,)
            keep[row, :n] = ~special if not special.all() else 1.0
        hidden = encoder(input_ids=torch.from_numpy(ids).to(device),
                         attention_mask=torch.from_numpy(mask).to(device)
                         ).last_hidden_state.float()  # (batch, width, hidden)
        weights = torch.from_numpy(keep).to(device)  # (batch, width)
        pooled = (hidden * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)
        out[idx] = pooled.cpu().numpy()  # (batch, hidden)
        report.update(len(idx))
    return out


@dataclass(frozen=True)
class Projection:
    """The map from the teacher's word vectors to the student's rows: centre, onto the top
    principal components, scale. Kept in the student directory (`projection.safetensors`) so
    that a word the vocabulary lacks can be mapped the same way later."""

    mean: torch.Tensor  # (hidden,) float64
    components: torch.Tensor  # (hidden, min(dim, hidden)) float64
    scale: float
    dim: int

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        """(W, hidden) -> (W, dim) float32 (zero columns past the hidden size)."""
        y = (torch.from_numpy(vectors).double() - self.mean) @ self.components / self.scale
        if y.shape[1] < self.dim:
            y = F.pad(y, (0, self.dim - y.shape[1]))  # (W, dim)
        return y.float().numpy()

    def save(self, path: Path) -> None:
        save_file({"mean": self.mean.contiguous(), "components": self.components.contiguous(),
                   "scale": torch.tensor([self.scale], dtype=torch.float64)}, str(path),
                  metadata={"dim": str(self.dim)})

    @classmethod
    def load(cls, path: Path) -> Projection:
        with safe_open(str(path), "pt") as f:
            dim = int(f.metadata()["dim"])
            return cls(f.get_tensor("mean"), f.get_tensor("components"),
                       float(f.get_tensor("scale")[0]), dim)


def fit_projection(vectors: np.ndarray, dim: int) -> Projection:
    """The projection of `vectors` (W, hidden): centred, onto the top principal components,
    scaled so that the mean row norm is 1, as the random init's rows are."""
    x = torch.from_numpy(vectors).double()  # (W, hidden)
    mean = x.mean(0)  # (hidden,)
    x = x - mean
    # Eigenvectors of the hidden x hidden covariance: exact, and cheap for W ~ 50,000.
    eigvals, eigvecs = torch.linalg.eigh(x.T @ x)  # (hidden,), (hidden, hidden) ascending
    top = eigvecs[:, eigvals.argsort(descending=True)[:dim]]  # (hidden, min(dim, hidden))
    scale = float((x @ top).norm(dim=1).mean())
    return Projection(mean, top, scale, dim)


def word_vectors(source: str, words: list[str], cache: Path, device: torch.device,
                 trust_remote_code: bool, report: Reporter | None = None) -> np.ndarray:
    """The encoder's vectors of `words`, (len(words), hidden) float32, cached in
    `cache/TEACHER/WORDS/` (keyed by the teacher's weights, then the word list; words.txt beside
    the vectors). A word another list of the same teacher has is copied from it: a variant whose
    vocabulary differs a little from its run's (a smaller table, a pool budget) encodes only the
    words its run's lacks."""
    weights = sorted(Path(source).glob("*.safetensors")) + sorted(Path(source).glob("*.bin"))
    teacher = cache / hashlib.sha256(json.dumps({
        "teacher": [sha256_file(w) for w in weights] or [source],
        "recipe": "last-hidden-mean-v1"}).encode()).hexdigest()[:16]
    path = teacher / hashlib.sha256("\n".join(words).encode()).hexdigest()[:16] / "words.npy"
    if not path.is_file():
        known = _cached_words(teacher)
        missing = [w for w in words if w not in known]
        fresh = np.zeros((0, 0), np.float32)
        if missing:
            tokenizer = load_tokenizer(source, trust_remote_code)
            encoder = load_classifier(source, None, trust_remote_code).base_model.to(device)
            fresh = encode_words(encoder, tokenizer, missing, device, report=report)
        new = {w: i for i, w in enumerate(missing)}
        vectors = np.stack([fresh[new[w]] if w in new else known[w] for w in words]
                           ) if words else fresh  # (len(words), hidden)
        with staged_dir(path.parent, force=True) as tmp:
            np.save(tmp / "words.npy", vectors, allow_pickle=False)
            (tmp / "words.txt").write_text("\n".join(words), encoding="utf-8")
    return np.load(path, allow_pickle=False)


def _cached_words(teacher: Path) -> dict[str, np.ndarray]:
    """Every word with a cached vector of this teacher (`word_vectors`): word -> (hidden,).
    Lists are read in name order, the first one's vector of a word kept, so that the same cache
    gives the same vectors."""
    known: dict[str, np.ndarray] = {}
    for entry in sorted(teacher.glob("*/words.txt")):
        vectors = np.load(entry.with_name("words.npy"), mmap_mode="r", allow_pickle=False)
        listed = entry.read_text(encoding="utf-8").split("\n")
        if len(listed) != len(vectors):  # not a finished entry of this layout
            continue
        for i, word in enumerate(listed):
            known.setdefault(word, vectors[i])
    return known


def teacher_table(vocab: Vocabulary, source: str, dim: int, cache: Path, device: torch.device,
                  trust_remote_code: bool = False, report: Reporter | None = None
                  ) -> tuple[torch.Tensor, Projection]:
    """(|V|, dim) float32: each n-gram's row the mean of its words' projected teacher vectors;
    and the projection that made them."""
    words, ids, offsets = vocabulary_words(vocab)
    raw = word_vectors(source, words, cache, device, trust_remote_code, report)
    projection = fit_projection(raw, dim)
    return F.embedding_bag(torch.from_numpy(ids), torch.from_numpy(projection(raw)),
                           torch.from_numpy(offsets), mode="mean",
                           include_last_offset=True), projection  # (|V|, dim)
