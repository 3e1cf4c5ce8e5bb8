"""DESeq2's dispersion estimation, vectorised over genes: the Cox-Reid adjusted profile log-likelihood
with its normal log prior (``log_posterior`` and its derivatives), R's line search (``fitDisp``), the grid
fallback (``fitDispGrid``) and an exact Newton alternative.

Shapes: ``counts`` and ``mu`` are ``(G, N)``, ``design`` ``(N, P)``, ``log_alpha`` ``(G,)``. Follows
thelovelab/DESeq2 ``src/DESeq2.cpp``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from diffbio_prob.cores.nb import _coef_pad, _masked, digamma_ratio, lgamma_ratio, ratio_shift, trigamma_ratio
from diffbio_prob.cores.nb_glm_fit import _backtrack
from diffbio_prob.cores.row_queue import masked_loop
from diffbio_prob.cores.row_sum import row_sum
from diffbio_prob.cores.spd import _chol_solve, spd_cholesky, weighted_gram

__all__ = [
    "cr_log_posterior",
    "cr_log_posterior_grad",
    "cr_log_posterior_hess",
    "DispersionFit",
    "fit_dispersion_line_search",
    "fit_dispersion_grid",
    "fit_dispersion_newton",
]

# --------------------------------------------------------------------------------------------
# Dispersion: Cox-Reid adjusted profile log-likelihood (DESeq2 log_posterior and derivatives).
# --------------------------------------------------------------------------------------------


def _ll_mean_terms(counts, mu, size, alpha, sample_mask):
    # _ll_terms less its lgamma ratio (the part that depends on the count alone)
    return _masked(-counts * jnp.log(mu + size) - size * jnp.log1p(mu * alpha), sample_mask)


def _score_mean_terms(counts, mu, size, alpha, sample_mask):
    # _score_terms less its digamma ratio
    return _masked((counts - mu) / (mu + size) + jnp.log1p(mu * alpha), sample_mask)


def _tail_lgamma_terms(tail, size):
    # sum_n [lgamma(y_n + r) - lgamma(r)] = sum_n sum_{i < y_n} log(r + i) = sum_i tail_i log(r + i),
    # tail_i the number of samples with a count above i (integer counts)
    return tail * jnp.log(size + jnp.arange(tail.shape[-1], dtype=tail.dtype))


def _tail_digamma_terms(tail, size):
    # sum_n [digamma(y_n + r) - digamma(r)] = sum_i tail_i / (r + i), likewise
    return tail / (size + jnp.arange(tail.shape[-1], dtype=tail.dtype))


def _ll_terms(counts, mu, size, alpha, shift, sample_mask):
    # DESeq2's ll_part per sample: it leaves out -lgamma(y + 1) + y log(mu) (constant in alpha); its value
    # enters DESeq2's "no increase" test, so we keep DESeq2's exact form.
    return _masked(lgamma_ratio(counts, size, shift) - counts * jnp.log(mu + size) - size * jnp.log1p(mu * alpha),
                   sample_mask)


def _score_terms(counts, mu, size, alpha, shift, sample_mask):
    # d ll_part / d size, negated, per sample: the derivative in log alpha is size times their sum
    return _masked((counts - mu) / (mu + size) + jnp.log1p(mu * alpha) - digamma_ratio(counts, size, shift),
                   sample_mask)


def _score_slope_terms(counts, mu, size, alpha, sample_mask):
    inv = 1.0 / (mu + size)
    return _masked(-trigamma_ratio(counts, size) - counts * inv * inv - mu * inv * alpha + mu * inv * inv,
                   sample_mask)


def _cr_parts(
    log_alpha, counts, mu, design, want_grad: bool, want_hess: bool, sample_mask=None, coef_mask=None,
    count_tail=None,
):
    """Likelihood part, Cox-Reid part and their log-alpha derivatives, as DESeq2 splits them.

    Each sum over samples is a :func:`~diffbio_prob.cores.row_sum.row_sum` of its own, with the per-gene
    constants (``alpha``, ``1/alpha`` and its Gamma-recursion shift) computed before it. With
    ``count_tail`` (``(G, K)``: how many of the gene's samples have a count above ``i``; every count an
    integer of at most ``K``) the sums of the terms that depend on the count alone (``lgamma(y + r) -
    lgamma(r)`` and its derivative, two thirds of the work) run over the ``K`` counts instead of the ``N``
    samples, one ``log`` or one division each by the Gamma recursion, as glmGamPoi's overdispersion MLE
    sums over a gene's unique counts (Ahlmann-Eltze & Huber 2021).
    """
    alpha = jnp.exp(log_alpha)[:, None]
    size = jnp.exp(-log_alpha)[:, None]
    shift = ratio_shift(size)
    if count_tail is None:
        ll = row_sum(_ll_terms, counts, mu, size, alpha, shift, sample_mask)
    else:
        ll = (row_sum(_tail_lgamma_terms, count_tail, size)
              + row_sum(_ll_mean_terms, counts, mu, size, alpha, sample_mask))
    w = _masked(size * mu / (mu + size), sample_mask)  # 1 / (1/mu + alpha)
    b = weighted_gram(design, w) + _coef_pad(design.shape[1], coef_mask, w.dtype)
    chol = spd_cholesky(b)
    cr = -jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)  # -0.5 log det
    out = {"ll": ll, "cr": cr}
    if want_grad or want_hess:
        if count_tail is None:
            s_sum = row_sum(_score_terms, counts, mu, size, alpha, shift, sample_mask)
        else:
            s_sum = (row_sum(_score_mean_terms, counts, mu, size, alpha, sample_mask)
                     - row_sum(_tail_digamma_terms, count_tail, size))
        out["score"] = s_sum
        r = size[:, 0]
        out["dll"] = r * s_sum
        db = weighted_gram(design, -(w * w))
        m1 = _chol_solve(chol, db)  # B^-1 dB
        t1 = jnp.trace(m1, axis1=-2, axis2=-1)
        a0 = alpha[:, 0]
        out["dcr"] = -0.5 * t1 * a0
        if want_hess:
            s_prime = row_sum(_score_slope_terms, counts, mu, size, alpha, sample_mask)
            out["d2ll"] = -r * s_sum - r * r * s_prime
            d2b = weighted_gram(design, 2.0 * w * w * w)
            t2 = jnp.trace(m1 @ m1, axis1=-2, axis2=-1)
            t3 = jnp.trace(_chol_solve(chol, d2b), axis1=-2, axis2=-1)
            out["d2cr"] = a0 * (-0.5 * t1) + a0 * a0 * (0.5 * t2 - 0.5 * t3)
    return out


def _prior_terms(log_alpha, prior_mean, prior_var, use_prior):
    """Normal prior on log alpha and its two derivatives, times 0/1 ``use_prior`` (may be traced)."""
    w = jnp.asarray(use_prior, log_alpha.dtype)
    mean = jnp.zeros_like(log_alpha) if prior_mean is None else prior_mean
    dev = log_alpha - mean
    return -w * 0.5 * dev * dev / prior_var, -w * dev / prior_var, -w / prior_var * jnp.ones_like(dev)


def cr_log_posterior(
    log_alpha, counts, mu, design, prior_mean=None, prior_var=1.0, use_prior=False, *, sample_mask=None, coef_mask=None
):
    """Cox-Reid adjusted profile log-likelihood of ``log alpha``, plus an optional normal prior.

    ``l(a) = sum_n [lgamma(y + 1/alpha) - lgamma(1/alpha) - y log(mu + 1/alpha)
    - (1/alpha) log(1 + mu alpha)] - 0.5 log det(X' W X) - (a - m)^2 / (2 v)`` with
    ``W = 1 / (1/mu + alpha)`` (DESeq2 ``log_posterior``; constants in ``alpha`` are left out as
    there). Cox & Reid 1987; McCarthy et al. 2012.

    Args:
        log_alpha: ``Float[Array, "G"]``.
        counts: ``Float[Array, "G N"]``.
        mu: ``Float[Array, "G N"]`` fitted means (floored at DESeq2's ``minmu``).
        design: ``Float[Array, "N P"]``.
        prior_mean: ``Float[Array, "G"]`` prior mean of ``log alpha`` (used if ``use_prior``).
        prior_var: prior variance of ``log alpha``.
        use_prior: add the normal prior (MAP) or not (MLE).
        sample_mask, coef_mask: padding masks as in :func:`irls_fit`.

    Returns:
        ``Float[Array, "G"]``.
    """
    parts = _cr_parts(log_alpha, counts, mu, design, False, False, sample_mask, coef_mask)
    return parts["ll"] + parts["cr"] + _prior_terms(log_alpha, prior_mean, prior_var, use_prior)[0]


def cr_log_posterior_grad(
    log_alpha, counts, mu, design, prior_mean=None, prior_var=1.0, use_prior=False, *, sample_mask=None, coef_mask=None
):
    """Derivative of :func:`cr_log_posterior` with respect to ``log alpha`` (DESeq2 ``dlog_posterior``)."""
    parts = _cr_parts(log_alpha, counts, mu, design, True, False, sample_mask, coef_mask)
    return parts["dll"] + parts["dcr"] + _prior_terms(log_alpha, prior_mean, prior_var, use_prior)[1]


def cr_log_posterior_hess(
    log_alpha, counts, mu, design, prior_mean=None, prior_var=1.0, use_prior=False, *, sample_mask=None, coef_mask=None
):
    """Second derivative of :func:`cr_log_posterior` in ``log alpha`` (DESeq2 ``d2log_posterior``)."""
    parts = _cr_parts(log_alpha, counts, mu, design, True, True, sample_mask, coef_mask)
    return parts["d2ll"] + parts["d2cr"] + _prior_terms(log_alpha, prior_mean, prior_var, use_prior)[2]


class DispersionFit(NamedTuple):
    """Output of the dispersion fits (DESeq2 ``fitDisp``'s list, per gene)."""

    log_alpha: jax.Array
    n_iter: jax.Array
    n_accept: jax.Array
    initial_lp: jax.Array
    last_lp: jax.Array
    last_dlp: jax.Array
    last_change: jax.Array
    # Line search only (``None`` from the other fits): how far each gene's decisions were from a tie.
    decision_margin: jax.Array | None = None  # min over steps of |gap| - bound on R's rounding error
    first_margin: jax.Array | None = None  # the same for the first step alone (R's n_iter == 1 or not)
    lp_error: jax.Array | None = None  # bound on |R's last_lp - ours| (rounding and the drift of a)
    initial_lp_error: jax.Array | None = None  # the same for initial_lp


def fit_dispersion_line_search(
    counts,
    mu,
    design,
    log_alpha_init,
    prior_mean,
    prior_var,
    *,
    use_prior,
    min_log_alpha: float,
    kappa_0: float = 1.0,
    tol: float = 1e-6,
    max_iter: int = 100,
    epsilon: float = 1e-4,
    compact: int | None = None,
    active=None,
    sample_mask=None,
    coef_mask=None,
    count_tail=None,
):
    """DESeq2's dispersion line search (``fitDisp``), all genes at once.

    Gradient ascent in ``a = log alpha`` with Armijo backtracking: propose ``a + kappa l'(a)``
    (clamped to ``[-30, 10]``), accept if ``l`` rises by at least ``epsilon kappa l'(a)^2``, else halve
    ``kappa``; after an accepted step ``kappa = min(1.1 kappa, kappa_0)``, halved every fifth
    acceptance; stop when an accepted step gains less than ``tol`` or ``a < min_log_alpha``. Every
    branch, counter and stopping rule is DESeq2's, so the estimates (and ``n_iter``, used by DESeq2's
    convergence tests) reproduce R's, not only its optimum.

    Args:
        counts: ``Float[Array, "G N"]``.
        mu: ``Float[Array, "G N"]`` fitted means (floored).
        design: ``Float[Array, "N P"]``.
        log_alpha_init: ``Float[Array, "G"]`` starting values.
        prior_mean: ``Float[Array, "G"]`` prior means of ``log alpha`` (ignored unless ``use_prior``).
        prior_var: prior variance.
        use_prior: MAP (True) or MLE (False); may be a traced boolean.
        min_log_alpha: stop once ``log alpha`` goes below this (DESeq2: ``log(minDisp / 10)``).
        kappa_0, tol, max_iter, epsilon: DESeq2's ``kappa_0``, ``dispTol``, ``maxit`` and Armijo
            constant.
        compact: ``chunk`` to iterate the unfinished genes ``chunk`` at a time as a work queue (same
            results, less work on large problems); ``None`` for one batch.
        active: optional ``Bool[Array, "G"]``: the genes to fit; the others cost no step of the work queue
            and come back with ``n_iter == 0`` and values to be ignored.
        sample_mask, coef_mask: padding masks as in :func:`irls_fit`.
        count_tail: optional ``Float[Array, "G K"]``, how many of each gene's (unmasked) samples have a
            count above ``i``, for ``i < K``; every count must be an integer of at most ``K``. The same
            fit, with the count-only terms summed over ``K`` counts instead of ``N`` samples (see
            :func:`_cr_parts`).

    Returns:
        :class:`DispersionFit` (``n_iter == max_iter`` means not converged), with
        ``decision_margin``: per gene, the smallest distance of any of its branch decisions (accept,
        stop on ``tol``, stop below ``min_log_alpha``, the clamps) from a tie, minus a bound on the
        rounding error of R's own evaluation of the same quantities (see :func:`_rounding_bounds`).
        Where it is positive, R's double-precision loop takes every branch ours takes, so its
        ``n_iter`` and stopping point are ours; the caller redoes only the other genes in R's
        arithmetic. ``first_margin``: the same for the first step alone, which decides whether R stops
        after one step (``n_iter == 1``, which DESeq2 counts as not converged).
    """
    counts = jnp.asarray(counts)
    dtype = counts.dtype
    g = counts.shape[0]
    prior_mean = jnp.broadcast_to(jnp.asarray(prior_mean, dtype), (g,))
    prior_w = jnp.asarray(use_prior, dtype)  # 0/1: adding 0 * prior leaves DESeq2's MLE unchanged
    mu = jnp.asarray(mu, dtype)
    valid = jnp.ones_like(counts, bool) if sample_mask is None else jnp.broadcast_to(sample_mask, counts.shape)
    y_max = jnp.max(jnp.where(valid, counts, 0.0), -1)
    mu_max = jnp.max(jnp.where(valid, mu, 0.0), -1)
    mu_min = jnp.min(jnp.where(valid, mu, jnp.inf), -1)
    n_valid = jnp.sum(valid, -1).astype(dtype)
    # For the bounds on R's rounding: sum |ll_part terms| and sum |score terms| from sums that do not
    # depend on alpha (see _term_magnitudes), so a step sums over samples twice, not four times.
    c_terms = jnp.where(valid, lax.lgamma(counts + 1.0) - counts * jnp.log(jnp.where(valid, mu, 1.0)), 0.0)
    c_sum, c_abs = jnp.sum(c_terms, -1), jnp.sum(jnp.abs(c_terms), -1)
    del c_terms
    y_sum = jnp.sum(jnp.where(valid, counts, 0.0), -1)
    n_pos = jnp.sum(jnp.where(valid, counts > 0, False), -1).astype(dtype)

    def step(data, st):
        """One pass of DESeq2's loop for every gene of ``data`` (a row subset of the problem)."""
        cnt, m, pm, ymx, mmx, mmn, nv, csum, cabs, ysum, npos = data[:11]
        tail = data[11] if len(data) > 11 else None
        (a, lp, dlp, kappa, n_iter, n_acc, done, change, lp0, started, drift, lp_err, dlp_err, margin, lp0_err,
         margin1) = st
        # One evaluation site: a gene's first pass evaluates its starting point, later passes
        # the proposal (halves the code XLA compiles).
        first = ~started
        active = ~done & started
        n_iter = jnp.where(active, n_iter + 1, n_iter)
        a_prop = a + kappa * dlp
        kappa = jnp.where(active & (a_prop < -30.0), (-30.0 - a) / dlp, kappa)
        kappa = jnp.where(active & (a_prop > 10.0), (10.0 - a) / dlp, kappa)
        a_try = jnp.where(first, a, a + kappa * dlp)
        parts = _cr_parts(a_try, cnt, m, design, True, False, sample_mask, coef_mask, tail)
        dev = a_try - pm
        lp_try = parts["ll"] + parts["cr"] - prior_w * (0.5 * dev * dev / prior_var)
        dlp_try = parts["dll"] + parts["dcr"] - prior_w * (dev / prior_var)
        lp0 = jnp.where(first, lp_try, lp0)
        lp = jnp.where(first, lp_try, lp)
        dlp = jnp.where(first, dlp_try, dlp)
        theta_kappa = -lp_try
        theta_hat = -lp - kappa * epsilon * dlp * dlp
        accept = active & (theta_kappa <= theta_hat)
        reject = active & ~accept
        n_acc = jnp.where(accept, n_acc + 1, n_acc)
        change_new = lp_try - lp
        small = change_new < tol
        below = a_try < min_log_alpha
        cont = accept & ~small & ~below
        # How far R's run of this step could be from ours: its lp and dlp carry rounding errors
        # (err_lp, err_dlp), and its a has drifted from ours by the dlp errors of earlier steps.
        ll_abs, score_abs = _term_magnitudes(a_try, parts, csum, cabs, ysum, npos)
        err_lp, err_dlp = _rounding_bounds(a_try, parts, ll_abs, score_abs, ymx, mmx, mmn, nv)
        drift_try = jnp.where(first, 0.0, drift + kappa * dlp_err)
        lp_try_err = err_lp + jnp.abs(dlp_try) * drift_try
        lp0_err = jnp.where(first, lp_try_err, lp0_err)
        lp_err = jnp.where(first, lp_try_err, lp_err)
        dlp_err = jnp.where(first, err_dlp, dlp_err)
        gaps = jnp.stack([
            jnp.abs(theta_kappa - theta_hat) - (lp_try_err + lp_err + 2.0 * kappa * epsilon * jnp.abs(dlp) * dlp_err),
            jnp.where(accept, jnp.abs(change_new - tol) - (lp_try_err + lp_err), jnp.inf),
            jnp.where(accept, jnp.abs(a_try - min_log_alpha) - drift_try, jnp.inf),
            jnp.abs(a_prop + 30.0) - drift_try,
            jnp.abs(a_prop - 10.0) - drift_try,
        ])
        step_margin = jnp.min(gaps, 0)
        margin = jnp.where(active, jnp.minimum(margin, step_margin), margin)
        margin1 = jnp.where(active & (n_iter == 1), step_margin, margin1)
        a = jnp.where(accept, a_try, a)
        drift = jnp.where(accept, drift_try, drift)
        change = jnp.where(accept, change_new, change)
        # DESeq2 leaves lp at its previous value when it stops for a < min_log_alpha.
        keep_lp = accept & (small | ~below)
        lp = jnp.where(keep_lp, lp_try, lp)
        lp_err = jnp.where(keep_lp, lp_try_err, lp_err)
        dlp = jnp.where(cont, dlp_try, dlp)
        dlp_err = jnp.where(cont, err_dlp, dlp_err)
        kappa_acc = jnp.minimum(kappa * 1.1, kappa_0)
        kappa_acc = jnp.where(n_acc % 5 == 0, kappa_acc / 2.0, kappa_acc)
        kappa = jnp.where(cont, kappa_acc, jnp.where(reject, kappa / 2.0, kappa))
        done = done | (accept & (small | below)) | (n_iter >= max_iter)
        return (a, lp, dlp, kappa, n_iter, n_acc, done, change, lp0, jnp.ones_like(started), drift, lp_err, dlp_err,
                margin, lp0_err, margin1)

    zeros_i = jnp.zeros(g, jnp.int32)
    zeros = jnp.zeros(g, dtype)
    falses = jnp.zeros(g, bool)
    done0 = falses if active is None else ~jnp.asarray(active, bool)
    st = (
        jnp.asarray(log_alpha_init, dtype),
        zeros,
        zeros,
        jnp.full(g, kappa_0, dtype),
        zeros_i,
        zeros_i,
        done0,
        jnp.full(g, -1.0, dtype),
        zeros,
        falses,
        zeros,
        zeros,
        zeros,
        jnp.full(g, jnp.inf, dtype),
        zeros,
        jnp.full(g, jnp.inf, dtype),
    )
    data = (counts, mu, prior_mean, y_max, mu_max, mu_min, n_valid, c_sum, c_abs, y_sum, n_pos)
    if count_tail is not None:
        data = data + (jnp.asarray(count_tail, dtype),)
    st = masked_loop(step, data, st, done_index=6, max_steps=max_iter + 1, compact=compact)
    a, lp, dlp, _, n_iter, n_acc, _, change, lp0, _, _, lp_err, _, margin, lp0_err, margin1 = st
    return DispersionFit(
        log_alpha=a,
        n_iter=n_iter,
        n_accept=n_acc,
        initial_lp=lp0,
        last_lp=lp,
        last_dlp=dlp,
        last_change=change,
        decision_margin=margin,
        first_margin=margin1,
        lp_error=lp_err,
        initial_lp_error=lp0_err,
    )


_OUR_RATIO_ERROR = 2e-11


def _lgamma_bound(x):
    # |lgamma(x)| <= (x + 1) |log x| + x + 1 for every x > 0 (Stirling above 1; -log x - gamma x below)
    return (x + 1.0) * jnp.abs(jnp.log(x)) + x + 1.0


def _term_magnitudes(log_alpha, parts, c_sum, c_abs, y_sum, n_pos):
    """Upper bounds on ``sum_n |ll_part term|`` and ``sum_n |score term|`` at ``log_alpha``, per gene.

    A term of DESeq2's ``ll_part`` is ``t = l + c``: ``l`` the NB log-pmf, never positive, and
    ``c = lgamma(y + 1) - y log(mu)``, free of alpha. So ``sum |t| <= -sum l + sum |c| = sum c - ll +
    sum |c|``, from the step's own ``ll`` and two sums made once per fit. A score term
    ``(y - mu)/(mu + r) + log1p(mu/r) - [digamma(y + r) - digamma(r)]`` is ``p - q`` with
    ``p = log1p(x) - x/(1 + x) + y/(mu + r) >= 0`` (``x = mu/r``) and ``q = sum_{k<y} 1/(r + k) >= 0``, so
    ``sum |s| <= sum s + 2 sum q``; and ``q <= min(y/r, 1/r + log1p(y/r))`` for ``y >= 1``, whose sum
    over the ``n_pos`` positive counts is at most ``n_pos (1/r + log1p(ybar/r))`` (log1p is concave).
    """
    alpha = jnp.exp(log_alpha)
    ll_abs = jnp.maximum(c_sum - parts["ll"], 0.0) + c_abs
    y_bar = y_sum / jnp.maximum(n_pos, 1.0)
    q = jnp.minimum(y_sum * alpha, n_pos * (alpha + jnp.log1p(y_bar * alpha)))
    score_abs = jnp.maximum(parts["score"] + 2.0 * q, 0.0)
    return ll_abs, score_abs


def _rounding_bounds(log_alpha, parts, ll_abs, score_abs, y_max, mu_max, mu_min, n):
    """Bounds on the rounding error of R's ``log_posterior`` and ``dlog_posterior`` at ``log_alpha``.

    R (DESeq2.cpp) computes, per sample, ``lgamma(y + 1/alpha) - lgamma(1/alpha) - y log(mu + 1/alpha) -
    (1/alpha) log(1 + mu alpha)`` in double precision, each part to a few ulps of its own size, and sums
    the N terms in order; so its error is at most a few ``eps`` times the parts' magnitudes plus ``N eps``
    times the sum of the terms' magnitudes (Higham, *Accuracy and Stability of Numerical Algorithms*,
    2002, sec. 4.2). The parts are large where ``1/alpha`` or the counts are (``lgamma(1e7) ~ 1.5e8``:
    R's lp is then uncertain by ~1e-8 per sample against DESeq2's ``dispTol`` of 1e-6). Their magnitudes
    are bounded from each gene's largest count and its smallest and largest mean (``|lgamma|`` and
    ``|digamma|`` by closed forms), and the whole bound taken 8 times over; the derivative the same way,
    times ``alpha / alpha^2``. Our own values differ from the exact ones by less than
    ``_OUR_RATIO_ERROR`` per sample (3x the worst measured), added on top.
    """
    an = jnp.exp(-log_alpha)
    alpha = jnp.exp(log_alpha)
    eps = 8.0 * jnp.finfo(an.dtype).eps
    log_mu = jnp.abs(jnp.log(mu_max + an)) + jnp.abs(jnp.log(mu_min + an))
    l1p = jnp.log1p(mu_max * alpha)
    parts_lp = n * (_lgamma_bound(y_max + an) + _lgamma_bound(an) + y_max * log_mu + an * l1p)
    # + ours: lgamma_ratio and digamma_ratio are off by up to ~7e-12 per sample, whatever the count
    # (measured against exact sums of logs and reciprocals over y, 1e-2 <= 1/alpha <= 1e8)
    err_lp = eps * (parts_lp + (n + 2.0) * ll_abs + 8.0 * jnp.abs(parts["cr"])) + n * _OUR_RATIO_ERROR
    psi = lambda x: jnp.abs(jnp.log(x)) + 1.0 / x + 1.0  # noqa: E731  >= |digamma(x)| for x > 0
    parts_dlp = n * (psi(an) + psi(y_max + an) + l1p + 1.0 + y_max / (mu_min + an))
    err_dlp = (eps * (an * (parts_dlp + (n + 2.0) * score_abs) + 8.0 * jnp.abs(parts["dcr"]))
               + an * n * _OUR_RATIO_ERROR)
    return err_lp, err_dlp


def fit_dispersion_grid(
    counts, mu, design, prior_mean, prior_var, *, use_prior, grid, sample_mask=None, coef_mask=None
):
    """DESeq2's grid fallback (``fitDispGrid``): best of a coarse grid, then of a fine grid around it.

    Args:
        counts, mu, design, prior_mean, prior_var, use_prior: as :func:`fit_dispersion_line_search`.
        grid: ``Float[Array, "K"]`` equally spaced ``log alpha`` values (DESeq2: 20 points from
            ``log 1e-8`` to ``log max(10, N)``).

    Returns:
        ``Float[Array, "G"]`` ``log alpha``.
    """
    counts = jnp.asarray(counts)
    grid = jnp.asarray(grid, counts.dtype)
    g = counts.shape[0]
    prior_mean = jnp.broadcast_to(jnp.asarray(prior_mean, counts.dtype), (g,))
    delta = grid[1] - grid[0]

    def eval_at(a):  # a: (G,)
        return cr_log_posterior(
            a, counts, mu, design, prior_mean, prior_var, use_prior, sample_mask=sample_mask, coef_mask=coef_mask
        )

    coarse = jax.vmap(lambda a: eval_at(jnp.full(g, a)), out_axes=1)(grid)
    a_hat = grid[jnp.argmax(coarse, axis=1)]
    k = grid.shape[0]
    fine_grid = a_hat[:, None] - delta + (2.0 * delta / (k - 1)) * jnp.arange(k, dtype=grid.dtype)
    fine = jax.vmap(eval_at, in_axes=1, out_axes=1)(fine_grid)
    return jnp.take_along_axis(fine_grid, jnp.argmax(fine, axis=1)[:, None], axis=1)[:, 0]


def fit_dispersion_newton(
    counts,
    mu,
    design,
    log_alpha_init,
    prior_mean,
    prior_var,
    *,
    use_prior: bool,
    lower: float,
    upper: float,
    max_iter: int = 50,
    tol: float = 1e-10,
    sample_mask=None,
    coef_mask=None,
):
    """Exact maximiser of the Cox-Reid log posterior by safeguarded Newton in ``log alpha``.

    A faster alternative to :func:`fit_dispersion_line_search` that converges to the optimum itself
    (DESeq2's line search stops within ``dispTol`` of it, so the two agree to ~1e-4 in ``alpha``).
    Newton steps where the curvature is negative, a gradient step otherwise, step halving until the
    objective does not fall, bounds ``[lower, upper]`` on ``log alpha``.

    Returns:
        :class:`DispersionFit` (``last_change`` is the final gain; ``n_accept`` counts Newton steps).
    """
    counts = jnp.asarray(counts)
    dtype = counts.dtype
    g = counts.shape[0]
    prior_mean = jnp.broadcast_to(jnp.asarray(prior_mean, dtype), (g,))

    def parts(a):
        p = _cr_parts(a, counts, mu, design, True, True, sample_mask, coef_mask)
        q0, q1, q2 = _prior_terms(a, prior_mean, prior_var, use_prior)
        return p["ll"] + p["cr"] + q0, p["dll"] + p["dcr"] + q1, p["d2ll"] + p["d2cr"] + q2

    a0 = jnp.clip(jnp.asarray(log_alpha_init, dtype), lower, upper)
    lp0, d10, d20 = parts(a0)

    def body(state):
        t, a, lp, d1, d2, n_iter, n_newton, done, change = state
        active = ~done
        newton = d2 < 0
        step = jnp.where(newton, -d1 / jnp.where(newton, d2, -1.0), jnp.clip(d1, -1.0, 1.0))
        step = jnp.clip(step, -5.0, 5.0)
        a_new, lp_new = _backtrack(
            lambda cand: cr_log_posterior(
                cand, counts, mu, design, prior_mean, prior_var, use_prior, sample_mask=sample_mask, coef_mask=coef_mask
            ),
            a,
            step,
            lp,
            lower,
            upper,
            max_halvings=20,
        )
        gain = lp_new - lp
        lpn, d1n, d2n = parts(a_new)
        stop = active & ((gain <= tol * (jnp.abs(lp) + 1.0)) | (jnp.abs(a_new - a) < 1e-10))
        a = jnp.where(active, a_new, a)
        lp = jnp.where(active, lpn, lp)
        d1 = jnp.where(active, d1n, d1)
        d2 = jnp.where(active, d2n, d2)
        n_iter = jnp.where(active, n_iter + 1, n_iter)
        n_newton = jnp.where(active & newton, n_newton + 1, n_newton)
        change = jnp.where(active, gain, change)
        return t + 1, a, lp, d1, d2, n_iter, n_newton, done | stop, change

    def cond(state):
        t, *_, done, _ = state
        return (t < max_iter) & ~jnp.all(done)

    zi = jnp.zeros(g, jnp.int32)
    state = (0, a0, lp0, d10, d20, zi, zi, jnp.zeros(g, bool), jnp.zeros(g, dtype))
    _, a, lp, d1, _, n_iter, n_newton, done, change = lax.while_loop(cond, body, state)
    n_iter = jnp.where(done, n_iter, max_iter)
    return DispersionFit(a, n_iter, n_newton, lp0, lp, d1, change)
