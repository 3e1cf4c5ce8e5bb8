"""The EM core against closed forms, brute force, independent NumPy implementations and its own invariants."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import digamma

from diffbio_prob.cores import em as E


def random_problem(seed=0, T=12, C=30, max_size=4, weighted=True):
    rng = np.random.default_rng(seed)
    cid, tid, w = [], [], []
    for c in range(C):
        k = rng.integers(1, max_size + 1)
        members = rng.choice(T, size=k, replace=False)
        cid += [c] * k
        tid += members.tolist()
        w += (rng.uniform(0.2, 1.0, size=k) if weighted else np.ones(k)).tolist()
    counts = rng.integers(1, 200, size=C).astype(float)
    lengths = rng.uniform(200, 3000, size=T)
    return E.make_eq_classes(cid, tid, counts, T, weights=w), lengths


def dense(eqc):
    """(C, T) weight matrix of the classes."""
    W = np.zeros((eqc.n_classes, eqc.n_transcripts))
    np.add.at(W, (np.asarray(eqc.class_ids), np.asarray(eqc.transcript_ids)), np.asarray(eqc.weights))
    return W


def numpy_em_step(W, n, lengths, a, temperature=1.0):
    """Textbook EM step with dense matrices (Bray et al. 2016): responsibilities ∝ (a_t W_ct / l_t)^(1/T)."""
    x = a[None, :] * W / lengths[None, :]
    x = np.where(W > 0, x ** (1.0 / temperature), 0.0)
    resp = x / x.sum(1, keepdims=True)
    return (n[:, None] * resp).sum(0)


def test_em_step_matches_dense_numpy():
    eqc, lengths = random_problem(1)
    W, n = dense(eqc), np.asarray(eqc.counts)
    a = np.random.default_rng(2).uniform(1, 50, eqc.n_transcripts)
    np.testing.assert_allclose(E.em_step(eqc, lengths, a), numpy_em_step(W, n, lengths, a), rtol=1e-12)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_tempered_step_matches_dense_numpy(temperature):
    eqc, lengths = random_problem(3)
    W, n = dense(eqc), np.asarray(eqc.counts)
    a = np.random.default_rng(4).uniform(1, 50, eqc.n_transcripts)
    # singletons get n_c whatever the temperature; the dense formula agrees (one term normalised to 1).
    got = E.em_step(eqc, lengths, a, temperature=temperature)
    np.testing.assert_allclose(got, numpy_em_step(W, n, lengths, a, temperature), rtol=1e-10)
    assert not np.allclose(got, E.em_step(eqc, lengths, a))


def test_low_temperature_gives_hard_assignment():
    eqc = E.make_eq_classes([0, 0], [0, 1], counts=[10.0], n_transcripts=2)
    out = E.em_step(eqc, jnp.array([1.0, 1.0]), jnp.array([6.0, 4.0]), temperature=0.01)
    np.testing.assert_allclose(out, [10.0, 0.0], atol=1e-9)


def test_vbem_step_matches_numpy_digamma():
    eqc, lengths = random_problem(5)
    W, n = dense(eqc), np.asarray(eqc.counts)
    a = np.random.default_rng(6).uniform(0, 50, eqc.n_transcripts)
    prior = 0.01
    e = np.exp(digamma(a + prior) - digamma(np.sum(a + prior)))
    np.testing.assert_allclose(E.vbem_step(eqc, lengths, a), numpy_em_step(W, n, lengths, e), rtol=1e-11)
    # per-nucleotide prior: 1e-5 * l_t (salmon --perNucleotidePrior)
    e = np.exp(digamma(a + 1e-5 * lengths) - digamma(np.sum(a + 1e-5 * lengths)))
    np.testing.assert_allclose(
        E.vbem_step(eqc, lengths, a, per_nucleotide_prior=True), numpy_em_step(W, n, lengths, e), rtol=1e-11
    )


def seed_step(W, lengths, a):
    """The DiffBio seed's update: E-step with a/l, then the M-step divides by l again and renormalises."""
    x = W * (a / lengths)[None, :]
    resp = x / x.sum(1, keepdims=True)
    new = resp.sum(0) / lengths
    return new / new.sum()


