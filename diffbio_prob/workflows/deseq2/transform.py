"""DESeq2's transformations, as R DESeq2 1.38.3 computes them: normalised counts, the variance-stabilising
transformation and the regularised log.

* :func:`normalized_counts` is ``counts(dds, normalized = TRUE)``.
* :func:`vst` is ``varianceStabilizingTransformation()`` (``nsub=None``, the default) or, with ``nsub=1000``,
  R's fast ``vst()`` (the dispersion trend fitted on ``nsub`` genes picked by mean).
  ``blind=True`` re-estimates gene-wise dispersions and the trend under the design ``~ 1``
  (``estimateDispersionsGeneEst`` then ``estimateDispersionsFit``; no MAP step); ``blind=False`` uses the
  fit's trend. The parametric trend has a closed form, the mean trend too; the local trend is integrated
  numerically on a 1000-point ``sinh`` grid, interpolated by R's ``splinefun`` (``"fmm"`` end conditions,
  reimplemented here) and scaled to ``log2`` at the 95% and 99.9% quantiles of the gene means.
* :func:`rlog` is ``rlog()`` / ``rlogData()``: a ridge-penalised NB GLM per gene on the expanded design
  (an intercept and one coefficient per sample), the sample coefficients sharing a normal prior whose
  variance is R's weighted upper-quantile match (``matchWeightedUpperQuantileForVariance`` with R's
  ``Hmisc.wtd.quantile``); R's IRLS (``fitBeta``, ``betaTol = 1e-4``, from the same starting point) is run
  to the same stopping point, so the values are R's to rounding.

Each function takes a :class:`~diffbio_prob.workflows.deseq2.fit.DESeq2Fit` (R's ``DESeqDataSet`` after
``DESeq()``); or, as R takes a matrix, a genes x samples count table (a pandas DataFrame or a 2-D array):
design ``~ 1``, median-of-ratios size factors; or a ``(counts, metadata, design)`` tuple, R's
``DESeqDataSetFromMatrix(counts, colData, design)`` before ``DESeq()`` (median-of-ratios size factors; with
``blind=False`` the trend is estimated under that design, as R does for an object without one). They return
pandas DataFrames, genes x samples.

Example:
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> counts = pd.DataFrame(rng.negative_binomial(5, 0.05, size=(300, 6)),
    ...                       index=[f"g{i}" for i in range(300)], columns=[f"s{j}" for j in range(6)])
    >>> vsd = vst(counts)  # doctest: +SKIP
    >>> vsd.shape  # doctest: +SKIP
    (300, 6)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings

import numpy as np
import pandas as pd
from scipy import special

from diffbio_prob.io.counts import validate_counts
from diffbio_prob.io.rmath import mean as _r_mean
from diffbio_prob.io.rmath import row_means as _r_row_means
from diffbio_prob.parallel import run_batched
from diffbio_prob.workflows.deseq2 import kernels, steps
from diffbio_prob.workflows.deseq2.data import DESeq2Data
from diffbio_prob.workflows.deseq2.fit import DESeq2Fit
from diffbio_prob.workflows.deseq2.glm import LN2, LOG2E
from diffbio_prob.workflows.deseq2.options import FIT_TYPES, DESeq2Options
from diffbio_prob.workflows.deseq2.trend import Trend, fit_trend

__all__ = ["normalized_counts", "rlog", "vst"]

# R's rlogData: fitNbinomGLMs(..., betaTol = 1e-4, useOptim = FALSE, useQR = TRUE), R's default maxit and minmu.
_RLOG_BETA_TOL = 1e-4
_RLOG_MAXIT = 100
_MIN_MU = 0.5
# getVarianceStabilizedData (local trend): grid size and the two quantiles that fix the log2 scale.
_VST_GRID = 1000
_VST_Q1, _VST_Q2 = 0.95, 0.999


# ------------------------------------------------------------------------------------------------
# Inputs.
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Source:
    """What a transformation reads: counts, normalisation, the fit's design and state (if any)."""

    genes: pd.Index
    samples: pd.Index
    counts: np.ndarray  # (G, N)
    design: np.ndarray  # (N, P): the fit's model matrix, or ~ 1 for a count table
    size_factors: np.ndarray | None
    normalization_factors: np.ndarray | None
    fit: DESeq2Fit | None
    opts: DESeq2Options

    @property
    def norm_factors(self) -> np.ndarray:
        if self.normalization_factors is not None:
            return np.asarray(self.normalization_factors, dtype=float)
        return np.broadcast_to(np.asarray(self.size_factors, dtype=float), self.counts.shape)

    @property
    def normalized(self) -> np.ndarray:
        return self.counts / self.norm_factors

    @property
    def vst_size_factors(self) -> np.ndarray:
        """getVarianceStabilizedData's ``sf``: the size factors, or ``exp(colMeans(log(normalizationFactors)))``."""
        if self.size_factors is not None:
            return np.asarray(self.size_factors, dtype=float)
        return np.exp(np.mean(np.log(self.norm_factors), axis=0))

    def data(self, design: np.ndarray, rows=None) -> DESeq2Data:
        sel = slice(None) if rows is None else rows
        nf = None if self.normalization_factors is None else np.asarray(self.normalization_factors)[sel]
        return DESeq2Data(
            counts=self.counts[sel],
            design=np.asarray(design, dtype=float),
            size_factors=None if nf is not None else np.asarray(self.size_factors, dtype=float),
            normalization_factors=nf,
        )


