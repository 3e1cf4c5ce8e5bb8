"""fishpond 2.4's ``swish`` (two-group, no covariate) on salmon's inferential replicates, with R's numbers.

Swish (Zhu et al. 2019) tests each feature with a Mann-Whitney / Wilcoxon rank-sum statistic averaged over
the inferential replicates (bootstraps or Gibbs draws), and gets p-values from sample permutations. This
module follows fishpond 2.4.1's R code step by step:

* :func:`scale_inf_reps` = ``scaleInfReps``: each replicate is divided by the feature length (normalised by
  its geometric mean over samples), scaled to the geometric mean library size, and divided by DESeq2-style
  median-ratio size factors computed, per replicate, on the features with ``>= min_count`` in
  ``>= min_n`` samples of that replicate. It also gives ``log10mean`` and (``save_mean_scaled``) the
  mean of the scaled replicates.
* :func:`label_keep` = ``labelKeep``: ``keep`` = ``>= min_count`` estimated counts in ``>= min_n`` samples.
* :func:`swish` = ``swish(y, x)`` -> ``swishTwoGroup``: ranks of each replicate after adding
  ``0.1 * runif`` jitter (R's ``rowRanks(ties.method = "average")``), the statistic ``mean_k(W_k)`` with
  ``W_k`` = rank sum of the second level minus its expectation; ``log2FC`` = median over replicates of
  ``log2(mean_B + pc) - log2(mean_A + pc)`` (``pc = 5``); the null statistics from ``getPerms``
  (all ``n!`` orderings from ``gtools::permutations`` when ``n <= 6`` and ``n! <= nperms``, else R's
  ``sample``); pooled permutation p-values (``qvalue::empPvals``), q-values (``qvalue::qvalue`` with
  ``pi0 = 1``, swish's default ``estPi0 = FALSE``, or ``qvalue::pi0est``'s smoother with ``est_pi0``) and
  local FDR (``qvalue::lfdr``).
* :func:`make_inf_reps` = ``makeInfReps`` (negative-binomial pseudo-replicates from a mean and variance).

Randomness: by default (``rng="R"``) the jitter and permutations are drawn from a re-implementation of R's
default generator (Mersenne-Twister, ``set.seed``'s scrambling, Inversion, ``sample.kind = "Rejection"``),
so ``swish(..., seed=1)`` reproduces ``set.seed(1); swish(y, x = "condition")`` exactly: the same
``stat``, ``pvalue`` and ``qvalue``. ``rng="numpy"`` uses ``numpy.random.default_rng(seed)`` instead.

Where this module differs from R:

* ``locfdr`` (``qvalue::lfdr``) re-implements R's ``density()`` (linear binning, FFT, ``bw.nrd0``) and
  ``smooth.spline`` (GCV, sbart.c's knots, penalty with its ``.3330`` weight and Brent search) in numpy,
  with scipy's banded Cholesky and a dense inverse for the leverages: it agrees with R to ~1e-12, not bit
  for bit (so do ``est_pi0``'s pi0 and q-values).
* The jitter is drawn in the samples' column order, as in R: R's numbers need R's sample order.
* :func:`make_inf_reps` draws with numpy, not R's ``rnbinom``: it matches R in distribution only.
* Only the two-group test is implemented (no ``cov``, ``pair``, ``interaction`` or ``cor``); only
  ``qvaluePkg = "qvalue"``.
* :func:`run_swish` reads salmon folders with :func:`diffbio_prob.io.tximport.tximport` (gene level with
  ``tx2gene``: each replicate summed per gene, as tximport does) and writes one table.

Example:
    >>> y = swish_data_from_tximport(tximport(dirs, tx_out=True, drop_inf_reps=False))  # doctest: +SKIP
    >>> y = label_keep(scale_inf_reps(y))                                                 # doctest: +SKIP
    >>> res = swish(y, ["A", "A", "B", "B"])                                              # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from diffbio_prob.io.rmath import col_sums as _col_sums
from diffbio_prob.io.rmath import mean as _r_mean
from diffbio_prob.io.rmath import median as _r_median
from diffbio_prob.io.rmath import row_means as _row_means

__all__ = [
    "RUN_SWISH_COLUMNS",
    "SWISH_COLUMNS",
    "RRandom",
    "SwishData",
    "emp_pvals",
    "label_keep",
    "lfdr",
    "make_inf_reps",
    "pi0est",
    "qvalue",
    "run_swish",
    "scale_inf_reps",
    "swish",
    "swish_data",
    "swish_data_from_tximport",
]

#: The columns of :func:`swish`'s table, in order.
SWISH_COLUMNS = ("keep", "log10mean", "stat", "log2FC", "pvalue", "locfdr", "qvalue")

_LD = np.longdouble


# ---------------------------------------------------------------------------------------------------
# R numerics
# ---------------------------------------------------------------------------------------------------











def _rank_average(m: np.ndarray) -> np.ndarray:
    """Row-wise ranks, ties averaged (matrixStats ``rowRanks(ties.method = "average")``)."""
    from scipy.stats import rankdata

    return rankdata(m, axis=1, method="average")


class RRandom:
    """R's default generator: ``set.seed(seed)`` then ``runif`` / ``sample`` (Mersenne-Twister, Inversion,
    ``sample.kind = "Rejection"``), bit for bit.

    >>> RRandom(1).runif(3)   # R: set.seed(1); runif(3)
    array([0.26550866, 0.3721239 , 0.57285336])
    """

    def __init__(self, seed: int):
        s = int(seed) & 0xFFFFFFFF
        for _ in range(50):                       # RNG_Init's initial scrambling
            s = (69069 * s + 1) & 0xFFFFFFFF
        seeds = np.empty(625, np.uint32)
        for j in range(625):
            s = (69069 * s + 1) & 0xFFFFFFFF
            seeds[j] = s
        # dummy[0] is mti (FixupSeeds sets it to 624: regenerate on first use), mt = dummy + 1
        self._bg = np.random.MT19937()
        self._bg.state = {"bit_generator": "MT19937", "state": {"key": seeds[1:].copy(), "pos": 624}}

    def unif_rand(self, n: int) -> np.ndarray:
        """``n`` draws of R's ``unif_rand()``: ``genrand_int32 * 2.3283064365386963e-10``, fixed into (0, 1)."""
        raw = self._bg.random_raw(int(n)).astype(float) if n > 0 else np.zeros(0)
        u = raw * 2.3283064365386963e-10
        u[u <= 0.0] = 0.5 * 2.328306437080797e-10
        u[1.0 - u <= 0.0] = 1.0 - 0.5 * 2.328306437080797e-10
        return u

    def runif(self, n: int) -> np.ndarray:
        """R ``runif(n)`` (min 0, max 1; ``unif_rand`` is already in (0, 1))."""
        return self.unif_rand(n)

    def _unif_index(self, dn: int) -> int:
        """R_unif_index under sample.kind = "Rejection"."""
        if dn <= 0:
            return 0
        bits = math.ceil(math.log2(dn))
        while True:
            v = 0
            for _ in range(0, bits + 1, 16):
                v1 = math.floor(self.unif_rand(1)[0] * 65536)
                v = 65536 * v + v1
            dv = v & ((1 << bits) - 1)
            if dn > dv:
                return dv

    def sample(self, n: int, size: int | None = None) -> np.ndarray:
        """R ``sample(n, size)`` without replacement (1-based values, as R)."""
        size = n if size is None else size
        x = list(range(n))
        out = np.empty(size, int)
        m = n
        for i in range(size):
            j = self._unif_index(m)
            out[i] = x[j] + 1
            m -= 1
            x[j] = x[m]
        return out


