"""Negative-binomial GLM core: the likelihood the operator, the NumPyro model and DESeq2 share.

Pure JAX, vectorised over genes: every fitting routine takes a count matrix ``counts`` of shape
``(G, N)`` (genes by samples) and treats the genes as independent problems solved at once, with a
per-gene convergence mask instead of a Python loop. Nothing here imports flax or numpyro; the NNX
operator (:mod:`diffbio_prob.operators.statistical.nb_glm`), the NumPyro model
(:mod:`diffbio_prob.models.nb_glm`) and the DESeq2 workflow (:mod:`diffbio_prob.workflows.deseq2`)
all call these functions. DESeq2's fitting numerics are beside it, in one gene-major layout and one
argument order (``counts, mu / design, ...``): IRLS, Newton for the coefficients, Wald covariances and
Cook's distances in :mod:`diffbio_prob.cores.nb_glm_fit`, Cox-Reid dispersion fits in
:mod:`diffbio_prob.cores.nb_dispersion`, and the batched small SPD systems both solve in
:mod:`diffbio_prob.cores.spd`.

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


def _shifted(r):
    small = r < _SHIFT
    return small, jnp.where(small, r + _SHIFT, r)


class RatioShift(NamedTuple):
    """What :func:`lgamma_ratio` and :func:`digamma_ratio` need of ``r`` alone (arrays of ``r``'s shape).

    For a per-gene ``r`` of shape ``(G, 1)`` these are per-gene constants, which a sum over samples can
    compute once, outside its fused loop (:func:`diffbio_prob.cores.row_sum.row_sum`). Each is kept apart
    from the per-count term it cancels against, so a zero count gives exactly zero, as before.
    """

    small: jax.Array  # 1.0 where r < 8 (shifted up by 8 by the Gamma recursion), else 0.0
    shifted: jax.Array  # r + 8 where r < 8, else r
    stirling_tail: jax.Array  # the Stirling tail at shifted
    psi_tail: jax.Array  # the digamma tail at shifted
    log_rising: jax.Array  # log(r (r+1) ... (r+7))
    recip_rising: jax.Array  # sum_{i<8} 1/(r+i)


def _scaled(x) -> bool:
    return jnp.result_type(x) != jnp.float64


def _log_rising8_and_recip(x, scaled: bool):
    # log(x (x+1) ... (x+7)) and sum_{i<8} 1/(x+i) = P'(x) / P(x), from one product and its derivative
    p, dp = _rising8(x, scaled)
    log_p = jnp.log(p)
    if scaled:
        log_p = log_p + 8.0 * jnp.log(jnp.maximum(x, 1.0))
    return log_p, dp / p


def ratio_shift(r) -> RatioShift:
    """The :class:`RatioShift` of ``r > 0``."""
    r = jnp.asarray(r)
    small, s = _shifted(r)
    log_p, recip = _log_rising8_and_recip(r, _scaled(r))
    return RatioShift(small.astype(r.dtype), s, _stirling_tail(s), _psi_tail(s), log_p, recip)


def lgamma_ratio(y, r, shift: RatioShift | None = None):
    """``lgamma(y + r) - lgamma(r)``, accurate for all ``r > 0`` and ``y >= 0`` (float32 too).

    Stirling's series for the difference after shifting ``r`` below 8 up by 8 (Abramowitz & Stegun
    6.1.40 and the recursion 6.1.15); relative error below 1e-11 in float64.

    Args:
        y: ``Float[Array, "..."]`` non-negative values (counts).
        r: ``Float[Array, "..."]`` positive values, broadcastable against ``y``.
        shift: ``ratio_shift(r)``, when the caller has it already (once per gene, say).

    Returns:
        ``Float[Array, "..."]``.

    Example:
        >>> import jax.numpy as jnp
        >>> round(float(lgamma_ratio(jnp.array(3.0), jnp.array(2.0))), 6)  # log(2*3*4)
        3.178054
    """
    sh = ratio_shift(r) if shift is None else shift
    s = sh.shifted
    # the shift's terms are multiplied by 0/1, not selected (the same value, bit for bit): a select with a
    # (G, N) operand keeps XLA CPU from fusing a sum over samples into one vectorised kernel
    # (docs/notes/de.md, section 20)
    log_p_x, _ = _log_rising8_and_recip(y + r, _scaled(y + r))
    return (y * jnp.log(s + y) + (s - 0.5) * jnp.log1p(y / s) - y + _stirling_tail(s + y) - sh.stirling_tail
            + sh.small * (sh.log_rising - log_p_x))


def _psi_tail(x):
    # digamma(x) - log(x) for x >= 8 (A&S 6.3.18), error < 1e-12.
    z = 1.0 / x
    z2 = z * z
    return -0.5 * z - z2 * (1.0 / 12 - z2 * (1.0 / 120 - z2 * (1.0 / 252 - z2 * (1.0 / 240))))


def digamma_ratio(y, r, shift: RatioShift | None = None):
    """``digamma(y + r) - digamma(r)``, accurate for all ``r > 0``, ``y >= 0`` (see :func:`lgamma_ratio`).

    Example:
        >>> import jax.numpy as jnp
        >>> round(float(digamma_ratio(jnp.array(2.0), jnp.array(1.0))), 6)  # 1/1 + 1/2
        1.5
    """
    sh = ratio_shift(r) if shift is None else shift
    s = sh.shifted
    _, recip_x = _log_rising8_and_recip(y + r, _scaled(y + r))
    return jnp.log1p(y / s) + _psi_tail(s + y) - sh.psi_tail + sh.small * (sh.recip_rising - recip_x)


def _rising8(x, scaled: bool):
    # P(x) = x (x+1) ... (x+7) and P'(x); with ``scaled`` both divided by max(x, 1)^8 (float32 range).
    inv = 1.0 / jnp.maximum(x, 1.0) if scaled else None
    p = x * inv if scaled else x
    dp = inv if scaled else 1.0
    for i in range(1, 8):
        f = (x + i) * inv if scaled else x + i
        dp = dp * f + p * (inv if scaled else 1.0)
        p = p * f
    return p, dp


def _lgamma_digamma_ratio(y, r, shift: RatioShift | None = None):
    """``(lgamma(y + r) - lgamma(r), digamma(y + r) - digamma(r))`` sharing every intermediate."""
    sh = ratio_shift(r) if shift is None else shift
    s = sh.shifted
    sy = s + y
    z = 1.0 / sy
    l1p = jnp.log1p(y * (1.0 / s))
    z2 = z * z
    st_tail = z * (1.0 / 12 - z2 * (1.0 / 360 - z2 * (1.0 / 1260 - z2 * (1.0 / 1680))))
    ps_tail = -0.5 * z - z2 * (1.0 / 12 - z2 * (1.0 / 120 - z2 * (1.0 / 252 - z2 * (1.0 / 240))))
    log_p_x, recip_x = _log_rising8_and_recip(y + r, _scaled(y + r))
    lg = y * jnp.log(sy) + (s - 0.5) * l1p - y + st_tail - sh.stirling_tail + sh.small * (sh.log_rising - log_p_x)
    dg = l1p + ps_tail - sh.psi_tail + sh.small * (sh.recip_rising - recip_x)
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