def test_unequal_lengths_reach_the_true_maximum():
    """The seed's bug case: two transcripts of lengths 100 and 300, unique and shared reads.

    The maximum of L(x) = n0 log(x/l0) + n1 log((1-x)/l1) + n01 log(x/l0 + (1-x)/l1) is the root of
    dL/dx found by brentq; real EM reaches it, the seed's twice-divided update does not.
    """
    l0, l1, n0, n1, n01 = 100.0, 300.0, 30.0, 50.0, 120.0

    def dL(x):
        return n0 / x - n1 / (1 - x) + n01 * (1 / l0 - 1 / l1) / (x / l0 + (1 - x) / l1)

    x_star = brentq(dL, 1e-9, 1 - 1e-9, xtol=1e-15)
    eqc = E.make_eq_classes([0, 1, 2, 2], [0, 1, 0, 1], counts=[n0, n1, n01], n_transcripts=2)
    lengths = jnp.array([l0, l1])
    res = E.em(eqc, lengths, min_iter=0, rel_tol=1e-13, abs_cutoff=0.0, max_iter=100_000)
    frac = E.quant_outputs(res.counts, lengths).abundances
    assert bool(res.converged)
    np.testing.assert_allclose(frac[0], x_star, rtol=1e-9)
    # brute force over a grid agrees with the root, and the EM point beats every grid point
    grid = np.linspace(1e-6, 1 - 1e-6, 200_001)
    L = n0 * np.log(grid / l0) + n1 * np.log((1 - grid) / l1) + n01 * np.log(grid / l0 + (1 - grid) / l1)
    assert abs(grid[np.argmax(L)] - x_star) < 1e-5
    assert float(E.log_likelihood(eqc, lengths, frac)) >= L.max() - 1e-9
    # the seed's variant converges elsewhere
    W = np.array([[1, 0], [0, 1], [1, 1]], float)
    a = np.array([0.5, 0.5])
    for _ in range(5000):
        a = seed_step(W, np.array([l0, l1]), a)
    assert abs(a[0] - x_star) > 0.05


def test_dense_reads_equal_collapsed_classes():
    """The seed's (reads x transcripts) form gives what the collapsed classes give."""
    compat = np.array([[1, 0, 0]] * 3 + [[1, 1, 0]] * 5 + [[0, 1, 1]] * 2 + [[0, 0, 1]] * 4, float)
    lengths = jnp.array([100.0, 250.0, 80.0])
    a0 = jnp.full(3, 14 / 3)
    reads = E.from_dense(compat)
    classes = E.from_dense(np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 1]], float), counts=[3, 5, 2, 4])
    np.testing.assert_allclose(E.em_unrolled(reads, lengths, a0, 50), E.em_unrolled(classes, lengths, a0, 50),
                               rtol=1e-12)
    traced = E.from_dense(jnp.asarray(compat), sparse=False)  # the jit-able conversion keeps zeros
    assert traced.n_entries == compat.size
    np.testing.assert_allclose(E.em_unrolled(traced, lengths, a0, 50), E.em_unrolled(reads, lengths, a0, 50),
                               rtol=1e-12)


@pytest.mark.parametrize("algorithm", ["em", "vbem"])
def test_objective_never_decreases(algorithm):
    eqc, lengths = random_problem(7, T=20, C=60)
    init = np.random.default_rng(8).uniform(1, 100, 20)
    _, hist = E.em_unrolled(eqc, lengths, init, 300, algorithm=algorithm, return_history=True)
    hist = np.asarray(hist)
    assert np.all(np.isfinite(hist))
    assert np.all(np.diff(hist) >= -1e-10 * np.abs(hist[1:]))
    assert hist[-1] > hist[0] + 1.0


def test_em_log_likelihood_objective_is_the_class_likelihood():
    eqc, lengths = random_problem(9)
    a = np.random.default_rng(10).uniform(1, 50, eqc.n_transcripts)
    W, n = dense(eqc), np.asarray(eqc.counts)
    alpha = a / a.sum()
    brute = float(np.sum(n * np.log((W * alpha / lengths).sum(1))))
    np.testing.assert_allclose(E.log_likelihood(eqc, lengths, alpha), brute, rtol=1e-12)
    np.testing.assert_allclose(E.objective(eqc, lengths, a), brute, rtol=1e-12)
    np.testing.assert_allclose(E.class_log_likelihood(eqc, lengths, alpha), n * np.log((W * alpha / lengths).sum(1)),
                               rtol=1e-12)


