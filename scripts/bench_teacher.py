"""Teacher labelling throughput: fp32 vs bf16, batches sorted by length vs in input order.

In one process, on real texts, end to end (tokenisation included), with the library's own
`predict_logits`: Rotten Tomatoes texts at max_length 64 and 20 Newsgroups texts at max_length 256.
Each setting is warmed up once, then timed as the median of `--repeats` runs. It also reports how
often bf16 and fp32 predict the same class.

Run (after `sdistill data fetch rt 20ng minilm`):
    SDISTILL_CACHE=~/.cache/sparse-distill python scripts/bench_teacher.py \
        --model runs/rt/teacher/model
`--model` defaults to the MiniLM encoder with a fresh 2-class head: the speed is the same.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from benchutil import code_version, read_jsonl_texts

from sparse_distill.config import default_cache_dir
from sparse_distill.teacher import load_classifier, load_tokenizer, predict_logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=default_cache_dir())
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--n-short", type=int, default=2000)
    parser.add_argument("--n-long", type=int, default=400)
    args = parser.parse_args()
    source = str(args.model or args.cache / "models" / "minilm")
    labels = None if args.model else ["neg", "pos"]
    tokenizer = load_tokenizer(source, False)
    model = load_classifier(source, labels, False)
    device = torch.device("cpu")
    sets = [("rt", read_jsonl_texts(args.cache / "data/rt/test.jsonl", args.n_short)
             + read_jsonl_texts(args.cache / "data/rt/train.jsonl", args.n_short), 64),
            ("20ng", read_jsonl_texts(args.cache / "data/20ng/test.jsonl", args.n_long), 256)]
    print(f"model {source}; {torch.get_num_threads()} threads; batch {args.batch_size}; "
          f"median of {args.repeats}; sparse_distill at {code_version()}")
    print("| texts | max_length | n | precision | order | texts/s | vs fp32 unsorted |")
    print("|---|---:|---:|---|---|---:|---:|")
    for name, texts, max_length in sets:
        texts = texts[:args.n_short] if name == "rt" else texts
        base = None
        preds = {}
        for precision in ("fp32", "bf16"):
            for sort in (False, True):
                def run(precision: str = precision, sort: bool = sort,
                        texts: list[str] = texts, max_length: int = max_length) -> np.ndarray:
                    return predict_logits(model, tokenizer, texts, max_length=max_length,
                                          batch_size=args.batch_size, device=device,
                                          precision=precision, sort_by_length=sort)

                run(texts=texts[:args.batch_size])  # warm-up
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    logits = run()
                    times.append(time.perf_counter() - start)
                rate = len(texts) / statistics.median(times)
                base = base or rate
                preds[(precision, sort)] = logits.argmax(axis=1)
                print(f"| {name} | {max_length} | {len(texts):,} | {precision} | "
                      f"{'sorted' if sort else 'input'} | {rate:,.0f} | {rate / base:.2f}x |",
                      flush=True)
        agree = float((preds[("bf16", True)] == preds[("fp32", True)]).mean())
        print(f"| {name} | | | bf16 vs fp32 same prediction | | {agree:.4f} | |")


if __name__ == "__main__":
    main()
