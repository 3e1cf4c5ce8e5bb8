"""Associative-scan (parallel-in-time) HMM inference: O(log T) depth, for accelerators.

The same names and results as the sequential :mod:`.inference` functions, after Hassan, Särkkä &
García-Fernández, IEEE TSP 69:4875 (2021) and dynamax ``parallel_inference.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from diffbio_prob.cores.hmm._base import (
    Array,
    FilterResult,
    HMMParams,
    Posterior,
    _prepare,
    _safe_div,
    _single,
    _valid,
)

__all__ = ["PARALLEL_MIN_STEPS", "METHODS", "resolve_method", "parallel_filter", "parallel_log_likelihood",
           "parallel_log_likelihood_batch", "parallel_smoother"]

#: The scans a caller may name; ``"auto"`` picks one of the other two by :func:`resolve_method`.
METHODS = ("auto", "sequential", "parallel")

#: ``method="auto"`` takes the associative scan on an accelerator (any backend but ``"cpu"``) when the
#: sequence has at least this many steps. Why: on a GPU each step of ``lax.scan`` is at least one kernel
#: launch (~5-10 us), so a sequential pass costs ~T x 10 us whatever K is, while the associative scan has
#: O(log T) depth and O(T K^3) work that the device absorbs for K <= 64; dynamax's and Hassan et al.'s
#: GPU timings put the crossover at a few hundred steps. 1024 is the conservative side of that; on a CPU
#: the sequential scan is always faster (~10x on two cores at K = 2..8), so ``"auto"`` never picks the
#: parallel one there. ``bench/gpu.py`` measures both scans for T = 1e4..1e6 and K = 8..64.
PARALLEL_MIN_STEPS = 1024


def resolve_method(method: str, num_steps: int, backend: str | None = None) -> str:
    """``"sequential"`` or ``"parallel"`` for ``method`` (one of :data:`METHODS`) and a sequence of
    ``num_steps`` steps on ``backend`` (default ``jax.default_backend()``).

    Example:
        >>> resolve_method("auto", 10_000, backend="cpu"), resolve_method("auto", 10_000, backend="gpu")
        ('sequential', 'parallel')
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(map(repr, METHODS))}, got {method!r}")
    if method != "auto":
        return method
    backend = jax.default_backend() if backend is None else backend
    return "parallel" if backend != "cpu" and int(num_steps) >= PARALLEL_MIN_STEPS else "sequential"


def _parallel_elements(params: HMMParams, ll: Array, length):
    ll3, lens = _single(ll, length, params)
    pi, trans, w, m, valid = _prepare(params, ll3, lens)
    w, m, valid = w[:, :, 0], m[:, 0], valid[:, 0]
    # t = 0: every row is p(z_1 | y_1) and log_b = log p(y_1) (independent of the "previous" state).
    u0 = pi * w[0]
    s0 = jnp.sum(u0)
    a0 = jnp.broadcast_to(_safe_div(u0, s0), trans.shape)
    b0 = jnp.full(trans.shape[0], jnp.log(s0) + m[0])
    # t >= 1: A_t[i, j] = P_ij w_t(j) / rowsum_i, log_b_t[i] = log rowsum_i + m_t.
    u = trans[None] * w[1:, None, :]
    rs = jnp.sum(u, axis=2)
    a = _safe_div(u, rs[:, :, None])
    b = jnp.log(rs) + m[1:, None]
    # Padding steps are the identity element, so they carry no dependence on the parameters.
    pad = ~valid[1:]
    a = jnp.where(pad[:, None, None], jnp.eye(trans.shape[0], dtype=a.dtype), a)
    b = jnp.where(pad[:, None], 0.0, b)
    return jnp.concatenate([a0[None], a]), jnp.concatenate([b0[None], b])


def _parallel_combine(e1, e2):
    a1, b1 = e1
    a2, b2 = e2
    # Condition the left span on the right span's evidence, then compose (Hassan et al. 2021).
    mx = jnp.max(b2, axis=-1, keepdims=True)
    mx = jnp.where(jnp.isfinite(mx), mx, 0.0)
    u = a1 * jnp.exp(b2 - mx)[..., None, :]
    r = jnp.sum(u, axis=-1)
    a = _safe_div(u, r[..., None]) @ a2
    b = b1 + jnp.log(r) + mx
    return a, b


