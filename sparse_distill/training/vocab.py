"""The n-gram vocabulary: count every n-gram of the texts, keep the most frequent.

Semantics are scikit-learn's `CountVectorizer`: the same preprocessing, token pattern and word
n-grams, document frequencies for min_df/max_df and corpus term frequencies for max_features. For
the default token pattern and the `scripts` token rule the counting is compiled (the extension's
`Counter`: n-grams are nodes of a trie keyed by 64-bit integers, and only the n-grams that are kept
are ever spelt out as strings); another `vocab.token_pattern` is counted with scikit-learn's own
analyzer.
Counting streams over the corpus in chunks; memory is bounded by `vocab.max_candidates` distinct
n-grams, beyond which the rarest are pruned (recorded in the manifest, so a vocabulary is known to
be exact when nothing was pruned).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError
from ..inference.featurize import Vocabulary, compiled_module
from ..inference.tokens import (
    COMPILED_PATTERNS,
    normalizer,
    pattern,
    tokenizer,
    unspaced_share,
)
from .config import VocabConfig


@dataclass
class NgramCounts:
    """The candidate n-grams in order of first occurrence, with their frequencies.

    `spell(positions)` gives the strings of the candidates at those positions: the compiled
    counter builds only the ones asked for.
    """

    tf: np.ndarray  # (n_candidates,) int64: occurrences
    df: np.ndarray  # (n_candidates,) int64: texts containing it
    n_docs: int
    spell: Callable[[np.ndarray], list[str]] = field(repr=False)
    # How much any count may be too low after pruning (0: the counts are exact). An n-gram pruned
    # at threshold t loses up to t and starts again from zero, so the bound is the sum of the
    # thresholds of every pruning, not the largest.
    max_undercount: int = 0
    prunings: int = 0

    def __len__(self) -> int:
        return len(self.tf)

    def as_dict(self) -> dict[str, tuple[int, int]]:
        """n-gram -> (tf, df) for every candidate (small corpora: it spells them all)."""
        names = self.spell(np.arange(len(self)))
        return dict(zip(names, zip(self.tf.tolist(), self.df.tolist(), strict=True),
                        strict=True))


def analyzer(cfg: VocabConfig) -> Callable[[str], list[str]]:
    """scikit-learn's own analyzer: text -> the list of its n-grams, repeats included."""
    from sklearn.feature_extraction.text import CountVectorizer

    norm = normalizer(cfg.normalize)
    analyze = CountVectorizer(ngram_range=tuple(cfg.ngram_range), lowercase=cfg.lowercase,
                              token_pattern=pattern(cfg.token_rule(), cfg.token_pattern)
                              ).build_analyzer()
    return analyze if norm is None else lambda text: analyze(norm(text))


def _batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _threshold(tf: np.ndarray, keep: int) -> int:
    """The count at or below which n-grams go so that at most `keep` remain (ties go together)."""
    return int(np.partition(tf, len(tf) - keep - 1)[len(tf) - keep - 1])


def count_ngrams(texts: Iterable[str], cfg: VocabConfig,
                 on_chunk: Callable[[int], None] | None = None) -> NgramCounts:
    """Term and document frequency of every n-gram, streaming over `texts` in chunks."""
    norm = normalizer(cfg.normalize)
    if norm is not None:
        texts = map(norm, texts)
    if cfg.token_pattern in COMPILED_PATTERNS:
        return _count_compiled(texts, cfg, on_chunk)
    return _count_regex(texts, cfg, on_chunk)


