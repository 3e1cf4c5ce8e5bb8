"""The pure-JAX HMM core against textbook values, brute-force enumeration and hmmlearn."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from diffbio_prob.cores import hmm

# hmmlearn 0.3.3 sets ndarray.shape, deprecated in NumPy 2.5
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:hmmlearn")

# ------------------------------------------------------------------------------------------------
# helpers: an independent float64 NumPy oracle
# ------------------------------------------------------------------------------------------------


def random_model(rng, k, m, sparse=False):
    pi = rng.dirichlet(np.ones(k))
    a = rng.dirichlet(np.ones(k), size=k)
    if sparse:
        a[0, 1:] = 0.0  # state 0 only stays
        a[0, 0] = 1.0
        a[1, 0] = 0.0  # state 1 never goes to 0
        a[1] /= a[1].sum()
    b = rng.dirichlet(np.ones(m), size=k)
    return pi, a, b


def params_of(pi, a):
    with np.errstate(divide="ignore"):
        return hmm.HMMParams(jnp.asarray(np.log(pi)), jnp.asarray(np.log(a)))


def brute_force(pi, a, ll):
    """Enumerate every path: log Z, smoothed marginals, summed two-slice marginals, best path."""
    t_len, k = ll.shape
    with np.errstate(divide="ignore"):
        lpi, la = np.log(pi), np.log(a)
    paths = np.array(list(itertools.product(range(k), repeat=t_len)))
    lj = lpi[paths[:, 0]] + ll[np.arange(t_len), paths].sum(1)
    lj = lj + la[paths[:, :-1], paths[:, 1:]].sum(1)
    log_z = logsumexp(lj)
    w = np.exp(lj - log_z)
    gamma = np.zeros((t_len, k))
    xi = np.zeros((k, k))
    for t in range(t_len):
        np.add.at(gamma[t], paths[:, t], w)
        if t < t_len - 1:
            np.add.at(xi, (paths[:, t], paths[:, t + 1]), w)
    best = np.argmax(lj)
    return log_z, gamma, xi, paths[best], lj[best], paths, w


def np_sample(rng, pi, a, b, t_len):
    """Observations of a categorical HMM by inverse-CDF sampling (NumPy; faster than hmmlearn's sample)."""
    u, v = rng.random(t_len), rng.random(t_len)
    ca, cb = np.cumsum(a, 1), np.cumsum(b, 1)
    z = np.empty(t_len, int)
    z[0] = min(np.searchsorted(np.cumsum(pi), u[0]), len(pi) - 1)
    for t in range(1, t_len):
        z[t] = min(np.searchsorted(ca[z[t - 1]], u[t]), len(pi) - 1)
    return np.minimum((v[:, None] > cb[z]).sum(1), b.shape[1] - 1)


def np_categorical_ll(b, y):
    ll = np.log(b)[:, np.where(y >= 0, y, 0)].T
    ll[y < 0] = 0.0
    return ll


# ------------------------------------------------------------------------------------------------
# textbook values (docs/notes/hmm.md section 8)
# ------------------------------------------------------------------------------------------------
UMBRELLA = dict(
    pi=np.array([0.5, 0.5]),
    a=np.array([[0.7, 0.3], [0.3, 0.7]]),
    lik=np.array([[0.9, 0.2], [0.9, 0.2], [0.1, 0.8], [0.9, 0.2], [0.9, 0.2]]),
)


def test_textbook_umbrella_and_rainy_sunny():
    """Wikipedia's umbrella world (forward-backward) and rainy/sunny (Viterbi); the 3-step rainy/sunny
    sequence is padded to the umbrella's 5 steps with ``length=3`` (one compiled shape for both)."""
    p = params_of(UMBRELLA["pi"], UMBRELLA["a"])
    ll = jnp.log(UMBRELLA["lik"])
    post = hmm.smoother(p, ll, 5)
    assert float(post.log_likelihood) == pytest.approx(-3.3725, abs=5e-5)
    assert float(hmm.log_likelihood(p, ll, 5)) == pytest.approx(-3.3725, abs=5e-5)
    np.testing.assert_allclose(
        post.smoothed,
        [[0.8673, 0.1327], [0.8204, 0.1796], [0.3075, 0.6925], [0.8204, 0.1796], [0.8673, 0.1327]],
        atol=5e-5,
    )
    np.testing.assert_allclose(post.transition_counts, [[2.0802, 0.7355], [0.7355, 0.4489]], atol=5e-5)
    path, lp = hmm.viterbi(p, ll, 5)
    assert path.tolist() == [0, 0, 1, 0, 0]
    assert float(lp) == pytest.approx(-4.4590, abs=5e-5)

    p = params_of(np.array([0.6, 0.4]), np.array([[0.7, 0.3], [0.4, 0.6]]))
    log_b = jnp.log(jnp.array([[0.1, 0.4, 0.5], [0.6, 0.3, 0.1]]))
    ll = hmm.categorical_log_likelihoods(log_b, jnp.array([0, 1, 2, 0, 0]))
    path, lp = hmm.viterbi(p, ll, 3)
    assert path.tolist() == [1, 0, 0, -1, -1]
    assert float(jnp.exp(lp)) == pytest.approx(0.01344, abs=1e-8)
    post = hmm.smoother(p, ll, 3)
    assert float(hmm.log_likelihood(p, ll, 3)) == pytest.approx(np.log(0.033612), abs=1e-6)
    assert float(post.log_likelihood) == pytest.approx(np.log(0.033612), abs=1e-6)
    np.testing.assert_allclose(
        post.smoothed[:3], [[0.231703, 0.768297], [0.624063, 0.375937], [0.863977, 0.136023]], atol=1e-6
    )
    assert float(jnp.abs(post.smoothed[3:]).sum()) == 0.0


# ------------------------------------------------------------------------------------------------
# brute force over all K^T paths
# ------------------------------------------------------------------------------------------------
def np_forward_backward(pi, a, ll):
    """Scaled forward-backward in NumPy float64 (the ragged tests' per-sequence oracle)."""
    t_len, k = ll.shape
    m = ll.max(1)
    w = np.exp(ll - m[:, None])
    alpha, c, pred = np.zeros((t_len, k)), np.zeros(t_len), pi
    for t in range(t_len):
        u = pred * w[t]
        alpha[t], c[t] = u / u.sum(), np.log(u.sum()) + m[t]
        pred = alpha[t] @ a
    beta = np.ones((t_len, k))
    for t in range(t_len - 2, -1, -1):
        bt = a @ (w[t + 1] * beta[t + 1])
        beta[t] = bt / bt.max()
    gamma = alpha * beta
    gamma /= gamma.sum(1, keepdims=True)
    xi = np.zeros((k, k))
    for t in range(t_len - 1):
        x = alpha[t][:, None] * a * (w[t + 1] * beta[t + 1])[None]
        xi += x / x.sum()
    return c.sum(), gamma, xi


def test_brute_force_all_marginals_sparse_missing_and_gradients():
    """Five random 3-state models at T = 6 through one vmapped call each: dense, sparse (hard zeros in
    A), zeros in pi, missing symbols, an all-missing sequence. Every quantity equals the enumeration of
    all 3^6 paths; the custom-VJP gradient is forward-backward (Eisner 2016: d log Z / d ll = gamma,
    d log Z / d log A = sum xi, d log Z / d log pi = gamma_1) and finite despite log(0) = -inf."""
    k, m, t_len = 3, 3, 6
    rng = np.random.default_rng(0)
    cases = []
    for sparse in (False, True, True, False, True):
        pi, a, b = random_model(rng, k, m, sparse)
        cases.append([pi, a, b, rng.integers(0, m, t_len)])
    cases[1][3][1] = -1  # a missing symbol inside
    cases[2][0] = np.array([0.0, 0.3, 0.7])  # a zero in pi as well
    cases[3][3] = np.array([2, -1, -1, 0, 1, -1])  # several missing, one at the end
    cases[4][3] = -np.ones(t_len, int)  # all missing: log Z = 0, posteriors = prior marginals
    ps = jax.tree.map(lambda *x: jnp.stack(x), *[params_of(pi, a) for pi, a, _, _ in cases])
    log_bs = jnp.log(jnp.asarray(np.stack([c[2] for c in cases])))
    ys = jnp.asarray(np.stack([c[3] for c in cases]))
    lls = jax.vmap(hmm.categorical_log_likelihoods)(log_bs, ys)
    post = jax.vmap(hmm.smoother)(ps, lls)
    lz = jax.vmap(hmm.log_likelihood)(ps, lls)
    paths, lps = jax.vmap(hmm.viterbi)(ps, lls)
    betas = jax.vmap(hmm.backward_pass)(ps, lls)
    g_p, g_ll = jax.vmap(jax.grad(hmm.log_likelihood, argnums=(0, 1)))(ps, lls)
    for i, (pi, a, b, y) in enumerate(cases):
        ll = np_categorical_ll(b, y)
        np.testing.assert_allclose(lls[i], ll, atol=1e-14)
        log_z, gamma, xi, best, best_lp, _, _ = brute_force(pi, a, ll)
        assert float(post.log_likelihood[i]) == pytest.approx(log_z, abs=1e-12)
        assert float(lz[i]) == pytest.approx(log_z, abs=1e-12)
        np.testing.assert_allclose(post.smoothed[i], gamma, atol=1e-12)
        np.testing.assert_allclose(post.transition_counts[i], xi, atol=1e-12)
        np.testing.assert_array_equal(paths[i], best)
        assert float(lps[i]) == pytest.approx(best_lp, abs=1e-12)
        np.testing.assert_allclose(post.filtered[i, -1], gamma[-1], atol=1e-12)
        g2 = post.filtered[i] * betas[i]  # gamma_t proportional to alpha_t * beta_t
        np.testing.assert_allclose(g2 / g2.sum(1, keepdims=True), gamma, atol=1e-12)
        for g in (g_p.log_initial[i], g_p.log_transition[i], g_ll[i]):
            assert bool(jnp.all(jnp.isfinite(g)))
        np.testing.assert_allclose(g_ll[i], gamma, atol=1e-12)
        np.testing.assert_allclose(g_p.log_transition[i], xi, atol=1e-12)
        np.testing.assert_allclose(g_p.log_initial[i], gamma[0], atol=1e-12)
        # and the NumPy oracle used by the other tests is right too
        o_lz, o_gamma, o_xi = np_forward_backward(pi, a, ll)
        assert o_lz == pytest.approx(log_z, abs=1e-12)
        np.testing.assert_allclose(o_gamma, gamma, atol=1e-12)
        np.testing.assert_allclose(o_xi, xi, atol=1e-12)
    assert float(g_p.log_transition[1, 0, 1]) == 0.0  # a hard zero gets zero expected count
    assert float(lz[4]) == pytest.approx(0.0, abs=1e-14)
    pi, a = cases[4][0], cases[4][1]
    prior = np.stack([pi @ np.linalg.matrix_power(a, t) for t in range(t_len)])
    np.testing.assert_allclose(post.smoothed[4], prior, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# hmmlearn on random models
# ------------------------------------------------------------------------------------------------
def _hmmlearn_model(pi, a, b):
    from hmmlearn.hmm import CategoricalHMM

    model = CategoricalHMM(n_components=len(pi), n_features=b.shape[1], init_params="")
    model.startprob_, model.transmat_, model.emissionprob_ = pi, a, b
    return model


def test_against_hmmlearn_random_models():
    """Random 4-state, 5-symbol models, ragged sequences (300, 57, 1) padded with -1 into one vmapped
    batch with lengths (``*_batch`` functions): log-likelihood, posteriors and Viterbi equal hmmlearn's per
    sequence, the per-sequence two-slice marginals equal the NumPy oracle's, and the batch gradient is
    finite and equals the summed expected counts."""
    k, m = 4, 5
    lengths = np.array([300, 57, 1])
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        pi, a, b = random_model(rng, k, m)
        ys = [rng.integers(0, m, n) for n in lengths]
        padded = jnp.asarray(np.stack([np.pad(y, (0, 300 - len(y)), constant_values=-1) for y in ys]))
        p = params_of(pi, a)
        lls = hmm.categorical_log_likelihoods(jnp.log(jnp.asarray(b)), padded)  # (B, T, S)
        post = hmm.smoother_batch(p, lls, jnp.asarray(lengths))
        paths, vlps = hmm.viterbi_batch(p, lls, jnp.asarray(lengths))
        # the batched (time-major) path, its categorical fast path and vmap of the single-sequence
        # functions agree
        vm = jax.vmap(hmm.log_likelihood, in_axes=(None, 0, 0))(p, lls, jnp.asarray(lengths))
        np.testing.assert_allclose(vm, post.log_likelihood, rtol=1e-13)
        c_ll, c_post = hmm.categorical_posteriors_batch(p, jnp.log(jnp.asarray(b)), padded, jnp.asarray(lengths))
        np.testing.assert_allclose(c_ll, post.log_likelihood, rtol=1e-13)
        np.testing.assert_allclose(c_post, post.smoothed, atol=1e-13)
        c_paths, c_vlps = hmm.categorical_viterbi_batch(p, jnp.log(jnp.asarray(b)), padded, jnp.asarray(lengths))
        np.testing.assert_array_equal(c_paths, paths)
        np.testing.assert_allclose(c_vlps, vlps, rtol=1e-13)
        ref = _hmmlearn_model(pi, a, b)
        for i, y in enumerate(ys):
            n = len(y)
            ref_lp, ref_post = ref.score_samples(y[:, None])
            assert float(post.log_likelihood[i]) == pytest.approx(ref_lp, rel=1e-12)
            np.testing.assert_allclose(post.smoothed[i, :n], ref_post, atol=1e-10)
            ref_vlp, ref_path = ref.decode(y[:, None], algorithm="viterbi")
            np.testing.assert_array_equal(paths[i, :n], ref_path)
            assert (np.asarray(paths[i, n:]) == -1).all() and float(jnp.abs(post.smoothed[i, n:]).sum()) == 0.0
            assert float(vlps[i]) == pytest.approx(ref_vlp, rel=1e-12)
            np.testing.assert_allclose(
                post.transition_counts[i], np_forward_backward(pi, a, np_categorical_ll(b, y))[2], atol=1e-9
            )
        # the concatenated-with-lengths form hmmlearn uses gives the summed log-likelihood
        total = ref.score(np.concatenate(ys)[:, None], lengths)
        assert float(post.log_likelihood.sum()) == pytest.approx(total, rel=1e-12)
        # the gradient of the padded batch's total is finite and equals the summed expected counts
        # (hmmlearn's posteriors for the initial/emission counts, the NumPy oracle for transitions)
        g_p, g_b = jax.grad(batch_total, argnums=(0, 1))(p, jnp.log(jnp.asarray(b)), padded, jnp.asarray(lengths))
        e_init, e_trans, e_emit = np.zeros(k), np.zeros((k, k)), np.zeros((k, m))
        for y in ys:
            _, gamma = ref.score_samples(y[:, None])
            e_init += gamma[0]
            e_trans += np_forward_backward(pi, a, np_categorical_ll(b, y))[2]
            np.add.at(e_emit.T, y, gamma)
        for g in (g_p.log_initial, g_p.log_transition, g_b):
            assert bool(jnp.all(jnp.isfinite(g)))
        np.testing.assert_allclose(g_p.log_initial, e_init, atol=1e-10)
        np.testing.assert_allclose(g_p.log_transition, e_trans, atol=1e-9)
        np.testing.assert_allclose(g_b, e_emit, atol=1e-9)


@jax.jit
def batch_total(p, log_b, ys, lengths):
    return jnp.sum(hmm.categorical_log_likelihood_batch(p, log_b, ys, lengths))


@pytest.mark.float32
def test_float32_long_sequence_accuracy():
    """float32 log-likelihood at T = 1e5, K = 8 within 1e-6 relative of hmmlearn's float64."""
    assert not jax.config.jax_enable_x64
    rng = np.random.default_rng(0)
    k, m, t_len = 8, 4, 100_000
    a = np.full((k, k), 0.02 / (k - 1)) + np.eye(k) * (0.98 - 0.02 / (k - 1))
    pi = np.full(k, 1.0 / k)
    b = rng.dirichlet(np.ones(m), size=k)
    y = np_sample(rng, pi, a, b, t_len)
    # compare on the float32-rounded parameters, so the difference is the algorithm's rounding only
    pi32, a32, b32 = (x.astype(np.float32).astype(np.float64) for x in (pi, a, b))
    ref = _hmmlearn_model(pi32 / pi32.sum(), a32 / a32.sum(1, keepdims=True), b32 / b32.sum(1, keepdims=True))
    ref_lp = ref.score(y[:, None])
    p = hmm.HMMParams(jnp.log(jnp.asarray(pi, jnp.float32)), jnp.log(jnp.asarray(a, jnp.float32)))
    ll = hmm.categorical_log_likelihoods(jnp.log(jnp.asarray(b, jnp.float32)), jnp.asarray(y, jnp.int32))
    lp = jax.jit(hmm.log_likelihood)(p, ll)
    assert lp.dtype == jnp.float32
    assert abs(float(lp) - ref_lp) / abs(ref_lp) < 1e-6
    post = jax.jit(hmm.smoother)(p, ll)
    assert abs(float(post.log_likelihood) - ref_lp) / abs(ref_lp) < 1e-6
    assert bool(jnp.all(jnp.isfinite(post.smoothed)))
    np.testing.assert_allclose(np.asarray(post.smoothed).sum(1), 1.0, atol=1e-5)
    # Viterbi in float32: same joint log-prob as float64 hmmlearn, path agrees (ties aside)
    ref_vlp, ref_path = ref.decode(y[:, None], algorithm="viterbi")
    path, vlp = jax.jit(hmm.viterbi)(p, ll)
    assert abs(float(vlp) - ref_vlp) / abs(ref_vlp) < 1e-6
    assert np.mean(np.asarray(path) == ref_path) > 0.999


# ------------------------------------------------------------------------------------------------
# gradients: custom VJP vs finite differences and vs autodiff through the scan
# ------------------------------------------------------------------------------------------------
@jax.jit
def _autodiff_loglik(log_pi, log_a, ll):
    """Plain log-space forward recursion (logsumexp each step), differentiated by JAX."""

    def step(la, ll_t):
        la = jax.scipy.special.logsumexp(la[:, None] + log_a, axis=0) + ll_t
        return la, None

    la, _ = jax.lax.scan(step, log_pi + ll[0], ll[1:])
    return jax.scipy.special.logsumexp(la)


@jax.jit
def _ours(lp, la, ll):
    return hmm.log_likelihood(hmm.HMMParams(lp, la), ll)


def test_custom_vjp_matches_autodiff_and_finite_differences():
    """Free (unnormalised) log-parameters with a hard zero (-inf) in A: value and gradient equal plain
    autodiff through a logsumexp scan, and central finite differences along random directions."""
    rng = np.random.default_rng(3)
    k, t_len = 3, 40
    log_pi = jnp.asarray(rng.normal(size=k))
    log_a = jnp.asarray(rng.normal(size=(k, k))).at[0, 1].set(-jnp.inf)
    ll = jnp.asarray(rng.normal(size=(t_len, k)) * 2)
    assert float(_ours(log_pi, log_a, ll)) == pytest.approx(float(_autodiff_loglik(log_pi, log_a, ll)), rel=1e-13)
    g = jax.jit(jax.grad(_ours, argnums=(0, 1, 2)))(log_pi, log_a, ll)
    g_ref = jax.jit(jax.grad(_autodiff_loglik, argnums=(0, 1, 2)))(log_pi, log_a, ll)
    for x, y in zip(g, g_ref):
        assert bool(jnp.all(jnp.isfinite(x)))
        np.testing.assert_allclose(x, y, atol=1e-11)
    assert float(g[1][0, 1]) == 0.0
    h = 1e-5
    for _ in range(3):
        d = [jnp.asarray(rng.normal(size=np.shape(x))) for x in (log_pi, log_a, ll)]
        plus = _ours(log_pi + h * d[0], log_a + h * d[1], ll + h * d[2])
        minus = _ours(log_pi - h * d[0], log_a - h * d[1], ll - h * d[2])
        fd = (plus - minus) / (2 * h)
        analytic = sum(jnp.vdot(jnp.where(jnp.isfinite(di), gi, 0.0), di) for gi, di in zip(g, d))
        assert float(analytic) == pytest.approx(float(fd), rel=1e-7, abs=1e-8)


def test_stability_large_model_large_scale():
    """dynamax's stress test (T = 10,000 there; 5,000 here), K = 100, log-likelihoods of scale 100:
    no NaN, posteriors normalised, Viterbi log-prob below the log-likelihood."""
    rng = np.random.default_rng(6)
    k, t_len = 100, 5_000
    p = hmm.HMMParams(
        jax.nn.log_softmax(jnp.asarray(rng.normal(size=k))), jax.nn.log_softmax(jnp.asarray(rng.normal(size=(k, k))))
    )
    ll = jnp.asarray(rng.normal(size=(t_len, k)) * 100)
    post = jax.jit(hmm.smoother)(p, ll)
    assert bool(jnp.isfinite(post.log_likelihood))
    assert bool(jnp.all(jnp.isfinite(post.smoothed)))
    np.testing.assert_allclose(post.smoothed.sum(1), 1.0, atol=1e-10)
    assert float(post.transition_counts.sum()) == pytest.approx(t_len - 1, rel=1e-10)
    _, vlp = jax.jit(hmm.viterbi)(p, ll)
    assert bool(jnp.isfinite(vlp)) and float(vlp) <= float(post.log_likelihood)


# ------------------------------------------------------------------------------------------------
# padding
# ------------------------------------------------------------------------------------------------
def test_nan_padding_gives_finite_gradients_dynamax_99():
    """Gaussian emissions padded with NaN (dynamax #99): the value equals the unpadded NumPy oracle and
    the gradient is finite, equal to the one with finite junk padding, and equal to the closed form
    d/d mu_k = sum_t gamma_t(k) (y_t - mu_k) / sigma_k^2."""
    rng = np.random.default_rng(9)
    pi, a = np.array([0.5, 0.5]), np.array([[0.9, 0.1], [0.2, 0.8]])
    p = params_of(pi, a)
    y = rng.normal(size=10)
    mean, log_scale = jnp.array([-1.0, 1.0]), jnp.array([0.0, 0.3])

    @jax.jit
    def f(theta, obs):
        mu, ls, la = theta
        ll = hmm.gaussian_log_likelihoods(mu, ls, obs)
        return hmm.log_likelihood(hmm.HMMParams(p.log_initial, la), ll, 10)

    theta = (mean, log_scale, p.log_transition)
    v_nan, g_nan = jax.value_and_grad(f)(theta, jnp.asarray(np.concatenate([y, np.full(6, np.nan)])))
    v_junk, g_junk = jax.value_and_grad(f)(theta, jnp.asarray(np.concatenate([y, np.full(6, 1e3)])))
    sd = np.exp(np.asarray(log_scale))
    ll_np = stats.norm.logpdf(y[:, None], np.asarray(mean)[None], sd[None])
    o_lz, o_gamma, o_xi = np_forward_backward(pi, a, ll_np)
    assert float(v_nan) == pytest.approx(o_lz, abs=1e-12) and float(v_junk) == pytest.approx(o_lz, abs=1e-12)
    for x, y_ in zip(jax.tree.leaves(g_nan), jax.tree.leaves(g_junk)):
        assert bool(jnp.all(jnp.isfinite(x)))
        np.testing.assert_allclose(x, y_, atol=1e-12)
    d_mu = (o_gamma * (y[:, None] - np.asarray(mean)[None]) / sd[None] ** 2).sum(0)
    np.testing.assert_allclose(g_nan[0], d_mu, atol=1e-12)
    np.testing.assert_allclose(g_nan[2], o_xi, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# emission families
# ------------------------------------------------------------------------------------------------
def test_emission_families_against_scipy():
    y = np.array([0, 3, 7, -1])
    rates = np.array([0.5, 4.0])
    ll = hmm.poisson_log_likelihoods(jnp.log(jnp.asarray(rates)), jnp.asarray(y))
    ref = stats.poisson.logpmf(np.maximum(y, 0)[:, None], rates[None])
    ref[y < 0] = 0.0
    np.testing.assert_allclose(ll, ref, atol=1e-12)
    llf = hmm.poisson_log_likelihoods(jnp.log(jnp.asarray(rates)), jnp.array([0.0, 3.0, 7.0, np.nan]))
    np.testing.assert_allclose(llf, ref, atol=1e-12)

    x = np.array([[0.3, np.nan], [np.nan, np.nan], [-1.0, 2.0]])
    mu = np.array([[0.0, 1.0], [2.0, -1.0]])
    sd = np.array([[1.0, 0.5], [2.0, 1.5]])
    ll = hmm.gaussian_log_likelihoods(jnp.asarray(mu), jnp.log(jnp.asarray(sd)), jnp.asarray(x))
    terms = stats.norm.logpdf(x[:, None, :], mu[None], sd[None])
    ref = np.where(np.isnan(terms), 0.0, terms).sum(-1)
    np.testing.assert_allclose(ll, ref, atol=1e-12)
    assert np.all(np.asarray(ll[1]) == 0.0)


# ------------------------------------------------------------------------------------------------
# sampling
# ------------------------------------------------------------------------------------------------
def test_prior_sampling_marginals():
    pi = np.array([0.2, 0.8])
    a = np.array([[0.9, 0.1], [0.3, 0.7]])
    b = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    p = params_of(pi, a)
    n = 4000
    keys = jax.random.split(jax.random.key(0), n)
    z, y = jax.vmap(lambda k: hmm.sample_categorical(k, p, jnp.log(jnp.asarray(b)), 4))(keys)
    for t in range(4):
        marg = pi @ np.linalg.matrix_power(a, t)
        freq = np.bincount(np.asarray(z[:, t]), minlength=2) / n
        np.testing.assert_allclose(freq, marg, atol=4 * np.sqrt(0.25 / n))
    obs_marg = (pi @ np.linalg.matrix_power(a, 3)) @ b
    np.testing.assert_allclose(np.bincount(np.asarray(y[:, 3]), minlength=3) / n, obs_marg, atol=4 * np.sqrt(0.25 / n))


def test_posterior_sampling_matches_enumerated_path_posterior():
    rng = np.random.default_rng(10)
    pi, a, b = random_model(rng, 2, 3)
    y = np.array([0, 2, 1, 2])
    ll_np = np_categorical_ll(b, y)
    *_, paths, w = brute_force(pi, a, ll_np)
    p = params_of(pi, a)
    ll = jnp.asarray(np.concatenate([ll_np, np.zeros((2, 2))]))  # padded by two steps
    n = 6000
    keys = jax.random.split(jax.random.key(1), n)
    draws = np.asarray(jax.vmap(lambda k: hmm.posterior_sample(k, p, ll, 4))(keys))
    assert (draws[:, 4:] == -1).all()
    codes = draws[:, :4] @ (2 ** np.arange(3, -1, -1))
    freq = np.bincount(codes, minlength=16) / n
    ref = np.zeros(16)
    ref[paths @ (2 ** np.arange(3, -1, -1))] = w
    assert np.all(np.abs(freq - ref) <= 4 * np.sqrt(ref * (1 - ref) / n) + 1e-3), (freq, ref)


def test_parallel_filter_matches_sequential_with_lengths():
    rng = np.random.default_rng(11)
    pi, a, b = random_model(rng, 3, 4, sparse=True)
    p = params_of(pi, a)
    y = rng.integers(0, 4, 8)
    ll = hmm.categorical_log_likelihoods(jnp.log(jnp.asarray(b)), jnp.asarray(y))
    for length in (8, 5):
        o_lz, o_gamma, o_xi = np_forward_backward(pi, a, np_categorical_ll(b, y[:length]))
        par = hmm.parallel_smoother(p, ll, length)
        assert float(par.log_likelihood) == pytest.approx(o_lz, rel=1e-12)
        np.testing.assert_allclose(par.smoothed[:length], o_gamma, atol=1e-11)
        assert float(jnp.abs(par.smoothed[length:]).sum()) == 0.0
        np.testing.assert_allclose(par.transition_counts, o_xi, atol=1e-11)
        np.testing.assert_allclose(par.filtered, hmm.forward_filter(p, ll, length).filtered, atol=1e-11)
    with pytest.raises(ValueError, match="method"):
        hmm.log_likelihood(p, ll, method="magic")


# --- degenerate lengths ------------------------------------------------------------------------------------
def _p1():  # built inside each test: module-level arrays would be float32 (x64 is set per test)
    return hmm.HMMParams(jnp.log(jnp.array([0.6, 0.4])), jnp.log(jnp.array([[0.7, 0.3], [0.4, 0.6]])))


def _b1():
    return jnp.log(jnp.array([[0.1, 0.4, 0.5], [0.6, 0.3, 0.1]]))


@pytest.mark.parametrize("symbol", [0, 1, 2])
def test_viterbi_of_a_length_one_sequence(symbol):
    """Before: IndexError in _tree_sum (no per-step maxima to add)."""
    ll = hmm.categorical_log_likelihoods(_b1(), jnp.array([symbol]))
    joint = np.log([0.6, 0.4]) + np.log(np.array([[0.1, 0.4, 0.5], [0.6, 0.3, 0.1]]))[:, symbol]
    path, lp = hmm.viterbi(_p1(), ll)
    assert path.tolist() == [int(np.argmax(joint))]
    np.testing.assert_allclose(float(lp), joint.max(), rtol=1e-12)
    paths, lps = hmm.viterbi_batch(_p1(), ll[None])
    np.testing.assert_allclose(float(lps[0]), joint.max(), rtol=1e-12)
    paths, lps = hmm.categorical_viterbi_batch(_p1(), _b1(), jnp.array([[symbol], [symbol]]))
    np.testing.assert_allclose(np.asarray(lps), joint.max(), rtol=1e-12)


def test_viterbi_of_an_empty_padded_sequence_is_the_empty_path():
    """A length-0 row of a padded batch: path all -1 and log-probability 0 (was log max pi)."""
    path, lp = hmm.viterbi(_p1(), jnp.zeros((3, 2)), 0)
    assert path.tolist() == [-1, -1, -1] and float(lp) == 0.0


@pytest.mark.parametrize(
    "fn,args,match",
    [
        (hmm.viterbi, (jnp.zeros((0, 2)),), r"log_likelihoods: expected at least one step and one state, got shape \(0, 2\)"),
        (hmm.log_likelihood, (jnp.zeros((0, 2)),), "at least one step"),
        (hmm.smoother, (jnp.zeros((3, 3)),), "log_likelihoods: 3 states on the last axis, the parameters have 2"),
        (hmm.forward_filter, (jnp.zeros(3),), r"log_likelihoods: expected shape \(T, S\)"),
        (hmm.log_likelihood_batch, (jnp.zeros((3, 2)),), r"log_likelihoods: expected shape \(B, T, S\)"),
        (hmm.viterbi_batch, (jnp.zeros((2, 0, 2)),), "at least one step"),
    ],
)
def test_bad_shapes_raise_before_tracing(fn, args, match):
    with pytest.raises(ValueError, match=match):
        fn(_p1(), *args)


def test_categorical_batch_checks_its_inputs():
    with pytest.raises(ValueError, match=r"observations: expected a non-empty \(B, T\) batch, got shape \(3,\)"):
        hmm.categorical_log_likelihood_batch(_p1(), _b1(), jnp.array([0, 1, 2]))
    with pytest.raises(TypeError, match="observations: expected integer symbols"):
        hmm.categorical_viterbi_batch(_p1(), _b1(), jnp.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"log_emission: expected shape \(2, M\)"):
        hmm.categorical_posteriors_batch(_p1(), _b1().T, jnp.array([[0, 1]]))


def test_cli_hmm_on_a_one_letter_fasta(tmp_path):
    """Before: a traceback (IndexError from Viterbi). Now the tables are written and agree with each other."""
    import pandas as pd

    from diffbio_prob.cli import main

    inp = tmp_path / "one.fa"
    inp.write_text(">s\nA\n")
    out = tmp_path / "o"
    assert main(["hmm", "--input", str(inp), "--states", "2", "--alphabet", "ACGT", "--out", str(out), "--quiet",
                 "--iters", "5", "--restarts", "1"]) == 0
    vit = pd.read_csv(out / "viterbi.tsv", sep="\t")
    post = pd.read_csv(out / "posteriors.tsv", sep="\t")
    assert vit["length"].tolist() == [1] and len(post) == 1
    assert np.isfinite(vit[["log_likelihood", "viterbi_log_prob"]].to_numpy()).all()
    assert vit["viterbi_log_prob"][0] <= vit["log_likelihood"][0] + 1e-6  # one path's mass <= total mass
    np.testing.assert_allclose(post[["p_state0", "p_state1"]].to_numpy().sum(), 1.0, atol=1e-5)


# --- method="auto": the scan choice ----------------------------------------------------------------------------
def test_auto_method_rule_and_cpu_choice():
    # the documented rule: parallel only on an accelerator and only from PARALLEL_MIN_STEPS steps on
    n = hmm.PARALLEL_MIN_STEPS
    assert hmm.resolve_method("auto", n, backend="gpu") == "parallel"
    assert hmm.resolve_method("auto", n - 1, backend="gpu") == "sequential"
    assert hmm.resolve_method("auto", 10**6, backend="cpu") == "sequential"
    assert hmm.resolve_method("auto", 10**6, backend="tpu") == "parallel"
    assert hmm.resolve_method("parallel", 2, backend="cpu") == "parallel"
    assert hmm.resolve_method("sequential", 10**6, backend="gpu") == "sequential"
    with pytest.raises(ValueError, match="method"):
        hmm.resolve_method("fast", 10)
    assert jax.default_backend() == "cpu"
    # on this CPU "auto" must build the sequential program: its jaxpr has no associative scan's
    # reshapes/concatenates of the (T, S, S) elements, only the forward scan (a while/scan primitive)
    rng = np.random.default_rng(3)
    pi, a, b = random_model(rng, 3, 4)
    y = jnp.asarray(rng.integers(0, 4, (2, n + 6)))
    p, log_b = params_of(pi, a), jnp.log(jnp.asarray(b))

    def prims(method):
        jaxpr = jax.make_jaxpr(lambda q: hmm.categorical_log_likelihood_batch(q, log_b, y, method=method))(p)
        return str(jaxpr)

    auto, seq, par = prims("auto"), prims("sequential"), prims("parallel")
    assert auto == seq
    assert auto != par


@pytest.mark.parametrize("with_lengths", [pytest.param(False, marks=pytest.mark.long), True])
def test_sequential_and_parallel_agree_batch_and_gradients(with_lengths):
    rng = np.random.default_rng(17)
    pi, a, b = random_model(rng, 3, 5, sparse=True)
    p, log_b = params_of(pi, a), jnp.log(jnp.asarray(b))
    y = rng.integers(0, 5, (4, 40))
    y[1, 7] = -1  # a missing symbol
    lengths = jnp.asarray([40, 33, 1, 20]) if with_lengths else None
    y = jnp.asarray(y)
    out = {}
    for method in ("sequential", "parallel", "auto"):
        f = lambda la, lb: hmm.categorical_log_likelihood_batch(hmm.HMMParams(p.log_initial, la), lb, y, lengths,
                                                                method=method)
        val = f(p.log_transition, log_b)
        grads = jax.grad(lambda la, lb: jnp.sum(f(la, lb) * jnp.arange(1.0, 5.0)), argnums=(0, 1))(
            p.log_transition, log_b)
        ll_b = jax.vmap(hmm.categorical_log_likelihoods, in_axes=(None, 0))(log_b, y)
        val_ll = hmm.log_likelihood_batch(p, ll_b, lengths, method=method)
        post = hmm.categorical_posteriors_batch(p, log_b, y, lengths, method=method)
        out[method] = (val, grads, val_ll, post)
    # an independent float64 oracle for the values
    lens = np.asarray(lengths) if with_lengths else np.full(4, 40)
    yn = np.asarray(y)
    for i in range(4):
        ll_i = np_categorical_ll(b, yn[i, : lens[i]])
        want = np_forward_backward(pi, a, ll_i)[0]
        assert float(out["parallel"][0][i]) == pytest.approx(want, rel=1e-10)
    for method in ("parallel", "auto"):
        for got, ref in zip(jax.tree_util.tree_leaves(out[method]), jax.tree_util.tree_leaves(out["sequential"])):
            np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-10, atol=1e-12)
