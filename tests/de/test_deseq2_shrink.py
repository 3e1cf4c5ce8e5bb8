"""``lfc_shrink`` against R DESeq2 1.38.3's ``lfcShrink`` (type ``normal`` and ``apeglm``).

References:

* ``deseq2_ref`` (PyDESeq2's R fixtures, DESeq2 1.34 + apeglm): apeglm on the synthetic single-factor
  (adaptive and ``apeAdapt=FALSE``), multi-factor, continuous and large-count designs.
* ``deseq2_real/<case>/r_shrink_normal.csv.gz``: ``type="normal"`` on the real-data cases;
  ``deseq2_shrink/tagseq_shrink_normal.csv.gz`` for the full tagseq table.
* ``deseq2_shrink/<case>_*``: made here by ``deseq2_shrink/make_reference.R`` (apeglm 1.27.0 on RcppNumerical
  0.4-0): apeglm with and without ``apeAdapt``, R's priors, and R's MLE coefficients / dispersions.

The bar: identical NaN masks and a max relative error ``max |ours - R| / |R|`` of at most ``TOL = 1e-6`` on
``log2FoldChange`` and ``lfcSE`` (and on the prior), measured at 1e-9 or better. Where the pipeline's own
dispersions differ from R's (R's simulated dispersion prior variance in marioni_3v3_run and tagseq_2v2, which is
not shrinkage's doing), the shrinkage step is checked on R's inputs: R's MLE coefficients, dispersions and
dispFit put in place of the pipeline's ("injected"), everything else from ``fit_deseq2``. The s-values, a
running mean over genes sorted by local false sign rate, are compared at ``1e-4`` relative on the same
footing (far-tail false sign rates amplify relative differences; see ``SVALUE_TOL``), and the few genes that
apeglm refits with R's BFGS at ``1e-4`` (``REFIT_TOL``).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diffbio_prob.workflows.deseq2 import fit_deseq2
from diffbio_prob.workflows.deseq2.glm import LN2
from diffbio_prob.workflows.deseq2.shrink import (
    _cpp_f_grad,
    ape_prior_variance,
    apeglm_log_posterior_grad,
    apeglm_map,
    beta_prior_variance,
    lfc_shrink,
    r_uniroot,
    svalue,
)

DATA = Path(__file__).resolve().parents[1] / "reference" / "data"
REAL = DATA / "deseq2_real"
SHRINK = DATA / "deseq2_shrink"
TOL = 1e-6
# s-values go down to 1e-113: the local false sign rate pnorm(-|z|) of |z| ~ 22 turns a 1e-9 relative change
# of z into ~5e-7, and the running means carry it
SVALUE_TOL = 1e-4
# genes apeglm refits with R's BFGS (its two C++ L-BFGS starts disagree by more than 0.01): R's C++ objective
# is Eigen-vectorised (exp, sums), so its L-BFGS end point, BFGS's start, is reproduced to ~1e-14, and BFGS's
# stopping rule on an objective that cancels ~1e4 down to ~1 turns that into up to ~1e-5 (measured 8.8e-6)
REFIT_TOL = 1e-4
COEF = "condition_B_vs_A"


def _max_rel(ours, ref):
    ours = np.asarray(ours, dtype=float)
    ref = np.asarray(ref, dtype=float)
    assert np.array_equal(np.isnan(ours), np.isnan(ref)), "NaN masks differ"
    ok = ~np.isnan(ref)
    if not ok.any():
        return 0.0
    return float(np.max(np.abs(ours[ok] - ref[ok]) / np.maximum(np.abs(ref[ok]), 1e-300)))


def _assert_columns(res, ref, columns, tol=TOL):
    assert list(res.index) == list(ref.index)
    errors = {c: _max_rel(res[c], ref[c]) for c in columns}
    assert max(errors.values()) <= tol, errors


def _read(path: Path) -> pd.DataFrame:
    if not path.exists():
        path = path.with_name(path.name + ".gz")
    return pd.read_csv(path, index_col=0, na_values=["NA"], keep_default_na=False)


# ------------------------------------------------------------------------------------------------
# apeglm on PyDESeq2's R fixtures.
# ------------------------------------------------------------------------------------------------

APE_CASES = {
    # name: (data folder, design, coef, reference, apeAdapt)
    "single_factor": ("single_factor", "~condition", COEF, "r_test_lfc_shrink_res.csv", True),
    "single_factor_no_adapt": ("single_factor", "~condition", COEF, "r_test_lfc_shrink_no_apeAdapt_res.csv", False),
    "multi_factor": ("multi_factor", "~group + condition", COEF, "r_test_lfc_shrink_res.csv", True),
    "continuous": ("continuous", "~group + condition + measurement", "measurement", "r_test_lfc_shrink_res.csv", True),
    "large_counts": ("large_counts", "~condition", COEF, "r_test_lfc_shrink_res.csv", True),
}


def _load_ref(ref, case):
    folder = "synthetic" if case in ("single_factor", "multi_factor") else case
    return (pd.read_csv(ref / folder / "test_counts.csv", index_col=0),
            pd.read_csv(ref / folder / "test_metadata.csv", index_col=0))


@pytest.fixture(scope="module")
def ref_fits(deseq2_ref):
    cache = {}

    def get(case, design):
        if (case, design) not in cache:
            counts, meta = _load_ref(deseq2_ref, case)
            cache[case, design] = fit_deseq2(counts, meta, design)
        return cache[case, design]

    return get


@pytest.mark.parametrize("name", list(APE_CASES))
def test_apeglm_matches_r_fixtures(name, ref_fits, deseq2_ref):
    case, design, coef, ref_file, adapt = APE_CASES[name]
    res = lfc_shrink(ref_fits(case, design), coef, type="apeglm", ape_adapt=adapt)
    ref = pd.read_csv(deseq2_ref / case / ref_file, index_col=0)
    assert list(res.columns) == list(ref.columns) == ["baseMean", "log2FoldChange", "lfcSE", "pvalue", "padj"]
    _assert_columns(res, ref, ["log2FoldChange", "lfcSE"])
    _assert_columns(res, ref, ["baseMean", "pvalue", "padj"])  # the MLE test's, as R keeps them
    prior = res.attrs["prior"]["prior_control"]
    if adapt:
        assert prior["no_shrink"] == [j for j in range(len(ref_fits(case, design).design.names))
                                      if ref_fits(case, design).design.names[j] != coef]
        assert 0 < prior["prior_scale"] <= 1 and prior["prior_scale"] == min(np.sqrt(prior["prior_var"]), 1)
    else:
        assert prior["prior_scale"] == 1.0 and prior["no_shrink"] == [0]


# ------------------------------------------------------------------------------------------------
# Real-data cases.
# ------------------------------------------------------------------------------------------------

REAL_CASES = {
    # case: (design, pipeline dispersions equal R's for shrinkage's purposes)
    "marioni": ("~ condition", True),
    "marioni_2v2": ("~ condition", True),
    "marioni_2v3": ("~ condition", True),
    "marioni_3v3_run": ("~ run + condition", False),
    "tagseq_2v2": ("~ condition", False),
}


def _load_real(case):
    dataset = case.split("_")[0]
    counts = _read(REAL / dataset / "counts.csv")
    meta_path = REAL / case / "metadata.csv"
    meta = pd.read_csv(meta_path if meta_path.exists() else REAL / dataset / "metadata.csv", index_col=0).astype(str)
    return counts[list(meta.index)], meta


@pytest.fixture(scope="module")
def real_fits():
    cache = {}

    def get(case):
        if case not in cache:
            counts, meta = _load_real(case)
            design = REAL_CASES[case][0] if case in REAL_CASES else "~ condition"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # R's parametric -> local fallback message
                cache[case] = fit_deseq2(counts, meta, design)
        return cache[case]

    return get


def _injected(fit, case):
    """The fit with R's MLE coefficients, their SE for ``COEF``, dispersions and dispFit in place of the pipeline's."""
    mle = _read(SHRINK / f"{case}_mle.csv")
    assert list(mle.index) == list(fit.genes)
    gene = dict(fit.gene)
    gene["dispersion"] = mle["dispersion"].to_numpy(dtype=float)
    gene["dispFit"] = mle["dispFit"].to_numpy(dtype=float)
    beta = mle[fit.design.names].to_numpy(dtype=float) * LN2
    k = fit.design.names.index(COEF)
    sigma = fit.sigma.copy()
    sigma[:, k, k] = (_read(REAL / case / "r_results.csv")["lfcSE"].to_numpy(dtype=float) * LN2) ** 2
    return dataclasses.replace(fit, gene=gene, beta=beta, sigma=sigma)


def _r_prior(case):
    return pd.read_csv(SHRINK / f"{case}_prior.csv", index_col=0)["value"]


def _fit_for(real_fits, case, injected):
    fit = real_fits(case)
    return _injected(fit, case) if injected else fit


def _real_params():
    out = []
    for case, (_, exact) in REAL_CASES.items():
        out.append(pytest.param(case, True, id=f"{case}-injected"))
        if exact:
            out.append(pytest.param(case, False, id=f"{case}-pipeline"))
    return out


@pytest.mark.parametrize("case,injected", _real_params())
def test_normal_matches_r_real(case, injected, real_fits):
    fit = _fit_for(real_fits, case, injected)
    res = lfc_shrink(fit, COEF, type="normal")
    assert list(res.columns) == ["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]
    _assert_columns(res, _read(REAL / case / "r_shrink_normal.csv"), ["log2FoldChange", "lfcSE"])
    mle = fit.results(COEF)  # R keeps results(dds, name = coef)'s other columns
    for c in ["baseMean", "stat", "pvalue", "padj"]:
        np.testing.assert_array_equal(res[c].to_numpy(), mle[c].to_numpy())
    r_prior = _r_prior(case)
    ours = res.attrs["prior"]["betaPriorVar"]
    assert _max_rel([ours[n] for n in fit.design.names],
                    [r_prior[f"betaPriorVar_{n}"] for n in fit.design.names]) <= TOL


@pytest.mark.parametrize("case,injected", _real_params())
@pytest.mark.parametrize("adapt", [True, False], ids=["adapt", "no_adapt"])
def test_apeglm_matches_r_real(case, injected, adapt, real_fits):
    fit = _fit_for(real_fits, case, injected)
    res = lfc_shrink(fit, COEF, type="apeglm", ape_adapt=adapt, svalue=True)
    assert list(res.columns) == ["baseMean", "log2FoldChange", "lfcSE", "svalue"]
    path = SHRINK / f"{case}_apeglm{'' if adapt else '_no_adapt'}.csv.gz"
    if not path.exists():  # R's two tables are the same (adapted scale 1, one shrunk coefficient)
        assert res.attrs["prior"]["prior_control"]["prior_scale"] == 1.0
        path = SHRINK / f"{case}_apeglm.csv.gz"
    ref = _read(path)
    refit = res.index.isin(res.attrs["prior"]["refit_genes"])
    assert refit.sum() < 30
    _assert_columns(res[~refit], ref[~refit], ["log2FoldChange", "lfcSE"])
    _assert_columns(res[refit], ref[refit], ["log2FoldChange", "lfcSE"], tol=REFIT_TOL)
    _assert_columns(res, ref, ["svalue"], tol=SVALUE_TOL)
    if adapt:
        r_prior = _r_prior(case)
        pc = res.attrs["prior"]["prior_control"]
        assert _max_rel([pc["prior_var"], pc["prior_scale"]],
                        [r_prior["apeglm_prior_var"], r_prior["apeglm_prior_scale"]]) <= 1e-12


def test_apeglm_matches_r_on_rcppnumerical_0_7(real_fits):
    # apeglm's C++ MAP on today's RcppNumerical (LBFGS++ 0.4.0, Nocedal-Wright line search) stops elsewhere:
    # R's two builds differ by up to 0.23 relative here; each is reproduced.
    fit = real_fits("marioni_2v2")
    ref = _read(SHRINK / "marioni_2v2_apeglm_rcppnumerical_0.7-0.csv.gz")
    res = lfc_shrink(fit, COEF, type="apeglm", svalue=True, rcppnumerical="0.7-0")
    refit = res.index.isin(res.attrs["prior"]["refit_genes"])
    _assert_columns(res[~refit], ref[~refit], ["log2FoldChange", "lfcSE"])
    _assert_columns(res[refit], ref[refit], ["log2FoldChange", "lfcSE"], tol=REFIT_TOL)
    _assert_columns(res, ref, ["svalue"], tol=SVALUE_TOL)
    old = _read(SHRINK / "marioni_2v2_apeglm.csv.gz")
    assert _max_rel(old["log2FoldChange"], ref["log2FoldChange"]) > 0.1
    with pytest.raises(ValueError, match="rcppnumerical: expected one of"):
        lfc_shrink(fit, COEF, rcppnumerical="0.5-0")


def test_lfc_threshold_matches_r(real_fits):
    # lfcShrink(lfcThreshold = 1): normal re-tests the shrunk fit against |LFC| > 1 (R's results(dds.shr,
    # lfcThreshold = 1)); apeglm gives FSOS s-values instead of p-values
    fit = real_fits("marioni_2v2")
    ref = _read(SHRINK / "marioni_2v2_lfc_threshold_1.csv.gz")
    res = lfc_shrink(fit, COEF, type="normal", lfc_threshold=1)
    assert list(res.columns) == ["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]
    r = ref[[c for c in ref.columns if c.startswith("normal_")]].rename(columns=lambda c: c[len("normal_"):])
    _assert_columns(res, r, ["log2FoldChange", "lfcSE", "stat", "pvalue", "padj"])
    res = lfc_shrink(fit, COEF, type="apeglm", lfc_threshold=1)
    assert list(res.columns) == ["baseMean", "log2FoldChange", "lfcSE", "svalue"]
    r = ref[[c for c in ref.columns if c.startswith("apeglm_")]].rename(columns=lambda c: c[len("apeglm_"):])
    refit = res.index.isin(res.attrs["prior"]["refit_genes"])
    _assert_columns(res[~refit], r[~refit], ["log2FoldChange", "lfcSE"])
    _assert_columns(res, r, ["log2FoldChange", "lfcSE"], tol=REFIT_TOL)
    _assert_columns(res, r, ["svalue"], tol=SVALUE_TOL)
    for bad in (-1, float("nan"), "1", True):
        with pytest.raises(ValueError, match="lfc_threshold"):
            lfc_shrink(fit, COEF, lfc_threshold=bad)


@pytest.mark.slow
def test_normal_matches_r_tagseq(real_fits):
    # The full tagseq table (18760 genes, 7 all zero, 170 Cook's outliers replaced and refitted).
    fit = real_fits("tagseq")
    res = lfc_shrink(fit, COEF, type="normal")
    _assert_columns(res, _read(SHRINK / "tagseq_shrink_normal.csv"), ["log2FoldChange", "lfcSE"])


# ------------------------------------------------------------------------------------------------
# Properties.
# ------------------------------------------------------------------------------------------------


def test_apeglm_map_is_a_stationary_point(real_fits):
    # The exact optimiser's MAP has a vanishing gradient of the log posterior, and R's L-BFGS stopping
    # point (what lfc_shrink reports) is within its stopping rule of that optimum.
    fit = real_fits("marioni_2v2")
    res = lfc_shrink(fit, COEF, type="apeglm")
    x = fit.design.matrix
    nz = fit.counts.sum(axis=1) > 0
    y = fit.counts[nz].astype(float)
    size = 1.0 / fit.gene["dispersion"][nz]
    off = np.broadcast_to(np.log(fit.size_factors), y.shape)
    s2 = res.attrs["prior"]["prior_control"]["prior_scale"] ** 2
    mask = np.array([False, True])
    beta, conv = apeglm_map(y, x, size, off, 225.0, s2, mask, np.array([0.1, -0.1]))
    assert conv.all()
    grad = apeglm_log_posterior_grad(beta, x, y, size, off, 225.0, s2, mask)
    scale = np.abs(y).sum(axis=1) + 1.0
    assert np.max(np.abs(grad) / scale[:, None]) < 1e-8
    # R's point: its scaled objective (about 10) within a relative 1e-6 of the optimum's
    cnst = np.maximum(np.sum((y + size[:, None]) * np.log(size[:, None] + np.exp(off)), axis=1), 1.0)
    ours = np.column_stack([np.zeros(nz.sum()), res["log2FoldChange"].to_numpy()[nz] * LN2])
    f_opt, _ = _cpp_f_grad(beta, x, y, size, off, 225.0, s2, mask, cnst)
    assert np.all(f_opt > 0)
    # the intercept is not reported: compare the shrunk coefficient of the exact optimum instead
    assert np.max(np.abs(beta[:, 1] - ours[:, 1])) < 0.05
    assert np.median(np.abs(beta[:, 1] - ours[:, 1])) < 1e-4


@pytest.mark.parametrize("case", ["marioni_2v2", "marioni_2v3"])
def test_normal_prior_never_increases_lfc(case, real_fits):
    # one two-level factor: the ridge on the only non-intercept coefficient pulls it towards 0 (with more
    # coefficients, shrinking a correlated one can move this one outwards, as in R)
    fit = real_fits(case)
    res = lfc_shrink(fit, COEF, type="normal")
    mle = fit.results(COEF)["log2FoldChange"].to_numpy()
    shr = res["log2FoldChange"].to_numpy()
    ok = np.isfinite(mle)
    assert np.all(np.abs(shr[ok]) <= np.abs(mle[ok]) * (1 + 1e-8) + 1e-12)
    assert np.all(np.sign(shr[ok]) * np.sign(mle[ok]) >= 0)


def test_apeglm_prior_variance_and_uniroot():
    rng = np.random.default_rng(0)
    truth = rng.normal(0, 0.7, 4000)
    se = rng.uniform(0.1, 1.0, truth.size)
    a = ape_prior_variance(truth + rng.normal(0, se), se)
    assert abs(a - 0.49) < 0.05  # Efron-Morris recovers the spread of the true effects
    assert ape_prior_variance(np.zeros(10), np.ones(10)) == 1e-6  # no signal: the lower bound
    assert abs(r_uniroot(lambda v: v**3 - 2.0, 0.0, 2.0) - 2 ** (1 / 3)) < 1e-4  # R's tolerance, eps^0.25
    with pytest.raises(ValueError, match="opposite sign"):
        r_uniroot(lambda v: v**2 + 1, -1.0, 1.0)


def test_svalue_is_running_mean_of_sorted_lfsr():
    lfsr = np.array([0.3, np.nan, 0.1, 0.2, 0.1])
    np.testing.assert_allclose(svalue(lfsr), [0.175, np.nan, 0.1, 0.4 / 3, 0.1], equal_nan=True)


def test_beta_prior_variance_intercept_and_weighted_quantile(real_fits):
    fit = real_fits("marioni_2v2")
    bpv = beta_prior_variance(fit)
    assert bpv[0] == 1e6
    q = beta_prior_variance(fit, method="quantile")
    assert q[0] == 1e6 and q[1] > 0
    with pytest.raises(ValueError, match="method"):
        beta_prior_variance(fit, method="mean")


def test_lrt_fit_is_shrunk_like_the_wald_fit(deseq2_ref):
    # R's lfcShrink accepts a DESeq(test = "LRT") object: the MLE coefficients are the same, the
    # table keeps the LRT's stat and p-values.
    counts, meta = _load_ref(deseq2_ref, "single_factor")
    wald = fit_deseq2(counts, meta, "~condition")
    lrt = fit_deseq2(counts, meta, "~condition", test="lrt", reduced="~1")
    for tp in ("normal", "apeglm"):
        a = lfc_shrink(wald, COEF, type=tp)
        b = lfc_shrink(lrt, COEF, type=tp)
        np.testing.assert_allclose(b["log2FoldChange"], a["log2FoldChange"], rtol=1e-10)
        np.testing.assert_array_equal(b["pvalue"], lrt.results(COEF)["pvalue"])


# ------------------------------------------------------------------------------------------------
# Bad inputs.
# ------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_naming_the_argument(ref_fits):
    fit = ref_fits("single_factor", "~condition")
    with pytest.raises(ValueError, match="coef: 'conditionB' is not a coefficient"):
        lfc_shrink(fit, "conditionB")
    with pytest.raises(ValueError, match="coef: index 5 is out of range"):
        lfc_shrink(fit, 5)
    with pytest.raises(ValueError, match="coef"):
        lfc_shrink(fit, None)
    with pytest.raises(ValueError, match="type: expected one of"):
        lfc_shrink(fit, COEF, type="ashr")
    with pytest.raises(ValueError, match="type: expected one of"):
        lfc_shrink(fit, COEF, type="Normal")
    with pytest.raises(ValueError, match="coef: apeglm does not shrink the intercept"):
        lfc_shrink(fit, "Intercept", type="apeglm")
    with pytest.raises(ValueError, match="svalue"):
        lfc_shrink(fit, COEF, type="normal", svalue=True)
    assert lfc_shrink(fit, 1, type="normal").attrs["coef"] == COEF


def test_normal_refuses_interactions(deseq2_ref):
    counts, meta = _load_ref(deseq2_ref, "single_factor")
    fit = fit_deseq2(counts, meta, "~group * condition")
    name = [n for n in fit.design.names if ":" in n or "." in n][-1]
    with pytest.raises(ValueError, match="type: LFC shrinkage type='normal' is not implemented for designs with interactions"):
        lfc_shrink(fit, name, type="normal")
    res = lfc_shrink(fit, name, type="apeglm")  # apeglm shrinks any non-intercept coefficient
    assert np.isfinite(res["log2FoldChange"]).all()


def test_normalization_factors_equal_to_size_factors_give_the_same_shrinkage(ref_fits, deseq2_ref):
    # R uses normalizationFactors(dds) as the offset (apeglm) and in the ridge refit (normal) when present
    counts, meta = _load_ref(deseq2_ref, "single_factor")
    fit = ref_fits("single_factor", "~condition")
    nf = pd.DataFrame(np.tile(fit.size_factors, (counts.shape[0], 1)), index=counts.index, columns=counts.columns)
    fit_nf = fit_deseq2(counts, meta, "~condition", normalization_factors=nf)
    assert fit_nf.normalization_factors is not None
    for tp in ("normal", "apeglm"):
        a = lfc_shrink(fit, COEF, type=tp)
        b = lfc_shrink(fit_nf, COEF, type=tp)
        np.testing.assert_allclose(b["log2FoldChange"], a["log2FoldChange"], rtol=1e-9)
        np.testing.assert_allclose(b["lfcSE"], a["lfcSE"], rtol=1e-9)
