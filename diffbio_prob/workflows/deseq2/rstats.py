"""R's small statistical routines that DESeq2's answers depend on, ported to numpy.

DESeq2's results hinge on a handful of host-side R functions whose exact definitions matter at the
1e-6 level: ``mean(x, trim=)``, ``mad``, ``quantile`` (type 7), ``p.adjust(method="BH")`` with NAs,
``lowess`` (``clowess`` in R's ``src/library/stats/src/lowess.c``), ``glm(family=Gamma("identity"))``
(``glm.fit``) inside DESeq2's ``parametricDispersionFit``, and DESeq2's trimmed variances and
independent filtering (``R/core.R``, ``R/results.R``). Each function names its R source; none
needs R at run time.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import special

from diffbio_prob.io import rmath

__all__ = [
    "r_trimmed_mean",
    "r_mad",
    "r_quantile",
    "p_adjust_bh",
    "r_lowess",
    "gamma_identity_glm",
    "parametric_dispersion_fit",
    "ParametricFitError",
    "trimmed_cell_variance",
    "robust_method_of_moments_disp",
    "n_or_more_in_cell",
    "independent_filtering",
    "disp_prior_var_small_df",
]


def r_trimmed_mean(x: np.ndarray, trim: float, axis: int = -1) -> np.ndarray:
    """R's ``mean(x, trim=trim)`` along ``axis``: drop ``floor(n * trim)`` values from each end.

    R (``mean.default``): ``lo <- floor(n * trim) + 1; hi <- n + 1 - lo``; mean of the sorted
    ``x[lo:hi]``. ``trim >= 0.5`` gives the median.

    Example:
        >>> float(r_trimmed_mean(np.array([1.0, 2.0, 3.0, 100.0]), 0.25))
        2.5
    """
    x = np.sort(np.asarray(x, dtype=float), axis=axis)
    n = x.shape[axis]
    if trim >= 0.5:
        return np.median(x, axis=axis)
    lo = int(math.floor(n * trim))
    hi = n - lo
    return np.take(x, np.arange(lo, hi), axis=axis).mean(axis=axis)


def r_mad(x: np.ndarray) -> float:
    """R's ``mad(x)``: ``1.4826 * median(|x - median(x)|)`` (NaNs dropped)."""
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def r_quantile(x: np.ndarray, probs) -> np.ndarray:
    """R's ``quantile(x, probs)`` (type 7, linear interpolation), which is numpy's default."""
    return np.quantile(np.asarray(x, dtype=float), probs)


def p_adjust_bh(p: np.ndarray) -> np.ndarray:
    """R's ``p.adjust(p, "BH")``: NAs stay NA and do not count towards ``n``.

    Example:
        >>> p_adjust_bh(np.array([0.01, np.nan, 0.04, 0.03])).round(3).tolist()
        [0.03, nan, 0.04, 0.04]
    """
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    n = q.size
    if n == 0:
        return out
    order = np.argsort(-q, kind="stable")  # decreasing, as R's order(p, decreasing=TRUE)
    ranks = np.arange(n, 0, -1)
    adj = np.minimum.accumulate(n / ranks * q[order])
    res = np.empty(n)
    res[order] = np.minimum(1.0, adj)
    out[ok] = res
    return out


def _lowest(x, y, n, xs, nleft, nright, w, userw, rw):
    # R lowess.c lowest(), 0-based copies of the 1-based indices.
    rng = x[n - 1] - x[0]
    h = max(xs - x[nleft], x[nright] - xs)
    h9 = 0.999 * h
    h1 = 0.001 * h
    a = 0.0
    j = nleft
    while j < n:
        w[j] = 0.0
        r = abs(x[j] - xs)
        if r <= h9:
            if r <= h1:
                w[j] = 1.0
            else:
                w[j] = (1.0 - (r / h) ** 3) ** 3
            if userw:
                w[j] *= rw[j]
            a += w[j]
        elif x[j] > xs:
            break
        j += 1
    nrt = j - 1
    if a <= 0.0:
        return None
    for j in range(nleft, nrt + 1):
        w[j] /= a
    if h > 0.0:
        a = 0.0
        for j in range(nleft, nrt + 1):
            a += w[j] * x[j]
        b = xs - a
        c = 0.0
        for j in range(nleft, nrt + 1):
            c += w[j] * (x[j] - a) ** 2
        if math.sqrt(c) > 0.001 * rng:
            b /= c
            for j in range(nleft, nrt + 1):
                w[j] *= b * (x[j] - a) + 1.0
    ys = 0.0
    for j in range(nleft, nrt + 1):
        ys += w[j] * y[j]
    return ys


