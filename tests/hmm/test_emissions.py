"""Every emission family: log-likelihood and posteriors against brute-force enumeration with scipy's
densities, the M-step as the stationary point of the weighted log-likelihood, EM never lowering the
likelihood, sampling moments, and the numpy-side checks."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from diffbio_prob.cores import hmm as core
from diffbio_prob.inference.baum_welch import baum_welch

S, T = 2, 4
PI = np.array([0.6, 0.4])
A = np.array([[0.7, 0.3], [0.25, 0.75]])

# (params, one sequence with a missing step, scipy log-density of one step given a state)
CASES = {
    "categorical": (
        {"probs": np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])},
        np.array([0, 2, -1, 1]),
        lambda p, y, k: np.log(p["probs"][k, y]),
    ),
    "poisson": (
        {"rates": np.array([1.5, 6.0])},
        np.array([0, 7, -1, 3]),
        lambda p, y, k: stats.poisson.logpmf(y, p["rates"][k]),
    ),
    "negative_binomial": (
        {"means": np.array([1.5, 6.0]), "concentrations": np.array([2.0, 0.7])},
        np.array([0, 7, -1, 3]),
        lambda p, y, k: stats.nbinom.logpmf(
            y, p["concentrations"][k], p["concentrations"][k] / (p["concentrations"][k] + p["means"][k])),
    ),
    "gaussian": (
        {"means": np.array([[0.0, 1.0], [2.0, -1.0]]), "scales": np.array([[1.0, 0.5], [0.7, 1.5]])},
        np.array([[0.3, 0.9], [1.8, np.nan], [np.nan, np.nan], [2.5, -0.2]]),
        lambda p, y, k: sum(stats.norm.logpdf(y[d], p["means"][k, d], p["scales"][k, d])
                            for d in range(2) if not np.isnan(y[d])),
    ),
    "gaussian_full": (
        {"means": np.array([[0.0, 1.0], [2.0, -1.0]]),
         "covariances": np.array([[[1.0, 0.4], [0.4, 0.5]], [[0.6, -0.3], [-0.3, 1.2]]])},
        np.array([[0.3, 0.9], [1.8, 0.1], [np.nan, np.nan], [2.5, -0.2]]),
        lambda p, y, k: stats.multivariate_normal.logpdf(y, p["means"][k], p["covariances"][k]),
    ),
    "bernoulli": (
        {"probs": np.array([[0.1, 0.8, 0.5], [0.7, 0.2, 0.4]])},
        np.array([[0, 1, 1], [1, -1, 0], [-1, -1, -1], [1, 0, 0]]),
        lambda p, y, k: sum(stats.bernoulli.logpmf(y[d], p["probs"][k, d]) for d in range(3) if y[d] >= 0),
    ),
    "multinomial": (
        {"probs": np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])},
        np.array([[1, 2, 0], [0, 0, 3], [-1, -1, -1], [2, 2, 1]]),
        lambda p, y, k: stats.multinomial.logpmf(y, y.sum(), p["probs"][k]),
    ),
}
FAMILIES = sorted(CASES)


def _missing(name, y_t):
    return bool(np.all(np.isnan(y_t))) if name.startswith("gaussian") else bool(np.all(np.asarray(y_t) < 0))


def _brute_force(name):
    """log p(y) and p(z_t | y) by summing over all S^T paths, with scipy's densities."""
    params, y, logpdf = CASES[name]
    dens = np.array([[0.0 if _missing(name, y[t]) else logpdf(params, y[t], k) for k in range(S)] for t in range(T)])
    joint = {}
    for z in itertools.product(range(S), repeat=T):
        lp = np.log(PI[z[0]]) + sum(np.log(A[z[t - 1], z[t]]) for t in range(1, T))
        joint[z] = lp + sum(dens[t, z[t]] for t in range(T))
    total = np.logaddexp.reduce(list(joint.values()))
    post = np.zeros((T, S))
    for z, lp in joint.items():
        for t in range(T):
            post[t, z[t]] += np.exp(lp - total)
    return dens, total, post