@pytest.mark.parametrize("algorithm", ["em", "vbem"])
def test_squarem_reaches_the_same_fixed_point_monotonically(algorithm):
    eqc, lengths = random_problem(2, T=25, C=50, max_size=5)  # a slowly converging case
    kw = dict(algorithm=algorithm, min_iter=0, rel_tol=1e-8, abs_cutoff=1e-6, max_iter=200_000, truncate_below=0.0)
    plain = E.em(eqc, lengths, **kw)
    fast = E.em(eqc, lengths, squarem=True, **kw)
    assert bool(plain.converged) and bool(fast.converged)
    np.testing.assert_allclose(fast.counts, plain.counts, atol=1e-4)
    assert int(fast.n_evaluations) < int(plain.n_evaluations) / 3
    # the objective after every SQUAREM cycle never decreases (same compiled loop, growing max_iter)
    objs = [float(E.em(eqc, lengths, squarem=True, **{**kw, "max_iter": 3 * k}).objective) for k in range(1, 13)]
    assert np.all(np.diff(objs) >= -1e-9 * np.abs(objs[1:]))
    assert fast.objective >= plain.objective - 1e-8 * abs(float(plain.objective))


def test_convergence_rule_counts_iterations_like_salmon():
    eqc, lengths = random_problem(12)
    a = np.asarray(E.uniform_init(eqc))
    n_manual = None
    step = jax.jit(E.em_step)
    for it in range(1, 5000):
        new = np.asarray(step(eqc, lengths, a))
        big = new > 1e-2
        if np.all(np.abs(new - a)[big] / new[big] <= 1e-2):
            n_manual = it
            break
        a = new
    res = E.em(eqc, lengths, min_iter=0)
    assert bool(res.converged) and int(res.n_iterations) == n_manual
    np.testing.assert_allclose(res.counts, np.where(new > 1e-8, new, 0.0), rtol=1e-12)
    assert int(E.em(eqc, lengths, min_iter=100).n_iterations) == max(100, n_manual)
    assert int(E.em(eqc, lengths, min_iter=0, max_iter=2).n_iterations) == 2
    assert not bool(E.em(eqc, lengths, min_iter=0, max_iter=2).converged)


def test_converged_and_truncate_rules():
    old = jnp.array([100.0, 1e-3, 5.0])
    assert bool(E.converged(old, jnp.array([100.9, 5e-3, 5.04])))  # 0.9%, below cutoff, 0.8%
    assert not bool(E.converged(old, jnp.array([102.0, 5e-3, 5.0])))  # 2% on a big one
    np.testing.assert_array_equal(E.truncate(jnp.array([1e-9, 1e-8, 2e-8])), [0.0, 0.0, 2e-8])


@pytest.mark.parametrize("algorithm,temperature", [("em", 1.0), ("vbem", 1.0)])
def test_unrolled_gradients_match_finite_differences(algorithm, temperature):
    eqc, lengths = random_problem(13, T=6, C=12, max_size=3)
    init = jnp.asarray(np.random.default_rng(14).uniform(5, 50, 6))
    g = jnp.asarray(np.random.default_rng(15).normal(size=6))

    def f(lengths, weights, init):
        out = E.em_unrolled(eqc.replace(weights=weights), lengths, init, 8, algorithm=algorithm,
                            temperature=temperature)
        return jnp.dot(g, out)

    f = jax.jit(f)
    args = (jnp.asarray(lengths), eqc.weights, init)
    grads = jax.grad(f, argnums=(0, 1, 2))(*args)
    for i, (arg, grad) in enumerate(zip(args, grads)):
        assert np.all(np.isfinite(grad))
        h = 1e-6 * np.maximum(1.0, np.abs(np.asarray(arg)))
        fd = []
        for j in range(arg.shape[0]):
            e = np.zeros(arg.shape[0])
            e[j] = h[j]
            plus = list(args)
            minus = list(args)
            plus[i] = arg + e
            minus[i] = arg - e
            fd.append((float(f(*plus)) - float(f(*minus))) / (2 * h[j]))
        np.testing.assert_allclose(grad, fd, rtol=2e-5, atol=1e-7)


def test_vmap_over_counts_equals_separate_runs():
    eqc, lengths = random_problem(16)
    counts = np.random.default_rng(17).integers(1, 100, size=(3, eqc.n_classes)).astype(float)
    batched = jax.vmap(lambda c: E.em(eqc.replace(counts=c), lengths).counts)(jnp.asarray(counts))
    for b in range(3):
        np.testing.assert_allclose(batched[b], E.em(eqc.replace(counts=jnp.asarray(counts[b])), lengths).counts,
                                   rtol=1e-10)