def _source(obj, name: str = "fit_or_inputs") -> _Source:
    if isinstance(obj, tuple):
        # (counts, metadata, design): R's DESeqDataSetFromMatrix(counts, colData, design) before DESeq()
        if len(obj) != 3:
            raise ValueError(f"{name}: a tuple must be (counts, metadata, design formula), got {len(obj)} items")
        from diffbio_prob.workflows.deseq2.api import prepare_inputs
        from diffbio_prob.workflows.deseq2.design import build_design

        counts_df, meta = prepare_inputs(obj[0], obj[1])
        des = build_design(obj[2], meta)
        values = counts_df.to_numpy(dtype=float)
        sf = steps.estimate_size_factors(values, "ratio")
        return _Source(pd.Index(counts_df.index), pd.Index(counts_df.columns), values, des.matrix, sf, None, None,
                       DESeq2Options())
    if isinstance(obj, DESeq2Fit):
        return _Source(
            genes=pd.Index(obj.genes),
            samples=pd.Index(obj.samples),
            counts=np.asarray(obj.counts, dtype=float),
            design=np.asarray(obj.design.matrix, dtype=float),
            size_factors=None if obj.size_factors is None else np.asarray(obj.size_factors, dtype=float),
            normalization_factors=None
            if obj.normalization_factors is None
            else np.asarray(obj.normalization_factors, dtype=float),
            fit=obj,
            opts=obj.options,
        )
    if isinstance(obj, pd.DataFrame):
        values = validate_counts(obj.to_numpy(), name=name, row_names=obj.index, column_names=obj.columns)
        genes, samples = pd.Index(obj.index), pd.Index(obj.columns)
    elif isinstance(obj, np.ndarray):
        if obj.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D genes x samples count matrix, got shape {obj.shape}")
        values = validate_counts(obj, name=name)
        # R: colnames(object) <- seq_len(ncol(object)); no row names.
        genes = pd.RangeIndex(values.shape[0])
        samples = pd.Index([str(j + 1) for j in range(values.shape[1])])
    else:
        raise TypeError(
            f"{name}: expected a DESeq2Fit (from fit_deseq2), a genes x samples count table (pandas DataFrame "
            f"or 2-D numpy array) or a (counts, metadata, design) tuple, got {type(obj).__name__}"
        )
    # R's matrix input: DESeqDataSetFromMatrix(object, ..., ~ 1), then estimateSizeFactors (median of ratios).
    sf = steps.estimate_size_factors(values, "ratio")
    n = values.shape[1]
    return _Source(genes, samples, values, np.ones((n, 1)), sf, None, None, DESeq2Options())


def _check_bool(name: str, value) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")


def _check_fit_type(fit_type) -> str:
    if fit_type is None:
        return "parametric"  # R's default fitType
    if not isinstance(fit_type, str) or fit_type not in FIT_TYPES:
        raise ValueError(f"fit_type: expected None (R's default 'parametric'), 'parametric', 'local' or 'mean', "
                         f"got {fit_type!r}")
    return fit_type


def _frame(values: np.ndarray, src: _Source) -> pd.DataFrame:
    return pd.DataFrame(values, index=src.genes.copy(), columns=src.samples.copy())


# ------------------------------------------------------------------------------------------------
# R's arithmetic where it matters (long-double sums, seq(), quantile type 7, splinefun "fmm").
# ------------------------------------------------------------------------------------------------


