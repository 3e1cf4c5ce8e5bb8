"""Shared pieces of the HMM core: parameter and result types, the batched layout, shape checks.

Private to :mod:`diffbio_prob.cores.hmm`; the sequential (:mod:`.inference`) and associative-scan
(:mod:`.parallel`) algorithms both build on these.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

# lax.scan unroll factor: a few steps per loop iteration cut the per-step overhead that dominates
# small-K scans on CPU (measured ~1.5x at K=8); larger factors only grow compile time.
_UNROLL = 1


class HMMParams(NamedTuple):
    """Parameters of the hidden chain, in log space.

    Attributes:
        log_initial: ``Float[Array, "S"]`` log p(z_1 = k).
        log_transition: ``Float[Array, "S S"]`` log p(z_{t+1} = j | z_t = i) at ``[i, j]``.
    """

    log_initial: Array
    log_transition: Array


class FilterResult(NamedTuple):
    """Output of :func:`forward_filter`.

    Attributes:
        log_likelihood: scalar log p(y_{1:L}) over the valid steps.
        filtered: ``Float[Array, "T S"]`` p(z_t | y_{1:t}); rows past ``length`` are zero.
        log_normalizers: ``Float[Array, "T"]`` c_t = log p(y_t | y_{1:t-1}); zero past ``length``.
    """

    log_likelihood: Array
    filtered: Array
    log_normalizers: Array


class Posterior(NamedTuple):
    """Output of :func:`smoother`.

    Attributes:
        log_likelihood: scalar log p(y_{1:L}).
        filtered: ``Float[Array, "T S"]`` p(z_t | y_{1:t}) (zero past ``length``).
        smoothed: ``Float[Array, "T S"]`` p(z_t | y_{1:L}) (zero past ``length``).
        transition_counts: ``Float[Array, "S S"]`` sum_t p(z_t = i, z_{t+1} = j | y_{1:L}).
    """

    log_likelihood: Array
    filtered: Array
    smoothed: Array
    transition_counts: Array


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------
def lengths_to_mask(lengths: Array, num_steps: int) -> Array:
    """``Bool[Array, "B T"]`` with True at ``t < lengths[b]``.

    Example:
        >>> lengths_to_mask(jnp.array([1, 3]), 3).astype(int).tolist()
        [[1, 0, 0], [1, 1, 1]]
    """
    return jnp.arange(num_steps)[None, :] < jnp.asarray(lengths)[:, None]


def _valid(num_steps: int, length) -> Array:
    if length is None:
        return jnp.ones(num_steps, dtype=bool)
    return jnp.arange(num_steps) < length


def _safe_div(num: Array, den: Array) -> Array:
    """``num / den`` where ``den > 0``, else 0 (both branches finite, so gradients are too)."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def _tree_sum(x: Array) -> Array:
    """Sum over axis 0 by pairwise (tree) reduction: rounding error grows like log T, not T, whatever
    the backend's reduction order (a float32 running sum of 1e5 normalisers loses ~1e-5 relative)."""
    if x.shape[0] == 0:  # e.g. Viterbi's per-step maxima of a length-1 sequence: nothing to add
        return jnp.zeros(x.shape[1:], x.dtype)
    while x.shape[0] > 1:
        if x.shape[0] % 2:
            x = jnp.concatenate([x, jnp.zeros_like(x[:1])])
        x = x[0::2] + x[1::2]
    return x[0]


def _dtype(params: HMMParams, ll: Array):
    return jnp.result_type(params.log_initial, params.log_transition, ll, float)


def _batch_lengths(lengths, batch: int, num_steps: int) -> Array:
    if lengths is None:
        return jnp.full((batch,), num_steps, jnp.int32)
    return jnp.broadcast_to(jnp.asarray(lengths), (batch,))


# ------------------------------------------------------------------------------------------------
# Batched internals. Layout: time-major, batch-minor, ``(T, S, B)``. A step then works on an (S, B)
# slab: the sum over states is a sum of S rows (SIMD across sequences), the transition is one
# (S, S) @ (S, B) matmul. This is ~5x faster on a CPU than vmapping the single-sequence recursion
# (whose (B, S) rows reduce over a short minor axis); a single sequence is the case B = 1.
# ------------------------------------------------------------------------------------------------
def _prepare(params: HMMParams, ll: Array, lengths: Array):
    """``ll`` (T, S, B), ``lengths`` (B,) -> pi (S,), A (S, S), w = exp(ll - m) (T, S, B), m (T, B),
    valid (T, B). Padding is set to ll = 0 before anything else uses it."""
    dtype = _dtype(params, ll)
    ll = jnp.asarray(ll, dtype)
    valid = jnp.arange(ll.shape[0])[:, None] < lengths[None, :]
    ll = jnp.where(valid[:, None, :], ll, 0.0)
    m = jnp.max(ll, axis=1)
    m = jnp.where(jnp.isfinite(m), m, 0.0)  # a step impossible in every state: keep exp finite
    w = jnp.exp(ll - m[:, None, :])
    pi = jnp.exp(jnp.asarray(params.log_initial, dtype))
    trans = jnp.exp(jnp.asarray(params.log_transition, dtype))
    return pi, trans, w, m, valid


def _check_ll(ll: Array, ndim: int, params: HMMParams | None = None, name: str = "log_likelihoods") -> None:
    """Static shape checks (they run at trace time, so under jit too): rank, at least one step and one
    state, and as many states as the parameters."""
    want = "(T, S)" if ndim == 2 else "(B, T, S)"
    if ll.ndim != ndim:
        raise ValueError(f"{name}: expected shape {want}, got shape {ll.shape}")
    if ll.shape[-2] == 0 or ll.shape[-1] == 0:
        raise ValueError(f"{name}: expected at least one step and one state, got shape {ll.shape}")
    if params is not None:
        s = jnp.shape(params.log_initial)[-1]
        if jnp.shape(params.log_transition)[-2:] != (s, s):
            raise ValueError(f"params: log_initial has {s} states but log_transition has shape "
                             f"{jnp.shape(params.log_transition)}; expected ({s}, {s})")
        if ll.shape[-1] != s:
            raise ValueError(f"{name}: {ll.shape[-1]} states on the last axis, the parameters have {s}")


def _single(ll: Array, length, params: HMMParams | None = None):
    """A single (T, S) sequence as a batch of one: (T, S, 1) and lengths (1,)."""
    ll = jnp.asarray(ll)
    _check_ll(ll, 2, params)
    return ll[:, :, None], _batch_lengths(length, 1, ll.shape[0])
