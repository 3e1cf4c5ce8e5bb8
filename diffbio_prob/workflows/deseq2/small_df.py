"""DESeq2's prior variance of log dispersions for 1-3 residual degrees of freedom, as R computes it.

``DESeq2:::estimateDispersionsPriorVar`` (DESeq2 1.38.3), when ``1 <= m - p <= 3``, matches the
observed residuals ``log(dispGeneEst) - log(dispFit)`` to simulated ones:

.. code-block:: r

    set.seed(2)
    obsDist <- dispResiduals[aboveMinDisp]          # genes with dispGeneEst >= 100 * minDisp
    brks <- -20:20/2
    obsDist <- obsDist[obsDist > min(brks) & obsDist < max(brks)]
    obsVarGrid <- seq(from = 0, to = 8, length = 200)
    obsDistHist <- hist(obsDist, breaks = brks, plot = FALSE)
    klDivs <- sapply(obsVarGrid, function(x) {
        randDist <- log(rchisq(10000, df = (m - p))) + rnorm(10000, 0, sqrt(x)) - log(m - p)
        randDist <- randDist[randDist > min(brks) & randDist < max(brks)]
        randDistHist <- hist(randDist, breaks = brks, plot = FALSE)
        z <- c(obsDistHist$density, randDistHist$density)
        small <- min(z[z > 0])
        sum(obsDistHist$density * (log(obsDistHist$density + small) - log(randDistHist$density + small)))
    })
    lofit <- loess(klDivs ~ obsVarGrid, span = 0.2)
    obsVarFineGrid <- seq(from = 0, to = 8, length = 1000)
    lofitFitted <- predict(lofit, obsVarFineGrid)
    argminKL <- obsVarFineGrid[which.min(lofitFitted)]
    expVarLogDisp <- trigamma((m - p)/2)            # computed, but not used
    dispPriorVar <- pmax(argminKL, 0.25)

Because ``set.seed(2)`` is inside the function, the simulated histograms are constants of R's RNG
for each df: ``diffbio_prob/data/deseq2_prior_var_sim.npz`` holds their counts (made by
``make_deseq2_prior_var_sim.R`` beside it). Everything else is recomputed here: ``hist``'s
right-closed bins on R's fuzzed breaks (``breaks + 1e-7 * median(diff(breaks))``, the lowest one
moved down), its density ``counts / (n * 0.5)``, the KL scores in R's order of operations (glibc's
``log``, ``sum`` accumulated in long double), R's
``loess`` (:mod:`.loess`) and the first minimum on the fine grid.

Note: R's DESeq2 1.38.3 does *not* subtract ``trigamma((m - p) / 2)`` in this branch (the variable is
computed and dropped); the value is the argmin floored at 0.25, and so is this one.
"""

from __future__ import annotations

import math
import numbers
from functools import cache
from importlib import resources

import numpy as np

from .loess import fit_loess

__all__ = [
    "r_hist_density",
    "r_prior_var_kl_scores",
    "r_prior_var_residuals",
    "r_prior_var_small_df",
]

_BREAKS = np.arange(-20, 21) / 2.0  # R's -20:20/2 (exact halves)
_FLOOR = 0.25


def _r_seq_length(frm: float, to: float, n: int) -> np.ndarray:
    """R's ``seq(from, to, length.out = n)`` (seq.default: ``from + (0:(n-1)) * by``, last set to ``to``)."""
    by = (to - frm) / (n - 1)
    out = frm + np.arange(n) * by
    out[-1] = to
    return out


_GRID = _r_seq_length(0.0, 8.0, 200)
_FINE_GRID = _r_seq_length(0.0, 8.0, 1000)


@cache
def _sim_table(df: int) -> tuple[np.ndarray, np.ndarray]:
    with (
        resources.files("diffbio_prob")
        .joinpath("data/deseq2_prior_var_sim.npz")
        .open("rb") as fh
    ):
        z = np.load(fh)
        counts = z["counts"][df - 1].astype(np.int64)
        n_kept = z["n_kept"][df - 1].astype(np.int64)
    return counts, n_kept


def _sim_density(df: int) -> np.ndarray:
    counts, n_kept = _sim_table(df)
    h = np.diff(_BREAKS)
    return counts / (n_kept[:, None] * h[None, :])


def r_hist_density(x: np.ndarray) -> np.ndarray:
    """``hist(x, breaks = -20:20/2, plot = FALSE)$density``: right-closed bins with
    ``include.lowest = TRUE`` on R's fuzzed breaks; non-finite ``x`` dropped, the rest must lie in
    ``[-10, 10]`` (up to R's fuzz)."""
    x = np.asarray(x, dtype=float).ravel()
    x = x[np.isfinite(x)]  # hist.default: n <- length(x <- x[is.finite(x)])
    brks = _BREAKS
    h = np.diff(brks)
    diddle = 1e-7 * float(np.median(h))  # nB > 5: fuzz * median(h)
    fuzz = np.full(brks.size, diddle)
    fuzz[0] = -diddle
    fuzzy = brks + fuzz
    if x.size and (x.min() < fuzzy[0] or x.max() > fuzzy[-1]):
        raise ValueError(
            "some 'x' not counted; maybe 'breaks' do not span range of 'x'"
        )
    # C_BinCount, right = TRUE: bin i holds fuzzy[i] < x <= fuzzy[i+1]; x == fuzzy[0] goes to bin 0
    idx = np.searchsorted(fuzzy, x, side="left") - 1
    idx[idx < 0] = 0
    counts = np.bincount(idx, minlength=brks.size - 1)
    return counts / (x.size * h)


