"""DESeq2's ``fitNbinomGLMs``: per-gene NB GLM coefficients, their covariances and hat values.

IRLS with a small ridge for every gene at once (:func:`diffbio_prob.cores.nb.irls_fit`), then, for the genes
IRLS leaves unconverged, unstable or with a non-positive variance, DESeq2's fallback optimiser
(:func:`diffbio_prob.cores.nb.fit_beta_newton`). The intercept-only design with no ridge is R's
``justIntercept`` shortcut: the log2 mean of normalised counts, no iterations.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from diffbio_prob.parallel import Padding, run_batched
from diffbio_prob.workflows.deseq2 import kernels
from diffbio_prob.workflows.deseq2.data import DESeq2Data
from diffbio_prob.workflows.deseq2.options import DESeq2Options

__all__ = ["GLMFit", "fit_glm", "nb_log_likelihood", "LOG2E", "LN2"]

LOG2E = 1.0 / math.log(2.0)
LN2 = math.log(2.0)


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
    ridge_log2=1e-6,
    shard: bool = True,
) -> GLMFit:
    """DESeq2 ``fitNbinomGLMs`` of every gene of ``data`` at dispersions ``alpha``.

    Args:
        data: counts, design and normalisation.
        alpha: ``(G,)`` dispersions.
        opts: ``min_mu``, ``beta_tol``, ``beta_maxit``.
        ridge_log2: R's ``lambda`` (on the log2 scale): a number or ``(P,)`` per coefficient (the
            inverse of a normal prior's variance, as ``lfcShrink(type="normal")`` and ``rlog`` use it).
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
    if p == 1 and np.all(design == 1.0) and np.all(lam <= 1e-6):
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
        min_mu=opts.min_mu,
        tol=opts.beta_tol,
        max_iter=opts.beta_maxit,
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
        ok_start = row_stable[rows] & np.all(np.abs(beta[rows] * LOG2E) < 30, axis=1)
        start = np.nan_to_num(np.where(ok_start[:, None], beta[rows], beta_init[rows] * LN2))
        b2, c2, s2, m2, l2 = run_batched(
            kernels.k_beta_newton,
            (data.padded_counts[rows], data.padded_log_offset[rows], alpha[rows], pad.coefs(start)),
            shared,
            shard=shard,
            min_mu=opts.min_mu,
        )
        beta[rows], sigma[rows] = b2[:, :p], s2[:, :p, :p]
        mu[rows], loglik[rows] = m2[:, :n], l2
        conv[rows] = conv[rows] | np.asarray(c2)
    se = np.sqrt(np.maximum(np.diagonal(sigma, axis1=1, axis2=2), 0.0))
    return GLMFit(beta=beta, sigma=sigma, se=se, mu=mu, loglik=loglik, conv=conv, n_iter=np.asarray(n_iter), hat=hat)