def r_lowess(x, y, f: float = 2.0 / 3.0, iters: int = 3, delta: float | None = None):
    """R's ``lowess(x, y, f, iter, delta)`` (Cleveland 1979; a direct port of R's ``clowess``).

    Returns the fitted values at the sorted ``x`` (R's ``$y``) and the sorted ``x``.

    Example:
        >>> xs, ys = r_lowess(np.arange(10.0), np.arange(10.0) * 2.0, f=0.5)
        >>> np.allclose(ys, np.arange(10.0) * 2.0)
        True
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    order = np.argsort(x, kind="stable")
    x = x[order]
    y = y[order]
    n = x.size
    if delta is None:
        delta = 0.01 * (x[-1] - x[0])
    ys = np.zeros(n)
    if n < 2:
        return x, y.copy()
    rw = np.zeros(n)
    res = np.zeros(n)
    ns = max(2, min(n, int(f * n + 1e-7)))
    it = 1
    while it <= iters + 1:
        nleft = 0
        nright = ns - 1
        last = -1
        i = 0
        while True:
            if nright < n - 1:
                d1 = x[i] - x[nleft]
                d2 = x[nright + 1] - x[i]
                if d1 > d2:
                    nleft += 1
                    nright += 1
                    continue
            fit = _lowest(x, y, n, x[i], nleft, nright, res, it > 1, rw)
            ys[i] = y[i] if fit is None else fit
            if last < i - 1:
                denom = x[i] - x[last]
                for j in range(last + 1, i):
                    alpha = (x[j] - x[last]) / denom
                    ys[j] = alpha * ys[i] + (1.0 - alpha) * ys[last]
            last = i
            cut = x[last] + delta
            i = last + 1
            while i < n:
                if x[i] > cut:
                    break
                if x[i] == x[last]:
                    ys[i] = ys[last]
                    last = i
                i += 1
            i = max(last + 1, i - 1)
            if last >= n - 1:
                break
        res = y - ys
        sc = np.sum(np.abs(res)) / n
        if it > iters:
            break
        rw = np.abs(res)
        m1 = n // 2
        srt = np.sort(rw)
        if n % 2 == 0:
            m2 = n - m1 - 1
            cmad = 3.0 * (srt[m1] + srt[m2])
        else:
            cmad = 6.0 * srt[m1]
        if cmad < 1e-7 * sc:
            break
        c9 = 0.999 * cmad
        c1 = 0.001 * cmad
        r = np.abs(res)
        with np.errstate(divide="ignore", invalid="ignore"):
            rw = np.where(r <= c1, 1.0, np.where(r <= c9, (1.0 - (r / cmad) ** 2) ** 2, 0.0))
        it += 1
    return x, ys


class ParametricFitError(RuntimeError):
    """DESeq2's parametric dispersion trend failed (R then substitutes a local fit)."""


def gamma_identity_glm(y, x, start, *, epsilon: float = 1e-8, maxit: int = 25):
    """R's ``glm(y ~ x - 1, family=Gamma(link="identity"), start=start)`` via ``glm.fit``'s IRLS.

    Reproduces ``glm.fit`` step for step: working response ``z = eta + (y - mu)``, weights
    ``1 / mu^2``, least squares, step halving while the deviance is infinite or a mean is not
    positive, convergence when ``|dev - devold| / (|dev| + 0.1) < epsilon``.

    Returns:
        ``(coefficients, converged)``.

    Raises:
        ParametricFitError: where ``glm.fit`` stops with an error (no valid step).
    """
    y = np.asarray(y, dtype=float)
    x = np.asarray(x, dtype=float)
    start = np.asarray(start, dtype=float).copy()

    def dev_of(mu):
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.sum(-2.0 * (np.log(np.where(y == 0, 1.0, y / mu)) - (y - mu) / mu)))

    eta = x @ start
    mu = eta
    if not (np.all(np.isfinite(mu)) and np.all(mu > 0)):
        raise ParametricFitError("cannot find valid starting values")
    coefold = start.copy()
    devold = dev_of(mu)
    conv = False
    coef = start
    for _ in range(maxit):
        z = eta + (y - mu)
        w = 1.0 / mu  # sqrt(mu.eta^2 / variance) = 1 / mu
        sol, *_ = np.linalg.lstsq(x * w[:, None], z * w, rcond=None)
        start = sol
        eta = x @ start
        mu = eta
        dev = dev_of(mu)
        if not np.isfinite(dev):
            ii = 1
            while not np.isfinite(dev):
                if ii > maxit:
                    raise ParametricFitError("inner loop 1; cannot correct step size")
                ii += 1
                start = (start + coefold) / 2.0
                eta = x @ start
                mu = eta
                dev = dev_of(mu)
        if not (np.all(np.isfinite(mu)) and np.all(mu > 0)):
            ii = 1
            while not (np.all(np.isfinite(mu)) and np.all(mu > 0)):
                if ii > maxit:
                    raise ParametricFitError("inner loop 2; cannot correct step size")
                ii += 1
                start = (start + coefold) / 2.0
                eta = x @ start
                mu = eta
            dev = dev_of(mu)
        if abs(dev - devold) / (abs(dev) + 0.1) < epsilon:
            conv = True
            coef = start
            break
        devold = dev
        coef = coefold = start.copy()
    return np.asarray(coef), conv


def parametric_dispersion_fit(means, disps):
    """DESeq2's ``parametricDispersionFit``: ``alpha(mean) = a0 + a1 / mean`` by iterated Gamma GLMs.

    Start at ``(0.1, 1)``; each round keeps genes with ``disp / fit`` in ``(1e-4, 15)`` and refits;
    stop when ``sum log(c / c_old)^2 < 1e-6`` and the GLM converged; fail if a coefficient is not
    positive or after more than 10 rounds.

    Returns:
        ``np.ndarray`` ``[asymptDisp, extraPois]``.

    Raises:
        ParametricFitError: as R's ``stop()`` (the caller falls back).
    """
    means = np.asarray(means, dtype=float)
    disps = np.asarray(disps, dtype=float)
    coefs = np.array([0.1, 1.0])
    it = 0
    while True:
        residuals = disps / (coefs[0] + coefs[1] / means)
        good = (residuals > 1e-4) & (residuals < 15)
        if good.sum() < 2:
            raise ParametricFitError("too few genes for the parametric dispersion fit")
        x = np.column_stack([np.ones(good.sum()), 1.0 / means[good]])
        old = coefs
        coefs, conv = gamma_identity_glm(disps[good], x, coefs)
        if not np.all(coefs > 0):
            raise ParametricFitError("parametric dispersion fit failed")
        if np.sum(np.log(coefs / old) ** 2) < 1e-6 and conv:
            break
        it += 1
        if it > 10:
            raise ParametricFitError("dispersion fit did not converge")
    return coefs


def n_or_more_in_cell(design: np.ndarray, n: int) -> np.ndarray:
    """DESeq2 ``nOrMoreInCell``: for each sample, are there ``n`` or more samples with its design row."""
    rows = [tuple(r) for r in np.asarray(design)]
    counts: dict[tuple, int] = {}
    for r in rows:
        counts[r] = counts.get(r, 0) + 1
    return np.array([counts[r] >= n for r in rows])