def test_quant_outputs_tpm_and_fractions():
    out = E.quant_outputs(jnp.array([10.0, 30.0, 0.0]), jnp.array([100.0, 300.0, 50.0]))
    np.testing.assert_allclose(out.abundances, [0.25, 0.75, 0.0])
    np.testing.assert_allclose(out.tpm, [5e5, 5e5, 0.0])
    np.testing.assert_allclose(out.estimated_counts, [10.0, 30.0, 0.0])


def test_uniform_init_ignores_transcripts_without_classes():
    eqc = E.make_eq_classes([0, 0, 1], [0, 2, 2], counts=[6.0, 3.0], n_transcripts=4)
    np.testing.assert_allclose(E.uniform_init(eqc), [4.5, 0.0, 4.5, 0.0])
    res = E.em(eqc, jnp.ones(4), algorithm="vbem")
    assert float(res.counts[1]) == 0.0 and float(res.counts[3]) == 0.0
    np.testing.assert_allclose(float(jnp.sum(res.counts)), 9.0, rtol=1e-12)


def test_unsorted_entries_are_sorted_by_class():
    a = E.make_eq_classes([1, 0, 1, 0], [0, 1, 1, 2], counts=[4.0, 6.0], n_transcripts=3, weights=[1, 2, 3, 4])
    np.testing.assert_array_equal(a.class_ids, [0, 0, 1, 1])
    np.testing.assert_array_equal(a.transcript_ids, [1, 2, 0, 1])
    np.testing.assert_array_equal(a.weights, [2, 4, 1, 3])


@pytest.mark.parametrize(
    "kwargs,lengths,match",
    [
        (dict(class_ids=[0, 0], transcript_ids=[0, 5], counts=[1.0]), [1.0, 1.0], "transcript id 5 out of range"),
        (dict(class_ids=[0, 0], transcript_ids=[0, 1], counts=[1.0, 1.0]), [1.0, 1.0], "class 1 is empty"),
        (dict(class_ids=[0, 2], transcript_ids=[0, 1], counts=[1.0, 1.0]), [1.0, 1.0], "class id 2 out of range"),
        (dict(class_ids=[0, 1], transcript_ids=[0, 1], counts=[1.0, 1.0], weights=[1.0, 0.0]), [1.0, 1.0],
         "class 1 is empty"),
        (dict(class_ids=[0, 1], transcript_ids=[0, 1], counts=[1.0, -2.0]), [1.0, 1.0], "counts: must be non-negative"),
        (dict(class_ids=[0, 1], transcript_ids=[0, 1], counts=[1.0, 1.0]), [1.0, 0.0], "effective_lengths: must be"),
        (dict(class_ids=[0, 1], transcript_ids=[0, 1], counts=[1.0, 1.0]), [1.0, 1.0, 1.0], r"expected shape \(2,\)"),
        (dict(class_ids=[0, 1], transcript_ids=[0, 1], counts=[1.0, 1.0], weights=[1.0, -1.0]), [1.0, 1.0],
         "non-negative"),
    ],
)
def test_validate_rejects_bad_input(kwargs, lengths, match):
    eqc = E.make_eq_classes(n_transcripts=2, **kwargs)
    with pytest.raises(ValueError, match=match):
        E.validate(eqc, jnp.asarray(lengths))


def test_bad_arguments():
    eqc, lengths = random_problem(18)
    with pytest.raises(ValueError, match="algorithm"):
        E.em(eqc, lengths, algorithm="gibbs")
    with pytest.raises(ValueError, match="temperature"):
        E.em_unrolled(eqc, lengths, E.uniform_init(eqc), 3, temperature=0.0)
    bad = eqc.replace(transcript_ids=eqc.transcript_ids.at[0].set(99))
    with pytest.raises(ValueError, match="transcript id 99 out of range"):  # em() validates concrete input
        E.em(bad, lengths)


def test_fast_digamma_matches_scipy():
    x = np.concatenate([np.logspace(-10, 9, 20001), np.linspace(0.5, 30, 10001)])
    psi = digamma(x)
    d = np.asarray(E.fast_digamma(jnp.asarray(x))) - psi
    assert np.all(np.abs(d) <= 4e-15 * np.maximum(1.0, np.abs(psi)))


