"""Argument checks of the DESeq2 entry points, run before any work so a mistake fails at once."""

from __future__ import annotations

import numpy as np

from diffbio_prob.workflows.deseq2.options import FIT_TYPES

__all__ = ["check_fit_args", "check_results_args"]


def _is_real(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def check_results_args(
    *,
    alpha=0.1,
    lfc_threshold=0.0,
    alt_hypothesis="greaterAbs",
    cooks_cutoff=None,
    independent_filtering=True,
) -> None:
    """Check :meth:`DESeq2Fit.results`' scalar arguments (also run before a fit, so a bad one fails at once).

    Raises:
        TypeError / ValueError naming the argument and what it must be.
    """
    if not _is_real(alpha) or not (0 < alpha < 1):
        raise ValueError(f"alpha: expected a number in (0, 1), got {alpha!r}")
    if alt_hypothesis not in ("greaterAbs", "lessAbs", "greater", "less"):
        raise ValueError(f"alt_hypothesis: expected greaterAbs, lessAbs, greater or less, got {alt_hypothesis!r}")
    if not _is_real(lfc_threshold) or not (np.isfinite(lfc_threshold) and lfc_threshold >= 0):
        raise ValueError(f"lfc_threshold: expected a finite non-negative number, got {lfc_threshold!r}")
    if lfc_threshold == 0 and alt_hypothesis == "lessAbs":
        raise ValueError("alt_hypothesis='lessAbs' needs a positive lfc_threshold")
    if cooks_cutoff is not None and not isinstance(cooks_cutoff, (bool, np.bool_)):
        if not _is_real(cooks_cutoff) or np.isnan(cooks_cutoff) or cooks_cutoff <= 0:
            raise ValueError(
                f"cooks_cutoff: expected None/True (R's default), False (no filtering) or a positive number, "
                f"got {cooks_cutoff!r}"
            )
    if not isinstance(independent_filtering, (bool, np.bool_)):
        raise TypeError(f"independent_filtering: expected True or False, got {independent_filtering!r}")


def check_fit_args(
    *,
    test="wald",
    reduced=None,
    size_factors="ratio",
    fit_type="parametric",
    min_replicates_for_replace=7,
    dispersion_fit="deseq2",
    precision="float64",
) -> None:
    """Check :func:`fit_deseq2`'s option arguments before any work.

    Raises:
        TypeError / ValueError naming the argument and what it must be.
    """
    if test not in ("wald", "lrt"):
        raise ValueError(f"test: expected 'wald' or 'lrt', got {test!r}")
    if test == "lrt" and reduced is None:
        raise ValueError("reduced: the likelihood-ratio test needs a reduced design such as '~ 1'")
    if test == "wald" and reduced is not None:
        raise ValueError("reduced: only used with test='lrt'")
    if isinstance(size_factors, str) and size_factors not in ("ratio", "poscounts", "iterate"):
        raise ValueError(f"size_factors: expected 'ratio', 'poscounts', 'iterate' or an array, got {size_factors!r}")
    if fit_type not in FIT_TYPES:
        raise ValueError(f"fit_type: expected 'parametric', 'local' or 'mean', got {fit_type!r}")
    if dispersion_fit not in ("deseq2", "newton"):
        raise ValueError(f"dispersion_fit: expected 'deseq2' or 'newton', got {dispersion_fit!r}")
    if precision not in ("float64", "float32"):
        raise ValueError(f"precision: expected 'float64' or 'float32', got {precision!r}")
    m = min_replicates_for_replace
    if not _is_real(m) or np.isnan(m) or m < 3:
        raise ValueError(
            "min_replicates_for_replace: expected a number >= 3 (DESeq2 needs at least 3 replicates to call a "
            f"count an outlier) or inf to never replace, got {m!r}"
        )
