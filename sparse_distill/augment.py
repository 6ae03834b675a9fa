"""In-domain text augmentation for the distillation pool (Tang et al. 2019).

The student learns only what the teacher tells it about texts it is shown, and a general pool is
off-domain. Perturbed copies of the training texts put the student near the task's own texts,
where it will be tested, and the teacher labels each copy afresh, so a copy whose meaning changed
gets the teacher's new opinion rather than the original label. Three perturbations, as in Tang et
al.: a word is dropped (their masking, without a mask token the student would never see at test
time) or replaced by a word drawn from the training texts' unigram distribution (their
POS-guided replacement, without a tagger), and with some probability the copy is cut down to a
window of consecutive words (their n-gram sampling).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np

from .config import AugmentConfig


def augment_texts(texts: Sequence[str], cfg: AugmentConfig, seed: int) -> Iterator[str]:
    """Yield `cfg.copies` perturbed copies of each text, copy-major, the same for the same seed.

    Copies equal to their original or to each other are still yielded: the pool's de-duplication
    drops them, and counting them there keeps the numbers honest.
    """
    if cfg.copies <= 0 or not texts:
        return
    rng = np.random.default_rng(seed)
    docs = [t.split() for t in texts]
    counts = Counter(w for d in docs for w in d)
    words = list(counts)
    cdf = np.cumsum(np.fromiter(counts.values(), dtype=np.float64, count=len(words)))  # (W,)
    cdf /= cdf[-1]
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
            if out and rng.random() < cfg.window_prob:
                size = int(rng.integers(cfg.window_min, cfg.window_max + 1))
                if size < len(out):
                    start = int(rng.integers(0, len(out) - size + 1))
                    out = out[start:start + size]
            if out:
                yield " ".join(out)
