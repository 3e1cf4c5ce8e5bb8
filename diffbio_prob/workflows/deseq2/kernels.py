"""The jitted per-gene programs of the DESeq2 pipeline, each a thin call of the NB-GLM cores.

Arguments come in one order everywhere: the per-gene arrays first (genes on the first axis), then what
every gene shares (the padded design, scalars, the sample and coefficient masks). Each kernel is built
twice (:func:`diffbio_prob.parallel.kernel`) and run through :func:`diffbio_prob.parallel.run_batched`.
"""

from __future__ import annotations

import jax.numpy as jnp

from diffbio_prob.cores import nb, nb_dispersion, nb_glm_fit
from diffbio_prob.parallel import kernel

__all__ = ["QUEUE_ROWS", "SHARE_MAX_ENTRIES", "TAIL_WIDTH", "TAIL_MIN_SAMPLES", "refit_shares_programs", "k_irls",
           "k_beta_newton", "k_line_search", "k_line_search_tail", "k_disp_newton", "k_grid", "k_loglik"]


#: from this many rows the line search and the IRLS iterate as a work queue
QUEUE_ROWS = 4096
#: the largest genes x samples table whose Cook's refit runs in the main fit's programs
SHARE_MAX_ENTRIES = 2**23
#: the line search of a gene whose counts are integers of at most this many sums its count-only terms over
#: the counts (``nb_dispersion.fit_dispersion_line_search(count_tail=)``): 1024 counts cost ~1.6 us a
#: step, against ~11 ns a sample over the samples
TAIL_WIDTH = 1024
#: ... from this many samples on (below, the second program's compilation outweighs the saving)
TAIL_MIN_SAMPLES = 384


def refit_shares_programs(n_genes: int, n_samples: int) -> bool:
    """Whether the genes refitted after outlier replacement run in the main fit's line search and IRLS.

    Where the work queue steps only their rows, that costs their own rows, and on a first run it saves
    compiling two programs (~1.5 s of a 5 s run at 100 x 10,000). It also puts a few genes in arrays of
    the main fit's size, ~5 genes x samples arrays at once (+15% peak memory at 500 x 10,000); on large
    tables, where compiling is a small share of the time and memory counts, the refit compiles its own.
    """
    return n_genes >= QUEUE_ROWS and n_genes * n_samples <= SHARE_MAX_ENTRIES


def _compact(g: int):
    # Large problems: a work queue of g/16 rows (at least 1024) at a time (cores.row_queue). DESeq2's line
    # search needs ~12 steps for most genes and ~25-40 for the slowest; measured on 10,000 and 20,000
    # genes, the queue runs in 0.7x and 0.27x the time of one batch, and a chunk of g/16 beats g/8 on the
    # larger table. A few genes in a large batch (the Cook's refit in the main fit's program) then cost
    # the passes of one chunk.
    return max(1024, g // 16) if g >= QUEUE_ROWS else None


@kernel("min_mu", "tol", "max_iter", masks_rows=True)
def k_irls(counts, log_sf, alpha, beta_init, active, design, ridge, smask, cmask, *, min_mu, tol, max_iter):
    res = nb_glm_fit.irls_fit(
        counts,
        design,
        log_sf,
        alpha,
        beta_init,
        ridge,
        min_mu=min_mu,
        tol=tol,
        max_iter=max_iter,
        compact=_compact(counts.shape[0]),
        active=active,
        sample_mask=smask,
        coef_mask=cmask,
    )
    sigma, hat = nb_glm_fit.wald_covariance_and_hat(design, res.mu, alpha, ridge, smask, cmask)
    mu_raw = nb.glm_mean(design, res.beta, log_sf)
    return res.beta, res.n_iter, sigma, hat, mu_raw, res.log_likelihood


@kernel("min_mu")
def k_beta_newton(counts, log_sf, alpha, beta_init, design, ridge, smask, cmask, *, min_mu):
    beta, conv = nb_glm_fit.fit_beta_newton(
        counts, design, log_sf, alpha, beta_init, ridge, sample_mask=smask, coef_mask=cmask
    )
    mu_raw = nb.glm_mean(design, beta, log_sf)
    mu_floor = jnp.maximum(mu_raw, min_mu)
    sigma, _ = nb_glm_fit.wald_covariance_and_hat(design, mu_floor, alpha, ridge, smask, cmask)
    # R's fitNbinomGLMsOptim takes the log-likelihood at the floored mean (mu_row[mu_row < minmu] <- minmu)
    loglik = nb.nb_log_likelihood(counts, mu_floor, alpha, smask)
    return beta, conv, sigma, mu_raw, loglik


def _line_search(counts, mu, log_alpha0, prior_mean, count_tail, active, design, prior_var, use_prior, smask, cmask,
                 **options):
    return nb_dispersion.fit_dispersion_line_search(
        counts,
        mu,
        design,
        log_alpha0,
        prior_mean,
        prior_var,
        use_prior=use_prior,
        compact=_compact(counts.shape[0]),
        active=active,
        sample_mask=smask,
        coef_mask=cmask,
        count_tail=count_tail,
        **options,
    )


@kernel("min_log_alpha", "kappa_0", "tol", "max_iter", masks_rows=True)
def k_line_search(counts, mu, log_alpha0, prior_mean, active, design, prior_var, use_prior, smask, cmask, *,
                  min_log_alpha, kappa_0, tol, max_iter):
    return _line_search(counts, mu, log_alpha0, prior_mean, None, active, design, prior_var, use_prior, smask,
                        cmask, min_log_alpha=min_log_alpha, kappa_0=kappa_0, tol=tol, max_iter=max_iter)


@kernel("min_log_alpha", "kappa_0", "tol", "max_iter", masks_rows=True)
def k_line_search_tail(counts, mu, log_alpha0, prior_mean, count_tail, active, design, prior_var, use_prior, smask,
                       cmask, *, min_log_alpha, kappa_0, tol, max_iter):
    """:func:`k_line_search` with each gene's count tail (``(G, TAIL_WIDTH)``, see ``count_tail``)."""
    return _line_search(counts, mu, log_alpha0, prior_mean, count_tail, active, design, prior_var, use_prior,
                        smask, cmask, min_log_alpha=min_log_alpha, kappa_0=kappa_0, tol=tol, max_iter=max_iter)


@kernel("lower", "upper")
def k_disp_newton(counts, mu, log_alpha0, prior_mean, design, prior_var, use_prior, smask, cmask, *, lower, upper):
    return nb_dispersion.fit_dispersion_newton(
        counts,
        mu,
        design,
        log_alpha0,
        prior_mean,
        prior_var,
        use_prior=use_prior,
        lower=lower,
        upper=upper,
        sample_mask=smask,
        coef_mask=cmask,
    )


@kernel()
def k_grid(counts, mu, prior_mean, design, prior_var, grid, use_prior, smask, cmask):
    return nb_dispersion.fit_dispersion_grid(
        counts, mu, design, prior_mean, prior_var, use_prior=use_prior, grid=grid, sample_mask=smask, coef_mask=cmask
    )


@kernel()
def k_loglik(counts, mu, alpha, smask):
    return nb.nb_log_likelihood(counts, mu, alpha, smask)