def _r_seq(start: float, stop: float, length_out: int) -> np.ndarray:
    """R's ``seq(from, to, length.out =)`` for doubles: ``c(from, from + (1:(n-2)) * ((to - from)/(n - 1)), to)``."""
    if length_out <= 2:
        return np.array([start, stop], dtype=float)[:length_out]
    if start == stop:
        return np.full(length_out, float(start))
    by = (stop - start) / (length_out - 1)
    return np.concatenate([[start], start + np.arange(1, length_out - 1) * by, [stop]])


def _r_quantile(x: np.ndarray, prob: float) -> float:
    """R's ``quantile(x, prob)`` (type 7) as ``quantile.default`` computes it."""
    x = np.sort(np.asarray(x, dtype=float))
    n = x.size
    index = 1 + max(n - 1, 0) * prob
    lo, hi = math.floor(index), math.ceil(index)
    qs = x[lo - 1]
    if index > lo and x[hi - 1] != qs:
        h = index - lo
        qs = (1 - h) * qs + h * x[hi - 1]
    return float(qs)


def _fmm_spline(x: np.ndarray, y: np.ndarray):
    """R's ``splinefun(method = "fmm")`` coefficients (``fmm_spline`` in R's ``src/library/stats/src/splines.c``):
    a cubic spline whose end third derivatives match those of the cubics through the first and last four points.

    Returns ``(b, c, d)``: on ``[x[i], x[i+1]]``, ``s(u) = y[i] + b[i] du + c[i] du^2 + d[i] du^3``.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = x.size
    if n < 2:
        raise ValueError("spline: need at least two knots")
    b = np.zeros(n)
    c = np.zeros(n)
    d = np.zeros(n)
    if n < 3:
        t = (y[1] - y[0]) / (x[1] - x[0])
        b[:] = t
        return b, c, d
    # 0-based transcription of the 1-based C code.
    nm1 = n - 1
    d[0] = x[1] - x[0]
    c[1] = (y[1] - y[0]) / d[0]
    for i in range(1, nm1):
        d[i] = x[i + 1] - x[i]
        b[i] = 2.0 * (d[i - 1] + d[i])
        c[i + 1] = (y[i + 1] - y[i]) / d[i]
        c[i] = c[i + 1] - c[i]
    b[0] = -d[0]
    b[nm1] = -d[nm1 - 1]
    c[0] = c[nm1] = 0.0
    if n > 3:
        c[0] = c[2] / (x[3] - x[1]) - c[1] / (x[2] - x[0])
        c[nm1] = c[nm1 - 1] / (x[nm1] - x[nm1 - 2]) - c[nm1 - 2] / (x[nm1 - 1] - x[nm1 - 3])
        c[0] = c[0] * d[0] * d[0] / (x[3] - x[0])
        c[nm1] = -c[nm1] * d[nm1 - 1] * d[nm1 - 1] / (x[nm1] - x[nm1 - 3])
    for i in range(1, n):
        t = d[i - 1] / b[i - 1]
        b[i] = b[i] - t * d[i - 1]
        c[i] = c[i] - t * c[i - 1]
    c[nm1] = c[nm1] / b[nm1]
    for i in range(nm1 - 1, -1, -1):
        c[i] = (c[i] - d[i] * c[i + 1]) / b[i]
    b[nm1] = (y[nm1] - y[nm1 - 1]) / d[nm1 - 1] + d[nm1 - 1] * (c[nm1 - 1] + 2.0 * c[nm1])
    for i in range(nm1):
        b[i] = (y[i + 1] - y[i]) / d[i] - d[i] * (c[i + 1] + 2.0 * c[i])
        d[i] = (c[i + 1] - c[i]) / d[i]
        c[i] = 3.0 * c[i]
    c[nm1] = 3.0 * c[nm1]
    d[nm1] = d[nm1 - 1]
    return b, c, d


def _spline_eval(x, y, coef, u) -> np.ndarray:
    """R's ``spline_eval`` for an ``"fmm"`` spline: the cubic of the interval ``x[i] <= u < x[i+1]``, the end
    cubics continued outside ``[x[0], x[-1]]``."""
    b, c, d = coef
    u = np.asarray(u, dtype=float)
    i = np.clip(np.searchsorted(x, u, side="right") - 1, 0, x.size - 1)
    dx = u - x[i]
    return y[i] + dx * (b[i] + dx * (c[i] + dx * d[i]))


def _wtd_upper_quantile_variance(x: np.ndarray, weights: np.ndarray, upper_quantile: float = 0.05) -> float:
    """DESeq2's ``matchWeightedUpperQuantileForVariance``: ``(q / qnorm(1 - u/2))^2`` with ``q`` the weighted
    ``1 - u`` quantile of ``|x|`` by R's ``Hmisc.wtd.quantile(normwt = TRUE)`` (type ``"quantile"``).

    Hmisc's steps: drop zero/NA weights and NAs; rescale the weights to sum to ``n``; sum the weights of
    tied values (``tapply`` groups by ``as.character(x)``, 15 significant digits, and the values come back
    as ``as.numeric`` of those names); then ``approx(cumsum(w), x, xout = c(low, high), "constant", f = 1,
    rule = 2)`` at ``low = floor(1 + (n - 1) p)``, ``high = low + 1``, interpolated linearly.
    """
    x = np.abs(np.asarray(x, dtype=float))
    w = np.asarray(weights, dtype=float)
    keep = ~(np.isnan(w) | (w == 0))
    x, w = x[keep], w[keep]
    keep = ~np.isnan(x + w)
    x, w = x[keep], w[keep]
    n = x.size
    if n == 0:
        raise ValueError("rlog: no finite log fold changes to estimate the prior variance from")
    w = (w * n) / float(np.sum(w.astype(np.longdouble)))
    order = np.argsort(x, kind="stable")
    x, w = x[order], w[order]
    if n > 1 and np.any(x[1:] == x[:-1]):
        keys = np.array([float(f"{v:.15g}") for v in x])
        xs, inv = np.unique(keys, return_inverse=True)
        sums = np.zeros(xs.size, dtype=np.longdouble)
        np.add.at(sums, inv, w.astype(np.longdouble))
        wts = sums.astype(float)
    else:
        xs, wts = x, w
    prob = 1 - upper_quantile
    total = float(np.sum(wts.astype(np.longdouble)))
    pos = 1 + (total - 1) * prob
    low = max(math.floor(pos), 1)
    high = min(low + 1, total)
    frac = pos % 1
    cw = np.cumsum(wts.astype(np.longdouble)).astype(float)

    def approx_right(v: float) -> float:
        k = int(np.searchsorted(cw, v, side="left"))
        return float(xs[min(k, xs.size - 1)])

    q = (1 - frac) * approx_right(low) + frac * approx_right(high)
    sd = q / special.ndtri(1 - upper_quantile / 2)
    return float(sd**2)


# ------------------------------------------------------------------------------------------------
# Dispersion trends for the transformations.
# ------------------------------------------------------------------------------------------------


def _estimate_trend(src: _Source, design: np.ndarray, fit_type: str, rows=None, *, shard: bool) -> Trend:
    """``estimateDispersionsGeneEst`` then ``estimateDispersionsFit(fitType)`` on ``src`` (or its ``rows``)."""
    data = src.data(design, rows)
    m, p = data.design.shape
    if m <= p:
        raise ValueError(
            f"fit_or_inputs: {m} sample(s) and {p} coefficient(s): there are no replicates to estimate the "
            "dispersion trend the transformation needs"
        )
    opts = dataclasses.replace(src.opts, fit_type=fit_type)
    nz = data.counts.sum(axis=1) != 0
    if not nz.any():
        raise ValueError("fit_or_inputs: every gene has only zero counts")
    gene = steps.estimate_dispersions_gene(data.rows(nz), opts, shard=shard)
    return fit_trend(gene.base_mean, gene.disp_gene, opts)


def _vst_values(ncounts: np.ndarray, trend: Trend, sf: np.ndarray) -> np.ndarray:
    """R's ``getVarianceStabilizedData`` of normalised counts under a dispersion trend."""
    q = ncounts
    if trend.kind == "parametric":
        a, e = float(trend.coefs[0]), float(trend.coefs[1])
        return np.log((1 + e + 2 * a * q + 2 * np.sqrt(a * q * (1 + e + a * q))) / (4 * a)) / math.log(2)
    if trend.kind == "mean":
        alpha = float(trend.coefs[0])
        return (2 * np.arcsinh(np.sqrt(alpha * q)) - math.log(alpha) - math.log(4)) / math.log(2)
    if trend.kind != "local":
        raise ValueError(f"trend: fitType is not parametric, local or mean ({trend.kind!r})")
    top = float(np.max(q))
    if not top > 0:
        raise ValueError("fit_or_inputs: every normalised count is zero; the local VST has no range to integrate")
    xg = np.sinh(_r_seq(math.asinh(0.0), math.asinh(top), _VST_GRID))[1:]
    xim = _r_mean(1.0 / sf)
    base_var = np.asarray(trend(xg), dtype=float) * xg**2 + xim * xg
    integrand = 1.0 / np.sqrt(base_var)
    knots = np.arcsinh((xg[1:] + xg[:-1]) / 2)
    vals = np.cumsum(((xg[1:] - xg[:-1]) * (integrand[1:] + integrand[:-1]) / 2).astype(np.longdouble)).astype(float)
    coef = _fmm_spline(knots, vals)

    def splf(u):
        return _spline_eval(knots, vals, coef, u)

    means = _r_row_means(q)
    h1, h2 = _r_quantile(means, _VST_Q1), _r_quantile(means, _VST_Q2)
    s1, s2 = float(splf(math.asinh(h1))), float(splf(math.asinh(h2)))
    eta = (math.log2(h2) - math.log2(h1)) / (s2 - s1)
    xi = math.log2(h1) - eta * s1
    return eta * splf(np.arcsinh(q)) + xi


