"""DESeq2's per-gene dispersion estimators: gene-wise Cox-Reid (``estimateDispersionsGeneEst``) and MAP
(``estimateDispersionsMAP``), with R's line search (``fitDispWrapper``), its grid fallback
(``fitDispGridWrapper``) and the starting values R uses.

All genes go through the vectorised JAX line search (always in float64: R's stopping rules are below
float32's resolution). A few gene-wise rows are then redone on the host in R's own arithmetic
(:mod:`.rstats`, ``r_fit_disp`` / ``r_fit_disp_grid``), the rows where R's answer is decided by its
rounding: the search gained nothing (R keeps ``alpha_init`` unless it stopped after one step, which
counts as "not converged" and sends the gene to the grid), and the grid refits (flat near 1e-8).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import numpy as np

from diffbio_prob.parallel import BUCKET, run_batched
from diffbio_prob.workflows.deseq2 import kernels, rstats
from diffbio_prob.workflows.deseq2.data import DESeq2Data
from diffbio_prob.workflows.deseq2.glm import fit_glm
from diffbio_prob.workflows.deseq2.options import DESeq2Options

__all__ = ["GeneDispersions", "MAPDispersions", "gene_wise_dispersions", "map_dispersions", "linear_model_mu",
           "tail_split", "tails_possible", "tails_pay"]


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


def line_search_options(opts: DESeq2Options) -> dict:
    """The static options of R's line search kernel (``kernels.k_line_search``) for ``opts``."""
    return {"min_log_alpha": math.log(opts.min_disp / 10.0), "kappa_0": opts.kappa_0, "tol": opts.disp_tol,
            "max_iter": opts.disp_maxit}


def _fit(data: DESeq2Data, mu, log_alpha0, prior_mean, prior_var, use_prior, opts, shard):
    # Always float64: R's rules stop on log-posterior changes of dispTol = 1e-6 (and "no increase" at
    # |lp| / 1e6) on values of ~1e2-1e4, below float32's resolution; in float32 the line search stopped
    # at random and ~1000 of marioni's gene-wise estimates (and so the trend) were off.
    with jax.enable_x64(True):
        out = _fit_f64(data, mu, log_alpha0, prior_mean, prior_var, use_prior, opts, shard)
        return type(out)(*(None if v is None else np.asarray(v) for v in out))


def _fit_f64(data: DESeq2Data, mu, log_alpha0, prior_mean, prior_var, use_prior, opts, shard):
    pad = data.padding
    gene_args = (data.padded_counts, pad.samples(mu, 1.0), log_alpha0, prior_mean)
    shared = (data.padded_design, float(prior_var), bool(use_prior), data.sample_mask, data.coef_mask)
    if opts.dispersion_fit == "newton":
        return run_batched(
            kernels.k_disp_newton, gene_args, shared, shard=shard,
            lower=math.log(opts.min_disp), upper=math.log(max(10.0, data.n_samples)),
        )
    if opts.dispersion_fit == "deseq2":
        split = tail_split(data)
        if split is None:
            main = data.tail_rows  # a refit after a main fit in two programs: its program without tails
            full_min = data.batch_rows if main is None or main[1] == 0 else main[1]
            return run_batched(kernels.k_line_search, gene_args, shared, shard=shard, min_rows=full_min,
                               **line_search_options(opts))
        rows, tail, (tail_min, full_min) = split
        fits = [run_batched(kernels.k_line_search_tail, tuple(a[rows] for a in gene_args) + (tail,), shared,
                            shard=shard, min_rows=tail_min, **line_search_options(opts))]
        if not rows.all():
            fits.append(run_batched(kernels.k_line_search, tuple(a[~rows] for a in gene_args), shared, shard=shard,
                                    min_rows=full_min, **line_search_options(opts)))
        order = np.argsort(np.concatenate([np.flatnonzero(rows), np.flatnonzero(~rows)]), kind="stable")
        return type(fits[0])(*(None if parts[0] is None else np.concatenate(parts)[order]
                               for parts in zip(*fits)))
    raise ValueError(f"dispersion_fit: expected 'deseq2' or 'newton', got {opts.dispersion_fit!r}")


