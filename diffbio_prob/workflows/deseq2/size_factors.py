"""DESeq2's size factors: median of ratios (``estimateSizeFactorsForMatrix``), ``poscounts`` and
``iterate`` (``estimateSizeFactorsIterate``, in :mod:`.steps`: it runs the dispersion steps)."""

from __future__ import annotations

import math

import numpy as np

from diffbio_prob.workflows.deseq2 import rstats

__all__ = ["median_ratio", "ratio_size_factors", "poscounts_size_factors"]


def median_ratio(counts: np.ndarray, loggeomeans: np.ndarray, logc: np.ndarray, *, name: str = "counts",
                 hint: str = " (use size_factors='poscounts' or 'iterate')") -> np.ndarray:
    """``estimateSizeFactorsForMatrix``'s per-sample median of log ratios ``logc - loggeomeans`` over the
    genes with a finite log geometric mean and a positive count; errors name the argument ``name``."""
    finite = np.isfinite(loggeomeans)
    if not finite.any():
        raise ValueError(f"{name}: every gene contains at least one zero, cannot compute log geometric means{hint}")
    sf = np.empty(counts.shape[1])
    for j in range(counts.shape[1]):
        use = finite & (counts[:, j] > 0)
        if not use.any():
            raise ValueError(f"{name}: sample {j} has no positive count among the genes used for size factors")
        sf[j] = math.exp(np.median(logc[use, j] - loggeomeans[use]))
    return sf


def ratio_size_factors(counts: np.ndarray) -> np.ndarray:
    """Median-of-ratios size factors (R's ``estimateSizeFactorsForMatrix``) of ``(G, N)`` counts.

    In R's rounding (the C library's ``log``, ``rowMeans`` in long double): R's later steps depend on
    the last bits of the size factors for a few genes (see :mod:`.rstats`).
    """
    counts = np.asarray(counts, dtype=float)
    logc = rstats.r_log(counts)
    with np.errstate(invalid="ignore"):
        lg = rstats.r_row_sums(logc, mean=True)
    return median_ratio(counts, lg, logc)


def poscounts_size_factors(counts: np.ndarray) -> np.ndarray:
    """``estimateSizeFactors(dds, type = "poscounts")``: geometric means over the positive counts
    (``geoMeanNZ``: ``exp(sum(log(x[x > 0])) / length(x))``, 0 for an all-zero gene) handed to
    ``estimateSizeFactorsForMatrix`` as ``geoMeans``, which then scales to geometric mean 1; in R's rounding."""
    counts = np.asarray(counts, dtype=float)
    logc = rstats.r_log(counts)
    n = counts.shape[1]
    geo = np.zeros(counts.shape[0])
    for i, (row, lrow) in enumerate(zip(counts, logc)):
        pos = row > 0
        if pos.any():
            geo[i] = math.exp(rstats.r_ld_sum(lrow[pos].tolist()) / n)
    lg = rstats.r_log(geo)
    sf = median_ratio(counts, lg, logc)
    return sf / math.exp(rstats.r_mean(rstats.r_log(sf)))