class _NumpyRandom:
    def __init__(self, seed):
        self._rng = np.random.default_rng(seed)

    def runif(self, n):
        return self._rng.random(int(n))

    def sample(self, n, size=None):
        size = n if size is None else size
        return self._rng.permutation(n)[:size] + 1


def _make_rng(rng: str, seed):
    if rng == "R":
        return RRandom(seed)
    return _NumpyRandom(seed)


# ---------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class SwishData:
    """What fishpond keeps in its SummarizedExperiment: counts, lengths, replicates and the row annotations.

    Attributes:
        counts: features x samples estimated counts (``labelKeep`` uses these).
        length: features x samples effective lengths, or ``None`` (no length correction).
        inf_reps: ``(features, samples, replicates)`` float64 array (R's ``infRepsArray``).
        inf_reps_scaled: whether :func:`scale_inf_reps` has been applied.
        log10mean: ``log10(mean of the scaled replicates + 1)`` per feature (after scaling), or ``None``.
        mean_scaled: features x samples mean of the scaled replicates (``save_mean_scaled``), or ``None``.
        keep: boolean per feature (:func:`label_keep`), or ``None``.
    """

    counts: pd.DataFrame
    length: pd.DataFrame | None
    inf_reps: np.ndarray
    inf_reps_scaled: bool = False
    log10mean: np.ndarray | None = None
    mean_scaled: pd.DataFrame | None = None
    keep: np.ndarray | None = None

    @property
    def features(self) -> pd.Index:
        return self.counts.index

    @property
    def samples(self) -> list[str]:
        return [str(s) for s in self.counts.columns]


def _as_matrix(x, name: str, index=None, columns=None) -> pd.DataFrame:
    if isinstance(x, pd.DataFrame):
        df = x
    else:
        try:
            arr = np.asarray(x, dtype=float)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: expected a numeric features x samples table, got {type(x).__name__}") from None
        if arr.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D features x samples table, got {arr.ndim} dimension(s)")
        df = pd.DataFrame(arr, index=index, columns=columns)
    try:
        vals = df.to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: values must be numeric") from None
    if vals.size == 0:
        raise ValueError(f"{name}: empty table")
    if not np.all(np.isfinite(vals)):
        raise ValueError(f"{name}: contains missing or infinite values")
    if np.any(vals < 0):
        raise ValueError(f"{name}: contains negative values")
    return pd.DataFrame(vals, index=df.index, columns=df.columns)


def swish_data(counts, length, inf_reps) -> SwishData:
    """Assemble and check a :class:`SwishData`.

    Args:
        counts: features x samples table (DataFrame or 2-D array).
        length: features x samples effective lengths (same shape), or ``None``.
        inf_reps: ``(features, samples, replicates)`` array; a mapping sample -> features x replicates
            table (tximport's ``inf_reps``); or a sequence of features x samples tables, one per replicate
            (fishpond's ``infRep1..`` assays).
    """
    counts = _as_matrix(counts, "counts")
    n_f, n_s = counts.shape
    if n_s < 2:
        raise ValueError(f"counts: need at least 2 samples, got {n_s}")
    if length is not None:
        length = _as_matrix(length, "length", counts.index, counts.columns)
        if length.shape != counts.shape:
            raise ValueError(f"length: shape {length.shape} differs from counts {counts.shape}")
        if np.any(length.to_numpy() <= 0):
            raise ValueError("length: lengths must be positive")
        length = pd.DataFrame(length.to_numpy(), index=counts.index, columns=counts.columns)
    if inf_reps is None:
        raise ValueError("inf_reps: there are no inferential replicates (salmon run without --numBootstraps / "
                         "--numGibbsSamples, or tximport with drop_inf_reps=True)")
    if isinstance(inf_reps, Mapping):
        missing = [s for s in counts.columns if s not in inf_reps]
        if missing:
            raise ValueError(f"inf_reps: no replicates for sample(s) {missing[:5]}")
        mats = [np.asarray(inf_reps[s], dtype=float) for s in counts.columns]
        shapes = {m.shape for m in mats}
        if len(shapes) != 1 or mats[0].ndim != 2:
            raise ValueError(f"inf_reps: the samples' replicate tables differ in shape: {sorted(shapes)}")
        arr = np.stack(mats, axis=1)
    elif isinstance(inf_reps, np.ndarray) and inf_reps.ndim == 3:
        arr = np.asarray(inf_reps, dtype=float)
    elif isinstance(inf_reps, Sequence) and not isinstance(inf_reps, (str, bytes)):
        mats = [np.asarray(m, dtype=float) for m in inf_reps]
        if not mats or any(m.shape != (n_f, n_s) for m in mats):
            raise ValueError(f"inf_reps: expected a non-empty list of {n_f} x {n_s} tables")
        arr = np.stack(mats, axis=2)
    else:
        raise TypeError(f"inf_reps: expected a 3-D array, a mapping sample -> table or a list of tables, got "
                        f"{type(inf_reps).__name__}")
    if arr.shape[:2] != (n_f, n_s) or arr.shape[2] < 1:
        raise ValueError(f"inf_reps: shape {arr.shape} does not match counts {counts.shape} x replicates")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("inf_reps: replicates must be finite and non-negative")
    return SwishData(counts=counts, length=length, inf_reps=np.ascontiguousarray(arr))


