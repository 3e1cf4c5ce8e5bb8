"""R's summation order, for the readers and workflows that must give R's numbers to the last bit.

R accumulates ``sum``, ``mean``, ``rowSums``, ``rowMeans`` and ``colSums`` of doubles in long double, adding
the values in storage order, and ``mean`` adds one correction pass (R's ``summary.c``, ``array.c``). numpy's
pairwise summation in double differs from that in the last bits, which tximport's gene summaries,
fishpond's scaling and DESeq2's estimators then carry forward. numpy only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["row_sums", "row_means", "col_sums", "mean", "median"]

LD = np.longdouble


def row_sums(m: np.ndarray) -> np.ndarray:
    """R ``rowSums``: columns added left to right in long double; returned as long double."""
    m = np.asarray(m, dtype=float)
    s = np.zeros(m.shape[0], LD)
    for j in range(m.shape[1]):
        s += m[:, j].astype(LD)
    return s


def row_means(m: np.ndarray) -> np.ndarray:
    """R ``rowMeans``: the long-double row sum divided in long double, rounded once to double."""
    m = np.asarray(m, dtype=float)
    return (row_sums(m) / LD(m.shape[1])).astype(float)


def col_sums(m: np.ndarray) -> np.ndarray:
    """R ``colSums``: a sequential long-double sum down each column, rounded once to double."""
    m = np.asarray(m, dtype=float)
    if m.shape[0] == 0:
        return np.zeros(m.shape[1])
    return np.cumsum(m.astype(LD), axis=0)[-1].astype(float)


def mean(x) -> float:
    """R ``mean`` of doubles: the long-double sum / n, then one correction pass (``summary.c``)."""
    x = np.asarray(x, dtype=float).ravel().astype(LD)
    if x.size == 0:
        return float("nan")
    n = LD(x.size)
    s = np.cumsum(x)[-1] / n
    if np.isfinite(s):
        s = s + np.cumsum(x - s)[-1] / n
    return float(s)


def median(x) -> float:
    """R ``median.default``: the middle value, or R's :func:`mean` of the two middle ones (NaN when empty)."""
    x = np.sort(np.asarray(x, dtype=float).ravel())
    n = x.size
    if n == 0:
        return float("nan")
    half = (n + 1) // 2
    if n % 2 == 1:
        return float(x[half - 1])
    return mean(x[half - 1:half + 1])
