"""DESeq2's per-gene dispersion estimators: gene-wise Cox-Reid (``estimateDispersionsGeneEst``) and MAP
(``estimateDispersionsMAP``), with R's line search (``fitDispWrapper``), its grid fallback
(``fitDispGridWrapper``) and the starting values R uses.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from diffbio_prob.parallel import run_batched
from diffbio_prob.workflows.deseq2 import kernels
from diffbio_prob.workflows.deseq2.data import DESeq2Data
from diffbio_prob.workflows.deseq2.glm import fit_glm
from diffbio_prob.workflows.deseq2.options import DESeq2Options

__all__ = ["GeneDispersions", "MAPDispersions", "gene_wise_dispersions", "map_dispersions", "linear_model_mu"]


class GeneDispersions(NamedTuple):
    """``estimateDispersionsGeneEst``'s output for G genes."""

    disp_gene: np.ndarray  # (G,) dispGeneEst
    n_iter: np.ndarray  # (G,) dispGeneIter
    mu: np.ndarray  # (G, N) the means the estimates condition on (floored at min_mu)
    base_mean: np.ndarray  # (G,)
    base_var: np.ndarray  # (G,)


class MAPDispersions(NamedTuple):
    """``estimateDispersionsMAP``'s output for G genes."""

    dispersion: np.ndarray  # (G,) final: MAP, or gene-wise for dispersion outliers
    disp_map: np.ndarray  # (G,) dispMAP
    outlier: np.ndarray  # (G,) dispOutlier
    n_iter: np.ndarray  # (G,) dispIter


def linear_model_mu(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """DESeq2 ``linearModelMu``: least-squares fitted values of each row of ``y`` on ``x``."""
    q, _ = np.linalg.qr(x)
    return (y @ q) @ q.T


def _n_groups(x: np.ndarray) -> int:
    return len({tuple(r) for r in x})


def _fit(data: DESeq2Data, mu, log_alpha0, prior_mean, prior_var, use_prior, opts, shard):
    pad = data.padding
    gene_args = (data.padded_counts, pad.samples(mu, 1.0), log_alpha0, prior_mean)
    shared = (data.padded_design, float(prior_var), bool(use_prior), data.sample_mask, data.coef_mask)
    if opts.dispersion_fit == "newton":
        return run_batched(
            kernels.k_disp_newton, gene_args, shared, shard=shard,
            lower=math.log(opts.min_disp), upper=math.log(max(10.0, data.n_samples)),
        )
    if opts.dispersion_fit == "deseq2":
        return run_batched(
            kernels.k_line_search, gene_args, shared, shard=shard,
            min_log_alpha=math.log(opts.min_disp / 10.0), kappa_0=opts.kappa_0, tol=opts.disp_tol,
            max_iter=opts.disp_maxit,
        )
    raise ValueError(f"dispersion_fit: expected 'deseq2' or 'newton', got {opts.dispersion_fit!r}")


def _grid(data: DESeq2Data, mu, prior_mean, prior_var, use_prior, shard):
    grid = np.linspace(math.log(1e-8), math.log(max(10.0, data.n_samples)), 20)
    pad = data.padding
    la = run_batched(
        kernels.k_grid,
        (data.padded_counts, pad.samples(mu, 1.0), prior_mean),
        (data.padded_design, float(prior_var), grid, bool(use_prior), data.sample_mask, data.coef_mask),
        shard=shard,
    )
    return np.exp(la)


def _max_iter(opts: DESeq2Options) -> int:
    return opts.disp_maxit if opts.dispersion_fit == "deseq2" else 50


def gene_wise_dispersions(data: DESeq2Data, opts: DESeq2Options, *, shard: bool = True) -> GeneDispersions:
    """DESeq2 ``estimateDispersionsGeneEst`` (``niter = 1``) on genes that are not all zero."""
    g, m = data.counts.shape
    design = data.design
    p = design.shape[1]
    if m == p:
        raise ValueError(
            "design: the number of samples equals the number of coefficients; there are no replicates "
            "to estimate the dispersion"
        )
    norm = data.normalized
    base_mean = norm.mean(axis=1)
    base_var = norm.var(axis=1, ddof=1)
    min_disp = opts.min_disp
    max_disp = max(10.0, m)
    # rough estimate from a linear model fit of normalised counts, and moments
    mu_lm = np.maximum(linear_model_mu(norm, design), 1.0)
    rough = np.maximum(np.sum(((norm - mu_lm) ** 2 - mu_lm) / mu_lm**2, axis=1) / (m - p), 0.0)
    moments = (base_var - data.xim * base_mean) / base_mean**2
    alpha_init = np.clip(np.minimum(rough, moments), min_disp, max_disp)
    if _n_groups(design) == p:
        mu = linear_model_mu(norm, design) * data.norm_factors
    else:
        mu = fit_glm(data, alpha_init, opts, shard=shard).mu
    mu = np.maximum(mu, opts.min_mu)
    log_init = np.log(alpha_init)
    fit = _fit(data, mu, log_init, log_init, 1.0, False, opts, shard)
    disp = np.minimum(np.exp(fit.log_alpha), max_disp)
    no_increase = fit.last_lp < fit.initial_lp + np.abs(fit.initial_lp) / 1e6
    disp = np.where(no_increase, alpha_init, disp)
    n_iter = np.asarray(fit.n_iter)
    if opts.dispersion_fit == "deseq2":
        conv = (n_iter < opts.disp_maxit) & (n_iter != 1)
    else:
        conv = n_iter < 50
    refit = ~conv & (disp > min_disp * 10)
    if refit.any():
        disp[refit] = _grid(data.rows(refit), mu[refit], np.zeros(refit.sum()), 1.0, False, shard)
    disp = np.clip(disp, min_disp, max_disp)
    return GeneDispersions(disp, n_iter, mu, base_mean, base_var)


def map_dispersions(
    data: DESeq2Data,
    gene: GeneDispersions,
    disp_fit: np.ndarray,
    prior_var: float,
    var_log_disp_ests: float,
    opts: DESeq2Options,
    *,
    shard: bool = True,
) -> MAPDispersions:
    """DESeq2 ``estimateDispersionsMAP``, with its dispersion-outlier rule (``outlierSD`` above the trend)."""
    m = data.n_samples
    max_disp = max(10.0, m)
    disp_gene, mu = gene.disp_gene, gene.mu
    init = np.where(disp_gene > 0.1 * disp_fit, disp_gene, disp_fit)
    fit = _fit(data, mu, np.log(init), np.log(disp_fit), prior_var, True, opts, shard)
    disp_map = np.exp(fit.log_alpha)
    n_iter = np.asarray(fit.n_iter)
    refit = ~(n_iter < _max_iter(opts))
    if refit.any():
        disp_map[refit] = _grid(data.rows(refit), mu[refit], np.log(disp_fit[refit]), prior_var, True, shard)
    disp_map = np.clip(disp_map, opts.min_disp, max_disp)
    outlier = np.log(disp_gene) > np.log(disp_fit) + opts.outlier_sd * math.sqrt(var_log_disp_ests)
    final = np.where(outlier, disp_gene, disp_map)
    return MAPDispersions(final, disp_map, outlier, n_iter)
