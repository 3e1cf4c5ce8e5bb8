"""``rstats.r_log`` is the C library's log entry by entry, whichever path it takes (the integer table for
count matrices, the per-entry loop otherwise)."""

from __future__ import annotations

import math

import numpy as np

from diffbio_prob.workflows.deseq2 import rstats


def _libm(a):
    return np.array([math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan) for v in a.reshape(-1)]).reshape(
        a.shape)


def test_r_log_of_counts_is_libm_log():
    rng = np.random.default_rng(0)
    a = rng.negative_binomial(2, 0.01, (300, 50)).astype(float)
    a[3, 4], a[7, 1], a[0, 0] = 3e6, 2.0**20, 0.0  # above the table, its edge, zero
    np.testing.assert_array_equal(rstats.r_log(a), _libm(a))


def test_r_log_of_non_integers_is_libm_log():
    rng = np.random.default_rng(1)
    a = rng.gamma(0.5, 20.0, (100, 60)) + 0.1
    a[0, :3] = [0.0, np.nan, np.inf]
    np.testing.assert_array_equal(rstats.r_log(a), _libm(a))


def test_r_row_vars_adds_in_order_like_matrixstats():
    # matrixStats' rowVars: a running double sum for the mean, then for the squared deviations; magnitudes
    # spread over 12 orders make any other summation order differ in the last bits
    rng = np.random.default_rng(2)
    a = rng.normal(size=(40, 57)) * 10.0 ** rng.integers(-6, 6, size=(40, 57))

    def loop(row):
        s = 0.0
        for v in row:
            s += v
        mu = s / len(row)
        s = 0.0
        for v in row:
            s += (v - mu) * (v - mu)
        return s / (len(row) - 1)

    expected = np.array([loop(r) for r in a.tolist()])
    np.testing.assert_array_equal(rstats.r_row_vars(a), expected)
    assert not np.array_equal(np.var(a, axis=1, ddof=1), expected)  # numpy's pairwise sums round otherwise