def _subsample_rows(ncounts: np.ndarray, nsub: int) -> np.ndarray:
    """R's ``vst()`` gene subsample: of the genes with mean normalised count above 5, ordered by that mean
    (ties by position), those at ``round(seq(1, n, length = nsub))``."""
    g = ncounts.shape[0]
    if g < nsub:
        raise ValueError(f"nsub: fewer than nsub = {nsub} genes ({g}); use nsub=None "
                         "(varianceStabilizingTransformation) instead")
    bm = _r_row_means(ncounts)
    keep = np.flatnonzero(bm > 5)
    if keep.size < nsub:
        raise ValueError(f"nsub: fewer than nsub = {nsub} genes with mean normalised count above 5 ({keep.size}); "
                         "use nsub=None (varianceStabilizingTransformation) instead")
    o = np.argsort(bm[keep], kind="stable")
    pos = np.rint(_r_seq(1.0, float(keep.size), nsub)).astype(int) - 1  # R's round(): half to even
    return keep[o[pos]]


# ------------------------------------------------------------------------------------------------
# Public API.
# ------------------------------------------------------------------------------------------------


def normalized_counts(fit: DESeq2Fit) -> pd.DataFrame:
    """R's ``counts(dds, normalized = TRUE)``: counts divided by the size factors (or the normalisation factors).

    Args:
        fit: a :class:`~diffbio_prob.workflows.deseq2.fit.DESeq2Fit`.

    Returns:
        genes x samples DataFrame (the original counts, as R keeps them after outlier replacement).
    """
    if not isinstance(fit, DESeq2Fit):
        raise TypeError(f"fit: expected a DESeq2Fit (from fit_deseq2), got {type(fit).__name__}")
    src = _source(fit, "fit")
    return _frame(src.normalized, src)