def _cells(design: np.ndarray) -> np.ndarray:
    # cell index per sample, numbered by first appearance (R: factor(cells, levels=unique(cells)))
    index: dict[tuple, int] = {}
    out = []
    for r in np.asarray(design):
        out.append(index.setdefault(tuple(r), len(index)))
    return np.array(out)


def trimmed_cell_variance(cnts: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """DESeq2 ``trimmedCellVariance``: the largest trimmed within-cell variance of each gene."""
    trim_ratio = (1.0 / 3.0, 1.0 / 4.0, 1.0 / 8.0)
    scale_c = (2.04, 1.86, 1.51)

    def bin_of(n):  # cut(n, breaks=c(0, 3.5, 23.5, Inf))
        return 0 if n <= 3.5 else (1 if n <= 23.5 else 2)

    levels = np.unique(cells)
    var_est = []
    for lvl in levels:
        idx = cells == lvl
        b = bin_of(int(idx.sum()))
        sub = cnts[:, idx]
        cell_mean = r_trimmed_mean(sub, trim_ratio[b], axis=1)
        sq = (sub - cell_mean[:, None]) ** 2
        var_est.append(scale_c[b] * r_trimmed_mean(sq, trim_ratio[b], axis=1))
    return np.max(np.column_stack(var_est), axis=1)


def robust_method_of_moments_disp(normalized: np.ndarray, design: np.ndarray) -> np.ndarray:
    """DESeq2 ``robustMethodOfMomentsDisp``: dispersions for Cook's distances, floored at 0.04."""
    three = n_or_more_in_cell(design, 3)
    if three.any():
        cells = _cells(design)
        keep_levels = [c for c in np.unique(cells) if (cells == c).sum() >= 3]
        idx = np.isin(cells, keep_levels)
        v = trimmed_cell_variance(normalized[:, idx], cells[idx])
    else:
        rm = r_trimmed_mean(normalized, 1.0 / 8.0, axis=1)
        sq = (normalized - rm[:, None]) ** 2
        v = 1.51 * r_trimmed_mean(sq, 1.0 / 8.0, axis=1)
    m = normalized.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = (v - m) / m**2
    return np.maximum(alpha, 0.04)


def independent_filtering(pvalue: np.ndarray, filter_stat: np.ndarray, alpha: float):
    """DESeq2 ``pvalueAdjustment`` with independent filtering on the mean of normalised counts.

    50 quantiles ``theta`` of the filter from ``mean(filter == 0)`` to 0.95; BH after dropping genes
    below each quantile; count rejections at ``alpha``; smooth with ``lowess(f = 1/5)``; take the
    first ``theta`` whose rejections exceed ``max(fit) - RMSE`` (else 90%, then 80% of ``max(fit)``,
    else the first), or no filtering when at most 10 rejections.

    Returns:
        ``(padj, info)`` with ``info`` holding ``filterThreshold``, ``filterTheta``, ``numRej``,
        ``theta``.
    """
    pvalue = np.asarray(pvalue, dtype=float)
    filt = np.asarray(filter_stat, dtype=float)
    lower = float(np.mean(filt == 0))
    upper = 0.95 if lower < 0.95 else 1.0
    theta = np.linspace(lower, upper, 50)
    cutoffs = r_quantile(filt, theta)
    padj_all = np.full((filt.size, theta.size), np.nan)
    for i, cut in enumerate(cutoffs):
        use = filt >= cut
        if use.any():
            padj_all[use, i] = p_adjust_bh(pvalue[use])
    with np.errstate(invalid="ignore"):
        num_rej = np.sum(padj_all < alpha, axis=0)
    _, lo_y = r_lowess(theta, num_rej.astype(float), f=1.0 / 5.0)
    if num_rej.max() <= 10:
        j = 0
    else:
        pos = num_rej > 0
        residual = num_rej[pos] - lo_y[pos] if pos.any() else np.array([0.0])
        max_fit = lo_y.max()
        thresh = max_fit - math.sqrt(float(np.mean(residual**2)))
        if np.any(num_rej > thresh):
            j = int(np.argmax(num_rej > thresh))
        elif np.any(num_rej > 0.9 * max_fit):
            j = int(np.argmax(num_rej > 0.9 * max_fit))
        elif np.any(num_rej > 0.8 * max_fit):
            j = int(np.argmax(num_rej > 0.8 * max_fit))
        else:
            j = 0
    info = {
        "filterThreshold": float(cutoffs[j]),
        "filterTheta": float(theta[j]),
        "numRej": num_rej,
        "theta": theta,
        "lowess": lo_y,
    }
    return padj_all[:, j], info


_PRIOR_VAR_BREAKS = np.arange(-20, 21) / 2.0  # R: brks <- -20:20/2
_PRIOR_VAR_FINE_GRID = np.linspace(0.0, 8.0, 1000)  # R: seq(0, 8, length = 1000)
_PRIOR_VAR_R_DRAWS = 10000  # R: rchisq(10000, ...) per grid point


def _hist_density_right_closed(x: np.ndarray, breaks: np.ndarray) -> np.ndarray:
    """R ``hist(x, breaks, plot = FALSE)$density`` (bins ``(a, b]``, the first one ``[a, b]``)."""
    idx = np.clip(np.searchsorted(breaks, x, side="left") - 1, 0, breaks.size - 2)
    counts = np.bincount(idx, minlength=breaks.size - 1).astype(float)
    return counts / (x.size * np.diff(breaks))


def _log_chisq_plus_normal_cdf(t: np.ndarray, df: int, var: np.ndarray, nodes: int = 500) -> np.ndarray:
    """``P(log(X / df) + Z <= t)``, ``X ~ chi2_df``, ``Z ~ N(0, var)``: one row per ``var``, one column per ``t``.

    ``P(log(X/df) <= s) = P(X <= df e^s)`` is the regularized lower incomplete gamma at
    ``(df/2, df e^s / 2)``; the normal part is integrated by Gauss-Hermite quadrature (500 nodes:
    absolute error below 1e-10 for ``var <= 8``, checked against a 56001-point trapezoid rule).
    """
    u, w = special.roots_hermitenorm(nodes)
    w = w / math.sqrt(2.0 * math.pi)  # E[g(U)], U ~ N(0, 1)
    sd = np.sqrt(np.asarray(var, dtype=float))[:, None, None]
    s = np.asarray(t, dtype=float)[None, :, None] - sd * u[None, None, :]
    return special.gammainc(0.5 * df, 0.5 * df * np.exp(np.minimum(s, 700.0))) @ w


@functools.lru_cache(maxsize=8)
def _prior_var_model_density(df: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact histogram density of ``log(chi2_df / df) + N(0, v)`` kept inside (-10, 10), and
    ``P(-10 < . < 10)``, for every ``v`` on the fine grid (depends on ``df`` only: cached)."""
    brks = _PRIOR_VAR_BREAKS
    cdf = _log_chisq_plus_normal_cdf(brks, df, _PRIOR_VAR_FINE_GRID)  # (grid, breaks)
    in_range = cdf[:, -1] - cdf[:, 0]
    dens = np.maximum(np.diff(cdf, axis=1), 0.0) / (in_range[:, None] * np.diff(brks)[None, :])
    dens.setflags(write=False)
    in_range.setflags(write=False)
    return dens, in_range


def disp_prior_var_small_df(residuals: np.ndarray, df: int) -> float:
    """Prior variance of log dispersions when ``1 <= m - p <= 3`` (DESeq2 ``estimateDispersionsPriorVar``).

    R takes the residuals ``log(dispGeneEst) - log(dispFit)`` inside (-10, 10), their histogram
    density on the breaks ``-20:20/2``, and for each ``v`` on ``seq(0, 8, length = 200)`` the
    histogram density of 1e4 draws of ``log(chi2_df) + N(0, v) - log(df)`` (also kept inside
    (-10, 10)); it scores ``v`` by ``sum(obs * (log(obs + small) - log(rand + small)))`` with
    ``small`` the smallest positive density of either histogram, smooths these scores by
    ``loess(span = 0.2)``, takes the argmin on ``seq(0, 8, length = 1000)`` and floors it at 0.25.
    All of that under ``set.seed(2)``, so R's value carries Monte Carlo noise.

    Here the same quantity without the noise: the bin probabilities of ``log(chi2_df / df) + N(0, v)``
    are computed exactly (given the truncation to (-10, 10)), the score is evaluated on the fine
    grid itself (no loess needed), and ``small`` is the smallest positive observed density or the
    density of one draw out of R's 1e4 inside the range, whichever is smaller (what R's ``small`` is
    whenever some simulated bin holds a single draw, i.e. almost always). The argmin over the same
    1000-point grid is floored at 0.25 as in R.
    """
    brks = _PRIOR_VAR_BREAKS
    res = np.asarray(residuals, dtype=float)
    obs = res[(res > brks[0]) & (res < brks[-1])]
    if obs.size == 0:
        return 0.25
    obs_dens = _hist_density_right_closed(obs, brks)
    grid = _PRIOR_VAR_FINE_GRID
    rand_dens, in_range = _prior_var_model_density(int(df))
    one_draw = 1.0 / (_PRIOR_VAR_R_DRAWS * in_range * (brks[1] - brks[0]))
    small = np.minimum(obs_dens[obs_dens > 0].min(), one_draw)[:, None]
    pos = obs_dens > 0
    kl = np.sum(
        obs_dens[pos][None, :] * (np.log(obs_dens[pos][None, :] + small) - np.log(rand_dens[:, pos] + small)),
        axis=1,
    )
    return float(max(grid[int(np.argmin(kl))], 0.25))


# ------------------------------------------------------------------------------------------------
# R-exact arithmetic for the few genes where DESeq2's answer is decided by R's rounding.
#
# DESeq2's gene-wise line search (fitDisp) evaluates lgamma(y + 1/alpha) - lgamma(1/alpha): at
# alpha ~ 1e-5 each term is ~3e5 and carries ~1e-10 of rounding, the same size as the first step's
# gain on a flat likelihood. Whether R accepts that step (iter 1: "not converged", grid refit) or
# not (iter 2: converged, alpha_init kept) is then decided by R's last bits, and the answer moves by
# orders of magnitude (marioni ENSG00000189229: 3.6e-5 in R, 1e-8 without this). The functions
# below redo R's arithmetic operation by operation in IEEE double (Python floats, the C library's
# log/exp/pow as R calls them; long double where R accumulates in long double): R 4.2's nmath
# lgammafn/gammafn/lgammacor/chebyshev_eval and digamma (dpsifn), reference BLAS/LINPACK summation
# orders in linearModelMu (dqrdc2, dqrsl, dgemm), rowSums/rowMeans/mean, matrixStats' rowVars,
# and DESeq2.cpp's log_posterior/dlog_posterior/fitDisp/fitDispGrid. They reproduce R's numbers
# bit for bit on the marioni table (size factors, roughDisp, momentsDisp, mu, fitDisp's iterations).
# ------------------------------------------------------------------------------------------------

_M_LN_SQRT_2PI = 0.918938533204672741780329736406
_GAMCS = (
    +.8571195590989331421920062399942e-2, +.4415381324841006757191315771652e-2, +.5685043681599363378632664588789e-1,
    -.4219835396418560501012500186624e-2, +.1326808181212460220584006796352e-2, -.1893024529798880432523947023886e-3,
    +.3606925327441245256578082217225e-4, -.6056761904460864218485548290365e-5, +.1055829546302283344731823509093e-5,
    -.1811967365542384048291855891166e-6, +.3117724964715322277790254593169e-7, -.5354219639019687140874081024347e-8,
    +.9193275519859588946887786825940e-9, -.1577941280288339761767423273953e-9, +.2707980622934954543266540433089e-10,
    -.4646818653825730144081661058933e-11, +.7973350192007419656460767175359e-12, -.1368078209830916025799499172309e-12,
    +.2347319486563800657233471771688e-13, -.4027432614949066932766570534699e-14, +.6910051747372100912138336975257e-15,
    -.1185584500221992907052387126192e-15,
)
_ALGMCS = (+.1666389480451863247205729650822e+0, -.1384948176067563840732986059135e-4,
           +.9810825646924729426157171547487e-8, -.1809129475572494194263306266719e-10,
           +.6221098041892605227126015543416e-13)
_BVALUES = (1.0, -5.0e-1, 1.66666666666666667e-1, -3.33333333333333333e-2, 2.38095238095238095e-2,
            -3.33333333333333333e-2, 7.57575757575757576e-2, -2.53113553113553114e-1, 1.16666666666666667,
            -7.09215686274509804, 5.49711779448621554e1, -5.29124242424242424e2, 6.1921231884057971e3,
            -8.65802531135531136e4, 1.42551716666666667e6, -2.7298231067816092e7, 6.01580873900642368e8,
            -1.51163157670921569e10, 4.29614643061166667e11, -1.37116552050883328e13, 4.88332318973593167e14,
            -1.92965793419400681e16)
_DBL_EPS = 2.220446049250313e-16


def _chebyshev_eval(x: float, a, n: int) -> float:
    twox = x * 2
    b2 = b1 = b0 = 0.0
    for i in range(1, n + 1):
        b2 = b1
        b1 = b0
        b0 = twox * b1 - b2 + a[n - i]
    return (b0 - b2) * 0.5


def _lgammacor(x: float) -> float:
    if x < 94906265.62425156:
        tmp = 10 / x
        return _chebyshev_eval(tmp * tmp * 2 - 1, _ALGMCS, 5) / x
    return 1 / (x * 12)


def _gammafn_small(x: float) -> float:
    # R's gammafn for 0 < x <= 10
    n = int(x)
    y = x - n
    n -= 1
    value = _chebyshev_eval(y * 2 - 1, _GAMCS, 22) + .9375
    if n == 0:
        return value
    if n < 0:
        for i in range(-n):
            value /= (x + i)
        return value
    for i in range(1, n + 1):
        value *= (y + i)
    return value


def r_lgammafn(x: float) -> float:
    """R's ``lgamma(x)`` (nmath ``lgammafn``) for ``x > 0``, bit for bit."""
    if x <= 10:
        return math.log(abs(_gammafn_small(x)))
    if x > 1e17:
        return x * (math.log(x) - 1.)
    if x > 4934720.:
        return _M_LN_SQRT_2PI + (x - 0.5) * math.log(x) - x
    return _M_LN_SQRT_2PI + (x - 0.5) * math.log(x) - x + _lgammacor(x)


def r_digamma(x: float) -> float:
    """R's ``digamma(x)`` (nmath ``dpsifn(x, 0, 1, 1)``) for ``x > 0``, bit for bit."""
    xln = math.log(x)
    if x * xln > 1 / (2 * _DBL_EPS):
        return xln
    wdtol = max(_DBL_EPS * 0.5, 0.5e-18)
    if x < wdtol:
        return -(x ** -1)
    rln = min(0.301029995663981195 * 53, 18.06)
    fln = max(rln, 3.0) - 3.0
    xm = 3.5 + 0.4 * fln
    xmin = float(int(xm) + 1)
    xdmy, xdmln, xinc = x, xln, 0.0
    if x < xmin:
        xinc = xmin - int(x)
        xdmy = x + xinc
        xdmln = math.log(xdmy)
    tss = math.exp(-0.0 * xdmln)
    tt = 0.5 / xdmy
    t1 = tt
    tst = wdtol * tt
    rxsq = 1.0 / (xdmy * xdmy)
    t = 1 * (0.5 * rxsq)
    s = t * _BVALUES[2]
    if abs(s) >= tst:
        tk = 2.0
        for k in range(4, 23):
            t = t * ((tk + 0.0 + 1) / (tk + 1.0)) * ((tk + 0.0) / (tk + 2.0)) * rxsq
            trm = t * _BVALUES[k - 1]
            if abs(trm) < tst:
                break
            s += trm
            tk += 2
    s = (s + t1) * tss
    if xinc != 0.0:
        nx = int(xinc)
        for i in range(1, nx + 1):
            s += 1 / (x + (nx - i))
    return -(s - xdmln)


_LOG_TABLE_MAX = 1 << 20  # integer arguments below this are looked up in a table of libm logs


def r_log(a) -> np.ndarray:
    """Elementwise C-library ``log`` (R's ``log()``; numpy's vectorised log rounds differently)."""
    a = np.asarray(a, dtype=float)
    if a.size > 4096 and np.array_equal(a, np.floor(a)) and a.min() >= 0:
        # counts: integers, so one libm call per value up to the largest below 2^20, not one per entry
        small = a < _LOG_TABLE_MAX
        k = np.where(small, a, 0.0).astype(np.int64)
        table = np.array([-math.inf] + [math.log(v) for v in range(1, int(k.max()) + 1)])
        out = table[k]
        of, af = out.reshape(-1), a.reshape(-1)
        for i in np.flatnonzero(~small.reshape(-1)).tolist():
            of[i] = math.log(af[i])
        return out
    out = np.empty(a.shape)
    of = out.reshape(-1)
    for i, v in enumerate(a.reshape(-1).tolist()):
        of[i] = math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan)
    return out


