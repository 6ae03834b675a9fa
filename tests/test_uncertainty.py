"""Bootstrap intervals and the paired bootstrap: checked against what the arithmetic must give."""

from __future__ import annotations

import numpy as np

from sparse_distill.evaluation.uncertainty import (
    bootstrap_interval,
    correct_bits,
    paired_p,
    verdict,
)


def _bits(n_right: int, n: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    right = np.zeros(n, bool)
    right[rng.choice(n, n_right, replace=False)] = True
    return "".join("1" if r else "0" for r in right)


def test_correct_bits_mark_each_text():
    assert correct_bits(["a", "b", "c"], ["a", "x", "c"]) == "101"


def test_interval_matches_the_normal_approximation_on_a_large_set():
    # 800 of 1,000 right: the standard error is sqrt(0.8 * 0.2 / 1000) = 0.01265, so the 95%
    # interval is about 0.8 +- 0.0248
    lo, hi = bootstrap_interval(_bits(800, 1000))
    assert abs(lo - (0.8 - 0.0248)) < 0.004 and abs(hi - (0.8 + 0.0248)) < 0.004
    # and it repeats exactly (one seeded draw)
    assert bootstrap_interval(_bits(800, 1000)) == (lo, hi)


def test_all_right_has_no_width():
    assert bootstrap_interval("1" * 50) == (1.0, 1.0)


def test_paired_bootstrap_sees_a_real_lead_and_not_a_small_one():
    n = 1000
    base = _bits(800, n)
    # a is b plus 40 texts more right: 4 points on the same texts, clearly a lead
    b_arr = np.array([c == "1" for c in base])
    a_arr = b_arr.copy()
    a_arr[np.flatnonzero(~b_arr)[:40]] = True
    a = "".join("1" if x else "0" for x in a_arr)
    assert paired_p(a, base) == 0.0
    assert verdict(a, base) == ("beats", 0.0)
    kind, p = verdict(base, a)
    assert kind == "behind" and p == 1.0
    # 3 texts gained and 1 lost: +0.2 points, within the noise
    c_arr = b_arr.copy()
    c_arr[np.flatnonzero(~b_arr)[:3]] = True
    c_arr[np.flatnonzero(b_arr)[0]] = False
    c = "".join("1" if x else "0" for x in c_arr)
    kind, p = verdict(c, base)
    assert kind == "tie" and 0.05 <= p < 0.5


def test_paired_differs_from_unpaired_when_models_err_together():
    # Two models wrong on the same 200 texts but a also right on 20 of b's other errors:
    # unpaired intervals overlap, while the paired test sees every resample favour a.
    n = 1000
    b = "0" * 220 + "1" * 780
    a = "0" * 200 + "1" * 800
    lo_a, _ = bootstrap_interval(a)
    _, hi_b = bootstrap_interval(b)
    assert lo_a < hi_b  # the intervals overlap
    assert paired_p(a, b) < 0.001  # yet a is better on every resample that draws any of the 20
    assert len(a) == len(b) == n
