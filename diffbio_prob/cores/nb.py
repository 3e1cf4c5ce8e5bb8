"""Negative-binomial GLM core: log-pmf, IRLS, Cox-Reid dispersion fits, Wald and Cook's statistics.

Pure JAX, vectorised over genes: every fitting routine takes a count matrix ``counts`` of shape
``(G, N)`` (genes by samples) and treats the genes as independent problems solved at once, with a
per-gene convergence mask instead of a Python loop. Nothing here imports flax or numpyro; the NNX
operator (:mod:`diffbio_prob.operators.statistical.nb_glm`), the NumPyro model
(:mod:`diffbio_prob.models.nb_glm`) and the DESeq2 workflow (:mod:`diffbio_prob.workflows.deseq2`)
all call these functions.

Parameterisation (one table for the whole package): the NB *size* ``r`` (DiffBio's ``dispersion``,
NumPyro's ``NegativeBinomial2`` concentration) has ``Var = mu + mu**2 / r``; DESeq2's dispersion is
``alpha = 1 / r``. The GLM has ``log mu_gn = x_n' beta_g + log s_n`` (natural log; DESeq2 reports
coefficients multiplied by ``log2(e)``).

The fitting routines follow DESeq2 1.4x line by line (thelovelab/DESeq2 ``src/DESeq2.cpp``:
``fitBeta``, ``fitDisp``, ``fitDispGrid``, ``log_posterior`` and its derivatives; ``R/core.R``:
``calculateCooksDistance``), so the workflow built on them reproduces R's numbers, not only R's
estimands.

Example:
    >>> import jax.numpy as jnp
    >>> from diffbio_prob.cores.nb import nb_log_pmf
    >>> round(float(nb_log_pmf(jnp.array(3.0), jnp.array(2.0), jnp.array(5.0))), 4)
    -1.8853
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "check_counts",
    "check_positive",
    "check_finite",
    "lgamma_ratio",
    "digamma_ratio",
    "trigamma_ratio",
    "nb_log_pmf",
    "nb_log_likelihood",
    "nb_deviance",
    "glm_mean",
    "nb_glm_mean",
    "nb_glm_log_likelihood",
    "spd_cholesky",
    "spd_solve",
    "spd_logdet",
    "spd_inverse",
    "weighted_gram",
    "IRLSResult",
    "irls_fit",
    "wald_covariance",
    "hat_diagonals",
    "wald_covariance_and_hat",
    "fit_beta_newton",
    "cr_log_posterior",
    "cr_log_posterior_grad",
    "cr_log_posterior_hess",
    "DispersionFit",
    "fit_dispersion_line_search",
    "fit_dispersion_grid",
    "fit_dispersion_newton",
    "cooks_distance",
]

# --------------------------------------------------------------------------------------------
# Input checks of concrete arrays, shared by the NNX operator and the NumPyro model (traced values
# are skipped, so jit/grad keep working: check before tracing).
# --------------------------------------------------------------------------------------------
def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _numeric(name: str, x):
    import numpy as np

    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
        raise TypeError(f"{name}: expected numbers, got dtype {arr.dtype}")
    return arr.astype(float)


def check_counts(counts, name: str = "counts") -> None:
    """``ValueError``/``TypeError`` naming ``name`` unless the (concrete) counts are finite non-negative integers.

    Example:
        >>> check_counts([0, 3, 2.5])
        Traceback (most recent call last):
        ...
        ValueError: counts: expected integer counts, found 2.5 at index (2,)
    """
    if not _concrete(counts):
        return
    import numpy as np

    arr = _numeric(name, counts)
    # in this order, so the first failing check is the one reported
    for bad, what in ((np.isnan(arr), "contains NaN"), (np.isinf(arr), "contains infinite values"),
                      (arr < 0, "expected non-negative counts, found"),
                      (arr != np.round(arr), "expected integer counts, found")):
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            detail = f" {arr[where]:g}" if what.endswith("found") else ""
            raise ValueError(f"{name}: {what}{detail} at index {where}")


def check_positive(x, name: str) -> None:
    """``ValueError``/``TypeError`` naming ``name`` unless the (concrete) values are finite and positive
    (size factors, dispersions, prior scales)."""
    if not _concrete(x):
        return
    import numpy as np

    arr = _numeric(name, x)
    bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0]) if arr.ndim else ()
        raise ValueError(f"{name}: expected finite positive values, got {arr[where]:g}"
                         + (f" at index {where}" if where else ""))


def check_finite(x, name: str) -> None:
    """``ValueError``/``TypeError`` naming ``name`` unless the (concrete) values are finite numbers."""
    if not _concrete(x):
        return
    import numpy as np

    arr = _numeric(name, x)
    if not np.isfinite(arr).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0]) if arr.ndim else ()
        raise ValueError(f"{name}: contains NaN or infinite values (first at index {where})")


# --------------------------------------------------------------------------------------------
# Special-function differences.
#
# lgamma(y + r) - lgamma(r) for integer y >= 0 and r in [1e-8 .. 1e8] is the inner loop of every
# dispersion fit. lgamma(y + r) - lgamma(r) by two lgamma calls cancels catastrophically for large
# r (lgamma(1e8) ~ 1.7e9, so float32 keeps no digit) and XLA's lgamma/digamma cost ~50 ns a value.
# We shift r below 8 up by 8 (Gamma recursion) and use Stirling's series for the difference, which
# keeps relative accuracy ~1e-12 in float64 and full float32 accuracy, at a third of the cost.
# --------------------------------------------------------------------------------------------
_SHIFT = 8.0


def _stirling_tail(x):
    # lgamma(x) - [(x - 1/2) log x - x + log(2 pi)/2]; 4 terms: error < 1e-11 for x >= 8.
    z = 1.0 / x
    z2 = z * z
    return z * (1.0 / 12 - z2 * (1.0 / 360 - z2 * (1.0 / 1260 - z2 * (1.0 / 1680))))


def _log_rising8(x):
    # log(x (x+1) ... (x+7)): the Gamma-recursion shift lgamma(x) = lgamma(x + 8) - this.
    if jnp.result_type(x) == jnp.float64:  # the product stays below 1.8e308 for any count
        p = x
        for i in range(1, 8):
            p = p * (x + i)
        return jnp.log(p)
    # float32 overflows at x ~ 6e4: scale by max(x, 1) (each factor then lies in [1, 8])
    s = jnp.maximum(x, 1.0)
    inv = 1.0 / s
    p = x * inv
    for i in range(1, 8):
        p = p * ((x + i) * inv)
    return 8.0 * jnp.log(s) + jnp.log(p)


def _shifted(r):
    small = r < _SHIFT
    return small, jnp.where(small, r + _SHIFT, r)


def lgamma_ratio(y, r):
    """``lgamma(y + r) - lgamma(r)``, accurate for all ``r > 0`` and ``y >= 0`` (float32 too).

    Stirling's series for the difference after shifting ``r`` above 8 (Abramowitz & Stegun 6.1.40
    and the recursion 6.1.15); relative error below 1e-11 in float64.

    Args:
        y: ``Float[Array, "..."]`` non-negative values (counts).
        r: ``Float[Array, "..."]`` positive values, broadcastable against ``y``.

    Returns:
        ``Float[Array, "..."]``.

    Example:
        >>> import jax.numpy as jnp
        >>> round(float(lgamma_ratio(jnp.array(3.0), jnp.array(2.0))), 6)  # log(2*3*4)
        3.178054
    """
    small, s = _shifted(r)
    d = (
        y * jnp.log(s + y)
        + (s - 0.5) * jnp.log1p(y / s)
        - y
        + _stirling_tail(s + y)
        - _stirling_tail(s)
    )
    return d + jnp.where(small, _log_rising8(r) - _log_rising8(y + r), 0.0)


def _psi_tail(x):
    # digamma(x) - log(x) for x >= 8 (A&S 6.3.18), error < 1e-12.
    z = 1.0 / x
    z2 = z * z
    return -0.5 * z - z2 * (1.0 / 12 - z2 * (1.0 / 120 - z2 * (1.0 / 252 - z2 * (1.0 / 240))))


def _recip_sum8(x):
    # sum_{i<8} 1/(x+i) as P'(x)/P(x) of the rising product: one division instead of eight.
    p = x
    dp = jnp.ones_like(x)
    for i in range(1, 8):
        dp = dp * (x + i) + p
        p = p * (x + i)
    return dp / p


def digamma_ratio(y, r):
    """``digamma(y + r) - digamma(r)``, accurate for all ``r > 0``, ``y >= 0`` (see :func:`lgamma_ratio`).

    Example:
        >>> import jax.numpy as jnp
        >>> round(float(digamma_ratio(jnp.array(2.0), jnp.array(1.0))), 6)  # 1/1 + 1/2
        1.5
    """
    small, s = _shifted(r)
    d = jnp.log1p(y / s) + _psi_tail(s + y) - _psi_tail(s)
    return d + jnp.where(small, _recip_sum8(r) - _recip_sum8(y + r), 0.0)


def _rising8(x, scaled: bool):
    # P(x) = x (x+1) ... (x+7) and P'(x); with ``scaled`` both divided by max(x, 1)^8 (float32 range).
    inv = 1.0 / jnp.maximum(x, 1.0) if scaled else None
    p = x * inv if scaled else x
    dp = inv if scaled else jnp.ones_like(x)
    for i in range(1, 8):
        f = (x + i) * inv if scaled else x + i
        dp = dp * f + p * (inv if scaled else 1.0)
        p = p * f
    return p, dp


def _lgamma_digamma_ratio(y, r):
    """``(lgamma(y + r) - lgamma(r), digamma(y + r) - digamma(r))`` sharing every intermediate.

    The dispersion fits need both at every step; computed together they cost about one of them
    (one reciprocal, the logs and the shift products are shared).
    """
    small, s = _shifted(r)
    sy = s + y
    z = 1.0 / sy
    log_sy = jnp.log(sy)
    l1p = jnp.log1p(y * (1.0 / s))
    z2 = z * z
    st_tail = z * (1.0 / 12 - z2 * (1.0 / 360 - z2 * (1.0 / 1260 - z2 * (1.0 / 1680))))
    ps_tail = -0.5 * z - z2 * (1.0 / 12 - z2 * (1.0 / 120 - z2 * (1.0 / 252 - z2 * (1.0 / 240))))
    lg = y * log_sy + (s - 0.5) * l1p - y + st_tail - _stirling_tail(s)
    dg = l1p + ps_tail - _psi_tail(s)
    scaled = jnp.result_type(y) != jnp.float64
    p_x, dp_x = _rising8(y + r, scaled)
    p_r, dp_r = _rising8(r, scaled)
    log_p_x = jnp.log(p_x)
    log_p_r = jnp.log(p_r)
    if scaled:
        log_p_x = log_p_x + 8.0 * jnp.log(jnp.maximum(y + r, 1.0))
        log_p_r = log_p_r + 8.0 * jnp.log(jnp.maximum(r, 1.0))
    lg = lg + jnp.where(small, log_p_r - log_p_x, 0.0)
    dg = dg + jnp.where(small, dp_r / p_r - dp_x / p_x, 0.0)
    return lg, dg


def _trigamma_big(x):
    # trigamma(x) for x >= 8 (A&S 6.4.12), error < 1e-12.
    z = 1.0 / x
    z2 = z * z
    return z + z2 * (0.5 + z * (1.0 / 6 - z2 * (1.0 / 30 - z2 * (1.0 / 42 - z2 * (1.0 / 30)))))


def _recip_sq_sum8(x):
    out = jnp.zeros_like(x)
    for i in range(8):
        out = out + 1.0 / ((x + i) * (x + i))
    return out


def trigamma_ratio(y, r):
    """``trigamma(y + r) - trigamma(r)`` for ``r > 0``, ``y >= 0``.

    Example:
        >>> import jax.numpy as jnp
        >>> round(float(trigamma_ratio(jnp.array(1.0), jnp.array(1.0))), 6)  # -1/1**2
        -1.0
    """
    small, s = _shifted(r)
    d = _trigamma_big(s + y) - _trigamma_big(s)
    return d + jnp.where(small, _recip_sq_sum8(y + r) - _recip_sq_sum8(r), 0.0)


# --------------------------------------------------------------------------------------------
# Likelihood.
# --------------------------------------------------------------------------------------------


def nb_log_pmf(counts, mean, size):
    """Negative-binomial log-pmf in the mean/size parameterisation (``Var = mu + mu**2 / size``).

    ``log NB(k; mu, r) = lgamma(k + r) - lgamma(r) - lgamma(k + 1) + r log(r / (r + mu))
    + k log(mu / (r + mu))`` (R's ``dnbinom(k, size=r, mu=mu, log=TRUE)``; NumPyro's
    ``NegativeBinomial2(mu, r)``). Stable for ``r`` from 1e-8 to 1e8 and for ``mu = 0``.

    Args:
        counts: ``Float[Array, "..."]`` non-negative integers (as floats).
        mean: ``Float[Array, "..."]`` means ``mu >= 0``.
        size: ``Float[Array, "..."]`` sizes ``r > 0`` (DESeq2's ``1/alpha``), broadcastable.

    Returns:
        ``Float[Array, "..."]`` the elementwise log-pmf.

    Example:
        >>> import jax.numpy as jnp
        >>> round(float(nb_log_pmf(jnp.array(0.0), jnp.array(1.0), jnp.array(1.0))), 6)  # log(1/2)
        -0.693147
    """
    counts, mean, size = jnp.broadcast_arrays(*map(jnp.asarray, (counts, mean, size)))
    log_p_success = jnp.log(mean) - jnp.log(size + mean)  # log(mu / (r + mu))
    k_term = jnp.where(counts > 0, counts * jnp.where(counts > 0, log_p_success, 0.0), 0.0)
    return (
        lgamma_ratio(counts, size)
        - jax.scipy.special.gammaln(counts + 1.0)
        - size * jnp.log1p(mean / size)
        + k_term
    )


def glm_mean(design, coef, log_offset):
    """GLM mean ``mu = exp(X beta + log s)`` for every gene.

    Args:
        design: ``Float[Array, "N P"]`` model matrix.
        coef: ``Float[Array, "G P"]`` natural-log coefficients.
        log_offset: ``Float[Array, "N"]`` or ``Float[Array, "G N"]`` log size factors.

    Returns:
        ``Float[Array, "G N"]``.

    Example:
        >>> import jax.numpy as jnp
        >>> glm_mean(jnp.ones((2, 1)), jnp.array([[0.0]]), jnp.log(jnp.array([1.0, 2.0]))).tolist()
        [[1.0, 2.0]]
    """
    return jnp.exp(coef @ design.T + log_offset)


def nb_glm_mean(design, log_size_factors, coef):
    """Sample-major GLM mean ``s_n exp(x_n' beta_g)`` (the operator's and the model's layout).

    Args:
        design: ``Float[Array, "N C"]`` (or ``"C"`` for one sample).
        log_size_factors: ``Float[Array, "N"]`` (or scalar).
        coef: ``Float[Array, "C G"]`` natural-log coefficients.

    Returns:
        ``Float[Array, "N G"]`` (or ``"G"``).
    """
    return jnp.exp(design @ coef + jnp.asarray(log_size_factors)[..., None])


def nb_glm_log_likelihood(counts, design, log_size_factors, coef, size):
    """Pointwise NB-GLM log-likelihood, the one function the NNX operator and the NumPyro model share.

    Args:
        counts: ``Float[Array, "N G"]`` (or ``"G"`` for one sample).
        design: ``Float[Array, "N C"]`` (or ``"C"``).
        log_size_factors: ``Float[Array, "N"]`` (or scalar).
        coef: ``Float[Array, "C G"]``.
        size: ``Float[Array, "G"]`` NB sizes ``r = 1 / alpha``.

    Returns:
        ``Float[Array, "N G"]`` (or ``"G"``) of ``log NB(y; mu, r)``.

    Example:
        >>> import jax.numpy as jnp
        >>> ll = nb_glm_log_likelihood(jnp.ones((2, 3)), jnp.ones((2, 1)), jnp.zeros(2), jnp.zeros((1, 3)),
        ...                            jnp.ones(3))
        >>> ll.shape
        (2, 3)
    """
    return nb_log_pmf(counts, nb_glm_mean(design, log_size_factors, coef), size)


def nb_log_likelihood(counts, mean, alpha, sample_mask=None):
    """Per-gene NB log-likelihood ``sum_n log NB(y_gn; mu_gn, 1/alpha_g)``.

    Args:
        counts: ``Float[Array, "G N"]``.
        mean: ``Float[Array, "G N"]``.
        alpha: ``Float[Array, "G"]`` DESeq2 dispersions.
        sample_mask: optional ``Float[Array, "N"]`` of 0/1; samples with 0 are padding and add nothing
            (their counts and means must be finite, e.g. 0 and 1).

    Returns:
        ``Float[Array, "G"]``.
    """
    ll = nb_log_pmf(counts, mean, (1.0 / alpha)[:, None])
    return jnp.sum(_masked(ll, sample_mask), axis=-1)


def _masked(x, sample_mask):
    # Zero the padded samples (last axis); a no-op without a mask.
    return x if sample_mask is None else x * sample_mask


def _coef_pad(p, coef_mask, dtype):
    # Identity on padded (all-zero) design columns, so every P x P system stays non-singular and the
    # real block is untouched (its Cholesky factor, solves and determinant are unchanged).
    if coef_mask is None:
        return jnp.zeros((p, p), dtype)
    return jnp.diag(1.0 - jnp.asarray(coef_mask, dtype))


def nb_deviance(counts, mean, alpha):
    """DESeq2's deviance ``-2 * log-likelihood`` per gene (``R/core.R``: ``deviance = -2 logLike``).

    Example:
        >>> import jax.numpy as jnp
        >>> d = nb_deviance(jnp.array([[0.0, 2.0]]), jnp.array([[1.0, 1.0]]), jnp.array([0.5]))
        >>> d.shape
        (1,)
    """
    return -2.0 * nb_log_likelihood(counts, mean, alpha)


# --------------------------------------------------------------------------------------------
# Small symmetric positive-definite systems, batched over genes.
#
# Each gene has a P x P system (P = number of coefficients, usually 2-6). LAPACK calls per gene are
# dominated by call overhead, so we unroll Cholesky at trace time: P*(P+1)/2 vectorised arrays of
# shape (G,), which XLA fuses into a few loops. Larger P falls back to jnp.linalg.
# --------------------------------------------------------------------------------------------
_UNROLL_MAX = 10


def spd_cholesky(a):
    """Lower Cholesky factor of a batch of SPD matrices.

    Args:
        a: ``Float[Array, "... P P"]`` symmetric positive-definite.

    Returns:
        ``Float[Array, "... P P"]`` lower-triangular ``L`` with ``L L' = a`` (NaN where ``a`` is not
        positive definite).

    Example:
        >>> import jax.numpy as jnp
        >>> spd_cholesky(jnp.array([[4.0, 2.0], [2.0, 2.0]])).tolist()
        [[2.0, 0.0], [1.0, 1.0]]
    """
    p = a.shape[-1]
    if p > _UNROLL_MAX:
        return jnp.linalg.cholesky(a)
    el = [[None] * p for _ in range(p)]
    for j in range(p):
        s = a[..., j, j]
        for k in range(j):
            s = s - el[j][k] * el[j][k]
        d = jnp.sqrt(s)
        el[j][j] = d
        for i in range(j + 1, p):
            s = a[..., i, j]
            for k in range(j):
                s = s - el[i][k] * el[j][k]
            el[i][j] = s / d
    zero = jnp.zeros_like(a[..., 0, 0])
    rows = [jnp.stack([el[i][j] if j <= i else zero for j in range(p)], axis=-1) for i in range(p)]
    return jnp.stack(rows, axis=-2)


def _chol_solve(chol, b):
    # Solve L L' x = b for x; b: (..., P) or (..., P, K).
    p = chol.shape[-1]
    vec = b.ndim == chol.ndim - 1
    if vec:
        b = b[..., None]
    if p > _UNROLL_MAX:
        x = jax.scipy.linalg.cho_solve((chol, True), b)
        return x[..., 0] if vec else x
    y = [None] * p
    for i in range(p):
        s = b[..., i, :]
        for k in range(i):
            s = s - chol[..., i, k, None] * y[k]
        y[i] = s / chol[..., i, i, None]
    x = [None] * p
    for i in reversed(range(p)):
        s = y[i]
        for k in range(i + 1, p):
            s = s - chol[..., k, i, None] * x[k]
        x[i] = s / chol[..., i, i, None]
    out = jnp.stack(x, axis=-2)
    return out[..., 0] if vec else out


def spd_solve(a, b):
    """Solve ``a x = b`` for a batch of SPD ``a`` (``Float[Array, "... P P"]``), ``b`` ``(..., P)``."""
    return _chol_solve(spd_cholesky(a), b)


def spd_logdet(a):
    """``log det a`` for a batch of SPD matrices."""
    chol = spd_cholesky(a)
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)


def spd_inverse(a):
    """Inverse of a batch of SPD matrices."""
    eye = jnp.broadcast_to(jnp.eye(a.shape[-1], dtype=a.dtype), a.shape)
    return _chol_solve(spd_cholesky(a), eye)


def weighted_gram(design, weights):
    """``X' diag(w_g) X`` for every gene: ``Float[Array, "G P P"]`` from ``weights`` ``(G, N)``."""
    return jnp.einsum("gn,np,nq->gpq", weights, design, design)


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
    offset = jnp.exp(log_offset)
    alpha = jnp.asarray(alpha, dtype)
    size = 1.0 / alpha
    ridge_m = jnp.diag(jnp.asarray(ridge, dtype)) + _coef_pad(design.shape[1], coef_mask, dtype)
    # Deviance terms that do not depend on mu are computed once.
    const = jnp.sum(
        _masked(lgamma_ratio(counts, size[:, None]) - jax.scipy.special.gammaln(counts + 1.0), sample_mask),
        axis=-1,
    )

    def deviance(mu):
        k = jnp.where(counts > 0, counts * (jnp.log(mu) - jnp.log(size[:, None] + mu)), 0.0)
        terms = _masked(k - size[:, None] * jnp.log1p(mu * alpha[:, None]), sample_mask)
        return -2.0 * (const + jnp.sum(terms, -1))

    def mean_of(beta):
        return jnp.maximum(offset * jnp.exp(beta @ design.T), min_mu)

    def body(state):
        t, beta, mu, dev_old, n_iter, done, dev_last = state
        active = ~done
        w = _masked(mu / (1.0 + alpha[:, None] * mu), sample_mask)
        z = jnp.log(mu / offset) + (counts - mu) / mu
        lhs = weighted_gram(design, w) + ridge_m
        rhs = jnp.einsum("gn,np->gp", w * z, design)
        beta_new = spd_solve(lhs, rhs)
        diverged = jnp.any(jnp.abs(beta_new) > large, axis=-1) | jnp.any(~jnp.isfinite(beta_new), -1)
        mu_new = mean_of(beta_new)
        dev = deviance(mu_new)
        conv_test = jnp.abs(dev - dev_old) / (jnp.abs(dev) + 0.1)
        is_nan = jnp.isnan(conv_test)
        converged = (t > 0) & (conv_test < tol)
        n_iter_new = jnp.where(active, n_iter + 1, n_iter)
        # A divergent gene keeps its large beta (as fitBeta does) but not the new mean.
        beta = jnp.where(active[:, None], beta_new, beta)
        keep_mu = active & ~diverged
        mu = jnp.where(keep_mu[:, None], mu_new, mu)
        dev_last = jnp.where(keep_mu, dev, dev_last)
        fail = active & (diverged | (~diverged & is_nan))
        stop = active & (fail | (~diverged & converged))
        n_iter_new = jnp.where(fail, max_iter, n_iter_new)
        dev_old = jnp.where(active, dev, dev_old)
        done = done | stop | (n_iter_new >= max_iter)
        return t + 1, beta, mu, dev_old, n_iter_new, done, dev_last

    def cond(state):
        t, *_, done, _ = state
        return (t < max_iter) & ~jnp.all(done)

    beta0 = jnp.asarray(beta_init, dtype)
    mu0 = mean_of(beta0)
    zeros = jnp.zeros(g, dtype)
    state = (0, beta0, mu0, zeros, jnp.zeros(g, jnp.int32), jnp.zeros(g, bool), zeros)
    if max_iter > 0:
        state = lax.while_loop(cond, body, state)
    _, beta, mu, _, n_iter, _, dev_last = state
    loglik = -0.5 * deviance(offset * jnp.exp(beta @ design.T))
    return IRLSResult(beta=beta, n_iter=n_iter, deviance=dev_last, mu=mu, log_likelihood=loglik)


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
# Dispersion: Cox-Reid adjusted profile log-likelihood (DESeq2 log_posterior and derivatives).
# --------------------------------------------------------------------------------------------


def _cr_parts(
    log_alpha, counts, mu, design, want_grad: bool, want_hess: bool, sample_mask=None, coef_mask=None
):
    """Likelihood part, Cox-Reid part and their log-alpha derivatives, as DESeq2 splits them."""
    alpha = jnp.exp(log_alpha)[:, None]
    size = jnp.exp(-log_alpha)[:, None]
    log1p_ma = jnp.log1p(mu * alpha)
    inv = 1.0 / (mu + size)
    ratio = mu * inv  # mu alpha / (1 + mu alpha)
    if want_grad or want_hess:
        lgr, dgr = _lgamma_digamma_ratio(counts, size)
    else:
        lgr = lgamma_ratio(counts, size)
    # DESeq2's ll_part leaves out -lgamma(y + 1) + y log(mu) (constant in alpha); its value enters
    # DESeq2's "no increase" test, so we keep DESeq2's exact form.
    ll = lgr - counts * jnp.log(mu + size) - size * log1p_ma
    ll = jnp.sum(_masked(ll, sample_mask), -1)
    w = _masked(size * ratio, sample_mask)  # 1 / (1/mu + alpha)
    b = weighted_gram(design, w) + _coef_pad(design.shape[1], coef_mask, w.dtype)
    chol = spd_cholesky(b)
    cr = -jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)  # -0.5 log det
    out = {"ll": ll, "cr": cr}
    if want_grad or want_hess:
        y_ratio = counts * inv
        s_sum = jnp.sum(_masked(-dgr + y_ratio + log1p_ma - ratio, sample_mask), -1)
        r = size[:, 0]
        out["dll"] = r * s_sum
        db = weighted_gram(design, -(w * w))
        m1 = _chol_solve(chol, db)  # B^-1 dB
        t1 = jnp.trace(m1, axis1=-2, axis2=-1)
        a0 = alpha[:, 0]
        out["dcr"] = -0.5 * t1 * a0
        if want_hess:
            s_prime = jnp.sum(
                _masked(
                    -trigamma_ratio(counts, size)
                    - counts * inv * inv
                    - ratio / size
                    + mu * inv * inv,
                    sample_mask,
                ),
                -1,
            )
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
    compact: tuple[int, int] | None = None,
    sample_mask=None,
    coef_mask=None,
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
        compact: ``(k, chunk)`` to iterate all genes ``k`` times, then the unfinished ones in chunks
            of ``chunk`` (same results, less work on large problems); ``None`` for one batch.
        sample_mask, coef_mask: padding masks as in :func:`irls_fit`.

    Returns:
        :class:`DispersionFit` (``n_iter == max_iter`` means not converged).
    """
    counts = jnp.asarray(counts)
    dtype = counts.dtype
    g = counts.shape[0]
    prior_mean = jnp.broadcast_to(jnp.asarray(prior_mean, dtype), (g,))
    prior_w = jnp.asarray(use_prior, dtype)  # 0/1: adding 0 * prior leaves DESeq2's MLE unchanged

    def step(data, st):
        """One pass of DESeq2's loop for every gene of ``data`` (a row subset of the problem)."""
        cnt, m, pm = data
        a, lp, dlp, kappa, n_iter, n_acc, done, change, lp0, started = st
        # One evaluation site: a gene's first pass evaluates its starting point, later passes
        # the proposal (halves the code XLA compiles).
        first = ~started
        active = ~done & started
        n_iter = jnp.where(active, n_iter + 1, n_iter)
        a_prop = a + kappa * dlp
        kappa = jnp.where(active & (a_prop < -30.0), (-30.0 - a) / dlp, kappa)
        kappa = jnp.where(active & (a_prop > 10.0), (10.0 - a) / dlp, kappa)
        a_try = jnp.where(first, a, a + kappa * dlp)
        parts = _cr_parts(a_try, cnt, m, design, True, False, sample_mask, coef_mask)
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
        a = jnp.where(accept, a_try, a)
        change = jnp.where(accept, change_new, change)
        # DESeq2 leaves lp at its previous value when it stops for a < min_log_alpha.
        lp = jnp.where(accept & (small | ~below), lp_try, lp)
        dlp = jnp.where(cont, dlp_try, dlp)
        kappa_acc = jnp.minimum(kappa * 1.1, kappa_0)
        kappa_acc = jnp.where(n_acc % 5 == 0, kappa_acc / 2.0, kappa_acc)
        kappa = jnp.where(cont, kappa_acc, jnp.where(reject, kappa / 2.0, kappa))
        done = done | (accept & (small | below)) | (n_iter >= max_iter)
        return a, lp, dlp, kappa, n_iter, n_acc, done, change, lp0, jnp.ones_like(started)

    zeros_i = jnp.zeros(g, jnp.int32)
    zeros = jnp.zeros(g, dtype)
    falses = jnp.zeros(g, bool)
    st = (
        jnp.asarray(log_alpha_init, dtype),
        zeros,
        zeros,
        jnp.full(g, kappa_0, dtype),
        zeros_i,
        zeros_i,
        falses,
        jnp.full(g, -1.0, dtype),
        zeros,
        falses,
    )
    data = (counts, jnp.asarray(mu, dtype), prior_mean)
    st = _masked_loop(step, data, st, done_index=6, max_steps=max_iter + 1, compact=compact)
    a, lp, dlp, _, n_iter, n_acc, _, change, lp0, _ = st
    return DispersionFit(
        log_alpha=a,
        n_iter=n_iter,
        n_accept=n_acc,
        initial_lp=lp0,
        last_lp=lp,
        last_dlp=dlp,
        last_change=change,
    )


