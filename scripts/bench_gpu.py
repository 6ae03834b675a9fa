"""Teacher and student on one device, as issue 14 asks: labelling texts/s in fp32 and bf16, and
inference texts/s at batch 1024 and 32 with the student/teacher ratio.

Teachers: MiniLM (`$SDISTILL_CACHE/models/minilm`, a fresh 2-class head) and RoBERTa-Large's
architecture (24 layers, hidden 1024) built from its config with random weights; their speed is
that of trained weights. No RoBERTa tokenizer ships offline, so RoBERTa-Large reads MiniLM's
word pieces (a text's token count, which sets the cost, is about the same).

Student: the paper's size, |V| = 1M n-grams, d = 1000, one hidden layer of 1000, random weights.
Its vocabulary is every 1-4-gram of the texts below, filled up to |V| with n-grams that never
occur, so that the featuriser's table has the real size.

Texts: Rotten Tomatoes snippets (`$SDISTILL_CACHE/data/rt`, ~20 words) for short labelling, at
max_length 64; and documents of consecutive snippets joined to >= --doc-words words (the length
of an IMDB review, the paper's 607x setting), at max_length 256, for long labelling and for
inference. Every figure is end to end (tokenising or featurising included), the median of
--repeats after a warm-up (`evaluation.measure_speed`, as `sdistill eval` times), with the
model-only figure beside it.

Run (after `sdistill data fetch rt minilm`):
    SDISTILL_CACHE=~/.cache/sparse-distill python scripts/bench_gpu.py --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from benchutil import code_version, read_jsonl_texts

from sparse_distill.config import VocabConfig, default_cache_dir
from sparse_distill.evaluation import measure_speed, median_rate
from sparse_distill.model import SparseDAN, Student
from sparse_distill.progress import Reporter
from sparse_distill.teacher import load_classifier, load_tokenizer, predict_logits
from sparse_distill.vocab import count_ngrams, select_vocabulary

LABELS = ["neg", "pos"]


def documents(snippets: list[str], words: int) -> list[str]:
    """Consecutive snippets joined until each document has at least `words` words."""
    docs, current, count = [], [], 0
    for text in snippets:
        current.append(text)
        count += len(text.split())
        if count >= words:
            docs.append(" ".join(current))
            current, count = [], 0
    return docs


def roberta_large() -> Any:
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=50265, hidden_size=1024, num_hidden_layers=24,
                           num_attention_heads=16, intermediate_size=4096,
                           max_position_embeddings=514, type_vocab_size=1, num_labels=2)
    return RobertaForSequenceClassification(config).float()


def paper_student(texts: list[str], vocab_size: int, dim: int, device: torch.device) -> Student:
    cfg = VocabConfig(max_features=vocab_size)
    vocab = select_vocabulary(count_ngrams(texts, cfg), cfg)
    fill = vocab_size - len(vocab)
    # "qx" + digits: a token the texts never hold, so the filler only sizes the table.
    vocab = dataclasses.replace(
        vocab, ngrams=vocab.ngrams + [f"qx{i}" for i in range(fill)],
        df=np.concatenate([vocab.df, np.ones(fill, np.int64)]),
        tf=np.concatenate([vocab.tf, np.ones(fill, np.int64)]))
    torch.manual_seed(0)
    model = SparseDAN(vocab_size, len(LABELS), dim, [dim], "mean", "relu", 0.0).to(device)
    return Student(model, vocab, LABELS, "mean")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=default_cache_dir())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--short-texts", type=int, default=8192)
    parser.add_argument("--long-texts", type=int, default=1024)
    parser.add_argument("--doc-words", type=int, default=200)
    parser.add_argument("--label-batch-size", type=int, default=128,
                        help="labelling batch (teacher.label_batch_size's default)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 32])
    parser.add_argument("--vocab-size", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1000)
    parser.add_argument("--teachers", nargs="+", default=["minilm", "roberta-large"],
                        choices=["minilm", "roberta-large"])
    args = parser.parse_args()
    device = torch.device(args.device)
    rt = args.cache / "data" / "rt"
    snippets = [t for split in ("train", "dev", "test")
                for t in read_jsonl_texts(rt / f"{split}.jsonl")]
    short = snippets[:args.short_texts]
    docs = documents(snippets, args.doc_words)
    # Enough documents for every timing: cycle them when the snippets run out.
    long = [docs[i % len(docs)] for i in range(args.long_texts)]
    minilm = str(args.cache / "models" / "minilm")
    tokenizer = load_tokenizer(minilm, False)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    tokens = np.mean([len(tokenizer(t, truncation=True, max_length=256)["input_ids"])
                      for t in long[:200]])
    print(f"{name}; {torch.get_num_threads()} CPU threads; median of {args.repeats}; "
          f"{len(short):,} snippets ({np.mean([len(t.split()) for t in short]):.0f} words), "
          f"{len(long):,} documents ({np.mean([len(t.split()) for t in long]):.0f} words, "
          f"{tokens:.0f} tokens at max_length 256); sparse_distill at {code_version()}")

    student = paper_student(docs + short, args.vocab_size, args.dim, device)
    print(f"student: |V| {len(student.featurizer.vocab):,}, d {args.dim}, hidden [{args.dim}], "
          f"on {device}, featurising on {student.threads} threads")

    teachers = {}
    for which in args.teachers:
        model = load_classifier(minilm, LABELS, False) if which == "minilm" else roberta_large()
        teachers[which] = model.to(device).eval()

    print("\n### Labelling (sorted by length, batch "
          f"{args.label_batch_size})\n")
    print("| teacher | texts | max_length | precision | texts/s |")
    print("|---|---|---:|---|---:|")
    for which, model in teachers.items():
        for texts, max_length, kind in ((short, 64, "snippets"), (long, 256, "documents")):
            for precision in ("fp32", "bf16"):
                rate = median_rate(lambda m=model, t=texts, ml=max_length, p=precision:
                                   predict_logits(m, tokenizer, t, max_length=ml,
                                                  batch_size=args.label_batch_size,
                                                  device=device, precision=p),
                                   len(texts), args.repeats)
                print(f"| {which} | {kind} | {max_length} | {precision} | {rate:,.0f} |",
                      flush=True)

    print("\n### Inference on documents at max_length 256: texts/s end to end (model only)\n")
    print("| teacher | precision | batch | teacher | student | student / teacher |")
    print("|---|---|---:|---:|---:|---:|")
    for which, model in teachers.items():
        for precision in ("fp32", "bf16"):
            def labels_of(texts: list[str], batch_size: int, encoded: Any = None,
                          m: Any = model, p: str = precision) -> list[str]:
                logits = predict_logits(m, tokenizer, texts, max_length=256,
                                        batch_size=batch_size, device=device, precision=p,
                                        encoded=encoded)
                return [LABELS[i] for i in logits.argmax(axis=1)]

            speed = measure_speed(long, labels_of, tokenizer, 256, student, args.batch_sizes,
                                  args.repeats, Reporter())
            for bs in map(str, args.batch_sizes):
                t, s = speed["by_batch_size"]["teacher"][bs], speed["by_batch_size"]["student"][bs]
                print(f"| {which} | {precision} | {bs} | {t['samples_per_s']:,.0f} "
                      f"({t['model_only_samples_per_s']:,.0f}) | {s['samples_per_s']:,.0f} "
                      f"({s['model_only_samples_per_s']:,.0f}) | "
                      f"{s['samples_per_s'] / t['samples_per_s']:,.0f}x "
                      f"({s['model_only_samples_per_s'] / t['model_only_samples_per_s']:,.0f}x) |",
                      flush=True)


if __name__ == "__main__":
    main()
