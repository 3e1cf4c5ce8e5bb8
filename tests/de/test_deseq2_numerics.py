"""The DESeq2 numerics that follow R's special cases: the fitNbinomGLMsOptim fallback (L-BFGS-B on the
host), nbinomLRT's Cook's distances and the float32 IRLS tolerance.

R's numbers come from tests/reference/data/deseq2_numerics/make_optim_reference.R (R 4.2.2,
DESeq2 1.38.3); no test here needs R.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from diffbio_prob.cores import nb_glm_fit
from diffbio_prob.workflows.deseq2 import rstats, steps
from diffbio_prob.workflows.deseq2.data import DESeq2Data
from diffbio_prob.workflows.deseq2.glm import LN2, fit_glm, optim_fallback
from diffbio_prob.workflows.deseq2.options import DESeq2Options

REF = Path(__file__).resolve().parents[1] / "reference" / "data" / "deseq2_numerics"
# tagseq's design: samples 1-4 condition B, 5-6 condition A (the intercept)
X_TAGSEQ = np.column_stack([np.ones(6), [1, 1, 1, 1, 0, 0]]).astype(float)


def _optim_reference():
    ref = pd.read_csv(REF / "optim_reference.csv", index_col=0, skipinitialspace=True)
    counts = ref[[f"k{i}" for i in range(1, 7)]].to_numpy(float)
    sf = ref[[f"sf{i}" for i in range(1, 7)]].to_numpy(float)
    return ref, counts, sf


def _r_objective(par, k, sf, alpha):
    mu = sf * 2.0 ** (X_TAGSEQ @ par)
    ll = np.sum(stats.nbinom.logpmf(k, 1.0 / alpha, (1.0 / alpha) / (1.0 / alpha + mu)))
    return -(ll + np.sum(stats.norm.logpdf(par, 0.0, 1000.0)))


def test_optim_fallback_reproduces_r_optim_on_zero_groups():
    # Genes with a group of zeros: the likelihood is flat in the LFC (|LFC| 18-26); R's answer is where
    # L-BFGS-B stops, and that point moves with the last bits of the objective. Ours is R's to the bit
    # (R 4.2's dnbinom/dnorm, long-double sums), so scipy's L-BFGS-B takes R's steps: the same number
    # of evaluations, LFCs within 2e-5 of R's (4 of 5 within 1e-8).
    ref, counts, sf = _optim_reference()
    start = ref[["start0", "start1"]].to_numpy(float)
    beta, conv, sigma, mu, loglik = optim_fallback(counts, X_TAGSEQ, sf, ref["alpha"].to_numpy(), start, 1e-6, 0.5)
    lfc = beta[:, 1] / LN2
    r_lfc = ref["par1"].to_numpy(float)
    np.testing.assert_allclose(lfc, r_lfc, rtol=2e-5)
    assert np.sum(np.abs(lfc / r_lfc - 1) < 1e-8) >= 4
    assert conv.all() and (ref["convergence"] == 0).all()
    for r in range(len(ref)):
        ours = _r_objective(beta[r] / LN2, counts[r], sf[r], ref["alpha"].iloc[r])
        assert ours == pytest.approx(ref["value"].iloc[r], rel=1e-9)
        # the objective is R's to the bit at R's own optimum
        par = ref[["par0", "par1"]].to_numpy(float)[r]
        sd = [math.sqrt(1 / 1e-6)] * 2
        exact = rstats.r_optim_objective(list(par), list(counts[r]), list(sf[r]), 1 / ref["alpha"].iloc[r],
                                         X_TAGSEQ.tolist(), sd)
        assert exact == ref["value"].iloc[r]
    # R: mu unfloored; covariance and log-likelihood at mu floored at minmu
    np.testing.assert_allclose(mu, sf * np.exp2(beta @ X_TAGSEQ.T / LN2), rtol=1e-12)
    alpha = ref["alpha"].to_numpy()
    mu_f = np.maximum(mu, 0.5)
    size = 1.0 / alpha[:, None]
    expect_ll = stats.nbinom.logpmf(counts, size, size / (size + mu_f)).sum(axis=1)
    np.testing.assert_allclose(loglik, expect_ll, rtol=1e-10)
    w = 1.0 / (1.0 / mu_f + alpha[:, None])
    for r in range(len(ref)):
        xtwx = X_TAGSEQ.T @ (w[r][:, None] * X_TAGSEQ)
        inv = np.linalg.inv(xtwx + np.eye(2) * 1e-6 / LN2**2)
        np.testing.assert_allclose(sigma[r], inv @ xtwx @ inv, rtol=1e-10)


def test_fit_glm_sends_diverging_rows_to_the_optim_fallback():
    ref, counts, sf = _optim_reference()
    data = DESeq2Data(counts, X_TAGSEQ, size_factors=sf[0])
    fit = fit_glm(data, ref["alpha"].to_numpy(), DESeq2Options())
    # IRLS diverges on all five (R: betaIter 100); the fallback starts where R's does (LINPACK QR)
    assert fit.conv.all()
    np.testing.assert_allclose(fit.beta[:, 1] / LN2, ref["par1"].to_numpy(float), rtol=2e-5)
    newton = fit_glm(data, ref["alpha"].to_numpy(), DESeq2Options(), fallback="newton")
    assert np.all(np.isfinite(newton.beta))


def _small_data(seed=0, g=60):
    rng = np.random.default_rng(seed)
    x = np.column_stack([np.ones(8), [0, 0, 0, 0, 1, 1, 1, 1]]).astype(float)
    mean = rng.gamma(2.0, 50.0, size=(g, 1)) * np.exp(x @ np.array([0.0, 0.7]))[None, :]
    counts = rng.negative_binomial(5, 5 / (5 + mean)).astype(float)
    counts = counts[counts.sum(1) > 0]
    return DESeq2Data(counts, x, size_factors=np.exp(rng.normal(0, 0.2, 8)))


def test_lrt_cooks_use_the_dispersion_steps_mu():
    # R's nbinomLRT calls calculateCooksDistance before it stores the full model's mu, so the Cook's
    # distances use the mu assay of estimateDispersionsGeneEst (floored at minmu); nbinomWaldTest's use
    # the GLM's mu.
    data = _small_data()
    opts = DESeq2Options()
    disp = steps.estimate_dispersions(data, opts)
    red = np.ones((8, 1))
    lrt = steps._run_test(data, disp, opts, "lrt", red, True)
    wald = steps._run_test(data, disp, opts, "wald", None, True)
    from diffbio_prob.workflows.deseq2 import rstats

    alpha_rob = rstats.robust_method_of_moments_disp(data.normalized, data.design)
    expect = np.asarray(nb_glm_fit.cooks_distance(data.counts, disp.gene.mu, lrt.glm.hat, alpha_rob, 2))
    np.testing.assert_allclose(lrt.cooks, expect, rtol=1e-12)
    expect_w = np.asarray(nb_glm_fit.cooks_distance(data.counts, wald.glm.mu, wald.glm.hat, alpha_rob, 2))
    np.testing.assert_allclose(wald.cooks, expect_w, rtol=1e-12)
    assert not np.allclose(lrt.cooks, wald.cooks)


@pytest.mark.float32
def test_irls_converges_in_float32():
    # DESeq2's betaTol = 1e-8 is below float32's resolution; the floored tolerance lets IRLS converge
    data = _small_data(seed=1)
    y = jnp.asarray(data.counts, jnp.float32)
    x = jnp.asarray(data.design, jnp.float32)
    beta0 = jnp.asarray(np.linalg.lstsq(data.design, np.log(data.normalized + 0.1).T, rcond=None)[0].T, jnp.float32)
    res = nb_glm_fit.irls_fit(y, x, jnp.log(jnp.asarray(data.size_factors, jnp.float32)),
                              jnp.full(y.shape[0], 0.2, jnp.float32), beta0, jnp.full(2, 1e-6 / LN2**2, jnp.float32))
    assert res.beta.dtype == jnp.float32
    n_iter = np.asarray(res.n_iter)
    assert np.mean(n_iter < 100) > 0.9  # a deviance tolerance of 1e-8 is below float32 resolution
    assert np.median(n_iter) < 10
    assert bool(jnp.all(jnp.isfinite(res.beta)))


def _dnbinom_reference():
    return pd.read_csv(REF / "dnbinom_reference.csv")


def test_r_dnbinom_is_rs_to_the_bit():
    ref = _dnbinom_reference()
    ours = [rstats.r_dnbinom_mu_log(k, s, m) for k, s, m in zip(ref["k"], ref["size"], ref["mu"])]
    assert np.array_equal(np.array(ours), ref["logpmf"].to_numpy())


def test_accurate_nb_log_pmf_matches_r_at_any_count():
    # the lgamma form loses |value| * eps: at 1e9 counts that is ~1 in the log-likelihood
    ref = _dnbinom_reference()
    ours = np.asarray(nb_glm_fit.nb_log_pmf_accurate(ref["k"].to_numpy(), ref["mu"].to_numpy(), ref["size"].to_numpy()))
    err = np.abs(ours - ref["logpmf"].to_numpy()) / np.maximum(np.abs(ref["logpmf"].to_numpy()), 1.0)
    assert err.max() < 1e-13


def test_irls_converges_on_a_gene_with_1e9_counts():
    # A gene at ~1.3e9 counts, no change between groups: with the lgamma-form deviance the relative test
    # (1e-8) never passed, IRLS ran to maxit and the optim fallback gave LFC 0.40 (R DESeq2: 0.165, with
    # betaIter 3). Now IRLS converges in a few iterations, at the maximum of the likelihood.
    y = np.array([[1931328606, 691345971, 2147483647, 1024478612, 1291094219, 1722384455, 918473650,
                   1902385213, 745245560, 1595340807]], float)
    x = np.column_stack([np.ones(10), [0, 1, 0, 1, 1, 0, 1, 0, 1, 0]]).astype(float)
    sf = np.array([1.28, 0.78, 1.32, 0.79, 0.76, 1.25, 0.73, 1.35, 0.81, 1.40])
    alpha = np.array([0.0329])
    beta0 = np.linalg.lstsq(x, np.log(y[0] / sf + 0.1), rcond=None)[0][None, :]
    ridge = np.full(2, 1e-6 / LN2**2)
    res = nb_glm_fit.irls_fit(y, x, np.log(sf), alpha, beta0, ridge)
    assert int(res.n_iter[0]) < 10

    def negll(b):
        mu = sf * np.exp(x @ b)
        return -np.sum(stats.nbinom.logpmf(y[0], 1 / alpha[0], (1 / alpha[0]) / (1 / alpha[0] + mu))) + 0.5 * ridge @ b**2

    from scipy import optimize

    opt = optimize.minimize(negll, np.asarray(res.beta[0]), method="Nelder-Mead",
                            options={"xatol": 1e-12, "fatol": 1e-12, "maxiter": 4000})
    np.testing.assert_allclose(np.asarray(res.beta[0]), opt.x, atol=1e-6)


@pytest.mark.float32
def test_float32_fit_is_close_to_float64():
    # float32: IRLS in float32 (tolerance floored at its resolution); the dispersion line search and grid
    # in float64 (R's stopping rules are below float32's resolution); no NaN where float64 has none
    import warnings

    from diffbio_prob.workflows.deseq2 import fit_deseq2

    rng = np.random.default_rng(7)
    g, n = 300, 8
    cond = np.array(["A"] * 4 + ["B"] * 4)
    base = rng.gamma(1.5, 80.0, size=g)
    lfc = np.where(rng.random(g) < 0.2, rng.normal(0, 1.5, g), 0.0)
    mean = base[:, None] * np.exp(np.where(cond == "B", lfc[:, None], 0.0))
    counts = rng.negative_binomial(10, 10 / (10 + mean))
    counts[:3, :4] = 0  # a few genes with a group of zeros
    df = pd.DataFrame(counts, index=[f"g{i}" for i in range(g)], columns=[f"s{j}" for j in range(n)])
    meta = pd.DataFrame({"condition": cond}, index=df.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r32 = fit_deseq2(df, meta, precision="float32").results(["condition", "B", "A"])
        r64 = fit_deseq2(df, meta, precision="float64").results(["condition", "B", "A"])
    for col in ["log2FoldChange", "pvalue", "padj"]:
        assert np.array_equal(np.isnan(r32[col]), np.isnan(r64[col])), col
    ok = np.abs(r64["log2FoldChange"]) < 10
    np.testing.assert_allclose(r32["log2FoldChange"][ok], r64["log2FoldChange"][ok], atol=1e-3)
    np.testing.assert_allclose(r32["pvalue"], r64["pvalue"], rtol=1e-2, atol=1e-6)


def _fitdisp_reference():
    ref = pd.read_csv(REF / "fitdisp_reference.csv", index_col=0)
    des = pd.read_csv(REF / "fitdisp_design.csv", index_col=0)
    x = np.column_stack([np.ones(len(des)), (des["condition"] == "B").to_numpy(float)])
    return ref, des, x


def test_r_lgamma_digamma_are_rs_to_the_bit():
    # values printed by R 4.2.2: lgamma(v), digamma(v) (sprintf %.17g)
    cases = {
        0.3: (1.0957979948180756, -3.5025242222001323), 9.99: (12.779315214350193, 2.2507003728312012),
        27696.5: (255608.50154834206, 10.229043277470309), 1e8: (1742068066.1038349, 18.420680738952367),
    }
    for v, (lg, dg) in cases.items():
        assert rstats.r_lgammafn(v) == lg
        assert rstats.r_digamma(v) == dg


def test_r_fit_disp_reproduces_rs_line_search():
    # ENSG00000189229: R's first step is rejected by its own rounding (the true gain, 4.6e-10, is the
    # size of lgamma's rounding at 1/alpha ~ 3e4), so fitDisp stops at iteration 2 and R keeps
    # alpha_init; the vectorised search (exact lgamma differences) stops at iteration 1 and the grid
    # refit drops it to 1e-8. Redone in R's arithmetic, every number is R's.
    ref, _, x = _fitdisp_reference()
    for gene, row in ref.iterrows():
        y = row[[f"k{j}" for j in range(1, 11)]].to_numpy(float)
        mu = row[[f"mu{j}" for j in range(1, 11)]].to_numpy(float)
        la0 = math.log(row["init"])
        la, it, lp0, lp = rstats.r_fit_disp(y, mu, x, la0, la0, 1.0, False, min_log_alpha=math.log(1e-9))
        assert (la, it, lp0, lp) == (row["log_alpha"], row["iter"], row["initial_lp"], row["last_lp"]), gene
        grid = rstats.r_fit_disp_grid(y, mu, x, 0.0, 1.0, False, rstats.r_disp_grid(10))
        assert math.exp(grid) == row["grid"], gene


def test_r_exact_alpha_init_and_mu():
    ref, des, x = _fitdisp_reference()
    counts = ref[[f"k{j}" for j in range(1, 11)]].to_numpy(float)
    sf = des["sizeFactor"].to_numpy(float)
    norm = counts / sf
    rough = rstats.r_rough_disp(norm, x)
    bm, bv = rstats.r_row_sums(norm, mean=True), rstats.r_row_vars(norm)
    moments = (bv - rstats.r_mean(1.0 / sf) * bm) / (bm * bm)
    init = np.clip(np.minimum(rough, moments), 1e-8, 10)
    assert np.array_equal(init, ref["init"].to_numpy(float))
    mu = np.maximum(rstats.r_linear_model_mu(norm, x) * sf, 0.5)
    assert np.array_equal(mu, ref[[f"mu{j}" for j in range(1, 11)]].to_numpy(float))


def test_gene_wise_dispersions_take_rs_decision():
    # the pipeline's gene-wise step on these four genes, with R's size factors: R's dispGeneEst
    from diffbio_prob.workflows.deseq2.dispersion import gene_wise_dispersions

    ref, des, x = _fitdisp_reference()
    counts = ref[[f"k{j}" for j in range(1, 11)]].to_numpy(float)
    data = DESeq2Data(counts, x, size_factors=des["sizeFactor"].to_numpy(float))
    gd = gene_wise_dispersions(data, DESeq2Options())
    r_disp = np.where(ref["iter"] == 100, np.maximum(ref["grid"], 1e-8), ref["init"])  # R's dispGeneEst
    np.testing.assert_allclose(gd.disp_gene, r_disp, rtol=1e-12)
    assert list(gd.n_iter) == list(ref["iter"])


def test_size_factors_are_rs_to_the_bit():
    counts = pd.read_csv(REF / "sizefactor_counts.csv").to_numpy(float)
    ref = pd.read_csv(REF / "sizefactor_reference.csv")
    assert np.array_equal(steps.estimate_size_factors(counts, "ratio"), ref["ratio"].to_numpy(float))
    assert np.array_equal(steps.estimate_size_factors(counts, "poscounts"), ref["poscounts"].to_numpy(float))


def test_decision_margin_certifies_rs_branches():
    # Where the line search's decision margin is positive, R's double-precision loop (rstats.r_fit_disp,
    # R's arithmetic to the bit) must stop at the same iteration and agree on "no increase"; the margin
    # is what lets the pipeline skip R's host loop on those genes. Genes from 1e-3 to 10 in dispersion,
    # means from 0.5 to 5e3, so the bound is exercised where lgamma's rounding is large and small.
    from diffbio_prob.cores.nb_dispersion import fit_dispersion_line_search

    rng = np.random.default_rng(11)
    g, n = 120, 12
    x = np.column_stack([np.ones(n), np.repeat([0.0, 1.0], n // 2)])
    mean = np.exp(rng.uniform(np.log(0.5), np.log(5e3), g))
    alpha = np.exp(rng.uniform(np.log(1e-3), np.log(10.0), g))
    counts = rng.negative_binomial(1 / alpha[:, None], 1 / (1 + alpha[:, None] * mean[:, None]), (g, n)).astype(float)
    mu = np.maximum(np.repeat(counts.mean(1, keepdims=True), n, 1), 0.5)
    la0 = np.log(np.exp(rng.normal(np.log(alpha), 0.3)))
    fit = fit_dispersion_line_search(jnp.asarray(counts), jnp.asarray(mu), jnp.asarray(x), jnp.asarray(la0),
                                     jnp.asarray(la0), 1.0, use_prior=False, min_log_alpha=math.log(1e-9))
    margin = np.asarray(fit.decision_margin)
    lp0, lp = np.asarray(fit.initial_lp), np.asarray(fit.last_lp)
    sure = margin > 0
    assert 0.5 * g < sure.sum() < g  # the bound certifies most genes, not all: it is neither vacuous nor blind
    for i in np.flatnonzero(sure):
        la, it, r_lp0, r_lp = rstats.r_fit_disp(counts[i], mu[i], x, la0[i], la0[i], 1.0, False,
                                                min_log_alpha=math.log(1e-9))
        assert it == int(fit.n_iter[i]), i
        assert la == pytest.approx(float(fit.log_alpha[i]), rel=1e-9, abs=1e-9), i
        assert abs(r_lp - lp[i]) <= float(fit.lp_error[i]) + 1e-12, i
        assert abs(r_lp0 - lp0[i]) <= float(fit.initial_lp_error[i]) + 1e-12, i
