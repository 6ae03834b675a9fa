"""Cost of the benchmark's TF-IDF + logistic regression grid, warm-started C path vs cold fits.

The reference is the grid as it first ran: every (n-gram range, C) fit starts from zero, C in
1/10/100. The measured one is `sparse_distill.baselines.train_tfidf_lr`: C climbs 1/10/100/1000 and
each fit starts from the previous solution. Both run in this process on the same data, one after
the other; the script prints each one's wall time, the setting it picked and its dev and test
accuracy, and the ratio of the times.

Run (20 Newsgroups is where the grid is slow; fetch it first with `sdistill data fetch 20ng`):
    SDISTILL_CACHE=/tmp/sdc python scripts/bench_tfidf_grid.py configs/20ng.yaml
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from benchutil import code_version

from sparse_distill.baselines import accuracy, train_tfidf_lr
from sparse_distill.config import load_config
from sparse_distill.data import LabeledData, load_labeled


def cold_grid(data: LabeledData, seed: int) -> tuple[Any, float, str]:
    """The reference: every fit from zero, C in 1/10/100."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    assert data.dev is not None
    best: tuple[float, Any, Any, str] = (-1.0, None, None, "")
    for n in (1, 2, 3):
        vec = TfidfVectorizer(ngram_range=(1, n), sublinear_tf=True)
        x_train = vec.fit_transform(data.train.texts)
        x_dev = vec.transform(data.dev.texts)
        for c in (1.0, 10.0, 100.0):
            clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
            clf.fit(x_train, data.train.labels)
            acc = float(np.mean(clf.predict(x_dev) == np.asarray(data.dev.labels)))
            if acc > best[0]:
                best = (acc, vec, clf, f"word 1-{n}-grams, C={c:g}")
    _, vec, clf, settings = best
    return (lambda texts: clf.predict(vec.transform(texts)).tolist()), best[0], settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    args = parser.parse_args()
    cfg = load_config(args.config)
    data = load_labeled(cfg)
    assert data.test is not None
    print(f"code {code_version()}; {args.config}: {len(data.train.texts):,} train texts")
    times = {}
    for name, grid in (("cold, C 1/10/100 (reference)", cold_grid),
                       ("warm-started, C 1/10/100/1000", train_tfidf_lr)):
        start = time.perf_counter()
        predict, dev_acc, settings = grid(data, cfg.run.seed)
        times[name] = time.perf_counter() - start
        test_acc = accuracy(predict, data.test.texts, data.test.labels)
        print(f"{name}: {times[name]:.1f} s; picked {settings}; dev {dev_acc:.4f}, "
              f"test {test_acc:.4f}", flush=True)
    ref, new = times.values()
    print(f"warm-started grid: {new / ref:.2f}x the reference's time ({ref / new:.1f}x faster)")


if __name__ == "__main__":
    main()
