"""Property-based tests of the HMM core (hypothesis): brute-force enumeration of every state path for tiny
T and S, posteriors that sum to one, and ragged batches equal to per-sequence results.

Shapes are fixed (S = 3 states, M = 3 symbols, sequences padded to T = 4) and lengths are traced, so each
jitted core function compiles once for the whole file; hypothesis draws seeds, lengths and missing steps.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from diffbio_prob.cores import hmm

S, M, T = 3, 3, 4
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


def random_hmm(seed: int, sparse: bool = False):
    """Random probabilities (rows on the simplex); ``sparse`` puts hard zeros in the transition matrix."""
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(S))
    A = rng.dirichlet(np.ones(S), size=S)
    if sparse:
        A = A * (rng.uniform(size=(S, S)) > 0.3)
        A[np.arange(S), rng.integers(0, S, S)] += 0.1  # every row keeps some mass
        A /= A.sum(1, keepdims=True)
    B = rng.dirichlet(np.ones(M) * 0.7, size=S)
    return pi, A, B


def observations(seed: int, length: int, p_missing: float):
    rng = np.random.default_rng(seed + 1)
    y = rng.integers(0, M, T)
    y[rng.uniform(size=T) < p_missing] = -1  # missing steps are marginalised
    y[length:] = -1  # padding
    return y


def emission_ll(B, y):
    with np.errstate(divide="ignore"):
        logB = np.log(B)
    return np.where((y >= 0)[:, None], logB.T[np.where(y >= 0, y, 0)], 0.0)


def brute_force(pi, A, ll, length):
    """log p(y), smoothed marginals (length, S), and the best path's joint log-probability, by enumerating
    all S**length paths."""
    with np.errstate(divide="ignore"):
        lpi, lA = np.log(pi), np.log(A)
    paths = np.array(list(itertools.product(range(S), repeat=length)))
    joint = lpi[paths[:, 0]] + ll[0, paths[:, 0]]
    for t in range(1, length):
        joint = joint + lA[paths[:, t - 1], paths[:, t]] + ll[t, paths[:, t]]
    total = logsumexp(joint)
    w = np.exp(joint - total)
    marg = np.stack([np.bincount(paths[:, t], weights=w, minlength=S) for t in range(length)])
    return total, marg, joint.max(), paths, joint


def params_of(pi, A):
    with np.errstate(divide="ignore"):
        return hmm.HMMParams(jnp.log(jnp.asarray(pi)), jnp.log(jnp.asarray(A)))


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), length=st.integers(1, T), p_missing=st.sampled_from([0.0, 0.3]),
       sparse=st.booleans())
def test_forward_smoother_viterbi_equal_brute_force(seed, length, p_missing, sparse):
    pi, A, B = random_hmm(seed, sparse)
    y = observations(seed, length, p_missing)
    ll = emission_ll(B, y)
    total, marg, best, paths, joint = brute_force(pi, A, ll, length)
    p = params_of(pi, A)
    L = jnp.asarray(length)
    np.testing.assert_allclose(float(hmm.log_likelihood(p, jnp.asarray(ll), L)), total, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(float(hmm.forward_filter(p, jnp.asarray(ll), L).log_likelihood), total, rtol=1e-10,
                               atol=1e-12)
    post = hmm.smoother(p, jnp.asarray(ll), L)
    np.testing.assert_allclose(np.asarray(post.smoothed)[:length], marg, atol=1e-10)
    # state posteriors sum to one on every valid step, and are zero on padding
    np.testing.assert_allclose(np.asarray(post.smoothed).sum(1), (np.arange(T) < length).astype(float), atol=1e-12)
    path, lp = hmm.viterbi(p, jnp.asarray(ll), L)
    path = np.asarray(path)
    np.testing.assert_allclose(float(lp), best, rtol=1e-10, atol=1e-12)
    assert (path[length:] == -1).all()
    # the returned path is one of the best paths (ties allowed)
    k = int(np.flatnonzero((paths == path[:length]).all(1))[0])
    np.testing.assert_allclose(joint[k], best, rtol=1e-10, atol=1e-12)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_length_one_sequence_equals_brute_force(seed):
    """T = 1 used to raise IndexError in _tree_sum (Viterbi's empty list of per-step maxima)."""
    pi, A, B = random_hmm(seed)
    y = np.array([np.random.default_rng(seed).integers(0, M)])
    ll = emission_ll(B, y)
    total, marg, best, _, _ = brute_force(pi, A, ll, 1)
    p = params_of(pi, A)
    path, lp = hmm.viterbi(p, jnp.asarray(ll))
    assert int(path[0]) == int(np.argmax(np.log(pi) + ll[0]))
    np.testing.assert_allclose(float(lp), best, rtol=1e-12)
    np.testing.assert_allclose(float(hmm.log_likelihood(p, jnp.asarray(ll))), total, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(hmm.state_posteriors(p, jnp.asarray(ll))), marg, atol=1e-12)
    paths_b, lp_b = hmm.categorical_viterbi_batch(p, jnp.log(jnp.asarray(B)), jnp.asarray(y[None]))
    np.testing.assert_allclose(float(lp_b[0]), best, rtol=1e-12)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), lengths=st.lists(st.integers(1, T), min_size=3, max_size=3),
       p_missing=st.sampled_from([0.0, 0.25]))
def test_ragged_batch_equals_per_sequence_results(seed, lengths, p_missing):
    pi, A, B = random_hmm(seed)
    p = params_of(pi, A)
    log_b = jnp.log(jnp.asarray(B))
    ys = np.stack([observations(seed + 7 * i, n, p_missing) for i, n in enumerate(lengths)])
    lls = np.stack([emission_ll(B, y) for y in ys])
    lens = jnp.asarray(lengths)
    batch_ll = np.asarray(hmm.log_likelihood_batch(p, jnp.asarray(lls), lens))
    cat_ll, cat_post = (np.asarray(x) for x in hmm.categorical_posteriors_batch(p, log_b, jnp.asarray(ys), lens))
    post = hmm.smoother_batch(p, jnp.asarray(lls), lens)
    vpath, vlp = (np.asarray(x) for x in hmm.viterbi_batch(p, jnp.asarray(lls), lens))
    for b, n in enumerate(lengths):
        one = jnp.asarray(lls[b, :n])  # the sequence alone, unpadded
        ref_ll = float(hmm.log_likelihood(p, one))
        np.testing.assert_allclose([batch_ll[b], cat_ll[b], float(post.log_likelihood[b])], ref_ll, rtol=1e-10, atol=1e-12)
        ref_post = np.asarray(hmm.state_posteriors(p, one))
        np.testing.assert_allclose(np.asarray(post.smoothed)[b, :n], ref_post, atol=1e-10)
        np.testing.assert_allclose(cat_post[b, :n], ref_post, atol=1e-10)
        assert np.all(np.asarray(post.smoothed)[b, n:] == 0) and np.all(cat_post[b, n:] == 0)
        ref_path, ref_lp = hmm.viterbi(p, one)
        np.testing.assert_allclose(vlp[b], float(ref_lp), rtol=1e-10, atol=1e-12)
        assert (vpath[b, n:] == -1).all()
        total, _, best, _, _ = brute_force(pi, A, lls[b], n)  # and both against enumeration
        np.testing.assert_allclose(ref_ll, total, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(float(ref_lp), best, rtol=1e-10, atol=1e-12)