def _masked_loop(step, data, state, *, done_index: int, max_steps: int, compact):
    """Run ``state = step(data, state)`` until every row is done, optionally compacting.

    Rows (genes) are independent; ``step`` must leave done rows unchanged. Without compaction the
    whole batch iterates until its slowest row finishes. With ``compact = (k, chunk)``, the batch
    runs ``k`` passes, then the unfinished rows are gathered ``chunk`` at a time into a small batch
    that runs to completion and is scattered back: work follows each row's own iteration count
    instead of the maximum (DESeq2's line search: median ~12, maximum ~30 on 10,000 genes).
    """

    def run(data_, st, steps):
        def body(carry):
            t, s = carry
            return t + 1, step(data_, s)

        def cond(carry):
            t, s = carry
            return (t < steps) & ~jnp.all(s[done_index])

        return lax.while_loop(cond, body, (0, st))[1]

    if compact is None:
        return run(data, state, max_steps)
    k, chunk = compact
    g = state[done_index].shape[0]
    chunk = int(min(chunk, g))
    state = run(data, state, k)

    def outer_body(st):
        done = st[done_index]
        (idx,) = jnp.nonzero(~done, size=chunk, fill_value=g)
        valid = idx < g
        idx_c = jnp.minimum(idx, g - 1)
        sub_data = tuple(x[idx_c] for x in data)
        sub = tuple(x[idx_c] for x in st)
        sub = tuple(
            jnp.where(valid, x, True) if i == done_index else x for i, x in enumerate(sub)
        )
        sub = run(sub_data, sub, max_steps)
        # invalid slots point at row g-1 with done=True: drop them from the scatter
        tgt = jnp.where(valid, idx, g)
        return tuple(x.at[tgt].set(y, mode="drop") for x, y in zip(st, sub))

    def outer_cond(st):
        return ~jnp.all(st[done_index])

    return lax.while_loop(outer_cond, outer_body, state)


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
