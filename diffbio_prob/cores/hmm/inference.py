"""Sequential HMM inference in pure JAX: filter, smoother, two-slice marginals, Viterbi, sampling.

One forward pass serves every emission family: emissions enter as a ``(T, S)`` matrix of
log-likelihoods ``ll[t, k] = log p(y_t | z_t = k)``, built by an emission object of
:mod:`diffbio_prob.cores.hmm.emissions` (``emission.log_likelihoods(params, y)``) or by the caller.
Parameters are a small :class:`HMMParams` pytree of log-probabilities; ``A[i, j] = p(z_{t+1} = j | z_t = i)``.

Design choices (see ``docs/notes/hmm.md``):

* The forward filter normalises every step and *emits* the per-step log-normalisers
  ``c_t = log p(y_t | y_{1:t-1})`` from ``lax.scan``; the log-likelihood is one ``jnp.sum`` of them.
  A running sum in the carry loses ~1e-5 relative accuracy in float32 at T = 1e5; the emitted sum
  stays at ~1e-8.
* :func:`log_likelihood` has a custom VJP whose backward pass is forward-backward (Eisner 2016,
  "Inside-outside and forward-backward algorithms are just backprop"): ``d log Z / d ll_t = gamma_t``,
  ``d log Z / d log A = sum_t xi_t``, ``d log Z / d log pi = gamma_1``. That costs ~2-3x the forward
  pass instead of ~10x for autodiff through the scan.
* Ragged batches: every function takes an optional ``length``; steps ``t >= length`` are padding.
  Padding is sanitised *before* use (double ``where``) so gradients stay finite (dynamax #99), and
  vmapping over ``(ll, length)`` gives each sequence its own exact result.
* Missing observations (symbol ``-1``, or NaN for real-valued emissions) get ``ll[t] = 0``: they are
  marginalised out exactly.
* Ratios with a zero denominator (hard zeros in ``A``, impossible observations) are guarded with
  ``where(den > 0, num / den, 0)`` (dynamax #290) so no NaN escapes.

Example:
    >>> import jax.numpy as jnp
    >>> from diffbio_prob.cores import hmm
    >>> params = hmm.HMMParams(jnp.log(jnp.array([0.6, 0.4])),
    ...                        jnp.log(jnp.array([[0.7, 0.3], [0.4, 0.6]])))
    >>> log_b = jnp.log(jnp.array([[0.1, 0.4, 0.5], [0.6, 0.3, 0.1]]))
    >>> ll = hmm.categorical_log_likelihoods(log_b, jnp.array([0, 1, 2]))
    >>> round(float(hmm.log_likelihood(params, ll)), 5)
    -3.39287
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from diffbio_prob.cores.hmm._base import (
    _UNROLL,
    Array,
    FilterResult,
    HMMParams,
    Posterior,
    _batch_lengths,
    _check_ll,
    _dtype,
    _prepare,
    _safe_div,
    _single,
    _tree_sum,
    _valid,
)
from diffbio_prob.cores.hmm.emissions import _ONE_HOT_MAX_SYMBOLS, categorical_log_likelihoods  # noqa: F401
from diffbio_prob.cores.hmm.parallel import parallel_log_likelihood, parallel_log_likelihood_batch, resolve_method

__all__ = [
    "HMMParams",
    "FilterResult",
    "Posterior",
    "forward_filter",
    "log_likelihood",
    "log_likelihood_batch",
    "categorical_log_likelihood_batch",
    "categorical_posteriors_batch",
    "categorical_viterbi_batch",
    "backward_pass",
    "smoother",
    "smoother_batch",
    "state_posteriors",
    "two_slice_marginals",
    "viterbi",
    "viterbi_batch",
    "sample_states",
    "sample_categorical",
    "posterior_sample",
]



def _forward_scan(pi: Array, trans: Array, w: Array, with_filtered: bool):
    """Normalised forward recursion; emits log(sum u_t) (B,) (and the filtered slabs (S, B))."""
    trans_t = trans.T

    def step(pred, w_t):
        u = pred * w_t
        s = jnp.sum(u, axis=0)
        alpha = _safe_div(u, s[None, :])
        out = (jnp.log(s), alpha) if with_filtered else jnp.log(s)
        return trans_t @ alpha, out

    init = jnp.broadcast_to(pi[:, None], w.shape[1:])
    _, out = lax.scan(step, init, w, unroll=_UNROLL)
    return out


def _forward(params: HMMParams, ll: Array, lengths: Array, with_filtered: bool):
    pi, trans, w, m, valid = _prepare(params, ll, lengths)
    out = _forward_scan(pi, trans, w, with_filtered)
    log_s, alpha = out if with_filtered else (out, None)
    # Padding rows have w = 1 so log_s ~ 0 up to rounding; mask it so padding adds exactly nothing.
    c = jnp.where(valid, log_s + m, 0.0)
    # One pairwise reduction over the emitted normalisers: float32-accurate (module docstring).
    return _tree_sum(c), c, alpha, (trans, w, valid)


def _backward_scan(trans: Array, w: Array, valid: Array) -> tuple[Array, Array]:
    """Scaled backward messages.

    Returns ``(beta, scale)``: ``beta[t]`` is ``bu[t] = A (w_{t+1} * beta[t+1])`` divided by its maximum
    over states ``scale[t]`` (ones at the last valid step and beyond). Rescaling by the max (not by
    exp(c_{t+1} - m_{t+1}) as in Rabiner) keeps every message in [0, 1]: Rabiner's scaling can overflow
    when a state with zero predicted mass explains y_{t+1} much better than the others.
    """

    def step(beta_next, inp):
        w_next, valid_next = inp
        bu = trans @ (w_next * beta_next)
        bu = jnp.where(valid_next[None, :], bu, 1.0)
        scale = jnp.max(bu, axis=0)
        beta = _safe_div(bu, scale[None, :])
        return beta, (beta, scale)

    ones = jnp.ones(w.shape[1:], w.dtype)
    _, (beta, scale) = lax.scan(step, ones, (w[1:], valid[1:]), reverse=True, unroll=_UNROLL)
    return jnp.concatenate([beta, ones[None]]), jnp.concatenate([scale, ones[:1]])


def _posteriors(alpha, beta, scale, trans, w, valid, weights=None):
    """Smoothed marginals (T, S, B) and two-slice marginals from forward/backward messages.

    ``gamma_t = alpha_t * beta_t / r_t`` with ``r_t = sum(alpha_t * beta_t)`` (the scale cancels), and
    ``xi_t(i, j) = alpha_t(i) A_ij w_{t+1}(j) beta_{t+1}(j) / (r_t scale_t)``, summed over t by one
    contraction. Pairs (t, t+1) with t+1 past the length contribute nothing; a zero denominator (hard
    zeros in A, impossible data) gives zeros, never 0/0 (dynamax #290). With ``weights`` (B,) the
    two-slice marginals are summed over sequences with those weights, (S, S); else per sequence,
    (B, S, S).
    """
    q = alpha * beta
    r = jnp.sum(q, axis=1)
    gamma = jnp.where(valid[:, None, :], q * _safe_div(1.0, r)[:, None, :], 0.0)
    inv = jnp.where(valid[1:], _safe_div(1.0, r[:-1] * scale[:-1]), 0.0)
    left = alpha[:-1] * inv[:, None, :]
    right = w[1:] * beta[1:]
    if left.shape[-1] == 1:
        # one sequence: a (S, T) @ (T, S) matmul (a reduction over the long major axis is slow on CPU)
        xi = trans * (left[:, :, 0].T @ right[:, :, 0])
        return gamma, (xi[None] if weights is None else xi * weights[0])
    # A batch: a broadcast-multiply-reduce, not an einsum: XLA's CPU dot fuses the elementwise producers
    # of its operands and recomputes them inside the contraction (measured 30x slower at T = B = 1e3).
    outer = left[:, :, None, :] * right[:, None, :, :]  # (T-1, S, S, B), fused into the reduction
    if weights is None:
        return gamma, trans[None] * jnp.moveaxis(jnp.sum(outer, axis=0), -1, 0)
    return gamma, trans * jnp.sum(outer * weights[None, None, None, :], axis=(0, 3))


@jax.custom_vjp
def _log_likelihood(log_initial, log_transition, ll, lengths):
    return _forward(HMMParams(log_initial, log_transition), ll, lengths, False)[0]


def _log_likelihood_fwd(log_initial, log_transition, ll, lengths):
    total, _, alpha, (trans, w, valid) = _forward(HMMParams(log_initial, log_transition), ll, lengths, True)
    return total, (alpha, trans, w, valid)


def _log_likelihood_bwd(res, g):
    alpha, trans, w, valid = res
    beta, scale = _backward_scan(trans, w, valid)
    gamma, xi = _posteriors(alpha, beta, scale, trans, w, valid, weights=g)
    d_ll = gamma * g[None, None, :]
    return jnp.sum(d_ll[0], axis=-1), xi, d_ll, None


_log_likelihood.defvjp(_log_likelihood_fwd, _log_likelihood_bwd)


def _to_tsb(lls: Array) -> Array:
    return jnp.transpose(jnp.asarray(lls), (1, 2, 0))


def _from_tsb(x: Array) -> Array:
    return jnp.transpose(x, (2, 0, 1))


def _smoother_tsb(params: HMMParams, ll: Array, lengths: Array):
    total, _, alpha, (trans, w, valid) = _forward(params, ll, lengths, True)
    beta, scale = _backward_scan(trans, w, valid)
    gamma, xi = _posteriors(alpha, beta, scale, trans, w, valid)
    return total, jnp.where(valid[:, None, :], alpha, 0.0), gamma, xi


def _viterbi_tsb(params: HMMParams, ll: Array, lengths: Array):
    """Batched Viterbi on (T, S, B); returns paths (T, B) (-1 on padding) and log-probs (B,)."""
    dtype = _dtype(params, ll)
    ll = jnp.asarray(ll, dtype)
    log_a = jnp.asarray(params.log_transition, dtype)
    num_states = ll.shape[1]
    valid = jnp.arange(ll.shape[0])[:, None] < lengths[None, :]
    ll = jnp.where(valid[:, None, :], ll, 0.0)
    states = jnp.broadcast_to(jnp.arange(num_states)[:, None], ll.shape[1:])

    def renorm(delta):
        n = jnp.max(delta, axis=0)
        return delta - jnp.where(jnp.isfinite(n), n, 0.0)[None, :], n

    delta0, n0 = renorm(jnp.asarray(params.log_initial, dtype)[:, None] + ll[0])

    def step(delta, inp):
        ll_t, valid_t = inp
        scores = delta[:, None, :] + log_a[:, :, None]  # (from, to, B)
        psi = jnp.argmax(scores, axis=0)
        new, n = renorm(jnp.max(scores, axis=0) + ll_t)
        # Padding: freeze the scores and make the back-pointer the identity.
        keep = valid_t[None, :]
        return jnp.where(keep, new, delta), (jnp.where(keep, psi, states), jnp.where(valid_t, n, 0.0))

    delta_last, (psis, ns) = lax.scan(step, delta0, (ll[1:], valid[1:]), unroll=_UNROLL)
    z_last = jnp.argmax(delta_last, axis=0)

    def back(z_next, psi_next):
        z = jnp.take_along_axis(psi_next, z_next[None, :], axis=0)[0]
        return z, z

    _, zs = lax.scan(back, z_last, psis, reverse=True, unroll=_UNROLL)
    path = jnp.concatenate([zs, z_last[None]])
    # n0 is the first step's maximum; a sequence of length 0 has the empty path, log-probability 0.
    return jnp.where(valid, path, -1).astype(jnp.int32), jnp.where(valid[0], n0, 0.0) + _tree_sum(ns)


def _check_obs_batch(obs: Array, params: HMMParams, log_emission: Array) -> None:
    """Static checks of a padded (B, T) batch of symbols and a (S, M) emission matrix."""
    if obs.ndim != 2 or 0 in obs.shape:
        raise ValueError(f"observations: expected a non-empty (B, T) batch, got shape {obs.shape}")
    if not jnp.issubdtype(obs.dtype, jnp.integer):
        raise TypeError(f"observations: expected integer symbols (-1 = missing), got dtype {obs.dtype}")
    s = jnp.shape(params.log_initial)[-1]
    if jnp.ndim(log_emission) != 2 or jnp.shape(log_emission)[0] != s:
        raise ValueError(f"log_emission: expected shape ({s}, M) for {s} states, got {jnp.shape(log_emission)}")
    _check_ll(jnp.zeros((1, s)), 2, params)


# ------------------------------------------------------------------------------------------------
# Forward filter and the log-likelihood with its forward-backward VJP
# ------------------------------------------------------------------------------------------------
@jax.jit
def forward_filter(params: HMMParams, log_likelihoods: Array, length=None) -> FilterResult:
    """Forward filter with per-step normalisation (Rabiner 1989; docs/notes/hmm.md section 1).

    Args:
        params: :class:`HMMParams`.
        log_likelihoods: ``Float[Array, "T S"]`` emission log-likelihoods.
        length: optional scalar; steps ``t >= length`` are padding.

    Returns:
        :class:`FilterResult`.

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([.5, .5])), jnp.log(jnp.array([[.7, .3], [.3, .7]])))
        >>> round(float(forward_filter(p, jnp.log(jnp.array([[.9, .2]]))).filtered[0, 0]), 4)
        0.8182
    """
    ll, lens = _single(log_likelihoods, length, params)
    total, c, alpha, (_, _, valid) = _forward(params, ll, lens, True)
    return FilterResult(total[0], jnp.where(valid, alpha[:, :, 0], 0.0), c[:, 0])


@functools.partial(jax.jit, static_argnames=("method",))
def log_likelihood(params: HMMParams, log_likelihoods: Array, length=None, *, method: str = "auto"):
    """log p(y_{1:L}) with hidden states marginalised; differentiable at ~2-3x the forward cost.

    The gradient is forward-backward (custom VJP): w.r.t. ``log_likelihoods`` it is the smoothed
    posterior, w.r.t. ``log_transition`` the expected transition counts, w.r.t. ``log_initial`` the
    first posterior. The log-parameters are treated as free (not renormalised), exactly as autodiff
    through the forward recursion would.

    Args:
        params: :class:`HMMParams`.
        log_likelihoods: ``Float[Array, "T S"]``.
        length: optional scalar number of valid steps (padding after it contributes nothing).
        method: ``"auto"`` (default: :func:`~diffbio_prob.cores.hmm.parallel.resolve_method`, the parallel
            scan on an accelerator from ``PARALLEL_MIN_STEPS`` steps on, else the sequential one),
            ``"sequential"`` (``lax.scan``, forward-backward gradient) or ``"parallel"`` (associative scan,
            O(log T) depth; autodiff gradient).

    Returns:
        Scalar log-likelihood.

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([.5, .5])), jnp.log(jnp.array([[.7, .3], [.3, .7]])))
        >>> ll = jnp.log(jnp.array([[.9, .2], [.9, .2], [.1, .8], [.9, .2], [.9, .2]]))
        >>> round(float(log_likelihood(p, ll)), 4)
        -3.3725
    """
    if resolve_method(method, jnp.shape(log_likelihoods)[0]) == "parallel":
        return parallel_log_likelihood(params, log_likelihoods, length)
    ll, lens = _single(log_likelihoods, length, params)
    return _log_likelihood(params.log_initial, params.log_transition, ll, lens)[0]


@functools.partial(jax.jit, static_argnames=("method",))
def log_likelihood_batch(params: HMMParams, log_likelihoods: Array, lengths=None, *, method: str = "auto") -> Array:
    """Per-sequence log-likelihoods of a padded batch, with the forward-backward gradient.

    Same numbers as ``vmap(log_likelihood)`` but computed on a time-major, batch-minor layout: several
    times faster on a CPU for many sequences.

    Args:
        params: :class:`HMMParams` (shared by the batch).
        log_likelihoods: ``Float[Array, "B T S"]``.
        lengths: optional ``Int[Array, "B"]`` valid steps per sequence.
        method: ``"auto"``, ``"sequential"`` or ``"parallel"``, as for :func:`log_likelihood`.

    Returns:
        ``Float[Array, "B"]``.

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([.5, .5])), jnp.log(jnp.array([[.7, .3], [.3, .7]])))
        >>> ll = jnp.log(jnp.array([[[.9, .2], [.1, .8]], [[.9, .2], [.5, .5]]]))
        >>> [round(float(v), 4) for v in log_likelihood_batch(p, ll, jnp.array([2, 1]))]
        [-1.617, -0.5978]
    """
    lls = jnp.asarray(log_likelihoods)
    _check_ll(lls, 3, params)
    lens = _batch_lengths(lengths, lls.shape[0], lls.shape[1])
    if resolve_method(method, lls.shape[1]) == "parallel":
        return parallel_log_likelihood_batch(params, lls, lens)
    return _log_likelihood(params.log_initial, params.log_transition, _to_tsb(lls), lens)


# ------------------------------------------------------------------------------------------------
# Categorical emissions on the batched path (the operator's, the model's and Baum-Welch's case)
# ------------------------------------------------------------------------------------------------
@jax.custom_vjp
def _categorical_tsb(log_emission, observations):
    """``observations`` (B, T) -> emission log-likelihoods laid out (T, S, B), gathered in that order
    (gathering (B, T, S) and transposing lets XLA fuse a strided gather: ~5x slower)."""
    yt = observations.T
    observed = yt >= 0
    ll = jnp.take(log_emission, jnp.where(observed, yt, 0), axis=1)  # (S, T, B)
    return jnp.transpose(jnp.where(observed[None], ll, 0.0), (1, 0, 2))


def _categorical_tsb_fwd(log_emission, observations):
    return _categorical_tsb(log_emission, observations), (observations, log_emission.shape)


def _categorical_tsb_bwd(res, g):
    observations, (num_states, num_symbols) = res
    y = observations.T.reshape(-1)
    g = jnp.transpose(g, (1, 0, 2)).reshape(num_states, -1)  # (S, T * B)
    g = jnp.where((y >= 0)[None, :], g, 0.0)
    if num_symbols <= _ONE_HOT_MAX_SYMBOLS:
        return g @ jax.nn.one_hot(y, num_symbols, dtype=g.dtype), None
    return jax.ops.segment_sum(g.T, jnp.where(y >= 0, y, 0), num_segments=num_symbols).T, None


_categorical_tsb.defvjp(_categorical_tsb_fwd, _categorical_tsb_bwd)


@functools.partial(jax.jit, static_argnames=("method",))
def categorical_log_likelihood_batch(
    params: HMMParams, log_emission: Array, observations: Array, lengths=None, *, method: str = "auto"
) -> Array:
    """Per-sequence log-likelihoods of a padded batch of symbol sequences (categorical emissions).

    Equal to ``log_likelihood_batch(params, categorical_log_likelihoods(log_emission, y), lengths)``,
    but the emissions are gathered straight into the time-major layout, and the gradient w.r.t.
    ``log_emission`` is a one-hot matmul. The fast path for training on many sequences.

    Args:
        params: :class:`HMMParams`.
        log_emission: ``Float[Array, "S M"]``.
        observations: ``Int[Array, "B T"]`` (``-1`` = missing or padding).
        lengths: optional ``Int[Array, "B"]``.
        method: ``"auto"``, ``"sequential"`` or ``"parallel"``, as for :func:`log_likelihood`.

    Returns:
        ``Float[Array, "B"]``.

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([.6, .4])), jnp.log(jnp.array([[.7, .3], [.4, .6]])))
        >>> b = jnp.log(jnp.array([[.1, .4, .5], [.6, .3, .1]]))
        >>> [round(float(v), 5) for v in categorical_log_likelihood_batch(p, b, jnp.array([[0, 1, 2]]))]
        [-3.39287]
    """
    obs = jnp.asarray(observations)
    _check_obs_batch(obs, params, log_emission)
    lens = _batch_lengths(lengths, obs.shape[0], obs.shape[1])
    if resolve_method(method, obs.shape[1]) == "parallel":
        return parallel_log_likelihood_batch(params, _from_tsb(_categorical_tsb(log_emission, obs)), lens)
    return _log_likelihood(params.log_initial, params.log_transition, _categorical_tsb(log_emission, obs), lens)


@functools.partial(jax.jit, static_argnames=("method",))
def categorical_posteriors_batch(
    params: HMMParams, log_emission: Array, observations: Array, lengths=None, *, method: str = "auto"
) -> tuple[Array, Array]:
    """Log-likelihoods ``(B,)`` and smoothed posteriors ``(B, T, S)`` (zero on padding) of a padded batch.

    One forward and one backward sweep: the posteriors are the gradient of the log-likelihoods w.r.t.
    the emission log-likelihoods (Eisner 2016), computed by the custom VJP. Both outputs are
    differentiable (a loss on the posteriors is reverse-over-reverse autodiff through the sweep).
    ``method`` as for :func:`log_likelihood` (the parallel scan's posteriors are its autodiff gradient).

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([.6, .4])), jnp.log(jnp.array([[.7, .3], [.4, .6]])))
        >>> b = jnp.log(jnp.array([[.1, .4, .5], [.6, .3, .1]]))
        >>> ll, post = categorical_posteriors_batch(p, b, jnp.array([[0, 1, 2]]))
        >>> post[0, 0].round(6).tolist()
        [0.231703, 0.768297]
    """
    obs = jnp.asarray(observations)
    _check_obs_batch(obs, params, log_emission)
    lens = _batch_lengths(lengths, obs.shape[0], obs.shape[1])
    ll = _categorical_tsb(log_emission, obs)
    if resolve_method(method, obs.shape[1]) == "parallel":
        log_lik, vjp = jax.vjp(lambda x: parallel_log_likelihood_batch(params, x, lens), _from_tsb(ll))
        return log_lik, vjp(jnp.ones_like(log_lik))[0]
    log_lik, vjp = jax.vjp(lambda x: _log_likelihood(params.log_initial, params.log_transition, x, lens), ll)
    (gamma,) = vjp(jnp.ones_like(log_lik))
    return log_lik, _from_tsb(gamma)


@jax.jit
def categorical_viterbi_batch(
    params: HMMParams, log_emission: Array, observations: Array, lengths=None
) -> tuple[Array, Array]:
    """Viterbi paths ``(B, T)`` (-1 on padding) and their log-probabilities ``(B,)`` for symbol sequences.

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([.6, .4])), jnp.log(jnp.array([[.7, .3], [.4, .6]])))
        >>> b = jnp.log(jnp.array([[.1, .4, .5], [.6, .3, .1]]))
        >>> categorical_viterbi_batch(p, b, jnp.array([[0, 1, 2], [2, 2, -1]]), jnp.array([3, 2]))[0].tolist()
        [[1, 0, 0], [0, 0, -1]]
    """
    obs = jnp.asarray(observations)
    _check_obs_batch(obs, params, log_emission)
    lens = _batch_lengths(lengths, obs.shape[0], obs.shape[1])
    path, lp = _viterbi_tsb(params, _categorical_tsb(log_emission, obs), lens)
    return path.T, lp


# ------------------------------------------------------------------------------------------------
# Backward pass, smoothed posteriors, two-slice marginals
# ------------------------------------------------------------------------------------------------
@jax.jit
def backward_pass(params: HMMParams, log_likelihoods: Array, length=None) -> Array:
    """Scaled backward messages ``beta_t proportional to p(y_{t+1:L} | z_t)``, max-normalised per step.

    Args:
        params: :class:`HMMParams`.
        log_likelihoods: ``Float[Array, "T S"]``.
        length: optional number of valid steps (messages are 1 from the last valid step on).

    Returns:
        ``Float[Array, "T S"]`` with each row's maximum equal to 1.

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([.5, .5])), jnp.log(jnp.array([[.7, .3], [.3, .7]])))
        >>> backward_pass(p, jnp.zeros((3, 2))).tolist()
        [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    """
    ll, lens = _single(log_likelihoods, length, params)
    _, trans, w, _, valid = _prepare(params, ll, lens)
    return _backward_scan(trans, w, valid)[0][:, :, 0]


@jax.jit
def smoother(params: HMMParams, log_likelihoods: Array, length=None) -> Posterior:
    """Forward-backward: filtered and smoothed marginals and summed two-slice marginals.

    Hard zeros in the transition matrix are fine: every ratio is guarded (dynamax #290).

    Args:
        params: :class:`HMMParams`.
        log_likelihoods: ``Float[Array, "T S"]``.
        length: optional number of valid steps.

    Returns:
        :class:`Posterior`.

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([.5, .5])), jnp.log(jnp.array([[.7, .3], [.3, .7]])))
        >>> ll = jnp.log(jnp.array([[.9, .2], [.9, .2], [.1, .8], [.9, .2], [.9, .2]]))
        >>> smoother(p, ll).smoothed[2].round(4).tolist()
        [0.3075, 0.6925]
    """
    ll, lens = _single(log_likelihoods, length, params)
    total, filtered, gamma, xi = _smoother_tsb(params, ll, lens)
    return Posterior(total[0], filtered[:, :, 0], gamma[:, :, 0], xi[0])


@jax.jit
def smoother_batch(params: HMMParams, log_likelihoods: Array, lengths=None) -> Posterior:
    """:func:`smoother` for a padded batch ``Float[Array, "B T S"]`` (time-major internally).

    Returns:
        :class:`Posterior` with a leading batch axis on every field: log_likelihood (B,), filtered and
        smoothed (B, T, S) (zero past each length), transition_counts (B, S, S).

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([.5, .5])), jnp.log(jnp.array([[.7, .3], [.3, .7]])))
        >>> ll = jnp.log(jnp.array([[[.9, .2], [.1, .8]], [[.9, .2], [.5, .5]]]))
        >>> post = smoother_batch(p, ll, jnp.array([2, 1]))
        >>> round(float(post.smoothed[1, 0, 0]), 4), float(post.smoothed[1, 1].sum())
        (0.8182, 0.0)
    """
    lls = jnp.asarray(log_likelihoods)
    _check_ll(lls, 3, params)
    lens = _batch_lengths(lengths, lls.shape[0], lls.shape[1])
    total, filtered, gamma, xi = _smoother_tsb(params, _to_tsb(lls), lens)
    return Posterior(total, _from_tsb(filtered), _from_tsb(gamma), xi)


@jax.jit
def state_posteriors(params: HMMParams, log_likelihoods: Array, length=None) -> Array:
    """Smoothed marginals ``p(z_t | y_{1:L})``: ``Float[Array, "T S"]`` (zero rows past ``length``).

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([.6, .4])), jnp.log(jnp.array([[.7, .3], [.4, .6]])))
        >>> b = jnp.log(jnp.array([[.1, .4, .5], [.6, .3, .1]]))
        >>> state_posteriors(p, categorical_log_likelihoods(b, jnp.array([0, 1, 2])))[0].round(6).tolist()
        [0.231703, 0.768297]
    """
    return smoother(params, log_likelihoods, length).smoothed


@jax.jit
def two_slice_marginals(params: HMMParams, log_likelihoods: Array, length=None) -> Array:
    """Per-step two-slice marginals ``p(z_t = i, z_{t+1} = j | y_{1:L})``: ``Float[Array, "T-1 S S"]``.

    Zero for pairs reaching past ``length``; their sum over t is :func:`smoother`'s ``transition_counts``.

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([.5, .5])), jnp.log(jnp.array([[.7, .3], [.3, .7]])))
        >>> xi = two_slice_marginals(p, jnp.log(jnp.array([[.9, .2], [.1, .8], [.9, .2]])))
        >>> xi.shape, round(float(xi[0].sum()), 6)
        ((2, 2, 2), 1.0)
    """
    ll, lens = _single(log_likelihoods, length, params)
    _, _, alpha, (trans, w, valid) = _forward(params, ll, lens, True)
    beta, scale = _backward_scan(trans, w, valid)
    alpha, beta, w, scale, valid = alpha[..., 0], beta[..., 0], w[..., 0], scale[:, 0], valid[:, 0]
    r = jnp.sum(alpha * beta, axis=1)
    inv = jnp.where(valid[1:], _safe_div(1.0, r[:-1] * scale[:-1]), 0.0)
    return trans[None] * (alpha[:-1] * inv[:, None])[:, :, None] * (w[1:] * beta[1:])[:, None, :]


# ------------------------------------------------------------------------------------------------
# Viterbi
# ------------------------------------------------------------------------------------------------
@jax.jit
def viterbi(params: HMMParams, log_likelihoods: Array, length=None) -> tuple[Array, Array]:
    """Most probable state path and its joint log-probability log p(z*, y).

    The running scores are renormalised to max 0 each step and the removed maxima are emitted and
    summed once (as in the filter), so float32 keeps enough resolution to compare transition
    log-probabilities at any T. Ties go to the lowest state index.

    Args:
        params: :class:`HMMParams`.
        log_likelihoods: ``Float[Array, "T S"]``.
        length: optional number of valid steps; the path is ``-1`` on padding.

    Returns:
        ``(path, log_prob)``: ``Int[Array, "T"]`` and a scalar.

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([.6, .4])), jnp.log(jnp.array([[.7, .3], [.4, .6]])))
        >>> b = jnp.log(jnp.array([[.1, .4, .5], [.6, .3, .1]]))
        >>> path, lp = viterbi(p, categorical_log_likelihoods(b, jnp.array([0, 1, 2])))
        >>> path.tolist(), round(float(jnp.exp(lp)), 5)
        ([1, 0, 0], 0.01344)
    """
    ll, lens = _single(log_likelihoods, length, params)
    path, lp = _viterbi_tsb(params, ll, lens)
    return path[:, 0], lp[0]


@jax.jit
def viterbi_batch(params: HMMParams, log_likelihoods: Array, lengths=None) -> tuple[Array, Array]:
    """:func:`viterbi` for a padded batch ``Float[Array, "B T S"]``: paths (B, T) (-1 on padding) and
    log-probabilities (B,).

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([.5, .5])), jnp.log(jnp.array([[.7, .3], [.3, .7]])))
        >>> ll = jnp.log(jnp.array([[[.9, .2], [.1, .8]], [[.9, .2], [.5, .5]]]))
        >>> viterbi_batch(p, ll, jnp.array([2, 1]))[0].tolist()
        [[0, 1], [0, -1]]
    """
    lls = jnp.asarray(log_likelihoods)
    _check_ll(lls, 3, params)
    lens = _batch_lengths(lengths, lls.shape[0], lls.shape[1])
    path, lp = _viterbi_tsb(params, _to_tsb(lls), lens)
    return path.T, lp


# ------------------------------------------------------------------------------------------------
# Sampling
# ------------------------------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnames=("num_steps",))
def sample_states(key: Array, params: HMMParams, num_steps: int) -> Array:
    """Draw a state path from the prior (ancestral sampling).

    Args:
        key: PRNG key.
        params: :class:`HMMParams`.
        num_steps: T (static).

    Returns:
        ``Int[Array, "T"]``.

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([1.0, 0.0])), jnp.log(jnp.eye(2)))
        >>> sample_states(jax.random.key(0), p, 3).tolist()
        [0, 0, 0]
    """
    # Gumbel-max with all the noise drawn up front: the loop body is an argmax, no PRNG inside the scan
    # (a PRNG in the loop body multiplies compile time).
    num_states = params.log_initial.shape[-1]
    g = jax.random.gumbel(key, (num_steps, num_states), dtype=jnp.result_type(params.log_initial, float))
    z0 = jnp.argmax(params.log_initial + g[0]).astype(jnp.int32)

    def step(z, g_t):
        z_next = jnp.argmax(params.log_transition[z] + g_t).astype(jnp.int32)
        return z_next, z_next

    _, rest = lax.scan(step, z0, g[1:])
    return jnp.concatenate([z0[None], rest]).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("num_steps",))
def sample_categorical(key: Array, params: HMMParams, log_emission: Array, num_steps: int) -> tuple[Array, Array]:
    """Draw ``(states, observations)`` from a categorical HMM.

    Args:
        key: PRNG key.
        params: :class:`HMMParams`.
        log_emission: ``Float[Array, "S M"]``.
        num_steps: T (static).

    Returns:
        ``(Int[Array, "T"], Int[Array, "T"])``.

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([1.0, 0.0])), jnp.log(jnp.eye(2)))
        >>> z, y = sample_categorical(jax.random.key(0), p, jnp.log(jnp.eye(2)), 2)
        >>> y.tolist()
        [0, 0]
    """
    ks, ky = jax.random.split(key)
    states = sample_states(ks, params, num_steps)
    obs = jax.random.categorical(ky, log_emission[states], axis=-1)
    return states, obs.astype(jnp.int32)


@jax.jit
def posterior_sample(key: Array, params: HMMParams, log_likelihoods: Array, length=None) -> Array:
    """Draw a state path from p(z_{1:L} | y_{1:L}) by forward filtering, backward sampling.

    ``z_L ~ alpha_L``, then ``z_t ~ alpha_t * A[:, z_{t+1}]`` (normalised) by a reverse scan.

    Args:
        key: PRNG key.
        params: :class:`HMMParams`.
        log_likelihoods: ``Float[Array, "T S"]``.
        length: optional number of valid steps; the path is ``-1`` on padding.

    Returns:
        ``Int[Array, "T"]``.

    Example:
        >>> p = HMMParams(jnp.log(jnp.array([.5, .5])), jnp.log(jnp.eye(2)))
        >>> posterior_sample(jax.random.key(0), p, jnp.log(jnp.array([[1., 0.], [1., 0.]]))).tolist()
        [0, 0]
    """
    filt = forward_filter(params, log_likelihoods, length)
    num_steps = filt.filtered.shape[0]
    valid = _valid(num_steps, length)
    log_alpha = jnp.log(filt.filtered)
    log_a = jnp.asarray(params.log_transition, log_alpha.dtype)
    gumbel = jax.random.gumbel(key, log_alpha.shape, dtype=log_alpha.dtype)  # Gumbel-max, noise up front

    def step(z_next, inp):
        la, g, t = inp
        # The last valid step (and padding) samples from the filter alone.
        cond = jnp.where(t + 1 < (num_steps if length is None else length), log_a[:, z_next], 0.0)
        z = jnp.argmax(la + cond + g).astype(jnp.int32)
        return z, z

    steps = jnp.arange(num_steps)
    _, zs = lax.scan(step, jnp.zeros((), jnp.int32), (log_alpha, gumbel, steps), reverse=True)
    return jnp.where(valid, zs, -1).astype(jnp.int32)