def r_row_sums(a, mean: bool = False) -> np.ndarray:
    """R's ``rowSums``/``rowMeans``: long double sums over the columns in order (``/ ncol`` in long double)."""
    return rmath.row_means(a) if mean else rmath.row_sums(a).astype(float)


def r_mean(v) -> float:
    """R's ``mean()`` of doubles: long double sum / n, then R's correction pass."""
    return rmath.mean(v)


def r_row_vars(a) -> np.ndarray:
    """matrixStats ``rowVars`` (double accumulation: the mean, then squared deviations / (n - 1)).

    ``np.add.accumulate`` adds strictly left to right (unlike ``np.sum``'s pairwise blocks), so its last
    column is matrixStats' running double sum, bit for bit.
    """
    a = np.atleast_2d(np.asarray(a, dtype=float))
    n = a.shape[1]
    mu = np.add.accumulate(a, axis=1)[:, -1] / n
    d = a - mu[:, None]
    return np.add.accumulate(d * d, axis=1)[:, -1] / (n - 1)


def _ddot(a, b) -> float:
    s = 0.0
    for u, v in zip(a, b):
        s += u * v
    return s


def _dnrm2(v) -> float:
    s = 0.0
    for u in v:
        ax = abs(u)
        s += ax * ax
    return math.sqrt(s)


