"""In-domain text augmentation for the distillation pool (Tang et al. 2019).

The student learns only what the teacher tells it about texts it is shown, and a general pool is
off-domain. Perturbed copies of the training texts put the student near the task's own texts,
where it will be tested, and the teacher labels each copy afresh, so a copy whose meaning changed
gets the teacher's new opinion rather than the original label. The perturbations, as in Tang et
al.: a word is dropped (their masking, without a mask token the student would never see at test
time), replaced by a word drawn from the training texts' unigram distribution (their POS-guided
replacement, without a tagger), or replaced by one of its nearest neighbours in a transformer's
input-embedding space (their word-vector replacement, the teacher's own embeddings as the
source: neighbours there are often antonyms, "good" / "bad", so the copy's meaning changes and
the teacher says how); with some probability the copy continues with the end of another
training text (two texts of the domain spliced), and it is cut down to a window of consecutive
words (their n-gram sampling). In a script written without spaces (Chinese, Japanese, Thai) a
character is a word here, as it is a token (inference.tokens).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..inference.tokens import join_units, split_units
from .config import AugmentConfig
from .hf import load_error, load_tokenizer, model_source


def word_key(token: str) -> str:
    """A whitespace token as a word to look up: lower case, punctuation at its ends removed."""
    return token.strip(".,;:!?\"'()[]{}").lower()


def _piece_vectors(tokenizer: Any, table: torch.Tensor, words: list[str]) -> torch.Tensor:
    """(len(words), hidden) unit vectors: the mean of each word's word-piece input embeddings."""
    pieces = tokenizer(words, add_special_tokens=False)["input_ids"]
    lengths = torch.tensor([max(1, len(p)) for p in pieces])  # (W,)
    ids = torch.tensor([i for p in pieces for i in (p or [0])])  # (nnz,)
    offsets = torch.zeros(len(words) + 1, dtype=torch.long)
    offsets[1:] = lengths.cumsum(0)
    vectors = torch.nn.functional.embedding_bag(ids, table, offsets, mode="mean",
                                                include_last_offset=True)  # (W, hidden)
    return torch.nn.functional.normalize(vectors, dim=1)


@torch.no_grad()
def nearest_neighbours(words: list[str], model: str, k: int, chunk: int = 1024
                       ) -> dict[str, list[str]]:
    """The `k` nearest whole words (cosine, input embeddings) of each of `words` among the words
    of the model's tokenizer vocabulary (alphabetic, 2+ letters, the word itself left out)."""
    from transformers import AutoModel

    source = model_source(model)
    tokenizer = load_tokenizer(source, False)
    try:
        table = AutoModel.from_pretrained(source).get_input_embeddings().weight.float()
    except Exception as exc:  # any loading failure is the user's path: one line
        raise load_error(source, exc) from None
    decoded = {tokenizer.decode([i]).strip().lower() for i in range(len(tokenizer))}
    candidates = sorted(w for w in decoded if len(w) >= 2 and w.isalpha())
    cand = _piece_vectors(tokenizer, table, candidates)  # (C, hidden)
    query = _piece_vectors(tokenizer, table, words)  # (W, hidden)
    out: dict[str, list[str]] = {}
    for start in range(0, len(words), chunk):
        sims = query[start:start + chunk] @ cand.T  # (chunk, C)
        top = sims.topk(min(k + 1, len(candidates)), dim=1).indices.tolist()  # (chunk, k + 1)
        for word, row in zip(words[start:start + chunk], top, strict=True):
            out[word] = [candidates[j] for j in row if candidates[j] != word][:k]
    return out


def augment_texts(texts: Sequence[str], cfg: AugmentConfig, seed: int) -> Iterator[str]:
    """Yield `cfg.copies` perturbed copies of each text, copy-major, the same for the same seed.

    Copies equal to their original or to each other are still yielded: the pool's de-duplication
    drops them, and counting them there keeps the numbers honest.
    """
    if cfg.copies <= 0 or not texts:
        return
    rng = np.random.default_rng(seed)
    # Words, or in a script written without spaces its characters (a Chinese text is one
    # whitespace "word": dropping it would drop the text).
    docs = [split_units(t) for t in texts]
    counts = Counter(w for d in docs for w in d)
    words = list(counts)
    cdf = np.cumsum(np.fromiter(counts.values(), dtype=np.float64, count=len(words)))  # (W,)
    cdf /= cdf[-1]
    neighbours: dict[str, list[str]] = {}
    if cfg.neighbour_prob > 0:
        keys = sorted({word_key(w) for w in words} - {""})
        neighbours = nearest_neighbours(keys, str(cfg.neighbour_model), cfg.neighbours)
    # A perturbation that is off draws no random number, so that configs without it keep the
    # copies (and so the config hashes' meaning) they had before it existed.
    for _ in range(cfg.copies):
        for doc in docs:
            if not doc:
                continue
            n = len(doc)
            u = rng.random(n)  # (n,)
            drop = u < cfg.drop_prob
            replace = (u >= cfg.drop_prob) & (u < cfg.drop_prob + cfg.replace_prob)
            picks = np.searchsorted(cdf, rng.random(int(replace.sum())), side="right")
            new_words = iter(picks.tolist())
            out = [words[next(new_words)] if r else w
                   for w, d, r in zip(doc, drop.tolist(), replace.tolist(), strict=True) if not d]
            if neighbours:
                near = (u >= cfg.drop_prob + cfg.replace_prob) & (
                    u < cfg.drop_prob + cfg.replace_prob + cfg.neighbour_prob)  # (n,)
                kept = near[~drop].tolist()
                out = [_neighbour(w, neighbours, rng) if swap else w
                       for w, swap in zip(out, kept, strict=True)]
            if out and cfg.splice_prob > 0 and rng.random() < cfg.splice_prob:
                other = docs[int(rng.integers(len(docs)))] or out
                out = (out[:int(rng.integers(1, len(out) + 1))]
                       + other[int(rng.integers(len(other))):])
            if out and rng.random() < cfg.window_prob:
                size = int(rng.integers(cfg.window_min, cfg.window_max + 1))
                if size < len(out):
                    start = int(rng.integers(0, len(out) - size + 1))
                    out = out[start:start + size]
            if out:
                yield join_units(out)


def _neighbour(token: str, neighbours: dict[str, list[str]], rng: np.random.Generator) -> str:
    near = neighbours.get(word_key(token))
    return near[int(rng.integers(len(near)))] if near else token