# --- the VBEM prior: one check (check_prior) for the core, the operator and quantify ----------------------
def numpy_vbem_objective(W, n, lengths, a, prior):
    """Collapsed VBEM bound in float64 NumPy/SciPy, lgamma differences by scipy's gammaln."""
    from scipy.special import gammaln

    e = np.exp(digamma(a + prior) - digamma(np.sum(a + prior)))
    ll = np.sum(n * np.log((W / lengths[None, :]) @ e))
    b, p = a + prior, np.full_like(a, prior)
    kl = (gammaln(b.sum()) - gammaln(b).sum() - gammaln(p.sum()) + gammaln(p).sum()
          + np.sum(a * (digamma(b) - digamma(b.sum()))))
    return ll - kl


@pytest.mark.parametrize("prior", [1e-3, 0.01, 1.0, 1e4, 1e8])
def test_vbem_objective_matches_scipy(prior):
    eqc, lengths = random_problem(21)
    a = np.random.default_rng(22).uniform(0, 80, eqc.n_transcripts)
    ref = numpy_vbem_objective(dense(eqc), np.asarray(eqc.counts), lengths, a, prior)
    got = float(E.objective(eqc, lengths, a, "vbem", prior=prior))
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-6 * max(1.0, abs(ref)) if prior > 1e6 else 1e-9)


@pytest.mark.float32
def test_float32_vbem_objective_survives_large_priors():
    """Four lgamma of sums near T * prior cancelled: float32 gave +650 at prior 1e10 and NaN at 1e36 (float64
    value -27080.5 on the sample data); the lgamma differences keep it to float32 accuracy."""
    eqc, lengths = random_problem(23)
    a = np.random.default_rng(24).uniform(0, 80, eqc.n_transcripts)
    for prior in (1e10, 1e20, 1e30):
        with jax.enable_x64(True):
            ref = numpy_vbem_objective(dense(eqc), np.asarray(eqc.counts, float), lengths, a, 1e8)  # the limit
        eq32 = eqc.replace(weights=eqc.weights.astype(jnp.float32), counts=eqc.counts.astype(jnp.float32))
        got = float(E.objective(eq32, jnp.asarray(lengths, jnp.float32), jnp.asarray(a, jnp.float32), "vbem",
                                prior=prior))
        assert np.isfinite(got)
        np.testing.assert_allclose(got, ref, rtol=2e-4)


@pytest.mark.parametrize(
    "prior,exc,match",
    [
        (float("nan"), ValueError, "prior: expected a finite positive number, got nan"),
        (float("inf"), ValueError, "prior: expected a finite positive number, got inf"),
        (-1.0, ValueError, "prior: expected a finite positive number, got -1.0"),
        (0.0, ValueError, "prior: expected a finite positive number, got 0.0"),
        ("0.1", TypeError, "prior: expected a positive number"),
        (True, TypeError, "prior: expected a positive number"),
        (np.array([0.1, 0.2]), TypeError, "prior: expected a positive number"),
        (1e308, ValueError, "overflows float64"),
        (1e-320, ValueError, "below the smallest normal float64"),
    ],
)
def test_check_prior_rejects(prior, exc, match):
    eqc, lengths = random_problem(25)
    with pytest.raises(exc, match=match):
        E.check_prior(prior, eqc.n_transcripts)
    for fn in (lambda: E.em(eqc, lengths, algorithm="vbem", prior=prior),
               lambda: E.vbem_step(eqc, lengths, E.uniform_init(eqc), prior=prior),
               lambda: E.em_unrolled(eqc, lengths, E.uniform_init(eqc), 2, algorithm="vbem", prior=prior)):
        with pytest.raises(exc, match=match.split(",")[0]):
            fn()


def test_prior_check_is_skipped_for_traced_values():
    eqc, lengths = random_problem(26)
    f = jax.jit(lambda p: E.vbem_step(eqc, lengths, E.uniform_init(eqc), prior=p))
    np.testing.assert_allclose(f(0.5), E.vbem_step(eqc, lengths, E.uniform_init(eqc), prior=0.5), rtol=1e-12)


