"""DESeq2's coefficient fitting, vectorised over genes: IRLS with a ridge (``fitBeta``), the Newton /
line-search fallback (``fitNbinomGLMsOptim``'s role), Wald covariances, hat diagonals and Cook's distances.

Shapes: ``counts`` and ``mu`` are ``(G, N)`` (genes by samples), ``design`` is ``(N, P)``, coefficients are
``(G, P)`` on the natural-log scale. Follows thelovelab/DESeq2 ``src/DESeq2.cpp`` (``fitBeta``) and
``R/core.R`` (``calculateCooksDistance``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from diffbio_prob.cores.nb import _coef_pad, _masked, nb_log_pmf
from diffbio_prob.cores.row_queue import masked_loop
from diffbio_prob.cores.row_sum import row_sum
from diffbio_prob.cores.spd import spd_inverse, spd_solve, weighted_gram

__all__ = [
    "IRLSResult",
    "irls_fit",
    "wald_covariance",
    "hat_diagonals",
    "wald_covariance_and_hat",
    "fit_beta_newton",
    "cooks_distance",
]

# --------------------------------------------------------------------------------------------
# Coefficients: IRLS with DESeq2's ridge (fitBeta).
# --------------------------------------------------------------------------------------------


class IRLSResult(NamedTuple):
    """Output of :func:`irls_fit` (shapes: G genes, N samples, P coefficients)."""

    beta: jax.Array  # (G, P) natural-log coefficients
    n_iter: jax.Array  # (G,) int, == max_iter when not converged (DESeq2's convention)
    deviance: jax.Array  # (G,) deviance at the last iterate (floored mean), as fitBeta returns it
    mu: jax.Array  # (G, N) last mean, floored at min_mu (used for weights/SE/hat values)
    log_likelihood: jax.Array  # (G,) log-likelihood at the unfloored mean s exp(X beta) (DESeq2 logLike)


def irls_fit(
    counts,
    design,
    log_offset,
    alpha,
    beta_init,
    ridge,
    *,
    min_mu: float = 0.5,
    tol: float = 1e-8,
    max_iter: int = 100,
    large: float = 30.0,
    compact: int | None = None,
    active=None,
    sample_mask=None,
    coef_mask=None,
):
    """IRLS for the NB GLM with a ridge penalty, vectorised over genes (DESeq2 ``fitBeta``).

    Each gene iterates ``mu = max(s exp(X b), min_mu)``, ``W = mu / (1 + alpha mu)``,
    ``z = log(mu / s) + (y - mu) / mu``, ``b = (X'WX + Lambda)^-1 X'Wz`` and stops when the relative
    deviance change ``|dev - dev_old| / (|dev| + 0.1) < tol`` (not on the first pass). A gene whose
    coefficients exceed ``large`` in absolute value, or whose deviance is NaN, stops with
    ``n_iter = max_iter`` (flagged for the fallback optimiser, as in DESeq2).

    Args:
        counts: ``Float[Array, "G N"]``.
        design: ``Float[Array, "N P"]``.
        log_offset: ``Float[Array, "N"]`` or ``Float[Array, "G N"]`` log size factors.
        alpha: ``Float[Array, "G"]`` DESeq2 dispersions.
        beta_init: ``Float[Array, "G P"]`` starting coefficients.
        ridge: ``Float[Array, "P"]`` ridge penalties on the natural-log scale
            (DESeq2: ``1e-6 / log(2)**2``).
        min_mu: floor on the fitted mean (DESeq2 ``minmu``, 0.5).
        tol: deviance tolerance (DESeq2 ``betaTol``, 1e-8).
        max_iter: iteration cap (DESeq2 ``maxit``, 100).
        large: divergence bound on ``|beta|``.
        compact: ``chunk`` to iterate the unfinished genes ``chunk`` at a time as a work queue
            (:func:`diffbio_prob.cores.row_queue.masked_loop`; same results, less work on large problems);
            ``None`` for one batch.
        active: optional ``Bool[Array, "G"]``: the genes to fit; the others are not iterated
            (``n_iter == 0``; their values are to be ignored).
        sample_mask: optional ``Float[Array, "N"]`` 0/1 marking padded samples (0) that take no part.
        coef_mask: optional ``Float[Array, "P"]`` 0/1 marking padded all-zero design columns (0); they
            get an identity block and stay at 0.

    Returns:
        :class:`IRLSResult`.

    Example:
        >>> import jax.numpy as jnp
        >>> y = jnp.array([[3.0, 5.0, 4.0, 6.0]])
        >>> x = jnp.ones((4, 1))
        >>> res = irls_fit(y, x, jnp.zeros(4), jnp.array([0.1]), jnp.zeros((1, 1)), jnp.zeros(1))
        >>> round(float(jnp.exp(res.beta[0, 0])), 4)  # the MLE of a common mean is the sample mean
        4.5
    """
    counts = jnp.asarray(counts)
    dtype = counts.dtype
    g, n = counts.shape
    log_offset = jnp.broadcast_to(jnp.asarray(log_offset, dtype), (g, n))
    alpha = jnp.asarray(alpha, dtype)
    size = 1.0 / alpha
    ridge_m = jnp.diag(jnp.asarray(ridge, dtype)) + _coef_pad(design.shape[1], coef_mask, dtype)
    # DESeq2's betaTol (1e-8) is below float32's resolution: a float32 deviance changes by whole ulps
    # (1.2e-7 relative) and never passes it, so every gene would run to maxit and go to the fallback.
    # The tolerance is floored at a few ulps of the working precision (a no-op in float64).
    tol_eff = max(float(tol), 8.0 * float(jnp.finfo(dtype).eps))

    # The deviance -2 sum dnbinom(y, 1/alpha, mu, log = TRUE) (R's Rf_dnbinom_mu, accurate at large
    # counts) in the loop, for a tenth of the work: dnbinom(y; mu) = dnbinom(y; y) - d(y, mu) / 2 with d
    # the unit deviance 2 [y log(y / mu) - (y + r) log((y + r) / (mu + r))], whose terms are small near the
    # fit and taken in their log1p forms, so its sum keeps the accuracy of R's at any count (McCullagh &
    # Nelder 1989, sec. 2.3). The saturated part dnbinom(y; y) is computed once, 256 genes at a time: on
    # the whole batch XLA held ~7 table-sized temporaries of the saddle-point form at once.
    r_col = size[:, None]
    saturated = _by_row_blocks(
        lambda c, r: -2.0 * jnp.sum(_masked(nb_log_pmf_saturated(c, r), sample_mask), -1), counts, r_col
    )

    def unit_deviance_terms(mu, cnt, r):
        # y log(y / mu), 0 at y = 0, without a select on a (G, N) operand (it would split the fused sum,
        # cores/row_sum.py): at y = 0 the log1p's argument is -1 + 1
        y_term = cnt * jnp.log1p((cnt - mu) / mu + (cnt == 0))
        return _masked(y_term - (cnt + r) * jnp.log1p((cnt - mu) / (mu + r)), sample_mask)

    def deviance_iter(mu, cnt=counts, r=r_col, sat=saturated):
        return sat + 2.0 * row_sum(unit_deviance_terms, mu, cnt, r)

    def mean_of(beta, log_off=log_offset):
        return jnp.maximum(jnp.exp(beta @ design.T + log_off), min_mu)

    log_min_mu = math.log(min_mu)

    def step(data, state):
        cnt, log_off, alp, r, sat = data
        beta, mu, dev_old, n_iter, done, dev_last = state
        active_now = ~done
        w = _masked(mu / (1.0 + alp[:, None] * mu), sample_mask)
        # log(mu / s) with mu = max(s exp(X b), min_mu), without a log per sample
        z = jnp.maximum(beta @ design.T, log_min_mu - log_off) + (cnt - mu) / mu
        lhs = weighted_gram(design, w) + ridge_m
        rhs = jnp.einsum("gn,np->gp", w * z, design)
        beta_new = spd_solve(lhs, rhs)
        diverged = jnp.any(jnp.abs(beta_new) > large, axis=-1) | jnp.any(~jnp.isfinite(beta_new), -1)
        mu_new = mean_of(beta_new, log_off)
        dev = deviance_iter(mu_new, cnt, r, sat)
        conv_test = jnp.abs(dev - dev_old) / (jnp.abs(dev) + 0.1)
        is_nan = jnp.isnan(conv_test)
        # not on a gene's first pass (its own count, so the work queue stops each gene where R does)
        converged = (n_iter > 0) & (conv_test < tol_eff)
        n_iter_new = jnp.where(active_now, n_iter + 1, n_iter)
        # A divergent gene keeps its large beta (as fitBeta does) but not the new mean.
        beta = jnp.where(active_now[:, None], beta_new, beta)
        keep_mu = active_now & ~diverged
        mu = jnp.where(keep_mu[:, None], mu_new, mu)
        dev_last = jnp.where(keep_mu, dev, dev_last)
        fail = active_now & (diverged | (~diverged & is_nan))
        stop = active_now & (fail | (~diverged & converged))
        n_iter_new = jnp.where(fail, max_iter, n_iter_new)
        dev_old = jnp.where(active_now, dev, dev_old)
        done = done | stop | (n_iter_new >= max_iter)
        return beta, mu, dev_old, n_iter_new, done, dev_last

    beta0 = jnp.asarray(beta_init, dtype)
    mu0 = mean_of(beta0)
    zeros = jnp.zeros(g, dtype)
    done0 = jnp.zeros(g, bool) if active is None else ~jnp.asarray(active, bool)
    state = (beta0, mu0, zeros, jnp.zeros(g, jnp.int32), done0, zeros)
    if max_iter > 0:
        data = (counts, log_offset, alpha, r_col, saturated)
        state = masked_loop(step, data, state, done_index=4, max_steps=max_iter, compact=compact)
    beta, mu, _, n_iter, _, dev_last = state
    loglik = -0.5 * deviance_iter(jnp.exp(beta @ design.T + log_offset))  # the unfloored mean, as R
    return IRLSResult(beta=beta, n_iter=n_iter, deviance=dev_last, mu=mu, log_likelihood=loglik)


def _by_row_blocks(fn, *rows, block: int = 256):
    """``fn(*rows)`` for per-row ``fn``, computed ``block`` rows at a time (``lax.map``) when the rows divide
    into blocks: XLA then holds one block's temporaries instead of the whole batch's."""
    g = rows[0].shape[0]
    if g <= block or g % block:
        return fn(*rows)
    blocked = tuple(x.reshape((g // block, block) + x.shape[1:]) for x in rows)
    out = lax.map(lambda xs: fn(*xs), blocked)
    return out.reshape((g,) + out.shape[2:])


def wald_covariance(design, mu, alpha, ridge):
    """Sandwich covariance of ridge-penalised coefficients (DESeq2 ``fitBeta``).

    ``Sigma = (X'WX + Lambda)^-1 X'WX (X'WX + Lambda)^-1`` with ``W = mu / (1 + alpha mu)`` at the
    (floored) fitted mean.

    Args:
        design: ``Float[Array, "N P"]``.
        mu: ``Float[Array, "G N"]`` fitted means (DESeq2 floors them at ``min_mu`` first).
        alpha: ``Float[Array, "G"]``.
        ridge: ``Float[Array, "P"]`` natural-log-scale ridge.

    Returns:
        ``Float[Array, "G P P"]``.
    """
    return wald_covariance_and_hat(design, mu, alpha, ridge)[0]


def hat_diagonals(design, mu, alpha, ridge):
    """Diagonal of ``W^1/2 X (X'WX + Lambda)^-1 X' W^1/2`` per gene: ``Float[Array, "G N"]``."""
    return wald_covariance_and_hat(design, mu, alpha, ridge)[1]


def wald_covariance_and_hat(design, mu, alpha, ridge, sample_mask=None, coef_mask=None):
    """:func:`wald_covariance` and :func:`hat_diagonals` from one factorisation (DESeq2 ``fitBeta``).

    ``sample_mask``/``coef_mask`` as in :func:`irls_fit` (padded samples get hat value 0, padded
    coefficients zero rows and columns in ``Sigma``).
    """
    w = _masked(mu / (1.0 + alpha[:, None] * mu), sample_mask)
    xtwx = weighted_gram(design, w)
    inv = spd_inverse(xtwx + jnp.diag(ridge) + _coef_pad(design.shape[1], coef_mask, xtwx.dtype))
    hat = w * jnp.einsum("np,gpq,nq->gn", design, inv, design)
    return inv @ xtwx @ inv, hat


def fit_beta_newton(
    counts,
    design,
    log_offset,
    alpha,
    beta_init,
    ridge,
    *,
    bound: float = 30.0 * 0.6931471805599453,
    max_iter: int = 200,
    tol: float = 1e-10,
    sample_mask=None,
    coef_mask=None,
):
    """Maximise the ridge-penalised NB log-likelihood by projected damped Newton, per gene.

    The fallback for genes IRLS cannot fit (DESeq2 uses L-BFGS-B, ``fitNbinomGLMsOptim``, with
    bounds ``+-30`` on the log2 scale). The NB log-likelihood is concave in ``beta`` for a log link
    and fixed ``alpha`` (observed information ``X' diag(mu (1 + alpha y) / (1 + alpha mu)^2) X`` is
    positive), so Newton steps with backtracking on the objective converge; coordinates at a bound
    with the gradient pointing outwards are held there. The mean is not floored here (as in
    DESeq2's optim objective).

    Args:
        counts, design, log_offset, alpha, beta_init, ridge: as :func:`irls_fit`.
        bound: box ``|beta| <= bound`` (natural log).
        max_iter: Newton iterations.
        tol: stop when the objective gains less than ``tol * (|f| + 1)``.

    Returns:
        ``(beta (G, P), converged (G,))``.
    """
    counts = jnp.asarray(counts)
    dtype = counts.dtype
    g, n = counts.shape
    log_offset = jnp.broadcast_to(jnp.asarray(log_offset, dtype), (g, n))
    size = (1.0 / alpha)[:, None]
    ridge = jnp.asarray(ridge, dtype)

    pad = _coef_pad(design.shape[1], coef_mask, dtype)

    def objective(beta):
        mu = jnp.exp(beta @ design.T + log_offset)
        ll = jnp.sum(_masked(nb_log_pmf(counts, mu, size), sample_mask), -1)
        return ll - 0.5 * jnp.sum(ridge * beta * beta, -1)

    def grad_hess(beta):
        eta = beta @ design.T + log_offset
        mu = jnp.exp(eta)
        resid = _masked((counts - mu) / (1.0 + alpha[:, None] * mu), sample_mask)
        grad = jnp.einsum("gn,np->gp", resid, design) - ridge * beta
        w = _masked(mu * (1.0 + alpha[:, None] * counts) / (1.0 + alpha[:, None] * mu) ** 2, sample_mask)
        info = weighted_gram(design, w) + jnp.diag(ridge) + pad
        return grad, info

    def body(state):
        t, beta, f, done, conv = state
        grad, info = grad_hess(beta)
        at_lo = (beta <= -bound) & (grad < 0)
        at_hi = (beta >= bound) & (grad > 0)
        free = ~(at_lo | at_hi)
        # Newton on the free coordinates: pin the others by replacing their rows/cols with identity.
        fm = free[:, :, None] & free[:, None, :]
        eye = jnp.eye(beta.shape[-1], dtype=dtype)
        info_f = jnp.where(fm, info, eye)
        step = spd_solve(info_f, jnp.where(free, grad, 0.0))

        best_b, best_f = _backtrack(
            lambda cand: objective(cand), beta, step, f, -bound, bound, max_halvings=30
        )
        gain = best_f - f
        small = gain <= tol * (jnp.abs(f) + 1.0)
        active = ~done
        beta = jnp.where(active[:, None], best_b, beta)
        f = jnp.where(active, best_f, f)
        newly = active & small
        return t + 1, beta, f, done | newly, conv | newly

    def cond(state):
        t, _, _, done, _ = state
        return (t < max_iter) & ~jnp.all(done)

    beta0 = jnp.clip(jnp.asarray(beta_init, dtype), -bound, bound)
    state = (0, beta0, objective(beta0), jnp.zeros(g, bool), jnp.zeros(g, bool))
    _, beta, _, _, conv = lax.while_loop(cond, body, state)
    return beta, conv


def _backtrack(objective, x, step, f0, lower, upper, *, max_halvings: int):
    """Per-row step halving: the first of ``x + step / 2**k`` (clipped) whose objective is >= ``f0``.

    ``x`` is ``(G,)`` or ``(G, P)``; rows that find no such point keep ``x`` and ``f0``. A while loop,
    so rows whose full step succeeds (the usual case) cost one evaluation.
    """
    g = f0.shape[0]
    expand = (lambda v: v[:, None]) if x.ndim == 2 else (lambda v: v)

    def body(state):
        k, scale, best_x, best_f, found = state
        cand = jnp.clip(x + expand(scale) * step, lower, upper)
        fc = objective(cand)
        ok = ~found & jnp.isfinite(fc) & (fc >= f0)
        best_x = jnp.where(expand(ok), cand, best_x)
        best_f = jnp.where(ok, fc, best_f)
        found = found | ok
        return k + 1, jnp.where(found, scale, scale * 0.5), best_x, best_f, found

    def cond(state):
        k, _, _, _, found = state
        return (k < max_halvings) & ~jnp.all(found)

    state = (0, jnp.ones(g, f0.dtype), x, f0, jnp.zeros(g, bool))
    _, _, best_x, best_f, _ = lax.while_loop(cond, body, state)
    return best_x, best_f


# --------------------------------------------------------------------------------------------
# R's dnbinom(log = TRUE) in the saddle-point form (Loader 2000): accurate at any count.
# --------------------------------------------------------------------------------------------

_LN_SQRT_2PI = 0.918938533204672741780329736406
_LN_2PI = 1.837877066409345483560659472811


def _stirlerr(n):
    """``log(n!) - log(sqrt(2 pi n) (n/e)^n)`` (R's ``stirlerr``), for ``n > 0``."""
    s0, s1, s2, s3, s4 = (0.083333333333333333333, 0.00277777777777777777778, 0.00079365079365079365079365,
                          0.000595238095238095238095238, 0.0008417508417508417508417508)
    big = n > 15.0
    nb = jnp.where(big, n, 16.0)
    nnb = nb * nb
    series = jnp.where(
        nb > 500, (s0 - s1 / nnb) / nb,
        jnp.where(nb > 80, (s0 - (s1 - s2 / nnb) / nnb) / nb,
                  jnp.where(nb > 35, (s0 - (s1 - (s2 - s3 / nnb) / nnb) / nnb) / nb,
                            (s0 - (s1 - (s2 - (s3 - s4 / nnb) / nnb) / nnb) / nnb) / nb)))
    ns = jnp.where(big, 1.0, n)
    small = jax.scipy.special.gammaln(ns + 1.0) - (ns + 0.5) * jnp.log(ns) + ns - _LN_SQRT_2PI
    return jnp.where(big, series, small)


def _bd0(x, np_, terms: int = 12):
    """``x log(x / np) + np - x`` without cancellation (R's ``bd0``), for ``x, np > 0``."""
    close = jnp.abs(x - np_) < 0.1 * (x + np_)
    v = (x - np_) / (x + np_)
    s = (x - np_) * v
    ej = 2 * x * v
    v2 = v * v
    acc = s
    for j in range(1, terms + 1):
        ej = ej * v2
        acc = acc + ej / (2 * j + 1)
    far = x * jnp.log(x / jnp.where(close, x, np_)) + np_ - x
    return jnp.where(close, acc, far)


def nb_log_pmf_accurate(counts, mean, size):
    """``dnbinom(y, size = size, mu = mean, log = TRUE)`` as R computes it (``dnbinom_mu``: the
    ``dbinom_raw`` saddle-point form with ``stirlerr`` and ``bd0``), accurate to rounding at any count.

    The ``lgamma`` form loses ``|value| * eps`` to cancellation: at counts ~1e9 that is ~1 in the
    log-likelihood, and IRLS's relative deviance test (1e-8) can never pass.
    """
    y = jnp.asarray(counts)
    mu = jnp.asarray(mean)
    r = jnp.asarray(size)
    y, mu, r = jnp.broadcast_arrays(y, mu, r)
    tot = r + mu
    zero = r * jnp.where(r < mu, jnp.log(r / tot), jnp.log1p(-mu / tot))
    # tiny counts relative to size (Poisson limit): R's formula
    mu_s = jnp.where(mu > 0, mu, 1.0)
    pt = jnp.where(r < mu, jnp.log(r / (1 + r / mu_s)), jnp.log(mu_s / (1 + mu_s / r)))
    tiny = y * pt - mu - jax.scipy.special.gammaln(y + 1.0) + jnp.log1p(y * (y - 1) / (2 * r))
    # general: log(size / (size + y)) + dbinom_raw(size, y + size, size / (size + mu), mu / (size + mu))
    ys = jnp.where(y > 0, y, 1.0)
    n = ys + r
    p = r / tot
    q = mu / tot
    qs = jnp.where(q > 0, q, 1.0)
    lc = _stirlerr(n) - _stirlerr(r) - _stirlerr(n - r) - _bd0(r, n * p) - _bd0(jnp.maximum(n - r, 1e-300), n * qs)
    lf = _LN_2PI + jnp.log(r) + jnp.log1p(-r / n)
    lead = jnp.where(ys < r, jnp.log1p(-ys / (r + ys)), jnp.log(r / (r + ys)))
    general = jnp.where(q > 0, lead + lc - 0.5 * lf, -jnp.inf)
    out = jnp.where(y < 1e-10 * r, tiny, general)
    return jnp.where(y == 0, zero, out)


def nb_log_pmf_saturated(counts, size):
    """``dnbinom(y, size = size, mu = y, log = TRUE)``: :func:`nb_log_pmf_accurate` at the mean ``y``.

    There ``dbinom_raw``'s two ``bd0`` terms are ``bd0(size, size)`` and ``bd0(y, y)``, zero, which leaves
    the three ``stirlerr`` terms and the logs (R's value to rounding, at about half the cost: the
    saturated deviance of every IRLS call).
    """
    y, r = jnp.broadcast_arrays(jnp.asarray(counts), jnp.asarray(size))
    ys = jnp.where(y > 0, y, 1.0)
    lg1 = jax.scipy.special.gammaln(ys + 1.0)
    st_y = jnp.where(ys > 15.0, _stirlerr(jnp.where(ys > 15.0, ys, 16.0)),
                     lg1 - (ys + 0.5) * jnp.log(ys) + ys - _LN_SQRT_2PI)  # _stirlerr(ys), sharing lgamma
    n = ys + r
    general = (jnp.where(ys < r, jnp.log1p(-ys / (r + ys)), jnp.log(r / (r + ys))) + _stirlerr(n) - _stirlerr(r)
               - st_y - 0.5 * (_LN_2PI + jnp.log(r) + jnp.log1p(-r / n)))
    # tiny counts relative to size (the Poisson limit), as nb_log_pmf_accurate
    pt = jnp.where(r < ys, jnp.log(r / (1 + r / ys)), jnp.log(ys / (1 + ys / r)))
    tiny = y * pt - y - lg1 + jnp.log1p(y * (y - 1) / (2 * r))
    return jnp.where(y == 0, 0.0, jnp.where(y < 1e-10 * r, tiny, general))


# --------------------------------------------------------------------------------------------
# Cook's distance.
# --------------------------------------------------------------------------------------------


def cooks_distance(counts, mu, hat, alpha_robust, n_coef: int):
    """Cook's distances ``D_gn = (y - mu)^2 / (mu + alpha mu^2) / p * h / (1 - h)^2``.

    DESeq2 ``calculateCooksDistance``: Pearson residuals with a robust (trimmed moments)
    dispersion, and hat values from the GLM fit.

    Args:
        counts: ``Float[Array, "G N"]``.
        mu: ``Float[Array, "G N"]`` fitted means (unfloored).
        hat: ``Float[Array, "G N"]`` hat-matrix diagonals.
        alpha_robust: ``Float[Array, "G"]``.
        n_coef: number of coefficients ``p``.

    Returns:
        ``Float[Array, "G N"]``.
    """
    var = mu + alpha_robust[:, None] * mu * mu
    pearson_sq = (counts - mu) ** 2 / var
    return pearson_sq / n_coef * hat / (1.0 - hat) ** 2
