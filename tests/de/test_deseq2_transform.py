"""DESeq2's transformations (:mod:`diffbio_prob.workflows.deseq2.transform`) against R DESeq2 1.38.3.

References (``tests/reference/data/deseq2_transform``, made by ``make_transform_reference.R`` and
``make_helper_reference.R``, ``make_replace_reference.R`` there) on the marioni table
(``deseq2_real/marioni/counts.csv.gz``):

* ``run_*``: all 10 samples, ``~ run + condition``; R's parametric trend fits (the closed-form VST).
* ``2v2_*``: 2 kidney vs 2 liver samples, ``~ condition``; R's parametric trend fails and R falls back to
  the local fit (so does ours, with a warning): the numerically integrated VST.

Each file holds 12 significant digits for every 6th gene (the transformations use all genes). The bar:
``|ours - R| <= RTOL |R| + ATOL`` with ``RTOL = 1e-6``, ``ATOL = 1e-8`` (what we see today is ~1e-11
relative, ~5e-9 for values near 0: the files' rounding); normalised counts to the files' rounding.
Also PyDESeq2's copies of R's ``varianceStabilizingTransformation`` on the synthetic 10-gene set
(``deseq2_ref/single_factor``: blind, with the design, ``fitType = "mean"``), and (``slow``) the transform files of
``deseq2_real`` (R's ``vst()``, ``rlog(blind = TRUE)``, normalised counts on all genes of 5 real-data cases).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diffbio_prob.workflows.deseq2 import fit_deseq2
from diffbio_prob.workflows.deseq2 import transform as T
from diffbio_prob.workflows.deseq2.transform import normalized_counts, rlog, vst

REF = Path(__file__).resolve().parents[1] / "reference" / "data"
TR = REF / "deseq2_transform"
SYN = REF / "deseq2_ref"
RTOL, ATOL = 1e-6, 1e-8
SAMPLES_2V2 = ["R1L1Kidney", "R1L3Kidney", "R1L2Liver", "R1L4Liver"]


def _inputs(case):
    counts = pd.read_csv(REF / "deseq2_real" / "marioni" / "counts.csv.gz", index_col=0)
    meta = pd.read_csv(REF / "deseq2_real" / "marioni" / "metadata.csv", index_col=0)
    samples = SAMPLES_2V2 if case == "2v2" else list(counts.columns)
    return counts[samples], meta.loc[samples]


def _fit(case, fit_type="parametric"):
    counts, meta = _inputs(case)
    design = "~ condition" if case == "2v2" else "~ run + condition"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 2v2: R's parametric -> local fallback, warned
        return fit_deseq2(counts, meta, design, fit_type=fit_type)


@pytest.fixture(scope="module")
def fit_2v2():
    return _fit("2v2")


@pytest.fixture(scope="module")
def fit_run():
    return _fit("run")


def _ref(case, what):
    return pd.read_csv(TR / f"{case}_{what}.csv.gz", index_col=0)


def _max_rel(ours: pd.DataFrame, ref: pd.DataFrame) -> float:
    o = ours.loc[ref.index, ref.columns].to_numpy()
    r = ref.to_numpy()
    nz = r != 0
    return float(np.max(np.abs(o[nz] - r[nz]) / np.abs(r[nz]))) if nz.any() else 0.0


def _check(ours: pd.DataFrame, ref: pd.DataFrame, rtol=RTOL, atol=ATOL):
    assert isinstance(ours, pd.DataFrame)
    assert ours.dtypes.eq(np.float64).all()
    assert set(ref.index) <= set(ours.index) and list(ours.columns) == list(ref.columns)
    np.testing.assert_allclose(ours.loc[ref.index, ref.columns].to_numpy(), ref.to_numpy(), rtol=rtol, atol=atol)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


# ------------------------------------------------------------------------------------------------
# Against R: normalised counts, VST, vst(nsub), rlog.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["2v2", "run"])
def test_normalized_counts_match_r(case, request):
    fit = request.getfixturevalue(f"fit_{case}")
    ours = normalized_counts(fit)
    assert list(ours.index) == list(fit.genes) and list(ours.columns) == list(fit.samples)
    np.testing.assert_array_equal(ours.to_numpy(), fit.counts / fit.size_factors[None, :])
    _check(ours, _ref(case, "normalized"), rtol=1e-11, atol=0)


def test_fit_trends_are_rs(fit_2v2, fit_run):
    # what the blind=False transforms read
    s = pd.read_csv(TR / "run_summary.csv", index_col=0)
    assert fit_run.trend.kind == "parametric"
    np.testing.assert_allclose(fit_run.trend.coefs, s.loc["fit", ["asymptDisp", "extraPois"]].astype(float),
                               rtol=1e-8)
    assert fit_2v2.trend.kind == "local" and fit_2v2.trend.fallback


VST_CASES = [
    # (case, reference, kwargs): blind=False reads the fit's trend; blind=True re-fits under ~ 1
    ("run", "vsd", {"blind": False}),  # parametric closed form
    ("run", "vsd_blind", {}),  # blind parametric
    ("run", "vsd_blind_mean", {"fit_type": "mean"}),
    ("run", "vsd_blind_local", {"fit_type": "local"}),
    ("2v2", "vsd", {"blind": False}),  # local (R's fallback), numeric integration + fmm spline
    ("2v2", "vsd_fit_local", {"blind": False}),  # DESeq(fitType="local") = the fallback's trend
    ("2v2", "vsd_blind", {}),
    ("2v2", "vsd_blind_local", {"fit_type": "local"}),
    ("2v2", "vsd_blind_mean", {"fit_type": "mean"}),
]


@pytest.mark.parametrize("case,what,kwargs", VST_CASES, ids=[f"{c}-{w}" for c, w, _ in VST_CASES])
def test_vst_matches_r(case, what, kwargs, request):
    fit = request.getfixturevalue(f"fit_{case}")
    _check(_quiet(vst, fit, **kwargs), _ref(case, what))


VST_FAST = [
    ("run", "vstfast_blind", {}),
    ("run", "vstfast", {"blind": False}),
    ("2v2", "vstfast_blind", {}),
    ("2v2", "vstfast", {"blind": False}),
    ("2v2", "vstfast_blind_mean", {"fit_type": "mean"}),
]


@pytest.mark.parametrize("case,what,kwargs", VST_FAST, ids=[f"{c}-{w}" for c, w, _ in VST_FAST])
def test_vst_nsub_matches_r_vst(case, what, kwargs, request):
    # R's vst(): the trend from 1000 genes picked by mean (deterministic), then every gene transformed
    fit = request.getfixturevalue(f"fit_{case}")
    _check(_quiet(vst, fit, nsub=1000, **kwargs), _ref(case, what))


def test_vst_fit_mean_matches_r():
    fit = _fit("2v2", fit_type="mean")
    assert fit.trend.kind == "mean"
    s = pd.read_csv(TR / "2v2_summary.csv", index_col=0)
    np.testing.assert_allclose(fit.trend.coefs[0], float(s.loc["vsd_fit_mean", "mean"]), rtol=1e-9)
    _check(vst(fit, blind=False), _ref("2v2", "vsd_fit_mean"))


@pytest.mark.slow
@pytest.mark.parametrize("fit_type", ["local", "mean"])
def test_vst_fit_type_run_matches_r(fit_type):
    fit = _fit("run", fit_type=fit_type)
    _check(vst(fit, blind=False), _ref("run", f"vsd_fit_{fit_type}"))


RLOG_CASES = [
    ("run", "rlog_blind", {}),
    ("run", "rlog", {"blind": False}),
    ("run", "rlog_blind_mean", {"fit_type": "mean"}),
    ("2v2", "rlog_blind", {}),
    ("2v2", "rlog", {"blind": False}),
    ("2v2", "rlog_blind_mean", {"fit_type": "mean"}),
]


@pytest.mark.parametrize("case,what,kwargs", RLOG_CASES, ids=[f"{c}-{w}" for c, w, _ in RLOG_CASES])
def test_rlog_matches_r(case, what, kwargs, request):
    fit = request.getfixturevalue(f"fit_{case}")
    ours = _quiet(rlog, fit, **kwargs)
    _check(ours, _ref(case, what))
    s = pd.read_csv(TR / f"{case}_summary.csv", index_col=0)
    np.testing.assert_allclose(ours.attrs["betaPriorVar"], float(s.loc[what, "betaPriorVar"]), rtol=1e-9)
    icpt = np.asarray(ours.attrs["rlogIntercept"])
    assert icpt.shape == (fit.counts.shape[0],)
    assert np.all(np.isneginf(icpt[fit.gene["allZero"]])) and np.all(np.isfinite(icpt[~fit.gene["allZero"]]))
    assert np.all(ours.to_numpy()[fit.gene["allZero"]] == 0.0)  # R: zero rows for all-zero genes


def test_rlog_with_intercept_and_prior_matches_r(fit_2v2):
    # R's documented use: rlog(dds, blind=FALSE, intercept=mcols(rld)$rlogIntercept, betaPriorVar=attr(rld, ...))
    icpt_r = pd.read_csv(TR / "2v2_rlog_intercept_in.csv.gz", index_col=0)["intercept"]
    blind = _quiet(rlog, fit_2v2)
    ours_icpt = pd.Series(blind.attrs["rlogIntercept"], index=blind.index)
    fin = np.isfinite(icpt_r.to_numpy())
    assert np.array_equal(fin, np.isfinite(ours_icpt.loc[icpt_r.index].to_numpy()))
    np.testing.assert_allclose(ours_icpt.loc[icpt_r.index].to_numpy()[fin], icpt_r.to_numpy()[fin], rtol=RTOL,
                               atol=ATOL)
    s = pd.read_csv(TR / "2v2_summary.csv", index_col=0)
    bpv = float(s.loc["rlog_intercept", "betaPriorVar"])
    ours = rlog(fit_2v2, blind=False, intercept=icpt_r.loc[fit_2v2.genes].to_numpy(), beta_prior_var=bpv)
    assert ours.attrs["betaPriorVar"] == bpv and "rlogIntercept" not in ours.attrs
    _check(ours, _ref("2v2", "rlog_intercept"))


# ------------------------------------------------------------------------------------------------
# Count tables (R's matrix input), normalisation factors, PyDESeq2's copies of R's VST.
# ------------------------------------------------------------------------------------------------


def test_count_table_input_is_blind(fit_run):
    # R: varianceStabilizingTransformation(matrix) = design ~ 1 and estimateSizeFactors
    counts, _ = _inputs("run")
    ours = vst(counts)
    _check(ours, _ref("run", "vsd_blind"))
    arr = vst(counts.to_numpy())
    assert list(arr.columns) == [str(j + 1) for j in range(counts.shape[1])]
    np.testing.assert_allclose(arr.to_numpy(), ours.to_numpy(), rtol=1e-12, atol=0)
    # blind=False has no design to use on a count table: the same as blind
    np.testing.assert_allclose(vst(counts, blind=False).to_numpy(), ours.to_numpy(), rtol=1e-12, atol=0)


def test_tuple_input_estimates_the_trend_under_its_design():
    # R: vst / rlog(blind = FALSE) of DESeqDataSetFromMatrix(counts, colData, design) before DESeq() estimate
    # gene-wise dispersions and the trend under the design: DESeq()'s trend and dispFit, so DESeq's answers
    counts, meta = _inputs("run")
    inputs = (counts, meta, "~ run + condition")
    _check(vst(inputs, blind=False), _ref("run", "vsd"))
    _check(vst(inputs), _ref("run", "vsd_blind"))
    _check(rlog(inputs, blind=False), _ref("run", "rlog"))
    with pytest.raises(ValueError, match="fit_or_inputs"):
        vst((counts, meta))
    with pytest.raises(ValueError, match="design"):
        vst((counts, meta, "condition"))


def test_rlog_in_gene_chunks_is_the_same(fit_2v2, monkeypatch):
    whole = rlog(fit_2v2, blind=False)
    monkeypatch.setattr(T, "_CHUNK_ELEMENTS", 1)  # 1024 genes per IRLS call
    # other batch sizes, other XLA programs: the same to rounding
    np.testing.assert_allclose(rlog(fit_2v2, blind=False).to_numpy(), whole.to_numpy(), rtol=1e-10, atol=1e-12)


def test_after_outlier_replacement_match_r():
    # R keeps the original counts in counts(dds); baseMean, allZero and the refitted genes' dispFit come
    # from the replaced counts (make_replace_reference.R: PyDESeq2's synthetic set with 2 injected outliers)
    counts = pd.read_csv(SYN / "synthetic" / "test_counts.csv", index_col=0)
    meta = pd.read_csv(SYN / "synthetic" / "test_metadata.csv", index_col=0)
    counts.loc["gene1", "sample1"] = 2000
    counts.loc["gene7", "sample11"] = 1000
    fit = fit_deseq2(counts, meta, "~ condition")
    mc = pd.read_csv(TR / "replace_mcols.csv", index_col=0)
    assert np.array_equal(fit.gene["replace"], mc["replace"].to_numpy())
    np.testing.assert_allclose(fit.gene["dispFit"], mc["dispFit"], rtol=1e-9)
    ref = lambda name: pd.read_csv(TR / f"replace_{name}.csv.gz", index_col=0)
    _check(normalized_counts(fit), ref("normalized"), rtol=1e-14, atol=0)
    _check(vst(fit, blind=False), ref("vsd"))
    with pytest.warns(RuntimeWarning, match=r"did not converge .* 1 gene\(s\) \(gene1\)"):
        _check(rlog(fit), ref("rlog_blind"))  # not converged, but its cycle is stable: R's value
    s = pd.read_csv(TR / "replace_summary.csv")
    # blind=False: gene1 keeps its 2000 count but gets the low dispFit of the replaced counts; the IRLS cycles
    # chaotically for 100 iterations in R and here, and the 100th iterate is rounding noise (R's own 10th
    # iterate differs from a numpy one by 1e-9, its 100th by whole units): warned, not compared; gene7 does not
    # converge either but, like every other gene, is R's
    with pytest.warns(RuntimeWarning, match=r"did not converge .* 2 gene\(s\) \(gene1, gene7\)"):
        ours = rlog(fit, blind=False)
    np.testing.assert_allclose(ours.attrs["betaPriorVar"], s["betaPriorVar_rlog"].iloc[0], rtol=1e-12)
    r = ref("rlog")
    _check(ours.drop(index="gene1"), r.drop(index="gene1"))


def test_normalization_factors_equal_to_size_factors_give_the_same(fit_2v2):
    # gene x sample factors all equal to the size factors: every branch reading normalizationFactors
    # (local VST's exp(colMeans(log nf)), xim, rlog's offsets) must give the size-factor answers
    nf = np.broadcast_to(fit_2v2.size_factors, fit_2v2.counts.shape).copy()
    fit_nf = dataclasses.replace(fit_2v2, size_factors=None, normalization_factors=nf)
    np.testing.assert_allclose(normalized_counts(fit_nf).to_numpy(), normalized_counts(fit_2v2).to_numpy(),
                               rtol=1e-15)
    np.testing.assert_allclose(vst(fit_nf, blind=False).to_numpy(), vst(fit_2v2, blind=False).to_numpy(),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rlog(fit_nf, blind=False).to_numpy(), rlog(fit_2v2, blind=False).to_numpy(),
                               rtol=1e-10, atol=1e-10)


@pytest.fixture(scope="module")
def synthetic():
    counts = pd.read_csv(SYN / "synthetic" / "test_counts.csv", index_col=0)
    meta = pd.read_csv(SYN / "synthetic" / "test_metadata.csv", index_col=0)
    return counts, meta


@pytest.mark.parametrize(
    "ref,kwargs",
    [("r_vst.csv", {}), ("r_vst_with_design.csv", {"blind": False}), ("r_mean_vst.csv", {"fit_type": "mean"})],
)
def test_vst_matches_pydeseq2_r_files(synthetic, ref, kwargs):
    # PyDESeq2's R DESeq2 1.34.0 outputs: 10 genes x 100 samples, ~ condition, parametric trend
    counts, meta = synthetic
    fit = fit_deseq2(counts, meta, "~ condition")
    r = pd.read_csv(SYN / "single_factor" / ref, index_col=0)
    _check(vst(fit, **kwargs), r)


# ------------------------------------------------------------------------------------------------
# deseq2_real's R files (full gene sets, 17 digits): R's vst() (nsub = 1000), rlog(blind = TRUE), normalised
# counts on the marioni / tagseq cases (see that folder's README). One fit per case, cached.
# ------------------------------------------------------------------------------------------------

REAL = REF / "deseq2_real"
REAL_CASES = {
    "marioni": ("marioni", "~ condition"),
    "marioni_2v2": ("marioni", "~ condition"),
    "marioni_2v3": ("marioni", "~ condition"),
    "marioni_3v3_run": ("marioni", "~ run + condition"),
    "tagseq_2v2": ("tagseq", "~ condition"),
}
_REAL_FITS: dict = {}


def _real_fit(case, fit_type="parametric"):
    key = (case, fit_type)
    if key not in _REAL_FITS:
        ds, design = REAL_CASES[case]
        meta = pd.read_csv(REAL / case / "metadata.csv", index_col=0)
        counts = pd.read_csv(REAL / ds / "counts.csv.gz", index_col=0)[list(meta.index)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _REAL_FITS[key] = fit_deseq2(counts, meta, design, fit_type=fit_type)
    return _REAL_FITS[key]


REAL_FILES = {
    "r_normalized_counts": lambda case: normalized_counts(_real_fit(case)),
    "r_vst_blind": lambda case: _quiet(vst, _real_fit(case), nsub=1000),
    "r_vst": lambda case: _quiet(vst, _real_fit(case), blind=False, nsub=1000),
    "r_vst_fit_local": lambda case: _quiet(vst, _real_fit(case, "local"), blind=False, nsub=1000, fit_type="local"),
    "r_vst_fit_mean": lambda case: _quiet(vst, _real_fit(case, "mean"), blind=False, nsub=1000, fit_type="mean"),
    "r_rlog_blind": lambda case: _quiet(rlog, _real_fit(case)),
}
REAL_XFAIL: dict = {}  # (case, file) -> known cause, as xfail(strict=True)


def _real_params():
    out = []
    for case in REAL_CASES:
        for name in REAL_FILES:
            if not (REAL / case / f"{name}.csv.gz").exists():
                continue  # README: not every case has every transform file
            marks = [pytest.mark.slow]
            if (case, name) in REAL_XFAIL:
                marks.append(pytest.mark.xfail(reason=REAL_XFAIL[(case, name)], strict=True))
            out.append(pytest.param(case, name, marks=marks, id=f"{case}-{name}"))
    return out


@pytest.mark.parametrize("case,name", _real_params())
def test_deseq2_real_transforms_match_r(case, name):
    ref = pd.read_csv(REAL / case / f"{name}.csv.gz", index_col=0)
    ours = REAL_FILES[name](case)
    assert list(ours.index) == list(ref.index)  # every gene
    _check(ours, ref, rtol=1e-11 if name == "r_normalized_counts" else RTOL)


# ------------------------------------------------------------------------------------------------
# R's helpers: splinefun("fmm"), the weighted upper quantile.
# ------------------------------------------------------------------------------------------------


def test_fmm_spline_matches_r_splinefun():
    t = pd.read_csv(TR / "splinefun_fmm.csv")
    knots, ev = t[t.kind == "knot"], t[t.kind == "eval"]
    x, y = knots.x.to_numpy(), knots.y.to_numpy()
    got = T._spline_eval(x, y, T._fmm_spline(x, y), ev.x.to_numpy())
    np.testing.assert_allclose(got, ev.y.to_numpy(), rtol=1e-13, atol=1e-13)  # inside and extrapolated


def test_fmm_spline_is_exact_on_cubics():
    # fmm's end conditions match the third derivative of the cubic through the end points: cubics are exact
    x = np.array([0.0, 0.3, 1.1, 1.7, 2.0, 3.4, 4.0])
    f = lambda u: 1.0 - 2.0 * u + 0.5 * u**2 - 0.3 * u**3
    u = np.linspace(-1.0, 5.0, 61)
    np.testing.assert_allclose(T._spline_eval(x, f(x), T._fmm_spline(x, f(x)), u), f(u), rtol=1e-11, atol=1e-11)


def test_weighted_upper_quantile_matches_r():
    t = pd.read_csv(TR / "wtd_quantile.csv.gz")
    for case, g in t.groupby("case"):
        got = T._wtd_upper_quantile_variance(g.x.to_numpy(), g.w.to_numpy())
        np.testing.assert_allclose(got, g.result.iloc[0], rtol=1e-14, err_msg=f"case {case}")


# ------------------------------------------------------------------------------------------------
# Bad inputs.
# ------------------------------------------------------------------------------------------------


def test_bad_inputs(fit_2v2):
    with pytest.raises(TypeError, match="fit_or_inputs"):
        vst("counts.csv")
    with pytest.raises(TypeError, match="fit_or_inputs"):
        rlog([[1, 2], [3, 4]])
    with pytest.raises(TypeError, match="fit:"):
        normalized_counts(pd.DataFrame([[1, 2]]))
    with pytest.raises(TypeError, match="blind"):
        vst(fit_2v2, blind="no")
    with pytest.raises(TypeError, match="blind"):
        rlog(fit_2v2, blind=None)
    with pytest.raises(ValueError, match="fit_type"):
        vst(fit_2v2, fit_type="loess")
    with pytest.raises(ValueError, match="fit_type"):
        rlog(fit_2v2, fit_type="glmGamPoi")
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="nsub"):
            vst(fit_2v2, nsub=bad)
    with pytest.raises(ValueError, match="nsub"):
        vst(fit_2v2, nsub=10**6)  # more than the genes
    with pytest.raises(ValueError, match="nsub"):
        vst(fit_2v2, nsub=5000)  # fewer genes than that with mean normalised count > 5
    with pytest.raises(ValueError, match="intercept"):
        rlog(fit_2v2, intercept=[1.0, 2.0])
    with pytest.raises(ValueError, match="intercept"):
        rlog(fit_2v2, intercept=np.full(fit_2v2.counts.shape[0], np.nan))
    with pytest.raises(TypeError, match="intercept"):
        rlog(fit_2v2, intercept=["a"] * fit_2v2.counts.shape[0])
    for bad in (-1.0, 0.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="beta_prior_var"):
            rlog(fit_2v2, beta_prior_var=bad)
    for bad in ("1", True, [1.0]):
        with pytest.raises(TypeError, match="beta_prior_var"):
            rlog(fit_2v2, beta_prior_var=bad)
    with pytest.raises(ValueError, match="intercept"):
        rlog(fit_2v2, intercept=pd.Series(0.0, index=[f"x{i}" for i in range(fit_2v2.counts.shape[0])]))
    neg = pd.DataFrame([[1, -2, 3], [4, 5, 6]], columns=["a", "b", "c"])
    with pytest.raises(ValueError, match="fit_or_inputs"):
        vst(neg)
    with pytest.raises(ValueError, match="fit_or_inputs"):
        vst(np.ones(5))
    one_sample = pd.DataFrame({"a": [1, 5, 9, 12]})
    with pytest.raises(ValueError, match="replicates"):
        vst(one_sample)


def test_fit_type_ignored_with_blind_false_warns(fit_run):
    # as R, blind=False on a fit reuses its trend / dispFit; a fit_type that differs is named in a warning
    with pytest.warns(UserWarning, match="fit_type"):
        out = vst(fit_run, blind=False, fit_type="mean")
    np.testing.assert_array_equal(out.to_numpy(), vst(fit_run, blind=False).to_numpy())
    with pytest.warns(UserWarning, match="fit_type"):
        out = rlog(fit_run, blind=False, fit_type="local")
    np.testing.assert_array_equal(out.to_numpy(), rlog(fit_run, blind=False).to_numpy())


def test_rlog_intercept_series_is_aligned_by_gene(fit_2v2):
    blind = _quiet(rlog, fit_2v2)
    icpt = pd.Series(blind.attrs["rlogIntercept"], index=blind.index)
    bpv = blind.attrs["betaPriorVar"]
    a = rlog(fit_2v2, blind=False, intercept=icpt, beta_prior_var=bpv)
    b = rlog(fit_2v2, blind=False, intercept=icpt.iloc[::-1], beta_prior_var=bpv)
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