def vst(fit_or_inputs, blind: bool = True, fit_type: str | None = None, *, nsub: int | None = None,
        shard: bool = True) -> pd.DataFrame:
    """R DESeq2's variance-stabilising transformation (``varianceStabilizingTransformation``, or ``vst``).

    Args:
        fit_or_inputs: a :class:`~diffbio_prob.workflows.deseq2.fit.DESeq2Fit`, a genes x samples count
            table (DataFrame or 2-D array; as R's matrix input: design ``~ 1``, median-of-ratios size factors)
            or a ``(counts, metadata, design)`` tuple (a DESeqDataSet before ``DESeq()``).
        blind: re-estimate the dispersion trend under the design ``~ 1`` (R's default). ``False`` uses the
            fit's trend (``nsub=None``) or, with ``nsub``, re-fits the trend under the fit's design on the
            subsample, as R's ``vst(blind = FALSE)`` does; a tuple's trend is estimated under its design. A
            count table has no design: always ``~ 1``.
        fit_type: the trend fitted when one is (re-)estimated: ``None`` is R's default ``"parametric"`` (with
            R's fallback to ``"local"``, warned), or ``"local"``, ``"mean"``. Like R, ignored when
            ``blind=False`` and ``nsub=None`` reuse a fit's trend.
        nsub: ``None``: ``varianceStabilizingTransformation`` (every gene fits the trend). An integer (R's
            ``vst()`` uses 1000): fit the trend on ``nsub`` genes with mean normalised count above 5, evenly
            spaced in the order of their means (deterministic), then transform every gene.
        shard: split genes across local JAX devices.

    Returns:
        genes x samples DataFrame of log2-scale values.

    Raises:
        TypeError / ValueError naming the argument.
    """
    _check_bool("blind", blind)
    ft = _check_fit_type(fit_type)
    if nsub is not None and (not isinstance(nsub, numbers.Integral) or isinstance(nsub, (bool, np.bool_))
                             or nsub < 1):
        raise ValueError(f"nsub: expected None or a positive integer (R's vst() uses 1000), got {nsub!r}")
    src = _source(fit_or_inputs)
    ncounts = src.normalized
    ones = np.ones((src.counts.shape[1], 1))
    if nsub is not None:
        rows = _subsample_rows(ncounts, int(nsub))
        trend = _estimate_trend(src, ones if blind else src.design, ft, rows, shard=shard)
    elif blind or src.fit is None:
        # R: blind sets design ~ 1; an object without a trend (a count table, a tuple) gets one estimated
        # under its current design
        trend = _estimate_trend(src, ones if blind else src.design, ft, shard=shard)
    else:
        trend = src.fit.trend
        if fit_type is not None and fit_type != trend.kind:
            warnings.warn(
                f"fit_type={fit_type!r} is not used: blind=False reuses the fit's {trend.kind!r} trend "
                "(as R's varianceStabilizingTransformation does); fit with fit_type to change it",
                UserWarning,
                stacklevel=2,
            )
    return _frame(_vst_values(ncounts, trend, src.vst_size_factors), src)