def test_huge_prior_gives_the_limit_and_keeps_every_fragment():
    """prior -> inf makes every e_t equal, so the fixed point is a' = sum_c n_c aff_ct / sum_j aff_cj."""
    eqc, lengths = random_problem(27)
    W, n = dense(eqc), np.asarray(eqc.counts)
    x = W / lengths[None, :]
    limit = (n[:, None] * x / x.sum(1, keepdims=True)).sum(0)
    for prior in (1e30, 1e300):
        res = E.em(eqc, lengths, algorithm="vbem", prior=prior, truncate_below=0.0)
        np.testing.assert_allclose(res.counts, limit, rtol=1e-9)
        np.testing.assert_allclose(float(jnp.sum(res.counts)), n.sum(), rtol=1e-12)
        assert np.isfinite(float(res.objective))


@pytest.mark.float32
def test_float32_rejects_a_prior_that_overflows():
    eqc, lengths = random_problem(28)
    eq32 = eqc.replace(weights=eqc.weights.astype(jnp.float32), counts=eqc.counts.astype(jnp.float32))
    with pytest.raises(ValueError, match=r"prior: .*overflows float32 .* largest usable prior is about 1.\d+e\+37"):
        E.em(eq32, jnp.asarray(lengths, jnp.float32), algorithm="vbem", prior=1e300)
    res = E.em(eq32, jnp.asarray(lengths, jnp.float32), algorithm="vbem", prior=1e35)
    np.testing.assert_allclose(float(jnp.sum(res.counts)), float(np.sum(eqc.counts)), rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(min_iter=-1), "min_iter: expected an integer >= 0"),
        (dict(min_iter=1.5), "min_iter: expected an integer >= 0"),
        (dict(max_iter=0), "max_iter: expected an integer >= 1"),
        (dict(min_iter=50, max_iter=10), "min_iter: 50 is larger than max_iter"),
        (dict(rel_tol=float("nan")), "rel_tol: expected a finite non-negative number"),
        (dict(rel_tol=-1e-3), "rel_tol: expected a finite non-negative number"),
        (dict(abs_cutoff=float("inf")), "abs_cutoff"),
        (dict(truncate_below=-1.0), "truncate_below"),
        (dict(temperature=float("inf")), "temperature: expected a finite positive number"),
    ],
)
def test_em_rejects_bad_loop_settings(kwargs, match):
    eqc, lengths = random_problem(29)
    with pytest.raises(ValueError, match=match):
        E.em(eqc, lengths, **kwargs)


