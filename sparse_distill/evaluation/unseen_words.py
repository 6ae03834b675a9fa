"""Words the student's vocabulary lacks, given a vector at predict time (an option measured by
the benchmark, not a default).

The student knows nothing of a word it never saw: its n-grams are not in the table and add
nothing to the text's mean. The teacher still knows it. With the projection that initialised the
table (`training.embed_init.Projection`, kept in the student directory), each unseen word of a
text gets the row it would have started from: the teacher's encoder reads the word alone, its
pieces' last hidden states are averaged and projected to d. That vector joins the text's
count-weighted mean as one more n-gram; the vectors are cached per word, so a word costs the
encoder once. The trained rows have moved from their starting points, the unseen words' vectors
have not: whether they still help is what the benchmark's row measures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from ..inference.artifact import PROJECTION_FILE, read_student
from ..inference.featurize import Vocabulary
from ..inference.student import Student
from ..inference.tokens import tokenizer
from ..training.embed_init import (
    Projection,
    encode_words,
    fit_projection,
    vocabulary_words,
    word_vectors,
)
from ..training.hf import load_classifier, load_tokenizer


def student_projection(directory: Path, teacher: str, cache: Path,
                       trust_remote_code: bool = False) -> Projection:
    """The map that initialised the table of the student in `directory`: its saved
    projection.safetensors, or for a student trained before it was saved, the same map made
    again from the teacher's vectors of the vocabulary's words (`cache`: RUN/features/init,
    where they usually are already)."""
    path = directory / PROJECTION_FILE
    if path.is_file():
        return Projection.load(path)
    meta = read_student(directory)
    words, _, _ = vocabulary_words(Vocabulary.load(directory / "vocab"))
    vectors = word_vectors(teacher, words, cache, torch.device("cpu"), trust_remote_code)
    return fit_projection(vectors, meta["architecture"]["embedding_dim"])


class UnseenWordVectors:
    """`student`, with a vector from `teacher` for each word of a text its vocabulary lacks."""

    def __init__(self, student: Student, projection: Projection, teacher: str,
                 trust_remote_code: bool = False):
        """`projection`: the student's (`student_projection`)."""
        if student.pooling == "max" or student.model.embedding is None \
                or student.model.embedding.weight.dtype != torch.float32:
            raise DataError("unseen-word vectors need a float32 table and mean or sum pooling")
        if student.featurizer.unseen.buckets:
            raise DataError("this student sends unseen words to hashed buckets already; "
                            "unseen-word vectors are for a student without buckets")
        self.student = student
        self.projection = projection
        self.tokenizer = load_tokenizer(teacher, trust_remote_code)
        self.encoder = load_classifier(teacher, None, trust_remote_code).base_model
        vocab = student.featurizer.vocab
        self.known = {g for g in vocab.ngrams if " " not in g}  # the vocabulary's words
        self.words = tokenizer(vocab.tokens, vocab.token_pattern, vocab.lowercase,
                               vocab.normalize)
        # The vectors made so far: word -> its row of `table`, (n_words, d) float32.
        self.index: dict[str, int] = {}
        self.table = torch.zeros((0, student.model.dim))

    def unseen(self, text: str) -> list[str]:
        """The text's word occurrences that the vocabulary lacks, in order."""
        words = self.words(text)
        return [w for w in words if w not in self.known]

    def _vectors(self, words: list[str]) -> None:
        new = sorted({w for w in words if w not in self.index})
        if new:
            raw = encode_words(self.encoder, self.tokenizer, new, torch.device("cpu"))
            first = len(self.index)  # fixed before the update: the dict grows as it reads
            self.index.update((w, first + i) for i, w in enumerate(new))
            self.table = torch.cat([self.table, torch.from_numpy(
                np.ascontiguousarray(self.projection(raw), dtype=np.float32))])

    @torch.inference_mode()
    def logits(self, texts: list[str]) -> np.ndarray:
        """(n_texts, n_classes) float32."""
        student, model = self.student, self.student.model
        bag = student.featurizer.bag(texts, mean=False)  # counts
        table = model.embedding.weight  # (rows, width)
        pooled = F.embedding_bag(torch.from_numpy(bag.ids), table, torch.from_numpy(bag.offsets),
                                 mode="sum", per_sample_weights=torch.from_numpy(bag.weights),
                                 include_last_offset=True)  # (n, width)
        unseen = [self.unseen(t) for t in texts]
        self._vectors([w for words in unseen for w in words])
        lengths = np.fromiter(map(len, unseen), np.int64, len(texts))  # (n,)
        ids = torch.tensor([self.index[w] for words in unseen for w in words],
                           dtype=torch.int64)  # (total unseen,)
        offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]))  # (n + 1,)
        pooled[:, :model.dim] += F.embedding_bag(ids, self.table, offsets, mode="sum",
                                                 include_last_offset=True)  # (n, d)
        if student.pooling == "mean":
            cumulative = np.concatenate([[0.0], np.cumsum(bag.weights, dtype=np.float64)])
            counts = cumulative[bag.offsets[1:]] - cumulative[bag.offsets[:-1]]  # (n,)
            total = (counts + lengths).astype(np.float32)  # (n,)
            pooled /= torch.from_numpy(np.maximum(total, 1.0))[:, None]
        return model.head(pooled).numpy()

    def predict(self, texts: list[str]) -> list[str]:
        labels = self.student.labels
        return [labels[i] for i in self.logits(texts).argmax(axis=1)]
