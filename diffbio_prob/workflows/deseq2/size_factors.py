"""DESeq2's size factors: median of ratios (``estimateSizeFactorsForMatrix``), ``poscounts`` and
``iterate`` (``estimateSizeFactorsIterate``, in :mod:`.steps`: it runs the dispersion steps)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ratio_size_factors", "poscounts_size_factors"]


def _median_ratio(counts: np.ndarray, loggeomeans: np.ndarray) -> np.ndarray:
    finite = np.isfinite(loggeomeans)
    if not finite.any():
        raise ValueError(
            "counts: every gene contains at least one zero, cannot compute log geometric means "
            "(use size_factors='poscounts' or 'iterate')"
        )
    with np.errstate(divide="ignore"):
        logc = np.log(counts)
    sf = np.empty(counts.shape[1])
    for j in range(counts.shape[1]):
        use = finite & (counts[:, j] > 0)
        if not use.any():
            raise ValueError(f"counts: sample {j} has no positive count among the genes used for size factors")
        sf[j] = math.exp(np.median(logc[use, j] - loggeomeans[use]))
    return sf


def ratio_size_factors(counts: np.ndarray) -> np.ndarray:
    """Median-of-ratios size factors (R's ``estimateSizeFactorsForMatrix``) of ``(G, N)`` counts."""
    counts = np.asarray(counts, dtype=float)
    with np.errstate(divide="ignore"):
        lg = np.log(counts).mean(axis=1)
    return _median_ratio(counts, lg)


def poscounts_size_factors(counts: np.ndarray) -> np.ndarray:
    """``type = "poscounts"``: geometric means over positive counts, scaled to geometric mean 1."""
    counts = np.asarray(counts, dtype=float)
    with np.errstate(divide="ignore"):
        lc = np.log(counts)
    lc[~np.isfinite(lc)] = 0.0
    lg = lc.mean(axis=1)
    lg[counts.sum(axis=1) == 0] = -np.inf
    sf = _median_ratio(counts, lg)
    return sf / math.exp(np.mean(np.log(sf)))