def _sparse_test(ncounts: np.ndarray, p: float = 0.9, t1: float = 100, t2: float = 0.1) -> None:
    # R's sparseTest, run by rlog() when no intercept is given: a warning, nothing else.
    rs = ncounts.sum(axis=1)
    if np.all(rs <= t1):
        return
    prop = (ncounts.max(axis=1) / np.where(rs > 0, rs, 1.0))[rs > t1]
    total = float(np.mean(prop > p))
    if total > t2:
        warnings.warn(
            "the rlog assumes that data is close to a negative binomial distribution, an assumption which is "
            "sometimes not compatible with datasets where many genes have many zero counts despite a few very "
            f"large counts. In this data, for {round(total, 3) * 100:g}% of genes with a sum of normalized "
            f"counts above {t1:g}, a single sample's normalized count made up more than {p * 100:g}% of the sum "
            f"over all samples (threshold for this warning: {t2 * 100:g}% of genes). Consider vst() instead.",
            UserWarning,
            stacklevel=3,
        )


_CHUNK_ELEMENTS = 2**24  # genes x P x P per IRLS call (the kernel returns (G, P, P) covariances)


def _ridge_irls(counts, nf, design, alpha, lam_log2, beta_init, *, shard: bool):
    """R's ``fitBeta`` (IRLS with a ridge, ``betaTol = 1e-4``) from ``beta_init``; rows R would hand to its
    optimiser (a non-finite coefficient or a non-positive variance) go to the Newton fallback. Genes go in
    chunks so that many samples (P = N + 1 coefficients) do not need G x P x P memory at once."""
    g, p = counts.shape[0], design.shape[1]
    chunk = max(1024, _CHUNK_ELEMENTS // (p * p))
    if g > chunk:
        parts = [
            _ridge_irls(counts[i : i + chunk], nf[i : i + chunk], design, alpha[i : i + chunk], lam_log2,
                        beta_init[i : i + chunk], shard=shard)
            for i in range(0, g, chunk)
        ]
        return np.concatenate([b for b, _ in parts], axis=0), np.concatenate([c for _, c in parts])
    data = DESeq2Data(counts, design, normalization_factors=nf)
    pad = data.padding
    p = design.shape[1]
    ridge = np.asarray(lam_log2, dtype=float) / LN2**2
    shared = (data.padded_design, pad.coefs(ridge), data.sample_mask, data.coef_mask)
    beta, n_iter, sigma, *_ = run_batched(
        kernels.k_irls,
        (data.padded_counts, data.padded_log_offset, alpha, pad.coefs(beta_init)),
        shared,
        shard=shard,
        min_mu=_MIN_MU,
        tol=_RLOG_BETA_TOL,
        max_iter=_RLOG_MAXIT,
    )
    beta = np.array(beta[:, :p])
    var = np.diagonal(np.asarray(sigma)[:, :p, :p], axis1=1, axis2=2)
    rows = np.flatnonzero(~np.all(np.isfinite(beta), axis=1) | ~np.all(var > 0, axis=1))
    if rows.size:
        start = np.nan_to_num(np.asarray(beta_init, dtype=float)[rows])
        b2, *_ = run_batched(
            kernels.k_beta_newton,
            (data.padded_counts[rows], data.padded_log_offset[rows], alpha[rows], pad.coefs(start)),
            shared,
            shard=shard,
            min_mu=_MIN_MU,
        )
        beta[rows] = np.asarray(b2)[:, :p]
    return beta, np.asarray(n_iter) < _RLOG_MAXIT


def _rlog_data(counts, nf, base_mean, all_zero, disp_fit, intercept, beta_prior_var, *, genes, shard: bool):
    """R's ``rlogData``: ``(values (G, N), betaPriorVar, fitted intercepts (G,) or None)``, log2 scale."""
    g, n = counts.shape
    all_zero = np.asarray(all_zero, dtype=bool).copy()
    if intercept is None:
        design = np.hstack([np.ones((n, 1)), np.eye(n)])  # ~ samples with a null reference level, row 1 dropped
        has_intercept = True
        nf_used = nf
        icpt = None
    else:
        icpt = np.asarray(intercept, dtype=float).ravel()
        design = np.eye(n)
        has_intercept = False
        infinite = ~np.isfinite(icpt)
        nf_used = nf * np.exp2(np.where(infinite, -10.0, icpt))[:, None]
        all_zero = infinite
    nz = ~all_zero
    if not nz.any():
        raise ValueError("fit_or_inputs: every gene has only zero counts (or an infinite intercept)")
    if np.any(np.isnan(disp_fit[nz])):
        raise ValueError("intercept: finite intercepts for genes without a fitted dispersion (all-zero genes); "
                         "give them -inf, as rlog's own intercepts do")
    cnz = counts[nz]
    norm_nz = cnz / nf_used[nz]
    if beta_prior_var is None:
        lfc = np.log2(norm_nz + 0.5) - np.log2(base_mean[nz] + 0.5)[:, None]
        weights = 1.0 / (1.0 / base_mean[nz] + disp_fit[nz])
        beta_prior_var = _wtd_upper_quantile_variance(lfc.ravel(order="F"), np.tile(weights, n))
    p = design.shape[1]
    lam = np.full(p, 1.0 / beta_prior_var)
    if has_intercept:
        lam[0] = 1e-6
    if p == 1 and np.all(design == 1.0) and np.all(lam <= 1e-6):
        beta_log2 = np.log2(_r_row_means(norm_nz))[:, None]  # fitNbinomGLMs' justIntercept
    else:
        if np.linalg.matrix_rank(design) == p:
            beta_init = np.linalg.lstsq(design, np.log(norm_nz + 0.1).T, rcond=None)[0].T
        elif has_intercept:
            beta_init = np.zeros((cnz.shape[0], p))
            beta_init[:, 0] = np.log(_r_row_means(norm_nz))
        else:
            beta_init = np.ones((cnz.shape[0], p))
        beta, conv = _ridge_irls(cnz, nf_used[nz], design, np.asarray(disp_fit[nz], dtype=float), lam, beta_init,
                                 shard=shard)
        if not conv.all():
            warnings.warn(
                f"rlog: the ridge IRLS did not converge in {_RLOG_MAXIT} iterations for {int((~conv).sum())} "
                f"gene(s) ({', '.join(map(str, np.asarray(genes)[nz][~conv][:5]))}"
                f"{', ...' if (~conv).sum() > 5 else ''}); as R (useOptim = FALSE) their 100th iterate is kept, "
                "which for an IRLS that cycles chaotically depends on rounding (R's too)",
                RuntimeWarning,
                stacklevel=3,
            )
        beta_log2 = LOG2E * beta
    out = np.zeros((g, n))
    out[nz] = beta_log2 @ design.T
    if icpt is not None:
        out = out + np.where(~np.isfinite(icpt), 0.0, icpt)[:, None]
    fitted_icpt = None
    if has_intercept:
        fitted_icpt = np.full(g, -np.inf)
        fitted_icpt[nz] = beta_log2[:, 0]
    return out, float(beta_prior_var), fitted_icpt


def rlog(fit_or_inputs, blind: bool = True, intercept=None, beta_prior_var: float | None = None,
         fit_type: str | None = None, *, shard: bool = True) -> pd.DataFrame:
    """R DESeq2's regularised log transformation (``rlog`` / ``rlogData``).

    Per gene, an NB GLM with an intercept and one coefficient per sample, the sample coefficients under a
    zero-mean normal prior (ridge ``1 / beta_prior_var`` on the log2 scale; ``1e-6`` on the intercept), at the
    trend dispersions ``dispFit``; the values are ``log2`` of the fitted means over the size factors.

    Args:
        fit_or_inputs: a :class:`~diffbio_prob.workflows.deseq2.fit.DESeq2Fit`, a genes x samples count
            table (DataFrame or 2-D array; design ``~ 1``, median-of-ratios size factors) or a
            ``(counts, metadata, design)`` tuple (a DESeqDataSet before ``DESeq()``).
        blind: re-estimate gene-wise dispersions and the trend under ``~ 1`` (R's default); ``False`` uses
            the fit's ``dispFit`` and ``baseMean``.
        intercept: ``(G,)`` log2 intercepts (e.g. ``result.attrs["rlogIntercept"]`` of an earlier rlog, where
            all-zero genes are ``-inf``; a Series is aligned on the gene names): fit the sample coefficients
            only, around these intercepts (R's ``intercept``; genes with a non-finite one come out 0, as in R).
        beta_prior_var: the prior variance of the sample coefficients; ``None``: estimated as R does.
        fit_type: trend fitted when one is (re-)estimated; ``None`` is R's default ``"parametric"``. Like
            R, not used (warned when given) with ``blind=False`` on a fit.
        shard: split genes across local JAX devices.

    Returns:
        genes x samples DataFrame; ``attrs["betaPriorVar"]`` holds the prior variance used and, without a
        given ``intercept``, ``attrs["rlogIntercept"]`` the fitted log2 intercepts (a list, ``-inf`` for
        all-zero genes), as R's ``attr(rld, "betaPriorVar")`` and ``mcols(rld)$rlogIntercept``.

    Raises:
        TypeError / ValueError naming the argument.
    """
    _check_bool("blind", blind)
    ft = _check_fit_type(fit_type)
    if beta_prior_var is not None and (
        not isinstance(beta_prior_var, numbers.Real) or isinstance(beta_prior_var, (bool, np.bool_))
    ):
        raise TypeError(f"beta_prior_var: expected None or a number, got {beta_prior_var!r}")
    if beta_prior_var is not None and not (np.isfinite(beta_prior_var) and beta_prior_var > 0):
        raise ValueError(f"beta_prior_var: expected a finite positive number, got {beta_prior_var!r}")
    src = _source(fit_or_inputs)
    g = src.counts.shape[0]
    if intercept is not None:
        if isinstance(intercept, pd.Series) and not intercept.index.equals(src.genes):
            if not (intercept.index.is_unique and set(intercept.index) == set(src.genes)):
                raise ValueError("intercept: a Series must be indexed by the genes of fit_or_inputs")
            intercept = intercept.reindex(src.genes)
        icpt = np.asarray(intercept)
        if icpt.dtype == object or not np.issubdtype(icpt.dtype, np.number):
            raise TypeError(f"intercept: expected numbers (log2 intercepts), got dtype {icpt.dtype}")
        icpt = icpt.astype(float).ravel()
        if icpt.size != g:
            raise ValueError(f"intercept: expected {g} values (one per gene), got {icpt.size}")
        if np.any(np.isnan(icpt)):
            raise ValueError("intercept: NaN values (use -inf for all-zero genes)")
        intercept = icpt
    ncounts = src.normalized
    if intercept is None:
        _sparse_test(ncounts)
    nf = np.array(src.norm_factors, dtype=float)
    if blind or src.fit is None:
        design = np.ones((src.counts.shape[1], 1)) if blind else src.design
        trend = _estimate_trend(src, design, ft, shard=shard)
        base_mean = _r_row_means(ncounts)
        all_zero = src.counts.sum(axis=1) == 0
        disp_fit = np.full(g, np.nan)
        disp_fit[~all_zero] = trend(base_mean[~all_zero])
    else:
        if fit_type is not None and fit_type != src.fit.trend.kind:
            warnings.warn(
                f"fit_type={fit_type!r} is not used: blind=False reuses the fit's dispFit ({src.fit.trend.kind!r} "
                "trend), as R's rlog does; fit with fit_type to change it",
                UserWarning,
                stacklevel=2,
            )
        gene = src.fit.gene
        base_mean = np.asarray(gene["baseMean"], dtype=float)
        all_zero = np.asarray(gene["allZero"], dtype=bool)
        disp_fit = np.asarray(gene["dispFit"], dtype=float)
    values, bpv, fitted_icpt = _rlog_data(src.counts, nf, base_mean, all_zero, disp_fit, intercept,
                                          beta_prior_var, genes=src.genes, shard=shard)
    out = _frame(values, src)
    out.attrs["betaPriorVar"] = bpv
    if fitted_icpt is not None:
        out.attrs["rlogIntercept"] = fitted_icpt.tolist()
    return out
