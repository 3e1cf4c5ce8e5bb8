"""Small symmetric positive-definite systems, batched over genes: the P x P solves of the NB GLM and
dispersion fits.

Each gene has a P x P system (P = number of coefficients, usually 2-6). LAPACK calls per gene are
dominated by call overhead, so Cholesky is unrolled at trace time: P*(P+1)/2 vectorised arrays of
shape (G,), which XLA fuses into a few loops. Larger P falls back to jnp.linalg.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["spd_cholesky", "spd_solve", "spd_logdet", "spd_inverse", "weighted_gram"]

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
