"""DESeq2's steps, by R's names, each taking named state and returning named state.

``DESeq()`` is :func:`estimate_size_factors`, :func:`estimate_dispersions_gene`,
:func:`fit_dispersion_trend`, :func:`estimate_dispersions_map`, then :func:`fit_nbinom_wald` or
:func:`fit_nbinom_lrt`, then :func:`cooks_and_refit` (R's ``refitWithoutOutliers``). The data
(:class:`~diffbio_prob.workflows.deseq2.data.DESeq2Data`) is never changed; every step returns a NamedTuple.
``results()`` is :meth:`~diffbio_prob.workflows.deseq2.fit.DESeq2Fit.results`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
from scipy import special

from diffbio_prob.cores import nb_glm_fit
from diffbio_prob.workflows.deseq2 import kernels, rstats
from diffbio_prob.workflows.deseq2.data import DESeq2Data
from diffbio_prob.workflows.deseq2.dispersion import (
    GeneDispersions,
    MAPDispersions,
    gene_wise_dispersions,
    map_dispersions,
    tail_split,
)
from diffbio_prob.workflows.deseq2.glm import GLMFit, fit_glm
from diffbio_prob.workflows.deseq2.options import DESeq2Options
from diffbio_prob.workflows.deseq2.size_factors import poscounts_size_factors, ratio_size_factors
from diffbio_prob.workflows.deseq2.trend import Trend, fit_trend, prior_variance

__all__ = [
    "Dispersions",
    "TestFit",
    "Refit",
    "estimate_size_factors",
    "estimate_dispersions_gene",
    "fit_dispersion_trend",
    "estimate_dispersions_map",
    "estimate_dispersions",
    "fit_nbinom_wald",
    "fit_nbinom_lrt",
    "cooks_and_refit",
]


class Dispersions(NamedTuple):
    """The three dispersion steps' state for G genes."""

    gene: GeneDispersions
    trend: Trend
    disp_fit: np.ndarray  # (G,) dispFit
    final: MAPDispersions

    @property
    def dispersion(self) -> np.ndarray:
        return self.final.dispersion


class TestFit(NamedTuple):
    """``nbinomWaldTest`` / ``nbinomLRT`` state for G genes."""

    glm: GLMFit
    stat: np.ndarray  # (G, P) Wald statistics, or (G,) LRT statistics
    pvalue: np.ndarray  # like stat
    cooks: np.ndarray  # (G, N)
    max_cooks: np.ndarray  # (G,)
    reduced: GLMFit | None = None


class Refit(NamedTuple):
    """``refitWithoutOutliers``: which genes were replaced and their new state (``None`` when none were)."""

    replace: np.ndarray  # (G,) bool: a count of the gene was replaced
    counts: np.ndarray | None  # (G, N) counts after replacement, or None
    refit: np.ndarray  # (G,) bool: replaced and not all zero afterwards -> refitted
    dispersions: Dispersions | None  # for the refitted genes
    test: TestFit | None  # for the refitted genes
    max_cooks: np.ndarray  # (G,) maxCooks after replacement (replaceable samples excluded)


# ------------------------------------------------------------------------------------------------
# Size factors.
# ------------------------------------------------------------------------------------------------


def estimate_size_factors(counts: np.ndarray, method: str = "ratio", *, opts: DESeq2Options | None = None) -> np.ndarray:
    """DESeq2 ``estimateSizeFactors`` of a genes x samples count matrix.

    Args:
        counts: ``(G, N)`` counts.
        method: ``"ratio"`` (median of ratios to the geometric mean, ``estimateSizeFactorsForMatrix``),
            ``"poscounts"`` (geometric means over positive counts, then scaled to geometric mean 1) or
            ``"iterate"`` (``estimateSizeFactorsIterate``: maximise the NB likelihood of an
            intercept-only model, alternating with dispersion estimates).

    Returns:
        ``(N,)`` size factors.
    """
    counts = np.asarray(counts, dtype=float)
    if method == "ratio":
        return ratio_size_factors(counts)
    if method == "poscounts":
        return poscounts_size_factors(counts)
    if method == "iterate":
        return _size_factors_iterate(counts, opts or DESeq2Options())
    raise ValueError(f"size_factors: expected 'ratio', 'poscounts', 'iterate' or an array, got {method!r}")


