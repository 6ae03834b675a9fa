"""Unseen words given the teacher's vector at predict time (`evaluation.unseen_words`)."""

from __future__ import annotations

import numpy as np
import torch

from sparse_distill.evaluation.unseen_words import UnseenWordVectors, student_projection
from sparse_distill.inference.student import Student
from sparse_distill.stages.rundir import teacher_source


def test_unseen_words_join_the_mean_as_their_projected_teacher_vectors(trained_student):
    student = Student.load(trained_student)
    run = trained_student.parent
    teacher = teacher_source(run)
    projection = student_projection(trained_student, teacher, run / "features" / "init")
    # A student trained before the projection was saved gets the same map made again.
    (trained_student / "projection.safetensors").rename(run / "moved-projection")
    try:
        again = student_projection(trained_student, teacher, run / "features" / "init")
    finally:
        (run / "moved-projection").rename(trained_student / "projection.safetensors")
    assert torch.equal(again.components, projection.components) and again.dim == projection.dim
    helped = UnseenWordVectors(student, projection, teacher)
    seen = ["a warm, funny film", "a dull mess of a film"]
    assert all(not helped.unseen(t) for t in seen)
    # Without unseen words nothing changes.
    assert np.allclose(helped.logits(seen), student.logits(seen), atol=1e-5)
    text = "a warm zyzzyva film zyzzyva"
    assert helped.unseen(text) == ["zyzzyva", "zyzzyva"]
    logits = helped.logits([text])
    assert list(helped.index) == ["zyzzyva"]  # encoded once, cached
    vector = helped.table[helped.index["zyzzyva"]].numpy()
    assert vector.shape == (student.model.dim,) and np.abs(vector).sum() > 0
    bag = student.featurizer.bag([text])
    table = student.model.embedding.weight.detach()
    pooled = (table[torch.from_numpy(bag.ids).long()] * torch.from_numpy(bag.weights)[:, None]
              ).sum(0)
    pooled[:student.model.dim] += 2 * torch.from_numpy(vector)
    pooled /= float(bag.weights.sum()) + 2
    with torch.no_grad():
        expected = student.model.head(pooled[None]).numpy()
    assert np.allclose(logits, expected, atol=1e-5)
    assert helped.predict([text]) == [student.labels[int(expected.argmax())]]
    # In a batch, each text gets its own unseen words (none, or new ones, or cached ones).
    # The batch comes first: one call that meets two new words.
    batch = [seen[0], "quixotic xylograph zyzzyva", text, "", seen[1]]
    batched = helped.logits(batch)
    each = np.concatenate([helped.logits([t]) for t in batch])
    assert np.allclose(batched, each, atol=1e-5)
    assert sorted(helped.index) == ["quixotic", "xylograph", "zyzzyva"]
    assert sorted(helped.index.values()) == [0, 1, 2] and len(helped.table) == 3
    assert torch.equal(helped.table[helped.index["zyzzyva"]], torch.from_numpy(vector))
