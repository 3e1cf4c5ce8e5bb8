"""Property-based tests of the EM core (hypothesis): EM and VBEM never lower their objective, read
fractions sum to one, estimated counts sum to the number of fragments, and the EM fixed point satisfies
the likelihood's stationarity condition.

Every problem has C = 6 classes over T = 4 transcripts stored as all C*T entries (an incompatible
pair is an inert zero weight), so shapes never change and each jitted function compiles once; hypothesis
draws which entries are live, the weights, counts and lengths.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from diffbio_prob.cores import em as E

C, T = 6, 4
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


def problem(seed: int, weighted: bool, include_length: bool = False):
    rng = np.random.default_rng(seed)
    live = rng.uniform(size=(C, T)) < 0.45
    live[np.arange(C), rng.integers(0, T, C)] = True  # every class has a transcript
    w = np.where(live, rng.uniform(0.1, 1.0, (C, T)) if weighted else 1.0, 0.0)
    counts = rng.integers(0, 40, C).astype(float)
    counts[rng.integers(0, C)] += 1 + rng.integers(0, 40)  # at least one fragment
    lengths = rng.uniform(50.0, 2000.0, T)
    if include_length:
        w = w / lengths[None, :]
    cid, tid = np.repeat(np.arange(C), T), np.tile(np.arange(T), C)
    eqc = E.make_eq_classes(cid, tid, counts, T, weights=w.reshape(-1), weights_include_length=include_length)
    return eqc, lengths, w, counts


def start(seed: int, total: float):
    a = np.random.default_rng(seed + 99).dirichlet(np.ones(T)) * total
    return jnp.asarray(a)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), algorithm=st.sampled_from(["em", "vbem"]), weighted=st.booleans())
def test_iterations_never_lower_the_objective(seed, algorithm, weighted):
    eqc, lengths, _, counts = problem(seed, weighted)
    _, history = E.em_unrolled(eqc, lengths, start(seed, counts.sum()), 25, algorithm=algorithm,
                               return_history=True)
    h = np.asarray(history)
    assert np.all(np.isfinite(h))
    assert np.all(np.diff(h) >= -1e-9 * np.maximum(1.0, np.abs(h[1:])))


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), algorithm=st.sampled_from(["em", "vbem"]), squarem=st.booleans(),
       include_length=st.booleans())
def test_fractions_sum_to_one_and_counts_to_the_fragments(seed, algorithm, squarem, include_length):
    eqc, lengths, _, counts = problem(seed, True, include_length)
    res = E.em(eqc, lengths, algorithm=algorithm, squarem=squarem, min_iter=50, max_iter=2000)
    a = np.asarray(res.counts)
    assert np.all(a >= 0) and np.all(np.isfinite(a))
    # truncation removes values <= 1e-8 each, so at most T * 1e-8 fragments
    np.testing.assert_allclose(a.sum(), counts.sum(), rtol=1e-12, atol=T * 1e-8)
    out = E.quant_outputs(res.counts, jnp.asarray(lengths))
    np.testing.assert_allclose(float(jnp.sum(out.abundances)), 1.0, rtol=1e-12)
    np.testing.assert_allclose(float(jnp.sum(out.tpm)), 1e6, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(out.estimated_counts), a)
    # one more map evaluation keeps the fragment total exactly (no class is lost or double counted)
    step = E.em_step(eqc, lengths, res.counts) if algorithm == "em" else E.vbem_step(eqc, lengths, res.counts)
    np.testing.assert_allclose(float(jnp.sum(step)), counts.sum(), rtol=1e-12)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_em_fixed_point_is_stationary(seed):
    """At the EM maximum, d/d alpha_t of sum_c n_c log sum_t alpha_t x_ct equals N for every transcript with
    alpha_t > 0 and is <= N for the others (KKT on the simplex), with x_ct = w_ct / l_t."""
    eqc, lengths, w, counts = problem(seed, True)
    res = E.em(eqc, lengths, algorithm="em", squarem=True, min_iter=200, max_iter=20000, rel_tol=1e-13,
               truncate_below=0.0)
    alpha = np.asarray(res.counts) / counts.sum()
    x = w / lengths[None, :]
    denom = x @ alpha
    grad = (counts[:, None] * x / np.where(denom > 0, denom, 1.0)[:, None]).sum(0)
    N = counts.sum()
    on = alpha > 1e-6
    np.testing.assert_allclose(grad[on], N, rtol=1e-6)
    assert np.all(grad[~on] <= N * (1 + 1e-6))
