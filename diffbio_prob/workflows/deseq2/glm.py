"""DESeq2's ``fitNbinomGLMs``: per-gene NB GLM coefficients, their covariances and hat values.

IRLS with a small ridge for every gene at once (:func:`diffbio_prob.cores.nb_glm_fit.irls_fit`), then, for
the genes IRLS leaves unconverged, unstable or with a non-positive variance, DESeq2's fallback optimiser:
R's ``fitNbinomGLMsOptim`` (L-BFGS-B per row on the host, :func:`optim_fallback`) with R's line search,
or the vectorised projected Newton (:func:`diffbio_prob.cores.nb_glm_fit.fit_beta_newton`) with
``dispersion_fit="newton"``. The intercept-only design with no ridge is R's ``justIntercept`` shortcut:
the log2 mean of normalised counts, no iterations.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from diffbio_prob.parallel import Padding, run_batched
from diffbio_prob.workflows.deseq2 import kernels, rstats
from diffbio_prob.workflows.deseq2.data import DESeq2Data
from diffbio_prob.workflows.deseq2.options import DESeq2Options

__all__ = [
    "GLMFit", "fit_glm", "nb_log_likelihood", "optim_fallback", "irls_options", "is_just_intercept", "LOG2E", "LN2",
    "RIDGE_LOG2",
]

LOG2E = 1.0 / math.log(2.0)
LN2 = math.log(2.0)
_R_LOG2E = math.log2(math.exp(1.0))  # R's log2(exp(1))
RIDGE_LOG2 = 1e-6  # R's lambda for the unpenalised fits (fitNbinomGLMs' default)


def irls_options(opts: DESeq2Options) -> dict:
    """The static options of the IRLS kernel (``kernels.k_irls``) for ``opts``."""
    return {"min_mu": opts.min_mu, "tol": opts.beta_tol, "max_iter": opts.beta_maxit}


def is_just_intercept(design: np.ndarray, lam: np.ndarray) -> bool:
    """R's ``justIntercept`` shortcut applies: an intercept-only design with no ridge beyond R's default."""
    return design.shape[1] == 1 and bool(np.all(design == 1.0)) and bool(np.all(lam <= RIDGE_LOG2))


class GLMFit(NamedTuple):
    """One NB GLM per gene (natural-log coefficients; G genes, N samples, P coefficients)."""

    beta: np.ndarray  # (G, P)
    sigma: np.ndarray  # (G, P, P) covariance of beta
    se: np.ndarray  # (G, P)
    mu: np.ndarray  # (G, N) fitted means s exp(X beta)
    loglik: np.ndarray  # (G,)
    conv: np.ndarray  # (G,) bool
    n_iter: np.ndarray  # (G,) int
    hat: np.ndarray  # (G, N) hat diagonals


def nb_log_likelihood(counts: np.ndarray, mu: np.ndarray, alpha: np.ndarray, *, shard: bool = True) -> np.ndarray:
    """``(G,)`` NB log-likelihoods of ``(G, N)`` counts at means ``mu`` and dispersions ``alpha``."""
    pad = Padding.of(np.ones((counts.shape[1], 1)), counts.shape[0])
    return run_batched(
        kernels.k_loglik, (pad.samples(counts, 0.0), pad.samples(mu, 1.0), alpha), (pad.sample_mask,), shard=shard
    )


def fit_glm(
    data: DESeq2Data,
    alpha: np.ndarray,
    opts: DESeq2Options,
    *,
    ridge_log2=RIDGE_LOG2,
    fallback: str = "optim",
    shard: bool = True,
) -> GLMFit:
    """DESeq2 ``fitNbinomGLMs`` of every gene of ``data`` at dispersions ``alpha``.

    Args:
        data: counts, design and normalisation.
        alpha: ``(G,)`` dispersions.
        opts: ``min_mu``, ``beta_tol``, ``beta_maxit``.
        ridge_log2: R's ``lambda`` (on the log2 scale): a number or ``(P,)`` per coefficient (the
            inverse of a normal prior's variance, as ``lfcShrink(type="normal")`` and ``rlog`` use it).
        fallback: for the rows IRLS leaves unconverged, unstable or with a non-positive variance:
            ``"optim"`` (R's ``fitNbinomGLMsOptim``: L-BFGS-B per row on the host, see
            :func:`optim_fallback`; used with ``opts.dispersion_fit == "deseq2"``) or ``"newton"``
            (the vectorised projected Newton of :func:`diffbio_prob.cores.nb_glm_fit.fit_beta_newton`,
            which goes to the optimum itself).
        shard: split genes across local devices.

    Returns:
        :class:`GLMFit` (natural-log coefficients; divide by ``log(2)`` for DESeq2's log2 scale).
    """
    counts, design = data.counts, data.design
    g, n = counts.shape
    p = design.shape[1]
    alpha = np.asarray(alpha, dtype=float)
    lam = np.broadcast_to(np.asarray(ridge_log2, dtype=float), (p,))
    norm = data.normalized
    if is_just_intercept(design, lam):
        # justIntercept: log2 of the mean of normalised counts, no IRLS.
        beta_log2 = np.log2(norm.mean(axis=1))
        mu = data.norm_factors * np.exp2(beta_log2)[:, None]
        loglik = nb_log_likelihood(counts, mu, alpha, shard=shard)
        w = 1.0 / (1.0 / mu + alpha[:, None])
        xtwx = w.sum(axis=1)
        sigma = (1.0 / xtwx)[:, None, None]
        return GLMFit(
            beta=(beta_log2 * LN2)[:, None],
            sigma=sigma,
            se=np.sqrt(sigma[:, :, 0]),
            mu=mu,
            loglik=loglik,
            conv=np.ones(g, bool),
            n_iter=np.ones(g, int),
            hat=w / xtwx[:, None],
        )
    beta_init = np.linalg.lstsq(design, np.log(norm + 0.1).T, rcond=None)[0].T
    ridge = lam / LN2**2
    pad = data.padding
    shared = (data.padded_design, pad.coefs(ridge), data.sample_mask, data.coef_mask)
    beta, n_iter, sigma, hat, mu, loglik = run_batched(
        kernels.k_irls,
        (data.padded_counts, data.padded_log_offset, alpha, pad.coefs(beta_init)),
        shared,
        shard=shard,
        min_rows=data.batch_rows,
        **irls_options(opts),
    )
    beta = np.array(beta[:, :p])
    sigma = np.array(sigma[:, :p, :p])
    mu = np.array(mu[:, :n])
    hat = np.asarray(hat[:, :n])
    loglik = np.array(loglik)
    row_stable = np.all(np.isfinite(beta), axis=1)
    var_pos = np.all(np.diagonal(sigma, axis1=1, axis2=2) > 0, axis=1)
    conv = np.asarray(n_iter) < opts.beta_maxit
    rows = np.flatnonzero(~conv | ~row_stable | ~var_pos)
    if rows.size:
        # R's fitNbinomGLMsOptim start: the IRLS betas (log2) when finite and all below 30, else the
        # least-squares start beta_mat, which is on the natural-log scale but handed to optim as log2.
        ok_start = row_stable[rows] & np.all(np.abs(beta[rows] * LOG2E) < 30, axis=1)
        # R solves beta_mat by LINPACK QR; the optimum on a flat likelihood depends on the start's bits
        init_qr = rstats.r_qr_solve_start(rstats.r_log(norm[rows] + 0.1), design)
        start_log2 = np.nan_to_num(np.where(ok_start[:, None], beta[rows] * _R_LOG2E, init_qr))
        if opts.dispersion_fit == "deseq2" and fallback == "optim":
            b2, c2, s2, m2, l2 = optim_fallback(
                counts[rows], design, data.norm_factors[rows], alpha[rows], start_log2, lam, opts.min_mu
            )
        else:
            b2, c2, s2, m2, l2 = run_batched(
                kernels.k_beta_newton,
                (data.padded_counts[rows], data.padded_log_offset[rows], alpha[rows], pad.coefs(start_log2 * LN2)),
                shared,
                shard=shard,
                min_mu=opts.min_mu,
            )
            b2, s2, m2 = np.asarray(b2)[:, :p], np.asarray(s2)[:, :p, :p], np.asarray(m2)[:, :n]
        beta[rows], sigma[rows] = b2, s2
        mu[rows], loglik[rows] = m2, l2
        conv[rows] = conv[rows] | np.asarray(c2)
    se = np.sqrt(np.maximum(np.diagonal(sigma, axis1=1, axis2=2), 0.0))
    return GLMFit(beta=beta, sigma=sigma, se=se, mu=mu, loglik=loglik, conv=conv, n_iter=np.asarray(n_iter), hat=hat)


def sum_in_order(par, row) -> float:
    """``sum_j par[j] * row[j]`` from 0 in order (reference BLAS dgemv, as R's ``x %*% p``)."""
    eta = 0.0
    for b, v in zip(par, row):
        eta = eta + b * v
    return eta


def optim_fallback(counts, design, norm_factors, alpha, start_log2, lam, min_mu):
    """R's ``fitNbinomGLMsOptim`` for a few rows: ``optim(method = "L-BFGS-B")`` per row, on the host.

    Minimises ``-(sum dnbinom(k, nf 2^(X p), 1/alpha, log) + sum dnorm(p, 0, sqrt(1/lambda), log))``
    over log2 coefficients ``p`` in ``[-30, 30]`` (``1e300`` where not finite), with R ``optim``'s
    defaults (``lmm = 5``, ``factr = 1e7``, ``pgtol = 0``, ``maxit = 100``) and its gradient: central
    differences with ``ndeps = 1e-3``, shortened at the bounds (R's ``fmingr``). DESeq2 passes no
    ``gr`` and no ``control``. Then, as R: ``mu`` unfloored, the covariance and log-likelihood at
    ``mu`` floored at ``minmu``; ``betaConv`` set where optim reports convergence. R's answer is where
    L-BFGS-B stops on a flat likelihood (a group of zeros: |LFC| 18-26), so it depends on the path and
    on the objective's last bits: the objective is R's to the bit (:func:`rstats.r_optim_objective`:
    R 4.2's dnbinom and dnorm, long-double sums), and scipy's L-BFGS-B then takes R's steps (same
    function counts; optimum within ~1e-5, mostly ~1e-9, of R's on tagseq's zero-group genes).

    Returns:
        ``(beta (R, P) natural log, conv (R,), sigma (R, P, P), mu (R, N), loglik (R,))``.
    """
    counts = np.asarray(counts, float)
    x = np.asarray(design, float)
    rows, n = counts.shape
    p = x.shape[1]
    lam = np.broadcast_to(np.asarray(lam, float), (p,))
    large = 30.0
    ridge = np.diag(lam / LN2**2)
    beta = np.zeros((rows, p))
    conv = np.zeros(rows, bool)
    sigma = np.zeros((rows, p, p))
    mu = np.zeros((rows, n))
    loglik = np.zeros(rows)
    sd_list = [math.sqrt(1.0 / v) for v in lam.tolist()]
    x_list = x.tolist()
    for r in range(rows):
        k, nf, size = counts[r], norm_factors[r], 1.0 / alpha[r]
        k_list, nf_list = k.tolist(), np.asarray(nf, dtype=float).tolist()

        def fn(par, k_list=k_list, nf_list=nf_list, size=size):
            return rstats.r_optim_objective(par.tolist(), k_list, nf_list, size, x_list, sd_list)

        def gr(par, fn=fn):
            # R optim's fmingr with bounds: central differences, ndeps = 1e-3, cut at the bounds
            g = np.empty(p)
            for i in range(p):
                e_hi = e_lo = 1e-3
                hi, lo = par.copy(), par.copy()
                t = par[i] + e_hi
                if t > large:
                    t = large
                    e_hi = t - par[i]
                hi[i] = t
                v1 = fn(hi)
                t = par[i] - e_lo
                if t < -large:
                    t = -large
                    e_lo = par[i] - t
                lo[i] = t
                g[i] = (v1 - fn(lo)) / (e_hi + e_lo)
            return g

        from scipy import optimize  # ~0.1 s to import, for the rare rows IRLS does not fit

        res = optimize.minimize(
            fn, np.asarray(start_log2[r], float), jac=gr, method="L-BFGS-B", bounds=[(-large, large)] * p,
            options={"maxcor": 5, "ftol": 1e7 * np.finfo(float).eps, "gtol": 0.0, "maxiter": 100},
        )
        par = res.x
        conv[r] = res.status == 0
        beta[r] = par * LN2
        eta = [sum_in_order(par, row) for row in x_list]
        mu_row = np.array([f * math.pow(2.0, e) for f, e in zip(nf_list, eta)])
        mu[r] = mu_row
        mu_f = np.maximum(mu_row, min_mu)
        w = 1.0 / (1.0 / mu_f + alpha[r])
        xtwx = x.T @ (w[:, None] * x)
        inv = np.linalg.inv(xtwx + ridge)
        sigma[r] = inv @ xtwx @ inv
        loglik[r] = rstats.r_ld_sum(rstats.r_dnbinom_mu_log(kk, size, mm) for kk, mm in zip(k_list, mu_f.tolist()))
    return beta, conv, sigma, mu, loglik