def _check_df(df) -> int:
    if (
        isinstance(df, bool)
        or not isinstance(df, numbers.Integral)
        or not 1 <= int(df) <= 3
    ):
        raise ValueError(
            f"df (residual degrees of freedom m - p) must be an integer 1, 2 or 3, got {df!r}"
        )
    return int(df)


def _observed(residuals) -> np.ndarray:
    try:
        res = np.asarray(residuals, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError("residuals must be a 1-D array of numbers") from exc
    if res.ndim != 1:
        raise ValueError(f"residuals must be 1-D, got shape {res.shape}")
    # NaN: R's obsDist[obsDist > -10 & obsDist < 10] keeps NA as NA and hist() drops non-finite
    # values, so a NaN residual is simply not counted; -Inf/Inf fall outside the breaks.
    obs = res[(res > _BREAKS[0]) & (res < _BREAKS[-1])]
    if obs.size == 0:
        raise ValueError(
            "residuals: none inside (-10, 10); R's hist() would fail on an empty sample"
        )
    return obs


def r_prior_var_kl_scores(residuals, df: int) -> np.ndarray:
    """R's 200 ``klDivs`` (on ``seq(0, 8, length = 200)``) for the residuals of the genes R keeps
    (``dispGeneEst >= 100 * minDisp``, not all-zero)."""
    df = _check_df(df)
    obs = r_hist_density(_observed(residuals))
    rand = _sim_density(df)
    kl = np.empty(_GRID.size)
    for i in range(_GRID.size):
        rd = rand[i]
        z = np.concatenate([obs, rd])
        small = z[z > 0].min()
        terms = obs * (_clog(obs + small) - _clog(rd + small))
        kl[i] = _r_sum(terms)
    return kl


def _clog(v: np.ndarray) -> np.ndarray:
    """The C library's ``log`` element by element, as R calls it (numpy's vectorised log can differ
    from glibc's by an ulp, which moved 2 of marioni_1v2's 200 KL scores)."""
    return np.array([math.log(t) for t in v.tolist()])


def _r_sum(v: np.ndarray) -> float:
    """R's ``sum`` of doubles: sequential accumulation in long double (x87 80-bit), then rounded."""
    acc = np.longdouble(0.0)
    for t in v:
        acc += np.longdouble(t)
    return float(acc)


def r_prior_var_residuals(
    disp_gene_est, disp_fit, all_zero=None, min_disp: float = 1e-8
) -> np.ndarray:
    """R's ``dispResiduals[aboveMinDisp]``: ``log(dispGeneEst) - log(dispFit)`` over the genes that
    are not all-zero (``all_zero``, boolean, optional) and have ``dispGeneEst >= min_disp * 100``."""
    ge = np.asarray(disp_gene_est, dtype=float)
    fit = np.asarray(disp_fit, dtype=float)
    if ge.ndim != 1 or fit.shape != ge.shape:
        raise ValueError(
            f"disp_gene_est and disp_fit must be 1-D of one length, got {ge.shape} and {fit.shape}"
        )
    keep = np.ones(ge.shape, dtype=bool)
    if all_zero is not None:
        az = np.asarray(all_zero, dtype=bool)
        if az.shape != ge.shape:
            raise ValueError(
                f"all_zero must have the shape of disp_gene_est {ge.shape}, got {az.shape}"
            )
        keep &= ~az
    with np.errstate(invalid="ignore"):
        keep &= ge >= min_disp * 100
    if not keep.any():
        raise ValueError("disp_gene_est: no data found which is greater than minDisp")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(ge[keep]) - np.log(fit[keep])


def r_prior_var_small_df(residuals, df: int) -> float:
    """DESeq2 1.38.3's ``dispPriorVar`` for ``1 <= m - p <= 3``, exactly as R computes it.

    ``residuals``: ``log(dispGeneEst) - log(dispFit)`` of the genes that are not all-zero and have
    ``dispGeneEst >= 100 * minDisp`` (``minDisp = 1e-8``); values outside (-10, 10), and NaN, are
    dropped as R drops them. ``df``: ``m - p`` (samples minus model-matrix columns), 1, 2 or 3.
    Returns ``max(argmin, 0.25)`` with ``argmin`` the first minimum of R's loess(span = 0.2) smooth
    of the KL scores on ``seq(0, 8, length = 1000)``.
    """
    kl = r_prior_var_kl_scores(residuals, df)
    fitted = fit_loess(_GRID, kl, span=0.2).predict(_FINE_GRID)
    argmin = float(_FINE_GRID[int(np.nanargmin(fitted))])
    return max(argmin, _FLOOR)