def _dqrdc2(x: np.ndarray):
    """LINPACK ``dqrdc2`` as R calls it for a full-rank ``x``: the packed QR factors (by column) and ``qraux``."""
    n, p = x.shape
    a = [x[:, j].tolist() for j in range(p)]  # columns
    qraux = [_dnrm2(a[j]) for j in range(p)]
    for l in range(min(n, p)):
        if l == n - 1:
            continue
        nrmxl = _dnrm2(a[l][l:])
        if nrmxl == 0.0:
            continue
        if a[l][l] != 0.0:
            nrmxl = math.copysign(nrmxl, a[l][l])
        da = 1.0 / nrmxl
        for i in range(l, n):
            a[l][i] = da * a[l][i]
        a[l][l] = 1.0 + a[l][l]
        for j in range(l + 1, p):
            t = -_ddot(a[l][l:], a[j][l:]) / a[l][l]
            for i in range(l, n):
                a[j][i] = a[j][i] + t * a[l][i]
            if qraux[j] != 0.0:
                tt = max(1.0 - (abs(a[j][l]) / qraux[j]) ** 2, 0.0)
                qraux[j] = _dnrm2(a[j][l + 1:]) if abs(tt) < 1e-6 else qraux[j] * math.sqrt(tt)
        qraux[l] = a[l][l]
        a[l][l] = -nrmxl
    return a, qraux