def _size_factors_iterate(counts: np.ndarray, opts: DESeq2Options, niter: int = 10, q: float = 0.05) -> np.ndarray:
    # DESeq2 estimateSizeFactorsIterate: design ~1, dispersions with fitType="mean", then maximise
    # the summed log-likelihood of all but the 5% worst genes over log size factors (L-BFGS-B with
    # R optim's finite-difference gradient, ndeps = 1e-3).
    n = counts.shape[1]
    x = np.ones((n, 1))
    sf = np.ones(n)
    idx = counts.sum(axis=1) > 0
    cts = counts[idx]
    o = dataclasses.replace(opts, fit_type="mean")
    for i in range(1, niter + 1):
        st = estimate_dispersions(DESeq2Data(cts, x, size_factors=sf), o)
        qmat = st.gene.mu / sf
        disps = st.dispersion
        size = 1.0 / disps[:, None]
        old = sf.copy()

        def fn(p):
            s = np.exp(p - p.mean())
            mu = qmat * s
            ll = special.gammaln(cts + size) - special.gammaln(size) - special.gammaln(cts + 1)
            ll = ll + size * np.log(size / (size + mu)) + special.xlogy(cts, mu / (size + mu))
            gene_ll = ll.sum(axis=1)
            return -float(np.sum(gene_ll[gene_ll > np.quantile(gene_ll, q)]))

        def grad(p):
            eps = 1e-3
            g = np.empty_like(p)
            for k in range(p.size):
                e = np.zeros_like(p)
                e[k] = eps
                g[k] = (fn(p + e) - fn(p - e)) / (2 * eps)
            return g

        from scipy import optimize  # ~0.1 s to import; only the iterative size factors need it

        res = optimize.minimize(
            fn, np.log(old), jac=grad, method="L-BFGS-B", options={"maxcor": 5, "ftol": 1e7 * np.finfo(float).eps, "gtol": 0.0}
        )
        if not res.success and "ABNORMAL" not in str(res.message).upper():
            raise RuntimeError(f"iterative size factors did not converge within an iteration: {res.message}")
        sf = np.exp(res.x - res.x.mean())
        if i > 1 and np.sum((np.log(old) - np.log(sf)) ** 2) < 1e-4:
            return sf
    raise RuntimeError("iterative size factor normalization did not converge")


# ------------------------------------------------------------------------------------------------
# Dispersions.
# ------------------------------------------------------------------------------------------------


def estimate_dispersions_gene(data: DESeq2Data, opts: DESeq2Options, *, shard: bool = True) -> GeneDispersions:
    """R's ``estimateDispersionsGeneEst``: gene-wise Cox-Reid estimates (genes must not be all zero)."""
    return gene_wise_dispersions(data, opts, shard=shard)


def fit_dispersion_trend(data: DESeq2Data, gene: GeneDispersions, opts: DESeq2Options) -> Trend:
    """R's ``estimateDispersionsFit`` and ``estimateDispersionsPriorVar``: the trend and the prior variance."""
    trend = fit_trend(gene.base_mean, gene.disp_gene, opts)
    trend.var_log_disp_ests, trend.prior_var = prior_variance(
        gene.disp_gene, trend(gene.base_mean), data.n_samples, data.n_coef, opts
    )
    return trend


def estimate_dispersions_map(
    data: DESeq2Data, gene: GeneDispersions, trend: Trend, opts: DESeq2Options, *, shard: bool = True
) -> Dispersions:
    """R's ``estimateDispersionsMAP``: MAP estimates shrunk towards ``trend``, outliers kept gene-wise."""
    disp_fit = trend(gene.base_mean)
    if np.isnan(trend.var_log_disp_ests):
        # every gene-wise estimate near the minimum: R gives every gene 10 minDisp
        final = np.full(data.n_genes, opts.min_disp * 10)
        out = MAPDispersions(final, final, np.zeros(data.n_genes, bool), np.zeros(data.n_genes, int))
    else:
        out = map_dispersions(data, gene, disp_fit, trend.prior_var, trend.var_log_disp_ests, opts, shard=shard)
    return Dispersions(gene, trend, disp_fit, out)


def estimate_dispersions(
    data: DESeq2Data, opts: DESeq2Options, *, trend: Trend | None = None, shard: bool = True
) -> Dispersions:
    """R's ``estimateDispersions``: gene-wise, trend, MAP. With ``trend`` given, reuse it (the refit)."""
    gene = estimate_dispersions_gene(data, opts, shard=shard)
    if trend is None:
        trend = fit_dispersion_trend(data, gene, opts)
    return estimate_dispersions_map(data, gene, trend, opts, shard=shard)


# ------------------------------------------------------------------------------------------------
# Tests and Cook's distances.
# ------------------------------------------------------------------------------------------------


def max_cooks(cooks: np.ndarray, design: np.ndarray) -> np.ndarray:
    """R's ``recordMaxCooks``: the largest Cook's distance over samples in cells of 3 or more."""
    m, p = design.shape
    samples = rstats.n_or_more_in_cell(design, 3)
    if m > p and samples.any():
        return np.max(cooks[:, samples], axis=1)
    return np.full(cooks.shape[0], np.nan)


_HOST_BLOCK = 2048  # genes per block of the host-side gene-wise arithmetic: its temporaries stay small