@pytest.mark.parametrize(
    "kwargs,lengths,match",
    [
        (dict(class_ids=[0, 1], transcript_ids=[0, 1], counts=[0.0, 0.0]), [1.0, 1.0], "counts: all 2 classes have 0"),
        (dict(class_ids=[], transcript_ids=[], counts=[]), [1.0, 1.0], "no equivalence classes"),
        (dict(class_ids=[0, 1], transcript_ids=[0, 1], counts=[1.0, np.inf]), [1.0, 1.0],
         "counts: must be finite, got inf for class 1"),
        (dict(class_ids=[0, 1], transcript_ids=[0, 1], counts=[1.0, 1.0], weights=[1e-320, 1.0]), [1.0, 1.0],
         "below the smallest normal float64"),
        (dict(class_ids=[0, 1], transcript_ids=[0, 1], counts=[1.0, 1.0]), ["a", "b"], "effective_lengths: expected numbers"),
        (dict(class_ids=[0, 1], transcript_ids=[0, 1], counts=[1.0, 1.0], weights=[1e300, 1.0]), [1e-10, 1.0],
         "overflows float64"),
    ],
)
def test_validate_rejects_more_bad_input(kwargs, lengths, match):
    eqc = E.make_eq_classes(n_transcripts=2, **kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        E.validate(eqc, np.asarray(lengths))


# --- quantify / bootstrap_counts / posterior reject bad arguments before fitting --------------------------
@pytest.fixture(scope="module")
def sample():
    from diffbio_prob.io.salmon import load_sample_data

    return load_sample_data()


@pytest.mark.parametrize("prior", [float("nan"), float("inf"), -1.0])
def test_quantify_rejects_non_finite_or_negative_priors(sample, prior):
    """Before: prior nan/inf 'converged' with NumReads summing to 6,931 / 6,651 of 10,000 fragments."""
    from diffbio_prob.workflows.quant import bootstrap_counts, quantify

    for algorithm in ("vbem", "em"):
        with pytest.raises(ValueError, match="prior: expected a finite positive number"):
            quantify(sample.table, sample.effective_lengths, algorithm=algorithm, prior=prior)
    with pytest.raises(ValueError, match="prior: expected a finite positive number"):
        bootstrap_counts(sample.table, sample.effective_lengths, prior=prior, n_draws=2)


def test_quantify_with_prior_1e300_keeps_every_fragment_in_float64(sample):
    from diffbio_prob.workflows.quant import quantify

    res = quantify(sample.table, sample.effective_lengths, prior=1e300)
    np.testing.assert_allclose(res.num_reads.sum(), sample.table.counts.sum(), rtol=1e-10)
    assert np.isfinite(res.objective)


@pytest.mark.float32
def test_quantify_with_prior_1e300_is_an_error_in_float32(sample):
    """Before: 1e300 became inf in float32 and quantify 'converged' to 6,651 of 10,000 fragments."""
    from diffbio_prob.workflows.quant import quantify

    with pytest.raises(ValueError, match=r"prior: .* overflows float32 .*enable float64"):
        quantify(sample.table, sample.effective_lengths, prior=1e300)
    res = quantify(sample.table, sample.effective_lengths, prior=1e30)  # below the limit: all fragments kept
    np.testing.assert_allclose(res.num_reads.sum(), 10_000, rtol=1e-5)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda q, d: q.quantify(d.table, ["a"] * 15), TypeError, "effective_lengths: expected 15 numbers"),
        (lambda q, d: q.quantify(d.table, d.effective_lengths, lengths=[1.0, 2.0]), ValueError,
         r"lengths: expected shape \(15,\)"),
        (lambda q, d: q.quantify(d.table, d.effective_lengths, min_iter=-1), ValueError, "min_iter"),
        (lambda q, d: q.quantify(d.table, d.effective_lengths, rel_tol=float("nan")), ValueError, "rel_tol"),
        (lambda q, d: q.bootstrap_counts(d.table, d.effective_lengths, n_draws=True), ValueError, "n_draws"),
        (lambda q, d: q.bootstrap_counts(d.table, d.effective_lengths, batch_size=0), ValueError, "batch_size"),
        (lambda q, d: q.bootstrap_counts(d.table, d.effective_lengths, seed=-1), ValueError, "seed"),
        (lambda q, d: q.bootstrap_counts(d.table, d.effective_lengths, algorithm="gibbs"), ValueError, "algorithm"),
        (lambda q, d: q.posterior(d.table, d.effective_lengths, "bootstrap", num_samples=0), ValueError,
         "num_samples"),
        (lambda q, d: q.posterior(d.table, d.effective_lengths, "bootstrap", algorithm="x"), ValueError, "algorithm"),
    ],
)
def test_quant_entry_points_reject_bad_arguments(sample, call, exc, match):
    from diffbio_prob.workflows import quant

    with pytest.raises(exc, match=match):
        call(quant, sample)


@pytest.mark.parametrize(
    "init,exc,match",
    [
        (np.zeros(12), ValueError, "init: expected finite non-negative starting counts with a positive total"),
        (np.r_[np.ones(11), np.nan], ValueError, "init: expected finite non-negative"),
        (np.r_[np.ones(11), -1.0], ValueError, "init: expected finite non-negative"),
        (np.ones(3), ValueError, r"init: expected shape \(12,\)"),
        (np.array(["a"] * 12), TypeError, "init: expected numbers"),
    ],
)
def test_bad_starting_point_is_named(init, exc, match):
    eqc, lengths = random_problem(30)
    with pytest.raises(exc, match=match):
        E.em(eqc, lengths, init=init)
    with pytest.raises(exc, match=match):
        E.em_unrolled(eqc, lengths, init, 3)


def test_operator_until_converged_with_more_iterations_than_the_default_cap():
    from diffbio_prob.operators.statistical import DifferentiableEMQuantifier, EMQuantifierConfig

    eqc, lengths = random_problem(31, T=4, C=6)
    op = DifferentiableEMQuantifier(EMQuantifierConfig(n_transcripts=4, n_iterations=12_000, until_converged=True))
    out = op.apply({"equivalence_classes": eqc, "effective_lengths": lengths}, {}, None)[0]
    np.testing.assert_allclose(float(jnp.sum(out["estimated_counts"])), float(jnp.sum(eqc.counts)), rtol=1e-9)