def r_qr_q_rinv(x):
    """R's ``qr.Q(qr(x))`` (LINPACK ``dqrdc2`` + ``dqrsl``) and ``solve(qr.R(qr(x)))`` for a full-rank ``x``."""
    x = np.asarray(x, dtype=float)
    n, p = x.shape
    a, qraux = _dqrdc2(x)
    ju = min(p, n - 1)
    q = np.zeros((n, p))
    for c in range(p):
        qy = [1.0 if i == c else 0.0 for i in range(n)]
        for jj in range(1, ju + 1):
            j = ju - jj
            if qraux[j] == 0.0:
                continue
            temp = a[j][j]
            a[j][j] = qraux[j]
            t = -_ddot(a[j][j:], qy[j:]) / a[j][j]
            for i in range(j, n):
                qy[i] = qy[i] + t * a[j][i]
            a[j][j] = temp
        q[:, c] = qy
    r = [[a[j][i] if i <= j else 0.0 for j in range(p)] for i in range(p)]
    rinv = np.zeros((p, p))
    for c in range(p):  # dgesv on an upper-triangular matrix: dtrsm's back substitution
        b = [1.0 if i == c else 0.0 for i in range(p)]
        for k in range(p - 1, -1, -1):
            if b[k] != 0.0:
                b[k] = b[k] / r[k][k]
                for i in range(k):
                    b[i] = b[i] - b[k] * r[i][k]
        rinv[:, c] = b
    return q, rinv


def _seq_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # reference dgemm ("N", "N"): C(i, j) = sum over l in order of B(l, j) * A(i, l), from 0
    out = np.zeros((a.shape[0], b.shape[1]))
    for l in range(a.shape[1]):
        out = out + b[l][None, :] * a[:, l][:, None]
    return out