def _cooks(data: DESeq2Data, fit: GLMFit, mu: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    # R's calculateCooksDistance reads assays(object)[["mu"]]: the GLM's mu after nbinomWaldTest, but
    # in nbinomLRT the assay still holds the dispersion step's mu (it is replaced after the Cook's).
    mu = fit.mu if mu is None else mu
    cooks = np.empty(data.counts.shape)
    # gene by gene arithmetic, in blocks: the sorts of the robust moments and the distance's terms made
    # ~7 table-sized temporaries at once on the whole table
    for start in range(0, data.n_genes, _HOST_BLOCK):
        rows = slice(start, start + _HOST_BLOCK)
        alpha_rob = rstats.robust_method_of_moments_disp(data.normalized[rows], data.design)
        cooks[rows] = nb_glm_fit.cooks_distance(data.counts[rows], mu[rows], fit.hat[rows], alpha_rob, data.n_coef)
    return cooks, max_cooks(cooks, data.design)


def fit_nbinom_wald(data: DESeq2Data, dispersion: np.ndarray, opts: DESeq2Options, *, shard: bool = True) -> TestFit:
    """R's ``nbinomWaldTest``: the GLM at the final dispersions, Wald statistics and Cook's distances."""
    fit = fit_glm(data, dispersion, opts, shard=shard)
    cooks, mc = _cooks(data, fit)
    stat = fit.beta / fit.se
    return TestFit(fit, stat, 2.0 * special.ndtr(-np.abs(stat)), cooks, mc)


def fit_nbinom_lrt(
    data: DESeq2Data,
    dispersion: np.ndarray,
    reduced_design: np.ndarray,
    opts: DESeq2Options,
    *,
    cooks_mu: np.ndarray | None = None,
    shard: bool = True,
) -> TestFit:
    """R's ``nbinomLRT``: full and reduced GLMs, the likelihood-ratio statistic on ``P - P_reduced`` df.

    ``cooks_mu``: the means R's ``nbinomLRT`` computes Cook's distances with, the ``mu`` assay the
    dispersion step left (``GeneDispersions.mu``, floored at ``minmu``); R stores the full model's mu
    only after the Cook's distances. ``None``: the full model's mu (as the Wald test).
    """
    fit = fit_glm(data, dispersion, opts, shard=shard)
    red = fit_glm(data.with_design(reduced_design), dispersion, opts, shard=shard)
    cooks, mc = _cooks(data, fit, cooks_mu)
    lrt = 2.0 * (fit.loglik - red.loglik)
    df = data.n_coef - reduced_design.shape[1]
    return TestFit(fit, lrt, special.chdtrc(df, np.maximum(lrt, 0.0)), cooks, mc, red)


def _run_test(data, dispersion, opts, test, reduced_design, shard):
    """The test at the final dispersions; ``dispersion`` is a :class:`Dispersions` (or an array: then the
    LRT's Cook's distances use the full model's mu, not R's dispersion-step mu)."""
    disp, cooks_mu = (dispersion.dispersion, dispersion.gene.mu) if isinstance(dispersion, Dispersions) else (
        dispersion, None)
    if test == "wald":
        return fit_nbinom_wald(data, disp, opts, shard=shard)
    return fit_nbinom_lrt(data, disp, reduced_design, opts, cooks_mu=cooks_mu, shard=shard)


def cooks_and_refit(
    data: DESeq2Data,
    test_fit: TestFit,
    dispersions: Dispersions,
    opts: DESeq2Options,
    *,
    test: str = "wald",
    reduced_design: np.ndarray | None = None,
    shard: bool = True,
) -> Refit:
    """R's ``refitWithoutOutliers`` / ``replaceOutliers``.

    Counts with a Cook's distance above ``qf(0.99, P, N - P)`` in samples whose cell has at least
    ``min_replicates_for_replace`` replicates are replaced by the 20%-trimmed mean of normalised counts
    times the size factor; those genes (unless now all zero) get their dispersions re-estimated around
    the same trend and are tested again.
    """
    g = data.n_genes
    x = data.design
    m, p = x.shape
    no = Refit(np.zeros(g, bool), None, np.zeros(g, bool), None, None, test_fit.max_cooks)
    replaceable = rstats.n_or_more_in_cell(x, opts.min_replicates_for_replace)
    if not replaceable.any() or m <= p:
        return no
    cutoff = special.fdtri(p, m - p, 0.99)
    with np.errstate(invalid="ignore"):
        is_out = np.nan_to_num(test_fit.cooks, nan=0.0) > cutoff
    replace = is_out.any(axis=1)
    if not replace.any():
        return no
    trim_mean = rstats.r_trimmed_mean(data.normalized, 0.2, axis=1)
    replacement = np.trunc(trim_mean[:, None] * data.norm_factors)
    new = data.counts.copy()
    sel = is_out & replaceable[None, :]
    new[sel] = replacement[sel]
    refit = replace & (new.sum(axis=1) != 0)
    disp2 = test2 = None
    if refit.any():
        sub = data.with_counts(new).rows(refit)
        if kernels.refit_shares_programs(data.n_genes, data.n_samples):
            split = tail_split(data)  # the main fit's line search programs
            tails = None if split is None else (int(split[0].sum()), int((~split[0]).sum()))
            sub = dataclasses.replace(sub, batch_rows=data.n_genes, tail_rows=tails)
        disp2 = estimate_dispersions(sub, opts, trend=dispersions.trend, shard=shard)
        test2 = _run_test(sub, disp2, opts, test, reduced_design, shard)
    if replaceable.all():
        mc = np.full(g, np.nan)
    else:
        rc = test_fit.cooks.copy()
        rc[:, replaceable] = 0.0
        mc = max_cooks(rc, x)
    return Refit(replace, new, refit, disp2, test2, mc)