@jax.jit
def parallel_filter(params: HMMParams, log_likelihoods: Array, length=None) -> FilterResult:
    """Forward filter by an associative scan: O(log T) depth, O(T S^3) work.

    Follows Hassan, Särkkä & García-Fernández, IEEE TSP 69:4875 (2021) as in dynamax
    ``parallel_inference.py``. Worth it on an accelerator at long T; on a CPU the sequential
    :func:`forward_filter` is faster (~10x on two cores). ``log_normalizers`` are recovered as
    differences of the cumulative log-likelihood.

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([.5, .5])), jnp.log(jnp.array([[.7, .3], [.3, .7]])))
        >>> ll = jnp.log(jnp.array([[.9, .2], [.9, .2], [.1, .8], [.9, .2], [.9, .2]]))
        >>> round(float(parallel_filter(p, ll).log_likelihood), 4)
        -3.3725
    """
    a, b = lax.associative_scan(_parallel_combine, _parallel_elements(params, log_likelihoods, length))
    valid = _valid(a.shape[0], length)
    cum = b[:, 0]
    c = jnp.where(valid, jnp.diff(cum, prepend=0.0), 0.0)
    return FilterResult(cum[-1], jnp.where(valid[:, None], a[:, 0, :], 0.0), c)


@jax.jit
def parallel_log_likelihood(params: HMMParams, log_likelihoods: Array, length=None) -> Array:
    """log p(y) by the associative scan (see :func:`parallel_filter`); autodiff gradient.

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([.6, .4])), jnp.log(jnp.array([[.7, .3], [.4, .6]])))
        >>> b = jnp.log(jnp.array([[.1, .4, .5], [.6, .3, .1]]))
        >>> round(float(parallel_log_likelihood(p, categorical_log_likelihoods(b, jnp.array([0, 1, 2])))), 5)
        -3.39287
    """
    _, b = lax.associative_scan(_parallel_combine, _parallel_elements(params, log_likelihoods, length))
    return b[-1, 0]


@jax.jit
def parallel_log_likelihood_batch(params: HMMParams, log_likelihoods: Array, lengths=None) -> Array:
    """Per-sequence log p(y) of a padded batch ``Float[Array, "B T S"]`` by the associative scan
    (``vmap`` of :func:`parallel_log_likelihood` over the sequences and their ``lengths``).

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([.5, .5])), jnp.log(jnp.array([[.7, .3], [.3, .7]])))
        >>> ll = jnp.log(jnp.array([[[.9, .2], [.1, .8]], [[.9, .2], [.5, .5]]]))
        >>> [round(float(v), 4) for v in parallel_log_likelihood_batch(p, ll, jnp.array([2, 1]))]
        [-1.617, -0.5978]
    """
    lls = jnp.asarray(log_likelihoods)
    b, t = lls.shape[0], lls.shape[1]
    lens = jnp.full((b,), t, jnp.int32) if lengths is None else jnp.broadcast_to(jnp.asarray(lengths), (b,))
    return jax.vmap(lambda ll, n: parallel_log_likelihood(params, ll, n))(lls, lens)


@jax.jit
def parallel_smoother(params: HMMParams, log_likelihoods: Array, length=None) -> Posterior:
    """Smoothed marginals as the gradient of the parallel log-likelihood (dynamax PR #212).

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([.5, .5])), jnp.log(jnp.array([[.7, .3], [.3, .7]])))
        >>> ll = jnp.log(jnp.array([[.9, .2], [.9, .2], [.1, .8], [.9, .2], [.9, .2]]))
        >>> parallel_smoother(p, ll).smoothed[2].round(4).tolist()
        [0.3075, 0.6925]
    """
    valid = _valid(jnp.shape(log_likelihoods)[0], length)

    def f(la, ll):
        elems = _parallel_elements(HMMParams(params.log_initial, la), ll, length)
        a, b = lax.associative_scan(_parallel_combine, elems)
        return b[-1, 0], a[:, 0, :]

    (total, filt), (xi, gamma) = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(
        params.log_transition, log_likelihoods
    )
    mask = valid[:, None]
    return Posterior(total, jnp.where(mask, filt, 0.0), jnp.where(mask, gamma, 0.0), xi)