@pytest.mark.parametrize("name", FAMILIES)
def test_log_likelihood_and_posteriors_equal_enumeration(name):
    params, y, _ = CASES[name]
    em = core.get_emission(name)
    p = em.check_params(params)
    y = em.check_observations(y)
    dens, total, post = _brute_force(name)
    ll = em.log_likelihoods(p, jnp.asarray(y))
    np.testing.assert_allclose(np.asarray(ll), dens, rtol=1e-10, atol=1e-12)
    hp = core.HMMParams(jnp.log(PI), jnp.log(A))
    res = core.smoother(hp, ll)
    np.testing.assert_allclose(float(res.log_likelihood), total, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(res.smoothed), post, atol=1e-12)
    # a batch with leading axes gives the same matrix per row
    np.testing.assert_allclose(np.asarray(em.log_likelihoods(p, jnp.stack([y, y]))[1]), dens, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", FAMILIES)
def test_m_step_is_the_weighted_maximum(name):
    """The M-step's output is a stationary point of sum_t sum_k w_tk log p(y_t | k) (in unconstrained
    coordinates) and beats the start: it is the weighted maximum-likelihood estimate."""
    em = core.get_emission(name)
    params, y0, _ = CASES[name]
    rng = np.random.default_rng(1)
    key = jax.random.key(3)
    z = jnp.asarray(rng.integers(0, S, 300))
    kw = {"total_count": 6} if name == "multinomial" else {}
    y = em.sample(key, {k: jnp.asarray(v) for k, v in params.items()}, z, **kw)
    w = jnp.asarray(rng.dirichlet(np.ones(S), size=300))
    start = em.check_params(params)
    new = em.m_step(y, w, start)

    def objective(raw):
        return jnp.sum(w * em.log_likelihoods(em.constrain(raw), y))

    raw = em.unconstrain(new)
    grads = jax.grad(objective)(raw)
    scale = float(jnp.sum(w))
    for k, g in grads.items():
        g = np.asarray(g)
        if name == "gaussian_full" and k == "covariances":
            g = np.tril(g)  # the raw factor's strict upper triangle is unused
        np.testing.assert_allclose(g / scale, 0.0, atol=1e-6, err_msg=k)
    assert float(objective(raw)) >= float(objective(em.unconstrain(start)))


@pytest.mark.parametrize("name", FAMILIES)
def test_em_never_lowers_the_likelihood(name):
    em = core.get_emission(name)
    params, _, _ = CASES[name]
    hp = core.HMMParams(jnp.log(PI), jnp.log(A))
    kw = {"total_count": 5} if name == "multinomial" else {}
    seqs = []
    for i, n in enumerate((50, 30)):
        z = core.sample_states(jax.random.key(i), hp, n)
        seqs.append(np.asarray(em.sample(jax.random.key(100 + i), {k: jnp.asarray(v) for k, v in params.items()}, z,
                                         **kw)))
    fit = baum_welch(seqs, S, emission=name, num_iters=6, tol=0.0, seed=2)
    hist = fit.log_likelihood_history
    assert np.all(np.diff(hist) >= -1e-9 * np.abs(hist[:-1])), hist
    assert hist[-1] > hist[0]
    em.check_params(fit.emission_params)  # a valid parameter set


@pytest.mark.parametrize("name", FAMILIES)
def test_sampling_moments(name):
    em = core.get_emission(name)
    params, _, _ = CASES[name]
    p = {k: jnp.asarray(v) for k, v in params.items()}
    n = 20000
    kw = {"total_count": 4} if name == "multinomial" else {}
    for k in range(S):
        y = np.asarray(em.sample(jax.random.key(k), p, jnp.full((n,), k), **kw), dtype=float)
        if name == "categorical":
            freq = np.bincount(y.astype(int), minlength=3) / n
            np.testing.assert_allclose(freq, params["probs"][k], atol=0.02)
        elif name == "poisson":
            np.testing.assert_allclose([y.mean(), y.var()], [params["rates"][k]] * 2, rtol=0.05)
        elif name == "negative_binomial":
            mu, r = params["means"][k], params["concentrations"][k]
            np.testing.assert_allclose([y.mean(), y.var()], [mu, mu + mu**2 / r], rtol=0.08)
        elif name == "gaussian":
            np.testing.assert_allclose(y.mean(0), params["means"][k], atol=0.05)
            np.testing.assert_allclose(y.std(0), params["scales"][k], rtol=0.03)
        elif name == "gaussian_full":
            np.testing.assert_allclose(y.mean(0), params["means"][k], atol=0.05)
            np.testing.assert_allclose(np.cov(y, rowvar=False), params["covariances"][k], atol=0.05)
        elif name == "bernoulli":
            np.testing.assert_allclose(y.mean(0), params["probs"][k], atol=0.02)
        else:
            assert (y.sum(1) == 4).all()
            np.testing.assert_allclose(y.mean(0), 4 * params["probs"][k], atol=0.05)


def test_names_and_sites_are_declared_once():
    assert core.get_emission("Negative-Binomial") is core.EMISSIONS["negative_binomial"]
    assert core.get_emission("categorical").site_names == ("emission_probs",)
    assert core.get_emission("gaussian_full").site_names == ("emission_means", "emission_covariances")
    for name, em in core.EMISSIONS.items():
        assert em.name == name
        assert em.site_names == tuple("emission_" + n for n in em.param_names)
    with pytest.raises(ValueError, match="emission: unknown 'gamma'"):
        core.get_emission("gamma")
    with pytest.raises(ValueError, match="covariance: expected 'diag' or 'full'"):
        core.Gaussian("spherical")


@pytest.mark.parametrize(
    "name, params, match",
    [
        ("poisson", {"rates": [1.0, -2.0]}, r"params\['rates'\]: expected positive"),
        ("poisson", {"rate": [1.0]}, r"expects keys \['rates'\]; unknown \['rate'\]"),
        ("categorical", {"probs": [[0.5, 0.6], [0.5, 0.5]]}, r"params\['probs'\]: expected non-negative rows summing to 1"),
        ("negative_binomial", {"means": [1.0, 2.0]}, r"missing \['concentrations'\]"),
        ("gaussian", {"means": [[0.0], [1.0]], "scales": [[1.0], [0.0]]}, r"params\['scales'\]: expected positive"),
        ("gaussian", {"means": [[0.0], [1.0]], "scales": [1.0, 1.0]}, r"params\['scales'\]: expected shape \(2, 1\)"),
        ("gaussian_full", {"means": [[0.0, 0.0]], "covariances": [[[1.0, 2.0], [2.0, 1.0]]]},
         r"params\['covariances'\]: expected positive definite"),
        ("bernoulli", {"probs": [[0.5, 1.5]]}, r"params\['probs'\]: expected probabilities in \[0, 1\]"),
        ("poisson", {"rates": [1.0, np.nan]}, r"params\['rates'\]: expected finite"),
    ],
)
def test_bad_params_name_the_key(name, params, match):
    with pytest.raises(ValueError, match=match):
        core.get_emission(name).check_params(params)


@pytest.mark.parametrize(
    "name, obs, error, match",
    [
        ("poisson", np.array([1, -3, 2]), ValueError, "observations: negative value -3 at index"),
        ("poisson", np.array([1.0, 2.5]), ValueError, "observations: expected integer values"),
        ("poisson", np.array(["a"]), TypeError, "observations: expected a numeric array"),
        ("poisson", np.zeros((2, 3, 4), int), ValueError, r"observations: expected shape \(T,\) or \(B, T\)"),
        ("gaussian", np.array([1.0, 2.0]), ValueError, r"expected shape \(T, D\) or \(B, T, D\)"),
        ("gaussian", np.array([[1.0], [np.inf]]), ValueError, "observations: contains inf"),
        ("gaussian_full", np.array([[1.0, np.nan]]), ValueError, "partly NaN"),
        ("bernoulli", np.array([[0, 2]]), ValueError, "expected 0/1 marks"),
        ("multinomial", np.array([[1, -1]]), ValueError, "mixes counts and -1"),
        ("categorical", np.zeros(0, int), ValueError, "observations: empty"),
    ],
)
def test_bad_observations_name_the_argument(name, obs, error, match):
    with pytest.raises(error, match=match):
        core.get_emission(name).check_observations(obs)
    with pytest.raises(ValueError, match="observations: expected 3 features"):
        core.get_emission("bernoulli").check_observations(np.zeros((4, 2), int), num_features=3)


@pytest.mark.float32
@pytest.mark.parametrize("name", FAMILIES)
def test_float32_log_likelihoods_are_finite_and_close(name):
    params, y, _ = CASES[name]
    em = core.get_emission(name)
    dens, total, _ = _brute_force(name)
    ll = em.log_likelihoods({k: jnp.asarray(v, jnp.float32) for k, v in params.items()}, jnp.asarray(y))
    assert ll.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(ll), dens, rtol=2e-5, atol=2e-5)
    lik = core.log_likelihood(core.HMMParams(jnp.log(jnp.asarray(PI, jnp.float32)), jnp.log(jnp.asarray(A, jnp.float32))), ll)
    np.testing.assert_allclose(float(lik), total, rtol=1e-5)