def swish_data_from_tximport(txi) -> SwishData:
    """A :class:`SwishData` from :func:`diffbio_prob.io.tximport.tximport` run with ``drop_inf_reps=False``."""
    if not getattr(txi, "inf_reps", None):
        raise ValueError("inf_reps: the tximport result has no inferential replicates; run tximport with "
                         "drop_inf_reps=False on salmon output made with --numBootstraps or --numGibbsSamples")
    return swish_data(txi.counts, txi.length, txi.inf_reps)


def make_inf_reps(mean, variance, num_reps: int, *, min_disp: float = 0.001, seed=None) -> np.ndarray:
    """fishpond ``makeInfReps``: negative-binomial pseudo-replicates from a mean and variance per feature and sample.

    ``disp = max(min_disp, (variance - mean) / mean^2)`` where ``mean > 0`` (else ``min_disp``), and each
    replicate draws ``NB(mu = mean, size = 1 / disp)``. The draws come from numpy
    (``numpy.random.default_rng(seed)``), not R's ``rnbinom``, so they match R in distribution only.

    Returns:
        A ``(features, samples, num_reps)`` array for :func:`swish_data`.
    """
    m = _as_matrix(mean, "mean").to_numpy(float)
    v = _as_matrix(variance, "variance").to_numpy(float)
    if m.shape != v.shape:
        raise ValueError(f"variance: shape {v.shape} differs from mean {m.shape}")
    if isinstance(num_reps, bool) or not isinstance(num_reps, (int, np.integer)) or num_reps < 2:
        raise ValueError(f"num_reps: expected an integer > 1, got {num_reps!r}")
    if isinstance(min_disp, bool) or not isinstance(min_disp, (int, float, np.integer, np.floating)) \
            or not np.isfinite(min_disp) or min_disp <= 0:
        raise ValueError(f"min_disp: expected a positive number, got {min_disp!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        disp = np.where(m > 0, np.maximum(min_disp, (v - m) / (m * m)), min_disp)
    size = 1.0 / disp
    prob = size / (size + m)
    gen = np.random.default_rng(seed)
    return np.stack([gen.negative_binomial(size, prob).astype(float) for _ in range(int(num_reps))], axis=2)


def _check_count_args(min_count, min_n):
    if isinstance(min_count, bool) or not isinstance(min_count, (int, float, np.integer, np.floating)) \
            or not np.isfinite(min_count):
        raise ValueError(f"min_count: expected a finite number, got {min_count!r}")
    if isinstance(min_n, bool) or not isinstance(min_n, (int, float, np.integer, np.floating)) \
            or not np.isfinite(min_n) or min_n < 0:
        raise ValueError(f"min_n: expected a non-negative number, got {min_n!r}")


# ---------------------------------------------------------------------------------------------------
# scaleInfReps, labelKeep
# ---------------------------------------------------------------------------------------------------

def scale_inf_reps(
    y,
    length=None,
    inf_reps=None,
    *,
    length_correct: bool = True,
    mean_depth: float | None = None,
    sf_fun=None,
    min_count: float = 10,
    min_n: float = 3,
    save_mean_scaled: bool = False,
) -> SwishData:
    """fishpond ``scaleInfReps``: scale each inferential replicate for length and library size.

    Args:
        y: a :class:`SwishData`, or the counts table (then ``length`` and ``inf_reps`` as in :func:`swish_data`).
        length_correct: divide by the feature length (normalised by its geometric mean over samples).
        mean_depth: target library size (default: the geometric mean of the count columns' totals).
        sf_fun: ``None`` (median-ratio size factors per replicate), a callable ``cts -> size factors``,
            or a sequence of fixed size factors (one per sample; then no depth scaling, as R).
        min_count, min_n: a feature enters a replicate's size factors when ``>= min_count`` in ``>= min_n``
            samples of that (unscaled) replicate.
        save_mean_scaled: keep the mean of the scaled replicates (R's ``meanScaled`` assay).

    Returns:
        A new :class:`SwishData` with scaled replicates and ``log10mean``.
    """
    if not isinstance(y, SwishData):
        y = swish_data(y, length, inf_reps)
    elif length is not None or inf_reps is not None:
        raise ValueError("length: give length / inf_reps only with a counts table, not with a SwishData")
    if y.inf_reps_scaled:
        raise ValueError("y: inferential replicates already scaled")
    for name, v in (("length_correct", length_correct), ("save_mean_scaled", save_mean_scaled)):
        if not isinstance(v, (bool, np.bool_)):
            raise TypeError(f"{name}: expected True or False, got {type(v).__name__}")
    _check_count_args(min_count, min_n)
    n_f, n_s, n_r = y.inf_reps.shape
    fixed_sf = None
    if sf_fun is not None and not callable(sf_fun):
        try:
            fixed_sf = np.asarray(sf_fun, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            raise TypeError("sf_fun: expected None, a function or numeric size factors") from None
        if fixed_sf.size != n_s or not np.all(np.isfinite(fixed_sf)) or np.any(fixed_sf <= 0):
            raise ValueError(f"sf_fun: expected {n_s} positive size factors")
    counts = y.counts.to_numpy(float)
    if mean_depth is None and fixed_sf is None:
        mean_depth = math.exp(_r_mean(np.log(_col_sums(counts))))
    elif mean_depth is not None:
        if isinstance(mean_depth, bool) or not isinstance(mean_depth, (int, float, np.integer, np.floating)) \
                or not np.isfinite(mean_depth) or mean_depth <= 0:
            raise ValueError(f"mean_depth: expected a positive number, got {mean_depth!r}")
        mean_depth = float(mean_depth)
    lengths = y.length.to_numpy(float) if y.length is not None else None
    if lengths is None:
        length_correct = False
    reps = np.empty_like(y.inf_reps)
    means = np.empty((n_f, n_r))
    for k in range(n_r):
        rep = y.inf_reps[:, :, k]
        if length_correct:
            lengths = lengths / np.exp(_row_means(np.log(lengths)))[:, None]   # R redoes this per replicate
            cts = rep / lengths
        else:
            cts = rep
        if fixed_sf is None:
            cts = cts / _col_sums(cts)[None, :] * mean_depth
            if sf_fun is None:
                use = (rep >= min_count).sum(axis=1) >= min_n
                with np.errstate(divide="ignore", invalid="ignore"):
                    lc = np.log(cts[use, :])
                    loggeomeans = _row_means(lc)
                    fin = np.isfinite(loggeomeans)
                    sf = np.array([math.exp(_r_median((lc[:, j] - loggeomeans)[fin])) for j in range(n_s)])
            else:
                sf = np.asarray(sf_fun(cts), dtype=float).reshape(-1)
                if sf.size != n_s:
                    raise ValueError(f"sf_fun: returned {sf.size} size factors for {n_s} samples")
        else:
            sf = fixed_sf
        reps[:, :, k] = cts / sf[None, :]
        means[:, k] = _row_means(reps[:, :, k])
    log10mean = np.log10(_row_means(means) + 1)
    mean_scaled = None
    if save_mean_scaled:
        mean_scaled = pd.DataFrame(_row_means(reps.reshape(n_f * n_s, n_r)).reshape(n_f, n_s),
                                   index=y.counts.index, columns=y.counts.columns)
    return dataclasses.replace(y, inf_reps=reps, inf_reps_scaled=True, log10mean=log10mean,
                               mean_scaled=mean_scaled)


def _min_n_from_condition(condition, n_s) -> float:
    cat = _as_condition(condition, n_s, None, two_levels=False)
    m = float(np.min(np.bincount(cat.codes, minlength=len(cat.categories))))
    if m > 10:
        m = 10 + (m - 10) * 0.7
    return m


def label_keep(y, *, min_count: float = 10, min_n: float = 3, condition=None):
    """fishpond ``labelKeep``: keep features with ``>= min_count`` estimated counts in ``>= min_n`` samples.

    Args:
        y: a :class:`SwishData` (returns a copy with ``keep`` set) or a features x samples counts table
            (returns a boolean Series).
        condition: R's ``x``: when given, ``min_n`` = the smallest group size (shrunk above 10 as R).
    """
    _check_count_args(min_count, min_n)
    counts = y.counts if isinstance(y, SwishData) else _as_matrix(y, "y")
    if condition is not None:
        min_n = _min_n_from_condition(condition, counts.shape[1])
    keep = (counts.to_numpy(float) >= min_count).sum(axis=1) >= min_n
    if isinstance(y, SwishData):
        return dataclasses.replace(y, keep=keep)
    return pd.Series(keep, index=counts.index, name="keep")


# ---------------------------------------------------------------------------------------------------
# swish
# ---------------------------------------------------------------------------------------------------

def _as_condition(condition, n_s: int, levels, two_levels: bool = True) -> pd.Categorical:
    if isinstance(condition, (str, bytes)) or condition is None:
        raise TypeError(f"condition: expected one label per sample, got {type(condition).__name__}")
    if isinstance(condition, pd.Categorical):
        cat = condition
    elif isinstance(condition, pd.Series) and isinstance(condition.dtype, pd.CategoricalDtype):
        cat = pd.Categorical(condition)
    else:
        vals = list(condition)
        if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in vals):
            raise ValueError("condition: contains missing values")
        cat = pd.Categorical([str(v) for v in vals])
    if levels is not None:
        levels = [str(v) for v in levels]
        if len(set(levels)) != len(levels):
            raise ValueError(f"levels: duplicated level in {levels}")
        unknown = sorted(set(map(str, cat.astype(str))) - set(levels))
        if unknown:
            raise ValueError(f"levels: condition values {unknown} are not among the levels {levels}")
        cat = pd.Categorical(cat.astype(str), categories=levels)
    if len(cat) != n_s:
        raise ValueError(f"condition: {len(cat)} labels for {n_s} samples")
    if np.any(cat.codes < 0):
        raise ValueError("condition: contains missing values")
    if two_levels and len(cat.categories) != 2:
        raise ValueError(f"condition: swish's two-group test needs exactly 2 levels, got "
                         f"{len(cat.categories)} ({list(map(str, cat.categories))})")
    return cat


def _perms(n: int, nperms: int, rng) -> np.ndarray:
    """fishpond ``getPerms``: 0-based sample orderings, one per row."""
    if n <= 6:
        out0 = np.array(list(itertools.permutations(range(n))), dtype=int)   # gtools::permutations order
        if out0.shape[0] > nperms:
            idx = rng.sample(out0.shape[0], nperms) - 1
            return out0[idx]
        return out0
    return np.stack([rng.sample(n) - 1 for _ in range(nperms)])


def _w_sums(ranks: np.ndarray, cond2: np.ndarray) -> np.ndarray:
    """Per feature, sum over replicates of (rank sum of cond2 - n2 (n + 1) / 2), as exact doubles."""
    n_s = ranks.shape[1]
    rs = ranks[:, cond2, :].sum(axis=1)                    # features x reps
    w = rs - cond2.sum() * (n_s + 1) / 2.0
    return w


def emp_pvals(stat: np.ndarray, stat0: np.ndarray) -> np.ndarray:
    """``qvalue::empPvals(stat, stat0, pool = TRUE)``: the share of pooled null statistics above each one."""
    stat = np.asarray(stat, float)
    s0 = np.sort(np.asarray(stat0, float).ravel())
    m0 = s0.size
    # R orders c(stat, stat0) decreasingly (stable: an observed value precedes equal nulls), so a p-value
    # counts the nulls strictly greater than the statistic.
    greater = m0 - np.searchsorted(s0, stat, side="right")
    return np.maximum(greater / m0, 1.0 / m0)


def qvalue(p: np.ndarray, pi0: float = 1.0) -> np.ndarray:
    """``qvalue::qvalue(p, pi0)$qvalues`` (``pfdr = FALSE``)."""
    p = np.asarray(p, float)
    m = p.size
    o = np.argsort(-p, kind="stable")
    i = np.arange(m, 0, -1)
    q = np.minimum(1.0, np.minimum.accumulate(p[o] * m / i))
    out = np.empty(m)
    out[o] = pi0 * q
    return out


def _bw_nrd0(x: np.ndarray) -> float:
    hi = float(np.std(x, ddof=1))
    q75, q25 = np.quantile(x, [0.75, 0.25])
    iqr = float(q75 - q25)
    lo = min(hi, iqr / 1.34)
    if not lo > 0:
        lo = hi or abs(float(x[0])) or 1.0
    return 0.9 * lo * x.size ** (-0.2)


def _r_density(x: np.ndarray, adjust: float = 1.0, n: int = 512, cut: float = 3.0):
    """R ``density(x, adjust)`` (gaussian kernel, bw.nrd0, linear binning + FFT, approx onto n points)."""
    nx = x.size
    bw = adjust * _bw_nrd0(x)
    n_user = n
    n = max(n, 512)
    if n > 512:
        n = 2 ** math.ceil(math.log2(n))
    lo_user, hi_user = float(x.min()) - cut * bw, float(x.max()) + cut * bw
    lo, up = lo_user - 4 * bw, hi_user + 4 * bw
    # BinDist(x, weights = 1/nx, lo, up, n): 2n bins
    y = np.zeros(2 * n)
    xdelta = (up - lo) / (n - 1)
    xpos = (x - lo) / xdelta
    ix = np.floor(xpos).astype(int)
    fx = xpos - ix
    w = 1.0 / nx
    ok = (ix >= 0) & (ix <= n - 2)
    np.add.at(y, ix[ok], w * (1 - fx[ok]))
    np.add.at(y, ix[ok] + 1, w * fx[ok])
    np.add.at(y, np.zeros(int(np.sum(ix == -1)), int), w * fx[ix == -1])
    np.add.at(y, np.full(int(np.sum(ix == n - 1)), n - 1), w * (1 - fx[ix == n - 1]))
    kords = np.linspace(0, 2 * (up - lo), 2 * n)
    kords[n + 1:] = -kords[n - 1:0:-1]
    kords = np.exp(-0.5 * (kords / bw) ** 2) / (bw * math.sqrt(2 * math.pi))
    kords = np.fft.ifft(np.fft.fft(y) * np.conj(np.fft.fft(kords))).real   # R: fft(..., inverse=TRUE)/length
    kords = np.maximum(0, kords[:n])
    xords = np.linspace(lo, up, n)
    xout = np.linspace(lo_user, hi_user, n_user)
    return xout, np.interp(xout, xords, kords)


def _nknots_smspl(n):
    if n < 50:
        return n
    a1, a2, a3, a4 = math.log2(50), math.log2(100), math.log2(140), math.log2(200)
    if n < 200:
        v = 2 ** (a1 + (a2 - a1) * (n - 50) / 150)
    elif n < 800:
        v = 2 ** (a2 + (a3 - a2) * (n - 200) / 600)
    elif n < 3200:
        v = 2 ** (a3 + (a4 - a3) * (n - 800) / 2400)
    else:
        v = 200 + (n - 3200) ** 0.2
    return math.trunc(v)


def _seq_len_out(fr, to, n):
    """R ``seq.int(fr, to, length.out = n)`` (the C code's two-sided fill)."""
    out = np.empty(n)
    out[0] = fr
    if n > 1:
        out[-1] = to
    if n > 2:
        by = (to - fr) / (n - 1)
        for i in range(1, n - 1):
            out[i] = fr + i * by if i < n // 2 else to - (n - 1 - i) * by
    return out


def _smooth_spline(x, y, df: float | None = None):
    """R ``smooth.spline(x, y)``: GCV, ``.nknots.smspl`` knots, ``spar`` found by sbart.c's Brent search on
    [-1.5, 1.5] (tol 1e-4, eps 2e-8), lambda = ratio * 256^(3 spar - 1). For distinct ``x`` and unit weights
    (what ``qvalue::lfdr`` passes: ``density()``'s grid). ``df``: R's ``df =`` (criterion ``3 + (df - tr S)^2``
    instead of GCV), as ``qvalue::pi0est`` uses. Returns the fitted spline's predictor (interior x)."""
    from scipy.interpolate import BSpline
    from scipy.linalg import cho_solve_banded, cholesky_banded

    o = np.argsort(x, kind="stable")
    ux, ybar = np.asarray(x, float)[o], np.asarray(y, float)[o]
    nx = ux.size
    r_ux = ux[-1] - ux[0]
    xbar = (ux - ux[0]) / r_ux
    nknots = _nknots_smspl(nx)
    idx = np.floor(_seq_len_out(1.0, float(nx), nknots)).astype(int) - 1
    knot = np.concatenate([np.repeat(xbar[0], 3), xbar[idx], np.repeat(xbar[-1], 3)])
    nk = nknots + 2
    X = BSpline.design_matrix(xbar, knot, 3).toarray()
    xtx = X.T @ X
    xwy = X.T @ ybar
    # SIGMA: Gram matrix of B''; B'' is linear on each knot interval, 2-point Gauss is exact
    # SIGMA as R's sgram: B'' is linear on each knot interval (and continuous at the simple interior
    # knots); R integrates the products with the weights 1, 1/2 and .3330 (not 1/3)
    uk = np.unique(knot)
    vals = np.stack([BSpline(knot, np.eye(nk)[j], 3).derivative(2)(uk) for j in range(nk)])   # nk x n_uk
    h = np.diff(uk)
    lft, dd = vals[:, :-1], np.diff(vals, axis=1)
    sig = (np.einsum("t,it,jt->ij", h, lft, lft) + 0.5 * (np.einsum("t,it,jt->ij", h, dd, lft)
           + np.einsum("t,it,jt->ij", h, lft, dd)) + 0.3330 * np.einsum("t,it,jt->ij", h, dd, dd))
    ratio = np.trace(xtx[2:nk - 3, 2:nk - 3]) / np.trace(sig[2:nk - 3, 2:nk - 3])
    ssw = 0.0
    sumw = float(nx)
    df_target = df
    state = {}

    def crit(spar):
        lam = ratio * 16.0 ** (spar * 6.0 - 2.0)
        a = xtx + lam * sig
        ab = np.zeros((4, nk))   # upper band storage for solveh_banded / cholesky_banded
        for k in range(4):
            ab[3 - k, k:] = np.diagonal(a, k)
        cb = cholesky_banded(ab)
        coef = cho_solve_banded((cb, False), xwy)
        sz = X @ coef
        ainv = cho_solve_banded((cb, False), np.eye(nk))
        lev = np.sum((X @ ainv) * X, axis=1)
        rss = ssw + float(np.sum((ybar - sz) ** 2))
        df = float(np.sum(lev))
        state["coef"] = coef
        if df_target is not None:
            return 3.0 + (df_target - df) ** 2
        return (rss / sumw) / ((1.0 - df / sumw) ** 2)

    ax, bx, tol, eps, maxit = -1.5, 1.5, 1e-4, 2e-8, 500
    c = .381966011250105151795413165634
    a, b = ax, bx
    v = w = xx = a + c * (b - a)
    e = d = 0.0
    fx = crit(xx)
    fv = fw = fx
    it = 0
    while True:
        xm = (a + b) * .5
        tol1 = eps * abs(xx) + tol / 3.
        tol2 = tol1 * 2.
        it += 1
        if abs(xx - xm) <= tol2 - (b - a) * .5 or it > maxit:
            break
        golden = True
        if abs(e) > tol1:
            r = (xx - w) * (fx - fv)
            q = (xx - v) * (fx - fw)
            p = (xx - v) * q - (xx - w) * r
            q = (q - r) * 2.
            if q > 0.:
                p = -p
            q = abs(q)
            r = e
            e = d
            if not (abs(p) >= abs(.5 * q * r) or q == 0.) and not (p <= q * (a - xx) or p >= q * (b - xx)):
                d = p / q
                u = xx + d
                if u - a < tol2 or b - u < tol2:
                    d = math.copysign(tol1, xm - xx)
                golden = False
        if golden:
            e = (a - xx) if xx >= xm else (b - xx)
            d = c * e
        u = xx + (d if abs(d) >= tol1 else math.copysign(tol1, d))
        fu = crit(u)
        if fu <= fx:
            if u >= xx:
                a = xx
            else:
                b = xx
            v, fv = w, fw
            w, fw = xx, fx
            xx, fx = u, fu
        else:
            if u < xx:
                a = u
            else:
                b = u
            if fu <= fw or w == xx:
                v, fv = w, fw
                w, fw = u, fu
            elif fu <= fv or v == xx or v == w:
                v, fv = u, fu
    coef = state["coef"]   # sbart keeps the coefficients of the last evaluation
    spl = BSpline(knot, coef, 3)

    def predict(xn):
        return spl((np.asarray(xn, float) - ux[0]) / r_ux)
    predict.spar = xx
    return predict


def pi0est(p: np.ndarray, smooth_df: float = 3) -> float:
    """``qvalue::pi0est(p)``: Storey's pi0, ``lambda = seq(0.05, 0.95, 0.05)``, ``pi0.method = "smoother"``
    (``smooth.spline(lambda, pi0, df = 3)``), the smoothed value at lambda = 0.95, capped at 1."""
    p = np.asarray(p, float)
    lam = np.minimum(0.05 + np.arange(19) * 0.05, 0.95)     # R: seq(0.05, 0.95, 0.05)
    m = p.size
    pi0 = np.array([np.sum(p >= v) for v in lam]) / (m * (1 - lam))
    smooth = _smooth_spline(lam, pi0, df=smooth_df)(lam)
    out = min(float(smooth[-1]), 1.0)
    if not out > 0:
        raise ValueError("p: the estimated pi0 <= 0; check that the p-values are valid")
    return out


def lfdr(p: np.ndarray, pi0: float = 1.0, adj: float = 1.5, eps: float = 1e-8) -> np.ndarray:
    """``qvalue::lfdr(p, pi0)`` (probit transform, ``density(adjust = 1.5)``, ``smooth.spline``, truncated at 1,
    monotone)."""
    from scipy.stats import norm

    p = np.minimum(np.maximum(np.asarray(p, float), eps), 1 - eps)
    x = norm.ppf(p)
    dx, dy = _r_density(x, adjust=adj)
    yv = _smooth_spline(dx, dy)(x)
    out = pi0 * norm.pdf(x) / yv
    out[out > 1] = 1.0
    o = np.argsort(p, kind="stable")
    res = np.empty_like(out)
    res[o] = np.maximum.accumulate(out[o])
    return res


def swish(
    y: SwishData,
    condition,
    *,
    levels: Sequence[str] | None = None,
    nperms: int = 100,
    pc: float = 5,
    est_pi0: bool = False,
    seed: int = 1,
    rng: str = "R",
    quiet: bool = True,
) -> pd.DataFrame:
    """fishpond ``swish(y, x)``, two-group: rank statistic, log2FC, permutation p-values, q-values.

    Args:
        y: a :class:`SwishData` (normally after :func:`scale_inf_reps`; :func:`label_keep` is applied with
            its defaults when ``keep`` is not set, as R does).
        condition: one label per sample (a ``pandas.Categorical`` keeps its level order; otherwise the
            levels are sorted, as R's ``factor``). The log2FC is second level vs first.
        levels: the level order (first = reference), overriding the condition's.
        nperms: number of permutations (with ``<= 6`` samples and fewer orderings than this, all are used).
        pc: pseudocount of the log2FC.
        est_pi0: estimate pi0 with ``qvalue::pi0est`` (R's default ``FALSE``: pi0 = 1).
        seed: the ``set.seed`` value (``rng="R"``) or numpy seed (``rng="numpy"``).
        rng: ``"R"`` (R's generator, reproduces ``set.seed(seed); swish(...)``) or ``"numpy"``.
        quiet: no note on stderr when fewer permutations are available than requested.

    Returns:
        A features x (:data:`SWISH_COLUMNS`) table; the statistics are NaN where ``keep`` is False.
    """
    if not isinstance(y, SwishData):
        raise TypeError(f"y: expected a SwishData (see swish_data / scale_inf_reps), got {type(y).__name__}")
    if isinstance(nperms, bool) or not isinstance(nperms, (int, np.integer)) or nperms < 1:
        raise ValueError(f"nperms: expected a positive integer, got {nperms!r}")
    if isinstance(pc, bool) or not isinstance(pc, (int, float, np.integer, np.floating)) or not np.isfinite(pc) \
            or pc < 0:
        raise ValueError(f"pc: expected a non-negative number, got {pc!r}")
    if not isinstance(est_pi0, (bool, np.bool_)):
        raise TypeError(f"est_pi0: expected True or False, got {type(est_pi0).__name__}")
    if rng not in ("R", "numpy"):
        raise ValueError(f"rng: expected 'R' or 'numpy', got {rng!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an integer, got {seed!r}")  # noqa: TRY004 - ValueError for bad values
    n_f, n_s, n_r = y.inf_reps.shape
    cat = _as_condition(condition, n_s, levels)
    cond2 = np.asarray(cat.codes == 1)
    if n_s == 2 or cond2.sum() < 2:
        raise ValueError("condition: too few samples to compute the rank sum statistic (the second level needs "
                         ">= 2 samples)")
    if y.keep is None:
        y = label_keep(y)
    keep = np.asarray(y.keep, bool)
    if not keep.any():
        raise ValueError("y: all rows have keep == False, no features to test")
    arr = y.inf_reps[keep]
    if y.inf_reps_scaled:
        log10mean = np.asarray(y.log10mean, float)
    else:
        log10mean = np.full(n_f, np.nan)
        log10mean[keep] = np.log10(arr.mean(axis=(1, 2)) + 1)
    r = _make_rng(rng, seed)
    n_k = arr.shape[0]
    ranks = np.empty_like(arr)
    for k in range(n_r):
        jitter = r.runif(n_k * n_s).reshape(n_s, n_k).T          # R fills column-major
        ranks[:, :, k] = _rank_average(arr[:, :, k] + 0.1 * jitter)
    w = _w_sums(ranks, cond2)
    stat = _row_means(w)
    cond1 = np.asarray(cat.codes == 0)
    diffs = np.empty((n_k, n_r))
    for k in range(n_r):
        diffs[:, k] = np.log2(_row_means(arr[:, cond2, k]) + pc) - np.log2(_row_means(arr[:, cond1, k]) + pc)
    log2fc = np.median(diffs, axis=1)   # matrixStats rowMedians: (a + b) / 2 for an even count
    perms = _perms(n_s, int(nperms), r)
    if perms.shape[0] < nperms and not quiet:
        print(f"swish: note: less permutations are available than requested; {perms.shape[0]} are available",
              file=sys.stderr)
    nulls = np.empty((n_k, perms.shape[0]))
    for p in range(perms.shape[0]):
        nulls[:, p] = _row_means(_w_sums(ranks, cond2[perms[p]]))
    if np.all(stat == 0):
        raise ValueError("y: all statistics equal to zero, check input")
    pvalue = emp_pvals(np.abs(stat), np.abs(nulls))
    pi0 = pi0est(pvalue) if est_pi0 else 1.0
    qv = qvalue(pvalue, pi0)
    try:
        lf = lfdr(pvalue, pi0)
    except (ValueError, np.linalg.LinAlgError, ZeroDivisionError):   # a degenerate density (one distinct p)
        lf = np.full(n_k, np.nan)
    out = pd.DataFrame(index=y.counts.index)
    out["keep"] = keep
    out["log10mean"] = log10mean
    for name, vals in (("stat", stat), ("log2FC", log2fc), ("pvalue", pvalue), ("locfdr", lf), ("qvalue", qv)):
        col = np.full(n_f, np.nan)
        col[keep] = vals
        out[name] = col
    out.attrs["levels"] = [str(v) for v in cat.categories]
    out.attrs["nperms"] = int(perms.shape[0])
    out.attrs["pi0"] = pi0
    return out


# ---------------------------------------------------------------------------------------------------
# salmon folders -> table
# ---------------------------------------------------------------------------------------------------

#: The columns :func:`run_swish` writes (after the feature id), in order.
RUN_SWISH_COLUMNS = ("keep", "log10mean", "log2FoldChange", "stat", "pvalue", "locfdr", "padj")


def _bool_arg(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def run_swish(
    salmon_dirs,
    metadata,
    out,
    *,
    level: str = "transcript",
    tx2gene=None,
    condition: str = "condition",
    levels: Sequence[str] | None = None,
    nperms: int = 100,
    seed: int = 1,
    rng: str = "R",
    min_count: float = 10,
    min_n: float = 3,
    pc: float = 5,
    est_pi0: bool = False,
    sample_names: Sequence[str] | None = None,
    quiet: bool = False,
) -> pd.DataFrame:
    """salmon folders (with bootstraps or Gibbs draws) -> tximport -> fishpond swish -> one results table.

    The R equivalent is ``y <- scaleInfReps(y); y <- labelKeep(y); set.seed(seed); swish(y, x = condition)``
    on tximport's counts, lengths and inferential replicates (gene level: the replicates summed per gene).

    Args:
        salmon_dirs: salmon output folders (or ``quant.sf`` files), or a mapping sample -> folder; the
            sample names (default: the folder names) must be the metadata's sample names.
        metadata: sample table: a CSV/TSV path (first column = sample names) or a DataFrame indexed by sample.
        out: results table path (CSV; ``.tsv`` for tab-separated, ``.gz`` to compress), written atomically.
        level: ``"transcript"`` or ``"gene"`` (needs ``tx2gene``).
        tx2gene: transcript -> gene table (path or DataFrame) for ``level="gene"``.
        condition: the metadata column with the two groups (R's ``x``).
        levels: the group order, reference first (default: a categorical column's order, else sorted).
        nperms, pc: as :func:`swish`.
        seed, rng: ``rng="R"`` reproduces R's ``set.seed(seed)`` exactly; ``"numpy"`` uses numpy's generator.
        min_count, min_n: :func:`label_keep` (and the size-factor filter of :func:`scale_inf_reps`).
        est_pi0: estimate pi0 for the q-values and local FDR (R's ``estPi0``; default pi0 = 1).
        sample_names: one name per salmon folder (default: the mapping's keys or the folder names).
        quiet: no summary line on stderr.

    Returns:
        The table written: index ``transcript`` / ``gene`` (every feature), columns
        :data:`RUN_SWISH_COLUMNS`: ``log2FoldChange`` = swish's log2FC (second level vs first),
        ``padj`` = swish's ``qvalue``; the statistics are ``NA`` where ``keep`` is False.

    Every argument is checked before salmon's files are read, and nothing is written on an error.

    The jitter that breaks near-ties is drawn sample by sample in the order of ``salmon_dirs``: with R's
    sample order (its ``colData`` order) and seed the table is R's exactly; another order gives another
    draw (the same calls up to a few features near the cut-off).
    """
    from diffbio_prob.io.atomic import check_output_path
    from diffbio_prob.io.counts import read_metadata, write_table
    from diffbio_prob.io.tximport import tximport

    quiet = _bool_arg(quiet, "quiet")
    est_pi0 = _bool_arg(est_pi0, "est_pi0")
    if level not in ("transcript", "gene"):
        raise ValueError(f"level: expected 'transcript' or 'gene', got {level!r}")
    if level == "gene" and tx2gene is None:
        raise ValueError("tx2gene: level='gene' needs a transcript -> gene table")
    if level == "transcript" and tx2gene is not None:
        raise ValueError("tx2gene: only used with level='gene' (transcript-level swish needs no tx2gene)")
    if not isinstance(condition, str) or not condition:
        raise ValueError(f"condition: expected a metadata column name, got {condition!r}")
    if isinstance(nperms, bool) or not isinstance(nperms, (int, np.integer)) or nperms < 1:
        raise ValueError(f"nperms: expected a positive integer, got {nperms!r}")
    if rng not in ("R", "numpy"):
        raise ValueError(f"rng: expected 'R' or 'numpy', got {rng!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an integer, got {seed!r}")  # noqa: TRY004 - ValueError for bad values
    if isinstance(pc, bool) or not isinstance(pc, (int, float, np.integer, np.floating)) or not np.isfinite(pc) \
            or pc < 0:
        raise ValueError(f"pc: expected a non-negative number, got {pc!r}")
    _check_count_args(min_count, min_n)
    if salmon_dirs is None or (not isinstance(salmon_dirs, (str, bytes, Mapping)) and hasattr(salmon_dirs, "__len__")
                               and len(salmon_dirs) == 0):
        raise ValueError("salmon_dirs: no salmon folders given")
    check_output_path(out, "out", "file")
    if isinstance(metadata, pd.DataFrame):
        meta = metadata.copy()
    elif metadata is None:
        raise ValueError("metadata: a sample table with the condition column is required")
    else:
        meta = read_metadata(metadata)
    meta.index = pd.Index([str(s) for s in meta.index])
    if meta.index.has_duplicates:
        raise ValueError("metadata: duplicated sample names in the index")
    if condition not in meta.columns:
        raise ValueError(f"condition: {condition!r} is not a metadata column (columns: {list(map(str, meta.columns))})")
    col = meta[condition]
    if col.isna().any():
        raise ValueError(f"condition: metadata column {condition!r} has missing values")
    def cond_of(c):
        return pd.Categorical(c) if isinstance(c.dtype, pd.CategoricalDtype) else [str(v) for v in c]

    _as_condition(cond_of(col), len(col), levels)   # two levels; labels among `levels`: fail before reading

    txi = tximport(salmon_dirs, type="salmon", tx2gene=tx2gene, tx_out=level == "transcript", drop_inf_reps=False,
                    sample_names=sample_names)
    samples = txi.samples
    missing = [s for s in samples if s not in meta.index]
    if missing:
        raise ValueError(f"metadata: salmon sample(s) {missing[:5]} are not in the metadata's sample names "
                         f"{list(meta.index)[:10]}")
    extra = [s for s in meta.index if s not in samples]
    if extra:
        raise ValueError(f"metadata: sample(s) {extra[:5]} have no salmon folder (salmon samples: {samples[:10]})")
    cond = cond_of(meta.loc[samples, condition])
    y = swish_data_from_tximport(txi)
    y = scale_inf_reps(y, min_count=min_count, min_n=min_n)
    y = label_keep(y, min_count=min_count, min_n=min_n)
    res = swish(y, cond, levels=levels, nperms=int(nperms), pc=pc, est_pi0=est_pi0, seed=int(seed), rng=rng,
                quiet=quiet)
    table = pd.DataFrame({
        "keep": res["keep"], "log10mean": res["log10mean"], "log2FoldChange": res["log2FC"], "stat": res["stat"],
        "pvalue": res["pvalue"], "locfdr": res["locfdr"], "padj": res["qvalue"],
    }, index=pd.Index(res.index, name=level))
    table.attrs.update(res.attrs)
    write_table(table, out)
    if not quiet:
        lv_used = res.attrs["levels"]
        print(f"swish: {len(table)} {level}s ({int(table['keep'].sum())} kept), {len(samples)} samples, "
              f"{lv_used[1]} vs {lv_used[0]}, {res.attrs['nperms']} permutations: "
              f"{int((table['padj'] < 0.1).sum())} with qvalue < 0.1; wrote {out}", file=sys.stderr)
    return table
