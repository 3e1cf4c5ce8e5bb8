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
