"""Which unlabelled texts are worth the teacher's time (`data.pool_budget`, `data.pool_select`).

A user's pool is often larger and more mixed than what is worth labelling (a product's logs, a
crawl). With a budget, the stages label only that many pool texts (the perturbed copies of
train are always kept), chosen by
- "cross-entropy" (Moore & Lewis 2010): the texts that a word model of the training texts finds
  likelier than a word model of the whole pool does, i.e. the lowest H_train(x) - H_pool(x),
  the per-word cross-entropy difference. Both models are add-one smoothed unigram models over
  the vocabulary's own tokens, so a text scores by how much more typical of the task than of
  the pool its words are, whatever its length.
- "random": a seeded uniform sample of the same size, the reference.
Both stream the pool twice (counting, then scoring) and hold only the budget's texts.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

RULES = ("cross-entropy", "random")


class CrossEntropyDifference:
    """H_train(x) - H_pool(x) of a text x: lower is closer to the training texts."""

    def __init__(self, train: Iterable[str], pool: Iterable[str], token_pattern: str,
                 lowercase: bool):
        self._tokens = re.compile(token_pattern).findall
        self._lowercase = lowercase
        inside, outside = Counter[str](), Counter[str]()
        for text in train:
            inside.update(self.tokens(text))
        for text in pool:
            outside.update(self.tokens(text))
        words = len(inside.keys() | outside.keys()) + 1  # + 1: a word neither has seen
        n_in, n_out = sum(inside.values()), sum(outside.values())
        # log p_pool(w) - log p_train(w), add-one smoothed; a word neither model has seen
        # gets the unseen ratio, the same for every such word.
        self._unseen = math.log((n_in + words) / (n_out + words))
        self._ratio = {w: math.log((outside[w] + 1) / (n_out + words))
                       - math.log((inside[w] + 1) / (n_in + words))
                       for w in inside.keys() | outside.keys()}

    def tokens(self, text: str) -> list[str]:
        return self._tokens(text.lower() if self._lowercase else text)

    def __call__(self, text: str) -> float:
        tokens = self.tokens(text)
        if not tokens:
            return math.inf  # nothing to judge it by: last
        return sum(self._ratio.get(t, self._unseen) for t in tokens) / len(tokens)


def random_rank(seed: int) -> Callable[[str], float]:
    """A seeded uniform rank of each text, from its bytes: the same text ranks the same in
    every pass and run."""
    salt = str(seed).encode()

    def rank(text: str) -> float:
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8,
                                 key=salt).digest()
        return int.from_bytes(digest, "big") / 2**64

    return rank


def lowest(texts: Iterable[str], score: Callable[[str], float], budget: int) -> list[str]:
    """The `budget` texts with the lowest score (ties: the earlier text), in their order."""
    heap: list[tuple[float, int, str]] = []  # (-score, -position, text): the worst kept on top
    for position, text in enumerate(texts):
        item = (-score(text), -position, text)
        if len(heap) < budget:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    return [text for _, _, text in sorted(heap, key=lambda x: -x[1])]


def select(pool: Callable[[], Iterator[str]], train: list[str], budget: int, rule: str,
           seed: int, token_pattern: str, lowercase: bool) -> list[str]:
    """`budget` texts of `pool()` (called once per pass, the same texts each time) by `rule`."""
    if rule == "random":
        score = random_rank(seed)
    else:
        score = CrossEntropyDifference(train, pool(), token_pattern, lowercase)
    return lowest(pool(), score, budget)