def tails_possible(n_samples: int, n_pad: int) -> bool:
    """Whether a line search over ``n_samples`` (padded to ``n_pad``) may sum over count tails."""
    return n_samples >= kernels.TAIL_MIN_SAMPLES and n_pad == n_samples


def tails_pay(n_tail_genes: int) -> bool:
    """Whether a main fit with this many genes of small integer counts runs them in a program of their own."""
    return n_tail_genes >= BUCKET


def tail_split(data: DESeq2Data):
    """How the line search splits ``data``'s genes: ``None`` (one program, every gene over its samples), or
    ``(rows, tail, (tail_min_rows, full_min_rows))``: the genes (a mask) that sum their count-only terms
    over their counts (``kernels.k_line_search_tail``), their count tails, and the ``min_rows`` of the two
    programs.

    Only with ``kernels.TAIL_MIN_SAMPLES`` samples or more, and on a main fit of at least a bucket of such
    genes (a second program then pays for itself); a refit of a few genes follows its main fit
    (``DESeq2Data.tail_rows``), in the same two programs.
    """
    if not tails_possible(data.n_samples, data.padding.n_pad):
        return None
    main = data.tail_rows
    if main is not None and main[0] == 0:
        return None
    rows, tail = data.count_tail(kernels.TAIL_WIDTH)
    if not rows.any() or (main is None and not tails_pay(int(rows.sum()))):
        return None
    if main is not None and main[1] == 0 and not rows.all():
        return None  # no program without tails to run the rest in: one program for all
    mins = (0, 0) if main is None else main
    return rows, tail, mins


