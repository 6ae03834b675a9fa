"""Temperature scaling (Guo et al. 2017): one scalar T that divides the student's logits so that
its probabilities say how often it is right, fitted on dev after training.

Dividing every logit by the same T > 0 keeps each row's argmax, so labels and accuracy are
exactly those of the uncalibrated student; only the probabilities change.
"""

from __future__ import annotations

import math

import numpy as np

# The search interval for T: a student whose best T lies outside it is left at the bound.
T_MIN, T_MAX = 0.05, 20.0
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def nll(logits: np.ndarray, gold: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the gold classes under softmax(logits / temperature).

    logits: (n, n_classes); gold: (n,) class indices."""
    z = logits.astype(np.float64) / temperature  # (n, n_classes)
    z -= z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))  # (n,)
    return float(np.mean(log_norm - z[np.arange(len(gold)), gold]))


def fit_temperature(logits: np.ndarray, gold: np.ndarray, iterations: int = 60) -> float:
    """The T in [T_MIN, T_MAX] that minimises `nll` on (logits, gold): golden-section search on
    log T. The NLL is convex in 1/T (a log-sum-exp of linear functions minus a linear one), so
    it has one minimum along log T as well, and the search finds it; 60 steps narrow the
    interval to 1e-12 of its width. No texts: T = 1 (nothing to fit on)."""
    if len(gold) == 0:
        return 1.0
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = nll(logits, gold, math.exp(a)), nll(logits, gold, math.exp(b))
    for _ in range(iterations):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll(logits, gold, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll(logits, gold, math.exp(b))
    return math.exp((lo + hi) / 2.0)