def r_linear_model_mu(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """DESeq2 ``linearModelMu``: ``(y %*% Q) %*% t(x %*% Rinv)`` in R's rounding, ``(G, N)``."""
    q, rinv = r_qr_q_rinv(x)
    xr = _seq_matmul(np.asarray(x, dtype=float), rinv)
    return _seq_matmul(_seq_matmul(np.asarray(y, dtype=float), q), xr.T)


def r_rough_disp(norm: np.ndarray, x: np.ndarray) -> np.ndarray:
    """DESeq2 ``roughDispEstimate`` in R's rounding (``rowSums`` in long double)."""
    m, p = np.shape(x)
    mu = np.maximum(1.0, r_linear_model_mu(norm, x))
    d = norm - mu
    est = r_row_sums(((d * d) - mu) / (mu * mu)) / (m - p)
    return np.maximum(est, 0.0)


def _cr_gram(x, w):
    # x.t() * (x.each_col() % w) through reference dgemm: sequential over samples
    n, p = len(x), len(x[0])
    return [[_ddot([x[l][i] for l in range(n)], [x[l][j] * w[l] for l in range(n)]) for j in range(p)] for i in range(p)]


def _det_small(b) -> float:
    if len(b) == 1:
        return b[0][0]
    if len(b) == 2:
        return b[0][0] * b[1][1] - b[0][1] * b[1][0]
    return float(np.linalg.det(np.array(b)))


def _trace_inv_prod(b, db) -> float:
    if len(b) == 1:
        return (1.0 / b[0][0]) * db[0][0]
    if len(b) == 2:
        d = b[0][0] * b[1][1] - b[0][1] * b[1][0]
        inv = ((b[1][1] / d, -b[0][1] / d), (-b[1][0] / d, b[0][0] / d))
        return (inv[0][0] * db[0][0] + inv[0][1] * db[1][0]) + (inv[1][0] * db[0][1] + inv[1][1] * db[1][1])
    return float(np.trace(np.linalg.inv(np.array(b)) @ np.array(db)))


def r_log_posterior(log_alpha, y, mu, x, prior_mean=0.0, prior_var=1.0, use_prior=False) -> float:
    """DESeq2.cpp ``log_posterior`` (Cox-Reid, no weights) for one gene, in R's rounding."""
    alpha = math.exp(log_alpha)
    w = [math.pow(math.pow(m, -1.0) + alpha, -1.0) for m in mu]
    cr = -0.5 * math.log(_det_small(_cr_gram(x, w)))
    an = 1.0 / alpha
    lg_an = r_lgammafn(an)
    ll = 0.0
    for yy, m in zip(y, mu):
        ll += ((r_lgammafn(yy + an) - lg_an) - yy * math.log(m + an)) - an * math.log(1.0 + m * alpha)
    prior = -0.5 * (log_alpha - prior_mean) ** 2 / prior_var if use_prior else 0.0
    return ll + prior + cr


def r_dlog_posterior(log_alpha, y, mu, x, prior_mean=0.0, prior_var=1.0, use_prior=False) -> float:
    """DESeq2.cpp ``dlog_posterior`` for one gene, in R's rounding."""
    alpha = math.exp(log_alpha)
    base = [math.pow(m, -1.0) + alpha for m in mu]
    b = _cr_gram(x, [math.pow(v, -1.0) for v in base])
    db = _cr_gram(x, [-1.0 * math.pow(v, -2.0) for v in base])
    detb = _det_small(b)
    cr = -0.5 * (detb * _trace_inv_prod(b, db)) / detb
    an = 1.0 / alpha
    an2 = 1.0 / (alpha * alpha)
    dg_an = r_digamma(an)
    s = 0.0
    for yy, m in zip(y, mu):
        ma = m * alpha
        s += (((dg_an + math.log(1 + ma)) - ma * math.pow(1.0 + ma, -1.0)) - r_digamma(yy + an)) + yy * math.pow(m + an, -1.0)
    prior = -1.0 * (log_alpha - prior_mean) / prior_var if use_prior else 0.0
    return (an2 * s + cr) * alpha + prior


def r_fit_disp(y, mu, x, log_alpha, prior_mean, prior_var, use_prior, *, min_log_alpha, kappa_0=1.0, tol=1e-6,
               maxit=100):
    """DESeq2.cpp ``fitDisp`` for one gene in R's rounding: ``(log_alpha, iter, initial_lp, last_lp)``."""
    y = [float(v) for v in y]
    mu = [float(v) for v in mu]
    x = np.asarray(x, dtype=float).tolist()
    a = float(log_alpha)
    lp = r_log_posterior(a, y, mu, x, prior_mean, prior_var, use_prior)
    dlp = r_dlog_posterior(a, y, mu, x, prior_mean, prior_var, use_prior)
    kappa = kappa_0
    initial_lp = lp
    it = acc = 0
    for _ in range(maxit):
        it += 1
        if a + kappa * dlp < -30.0:
            kappa = (-30.0 - a) / dlp
        if a + kappa * dlp > 10.0:
            kappa = (10.0 - a) / dlp
        theta_kappa = -1.0 * r_log_posterior(a + kappa * dlp, y, mu, x, prior_mean, prior_var, use_prior)
        theta_hat = -1.0 * lp - kappa * 1.0e-4 * (dlp * dlp)
        if theta_kappa <= theta_hat:
            acc += 1
            a = a + kappa * dlp
            lpnew = r_log_posterior(a, y, mu, x, prior_mean, prior_var, use_prior)
            if lpnew - lp < tol:
                lp = lpnew
                break
            if a < min_log_alpha:
                break
            lp = lpnew
            dlp = r_dlog_posterior(a, y, mu, x, prior_mean, prior_var, use_prior)
            kappa = min(kappa * 1.1, kappa_0)
            if acc % 5 == 0:
                kappa = kappa / 2.0
        else:
            kappa = kappa / 2.0
    return a, it, initial_lp, lp


def r_disp_grid(n_samples: int) -> list:
    """``seq(from = log(1e-8), to = log(max(10, n)), length = 20)`` as R computes it."""
    lo, hi = math.log(1e-8), math.log(max(10, n_samples))
    by = (hi - lo) / 19
    return [lo] + [lo + k * by for k in range(1, 19)] + [hi]


def r_fit_disp_grid(y, mu, x, prior_mean, prior_var, use_prior, grid) -> float:
    """DESeq2.cpp ``fitDispGrid`` for one gene in R's rounding: the best of ``grid``, then of a fine grid
    (armadillo ``linspace(a_hat - delta, a_hat + delta, 20)``) around it; returns ``log alpha``."""
    y = [float(v) for v in y]
    mu = [float(v) for v in mu]
    x = np.asarray(x, dtype=float).tolist()
    k = len(grid)
    delta = grid[1] - grid[0]

    def best(points):
        vals = [r_log_posterior(a, y, mu, x, prior_mean, prior_var, use_prior) for a in points]
        i = max(range(len(vals)), key=lambda j: (vals[j], -j))  # first maximum, as arma's max()
        return points[i]

    a_hat = best(grid)
    start, end = a_hat - delta, a_hat + delta
    step = (end - start) / (k - 1)
    fine = [start + i * step for i in range(k - 1)] + [end]
    return best(fine)


_M_LN_2PI = 1.837877066409345483560659472811
_SFERR_HALVES = (
    0.0, 0.1534264097200273452913848, 0.0810614667953272582196702, 0.0548141210519176538961390,
    0.0413406959554092940938221, 0.03316287351993628748511048, 0.02767792568499833914878929,
    0.02374616365629749597132920, 0.02079067210376509311152277, 0.01848845053267318523077934,
    0.01664469118982119216319487, 0.01513497322191737887351255, 0.01387612882307074799874573,
    0.01281046524292022692424986, 0.01189670994589177009505572, 0.01110455975820691732662991,
    0.010411265261972096497478567, 0.009799416126158803298389475, 0.009255462182712732917728637,
    0.008768700134139385462952823, 0.008330563433362871256469318, 0.007934114564314020547248100,
    0.007573675487951840794972024, 0.007244554301320383179543912, 0.006942840107209529865664152,
    0.006665247032707682442354394, 0.006408994188004207068439631, 0.006171712263039457647532867,
    0.005951370112758847735624416, 0.005746216513010115682023589, 0.005554733551962801371038690,
)


def _stirlerr(n: float) -> float:
    s0, s1, s2, s3, s4 = (0.083333333333333333333, 0.00277777777777777777778, 0.00079365079365079365079365,
                          0.000595238095238095238095238, 0.0008417508417508417508417508)
    if n <= 15.0:
        nn = n + n
        if nn == int(nn):
            return _SFERR_HALVES[int(nn)]
        return r_lgammafn(n + 1.) - (n + 0.5) * math.log(n) + n - _M_LN_SQRT_2PI
    nn = n * n
    if n > 500:
        return (s0 - s1 / nn) / n
    if n > 80:
        return (s0 - (s1 - s2 / nn) / nn) / n
    if n > 35:
        return (s0 - (s1 - (s2 - s3 / nn) / nn) / nn) / n
    return (s0 - (s1 - (s2 - (s3 - s4 / nn) / nn) / nn) / nn) / n


def _bd0(x: float, np_: float) -> float:
    if abs(x - np_) < 0.1 * (x + np_):
        v = (x - np_) / (x + np_)
        s = (x - np_) * v
        if abs(s) < 2.2250738585072014e-308:
            return s
        ej = 2 * x * v
        v = v * v
        for j in range(1, 1000):
            ej *= v
            s1 = s + ej / ((j << 1) + 1)
            if s1 == s:
                return s1
            s = s1
    return x * math.log(x / np_) + np_ - x


def _dbinom_raw_log(x: float, n: float, p: float, q: float) -> float:
    if p == 0:
        return 0.0 if x == 0 else -math.inf
    if q == 0:
        return 0.0 if x == n else -math.inf
    if x == 0:
        if n == 0:
            return 0.0
        return -_bd0(n, n * q) - n * p if p < 0.1 else n * math.log(q)
    if x == n:
        return -_bd0(n, n * p) - n * q if q < 0.1 else n * math.log(p)
    if x < 0 or x > n:
        return -math.inf
    lc = _stirlerr(n) - _stirlerr(x) - _stirlerr(n - x) - _bd0(x, n * p) - _bd0(n - x, n * q)
    lf = _M_LN_2PI + math.log(x) + math.log1p(- x / n)
    return lc - 0.5 * lf


def r_dnbinom_mu_log(x: float, size: float, mu: float) -> float:
    """R 4.2's ``dnbinom(x, size = size, mu = mu, log = TRUE)`` for a count ``x``, bit for bit."""
    if mu == 0:
        return 0.0 if x == 0 else -math.inf
    if x == 0:
        return size * (math.log(size / (size + mu)) if size < mu else math.log1p(- mu / (size + mu)))
    if x < 1e-10 * size:
        p = math.log(size / (1 + size / mu)) if size < mu else math.log(mu / (1 + mu / size))
        return x * p - mu - r_lgammafn(x + 1) + math.log1p(math.ldexp(x * (x - 1), -1) / size)
    p = math.log1p(-x / (size + x)) if x < size else math.log(size / (size + x))
    return p + _dbinom_raw_log(size, x + size, size / (size + mu), mu / (size + mu))


def r_ld_sum(values) -> float:
    """R's ``sum()`` of doubles (long double accumulation)."""
    s = np.longdouble(0)
    for v in values:
        s += np.longdouble(v)
    return float(s)


def r_optim_objective(par, counts, nf, size, x, sd) -> float:
    """DESeq2 ``fitNbinomGLMsOptim``'s ``objectiveFn`` in R's rounding: ``-(logLike + logPrior)``, ``1e300``
    when not finite; ``par`` on the log2 scale, ``sd = sqrt(1 / lambda)``."""
    p = len(par)
    mu = []
    for row, f in zip(x, nf):
        eta = 0.0
        for j in range(p):  # dgemv: sum over coefficients in order, from 0
            eta = eta + par[j] * row[j]
        mu.append(f * math.pow(2.0, eta))
    ll = r_ld_sum(r_dnbinom_mu_log(k, size, m) for k, m in zip(counts, mu))
    prior = r_ld_sum(-(_M_LN_SQRT_2PI + 0.5 * abs(b / s) * abs(b / s) + math.log(s)) for b, s in zip(par, sd))
    v = -1 * (ll + prior)
    return v if math.isfinite(v) else 1e300


def r_qr_solve_start(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``t(solve(qr.R(qr(x)), t(qr.Q(qr(x))) %*% t(y)))``: fitNbinomGLMs' start ``beta_mat`` in R's rounding."""
    q, _ = r_qr_q_rinv(x)
    x = np.asarray(x, dtype=float)
    n, p = x.shape
    # qr.R via the same decomposition: R = Q' x (upper triangular); recompute it from dqrdc2
    r = _qr_r(x)
    qty = _seq_matmul(q.T, np.asarray(y, dtype=float).T)  # (p, G)
    out = np.zeros((p, qty.shape[1]))
    for c in range(qty.shape[1]):
        b = qty[:, c].tolist()
        for k in range(p - 1, -1, -1):
            if b[k] != 0.0:
                b[k] = b[k] / r[k][k]
                for i in range(k):
                    b[i] = b[i] - b[k] * r[i][k]
        out[:, c] = b
    return out.T


def _qr_r(x: np.ndarray):
    p = x.shape[1]
    a, _ = _dqrdc2(x)
    return [[a[j][i] if i <= j else 0.0 for j in range(p)] for i in range(p)]