def test_two_slice_marginals_equal_enumeration():
    params, y, logpdf = CASES["poisson"]
    dens, total, _ = _brute_force("poisson")
    xi_ref = np.zeros((T - 1, S, S))
    for z in itertools.product(range(S), repeat=T):
        lp = np.log(PI[z[0]]) + sum(np.log(A[z[t - 1], z[t]]) for t in range(1, T)) + sum(dens[t, z[t]] for t in range(T))
        for t in range(T - 1):
            xi_ref[t, z[t], z[t + 1]] += np.exp(lp - total)
    hp = core.HMMParams(jnp.log(PI), jnp.log(A))
    xi = core.two_slice_marginals(hp, jnp.asarray(dens))
    np.testing.assert_allclose(np.asarray(xi), xi_ref, atol=1e-12)
    np.testing.assert_allclose(np.asarray(xi.sum(0)), np.asarray(core.smoother(hp, jnp.asarray(dens)).transition_counts),
                               atol=1e-12)
    # ragged: pairs past the length are zero
    short = core.two_slice_marginals(hp, jnp.asarray(dens), 2)
    assert float(jnp.abs(short[1:]).sum()) == 0.0
    np.testing.assert_allclose(float(short[0].sum()), 1.0, rtol=1e-12)


@pytest.mark.float32
@pytest.mark.parametrize("name", ["negative_binomial", "gaussian_full", "bernoulli"])
def test_float32_baum_welch_stays_finite(name):
    em = core.get_emission(name)
    params, _, _ = CASES[name]
    hp = core.HMMParams(jnp.log(jnp.asarray(PI, jnp.float32)), jnp.log(jnp.asarray(A, jnp.float32)))
    z = core.sample_states(jax.random.key(0), hp, 80)
    y = np.asarray(em.sample(jax.random.key(1), {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}, z))
    fit = baum_welch(y, S, emission=name, num_iters=4, tol=0.0, seed=0)
    assert np.isfinite(fit.log_likelihood_history).all()
    assert np.all(np.diff(fit.log_likelihood_history) > -1e-3 * np.abs(fit.log_likelihood_history[:-1]))