def _count_compiled(texts: Iterable[str], cfg: VocabConfig,
                    on_chunk: Callable[[int], None] | None) -> NgramCounts:
    min_n, max_n = cfg.ngram_range
    counter = compiled_module().Counter(max_n, cfg.lowercase, cfg.token_rule() == "scripts")
    undercount = prunings = 0
    for chunk in _batched(texts, cfg.chunk_size):
        counter.add(chunk)
        if counter.candidate_count(min_n) > cfg.max_candidates:
            tf = np.frombuffer(counter.candidates(min_n)[1], dtype=np.int64)
            threshold = _threshold(tf, cfg.max_candidates // 2)
            counter.prune(threshold)
            undercount += threshold
            prunings += 1
        if on_chunk is not None:
            on_chunk(len(chunk))
    codes, tf, df = counter.candidates(min_n)
    codes = np.frombuffer(codes, dtype=np.uint32)  # (n_candidates,)
    return NgramCounts(tf=np.frombuffer(tf, dtype=np.int64), df=np.frombuffer(df, dtype=np.int64),
                       n_docs=counter.n_docs,
                       spell=lambda positions: counter.strings(np.ascontiguousarray(
                           codes[positions])),
                       max_undercount=undercount, prunings=prunings)


def _count_regex(texts: Iterable[str], cfg: VocabConfig,
                 on_chunk: Callable[[int], None] | None) -> NgramCounts:
    analyze = analyzer(dataclasses.replace(cfg, normalize="none"))  # normalised already
    tf: Counter[str] = Counter()
    df: Counter[str] = Counter()
    n_docs = undercount = prunings = 0
    for chunk in _batched(texts, cfg.chunk_size):
        docs = list(map(analyze, chunk))
        # Counter.update over an iterable counts in C: no per-n-gram Python loop.
        tf.update(itertools.chain.from_iterable(docs))
        df.update(itertools.chain.from_iterable(map(set, docs)))
        n_docs += len(chunk)
        if len(tf) > cfg.max_candidates:
            threshold = _threshold(np.fromiter(tf.values(), dtype=np.int64, count=len(tf)),
                                   cfg.max_candidates // 2)
            tf = Counter({k: v for k, v in tf.items() if v > threshold})
            df = Counter({k: df[k] for k in tf})
            undercount += threshold
            prunings += 1
        if on_chunk is not None:
            on_chunk(len(chunk))
    keys = list(tf)  # in order of first occurrence
    return NgramCounts(tf=np.fromiter(tf.values(), dtype=np.int64, count=len(keys)),
                       df=np.fromiter(map(df.__getitem__, keys), dtype=np.int64,
                                      count=len(keys)),
                       n_docs=n_docs, spell=lambda positions: [keys[i] for i in positions],
                       max_undercount=undercount, prunings=prunings)


# A token found in one training text only carries nothing learned there to another text. In
# rt, trec, 20ng and r8, 1.5-11% of the training texts' token occurrences are of such tokens;
# in Chinese reviews and news cut by the default token pattern (whole clauses) 75-83%.
DEGENERATE_SINGLE_TEXT_SHARE = 0.5
# Training texts looked at for it: enough for a stable share, a second or two at most.
HEALTH_TEXTS = 20_000


def token_health(train: list[str], cfg: VocabConfig) -> dict[str, Any]:
    """How the training texts tokenise under cfg's rule (`tokens` already resolved): the mean
    characters a token, and the share of token occurrences whose token no other text has; with
    a `warning` that names the setting to change when that share says the tokens are clauses."""
    rule = cfg.token_rule()
    texts = train[:HEALTH_TEXTS]
    docs = list(map(tokenizer(rule, cfg.token_pattern, cfg.lowercase, cfg.normalize), texts))
    df = Counter(itertools.chain.from_iterable(map(set, docs)))
    n = sum(map(len, docs))
    once = sum(df[t] == 1 for d in docs for t in d)
    health: dict[str, Any] = {
        "rule": rule, "texts": len(texts),
        "mean_token_chars": round(sum(len(t) for d in docs for t in d) / n, 2) if n else 0.0,
        "single_text_share": round(once / n, 4) if n else 0.0, "warning": None}
    if n and once / n > DEGENERATE_SINGLE_TEXT_SHARE:
        if rule == "words" and unspaced_share(texts) > 0:
            fix = ("set vocab.tokens: scripts, so that each character of a script written "
                   "without spaces (Chinese, Japanese, Thai, ...) is a token")
        elif cfg.token_pattern not in COMPILED_PATTERNS:
            fix = "make vocab.token_pattern match words, not longer stretches of text"
        else:
            fix = ("split the texts into words first (a word segmenter for the language), or "
                   "set vocab.token_pattern to a pattern of shorter tokens")
        health["warning"] = (
            f"the vocabulary looks degenerate: {once / n:.0%} of the training texts' tokens "
            f"occur in no other training text (tokens of {health['mean_token_chars']:.1f} "
            f"characters on average; English text: 1-11%), so the n-grams carry little from "
            f"text to text; {fix}")
    return health


def select_vocabulary(counts: NgramCounts, cfg: VocabConfig) -> Vocabulary:
    """CountVectorizer's selection: min_df <= df <= max_df * n_docs, then the max_features
    n-grams of highest corpus frequency.

    Ids go from the most frequent n-gram down; equal frequencies keep the order in which the
    n-grams first occurred (train texts first, then the pool), which fixes the result for fixed
    inputs without sorting millions of strings.
    """
    tf, df = counts.tf, counts.df  # (n_candidates,) each
    chosen = np.flatnonzero((df >= cfg.min_df) & (df <= cfg.max_df * counts.n_docs))
    if len(chosen) == 0:
        raise DataError(f"vocab: no n-gram is left after vocab.min_df={cfg.min_df} and "
                        f"vocab.max_df={cfg.max_df} on {counts.n_docs} texts; lower vocab.min_df "
                        "or add text")
    order = chosen[np.argsort(-tf[chosen], kind="stable")][:cfg.max_features]
    return Vocabulary(ngrams=counts.spell(order), df=df[order].copy(), tf=tf[order].copy(),
                      ngram_range=(cfg.ngram_range[0], cfg.ngram_range[1]),
                      lowercase=cfg.lowercase, token_pattern=cfg.token_pattern,
                      tokens=cfg.token_rule(), normalize=cfg.normalize)