def _grid(data: DESeq2Data, mu, prior_mean, prior_var, use_prior, shard):
    grid = np.linspace(math.log(1e-8), math.log(max(10.0, data.n_samples)), 20)
    pad = data.padding
    with jax.enable_x64(True):  # float64 always, as _fit
        la = np.asarray(run_batched(
            kernels.k_grid,
            (data.padded_counts, pad.samples(mu, 1.0), prior_mean),
            (data.padded_design, float(prior_var), grid, bool(use_prior), data.sample_mask, data.coef_mask),
            shard=shard,
        ))
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
    lm = linear_model_mu(norm, design)
    mu_lm = np.maximum(lm, 1.0)
    rough = np.maximum(np.sum(((norm - mu_lm) ** 2 - mu_lm) / mu_lm**2, axis=1) / (m - p), 0.0)
    del mu_lm
    moments = (base_var - data.xim * base_mean) / base_mean**2
    alpha_init = np.clip(np.minimum(rough, moments), min_disp, max_disp)
    if _n_groups(design) == p:
        mu = lm * data.norm_factors
    else:
        mu = np.array(fit_glm(data, alpha_init, opts, shard=shard).mu)
    del lm
    mu = np.maximum(mu, opts.min_mu, out=mu)  # in place: mu is this function's own array
    log_init = np.log(alpha_init)
    fit = _fit(data, mu, log_init, log_init, 1.0, False, opts, shard)
    log_alpha = np.array(fit.log_alpha, dtype=float)
    initial_lp = np.array(fit.initial_lp, dtype=float)
    last_lp = np.array(fit.last_lp, dtype=float)
    n_iter = np.array(fit.n_iter)
    no_increase = last_lp < initial_lp + np.abs(initial_lp) / 1e6
    exact_grid = _r_exact(data, opts)
    exact = exact_grid and _n_groups(design) == p  # R's mu is the linear model's: R-exact too
    if exact:
        # Where the line search gained nothing, R keeps alpha_init (R-exact here), unless it stopped after
        # one step or ran to maxit: then "not converged" and the grid refit. So on these rows only R's
        # "no increase" test and whether its n_iter is 1 or maxit decide the estimate, and either can be
        # decided by R's rounding. The rows where they can (the test within the bound on R's rounding
        # error; the first step's branches within it, fit.first_margin; a later branch within it while
        # the run is long or the test is close) are redone in R's arithmetic (rstats.r_fit_disp) from
        # R-exact alpha_init and mu. Elsewhere R takes our branches or ends on the same estimate; its
        # dispGeneIter can then differ from ours by the steps its rounding decides, as on every row where
        # fit.decision_margin is not positive.
        gap = np.abs(last_lp - initial_lp - np.abs(initial_lp) / 1e6)
        tie = gap <= 2.0 * (fit.lp_error + fit.initial_lp_error)
        keep = (no_increase | tie) & (alpha_init > min_disp * 10)
        later = ~(fit.decision_margin > 0) & ((n_iter > opts.disp_maxit // 2) | (gap <= 100.0 * opts.disp_tol))
        ambiguous = tie | ~(fit.first_margin > 0) | later
        rows = np.flatnonzero(keep)
        if rows.size:
            r_init, r_mu = _r_exact_start(data, rows, opts)
            alpha_init[rows], mu[rows] = r_init, r_mu
            for k in np.flatnonzero(ambiguous[rows]):
                i = rows[k]
                la, it, lp0, lp = rstats.r_fit_disp(
                    data.counts[i], r_mu[k], design, math.log(r_init[k]), math.log(r_init[k]), 1.0, False,
                    min_log_alpha=math.log(opts.min_disp / 10.0), kappa_0=opts.kappa_0, tol=opts.disp_tol,
                    maxit=opts.disp_maxit,
                )
                log_alpha[i], n_iter[i], initial_lp[i], last_lp[i] = la, it, lp0, lp
            no_increase = last_lp < initial_lp + np.abs(initial_lp) / 1e6
    disp = np.minimum(np.exp(log_alpha), max_disp)
    disp = np.where(no_increase, alpha_init, disp)
    if opts.dispersion_fit == "deseq2":
        conv = (n_iter < opts.disp_maxit) & (n_iter != 1)
    else:
        conv = n_iter < 50
    refit = ~conv & (disp > min_disp * 10)
    if refit.any():
        if exact_grid:
            # R's grid on a flat likelihood (alpha near 1e-8) also picks its point by rounding, that of
            # lgamma(y + 1/alpha) - lgamma(1/alpha) at 1/alpha ~ 1e8 above all (mu's last bits barely
            # matter there: with a GLM mu, not R-exact, ours is used)
            rows = np.flatnonzero(refit)
            r_mu = _r_exact_start(data, rows, opts)[1] if exact else mu[rows]
            grid = rstats.r_disp_grid(m)
            disp[rows] = [
                math.exp(rstats.r_fit_disp_grid(data.counts[i], r_mu[k], design, 0.0, 1.0, False, grid))
                for k, i in enumerate(rows)
            ]
        else:
            disp[refit] = _grid(data.rows(refit), mu[refit], np.zeros(refit.sum()), 1.0, False, shard)
    disp = np.clip(disp, min_disp, max_disp)
    return GeneDispersions(disp, n_iter, mu, base_mean, base_var)


def _r_exact(data: DESeq2Data, opts: DESeq2Options) -> bool:
    """Whether to redo R's rounding-decided rows in R's arithmetic (R's line search, size factors).

    The host path computes in float64 (Python floats) whatever the JAX precision, so float32 fits get
    R's answers on these rows too.
    """
    return opts.dispersion_fit == "deseq2" and data.size_factors is not None


def _r_exact_start(data: DESeq2Data, rows: np.ndarray, opts: DESeq2Options):
    """R-exact ``alpha_init`` (``pmin(roughDisp, momentsDisp)``, clipped) and the linear-model ``mu``
    (floored at ``minmu``) of ``rows``, as R's ``estimateDispersionsGeneEst`` computes them."""
    m, p = data.design.shape
    sf = np.asarray(data.size_factors, dtype=float)
    norm = data.counts[rows] / sf
    rough = rstats.r_rough_disp(norm, data.design)
    bm = rstats.r_row_sums(norm, mean=True)
    bv = rstats.r_row_vars(norm)
    xim = rstats.r_mean(1.0 / sf)
    moments = (bv - xim * bm) / (bm * bm)
    init = np.minimum(np.maximum(opts.min_disp, np.minimum(rough, moments)), max(10.0, m))
    mu = np.maximum(rstats.r_linear_model_mu(norm, data.design) * sf, opts.min_mu)
    return init, mu


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
