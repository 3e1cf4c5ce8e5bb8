"""The NB core against scipy, closed forms, finite differences and brute force."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, special, stats

from diffbio_prob.cores import nb as core
from diffbio_prob.cores import nb_dispersion, nb_glm_fit, spd


def _grid():
    y = np.array([0, 1, 2, 5, 17, 100, 2500, 100000], dtype=float)
    r = np.array([1e-3, 0.05, 0.7, 3.0, 7.99, 8.0, 40.0, 1e4, 1e8])
    return np.meshgrid(y, r, indexing="ij")


def _exact(y, r, f):
    # For integer y the ratios are finite sums over k < y, summed exactly (math.fsum): a reference
    # that, unlike scipy's gammaln(y + r) - gammaln(r), keeps its digits at r = 1e8.
    import math

    out = np.empty(y.shape)
    for idx in np.ndindex(y.shape):
        k = np.arange(int(y[idx]), dtype=float)
        out[idx] = math.fsum(f(r[idx] + k))
    return out


def test_special_ratios_match_exact_sums():
    y, r = _grid()
    np.testing.assert_allclose(core.lgamma_ratio(y, r), _exact(y, r, np.log), rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(core.digamma_ratio(y, r), _exact(y, r, lambda v: 1 / v), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(core.trigamma_ratio(y, r), _exact(y, r, lambda v: -1 / v**2), rtol=1e-9, atol=1e-16)


def test_nb_log_pmf_matches_scipy():
    y, r = _grid()
    for mu in (1e-3, 0.5, 7.0, 300.0, 5e4):
        keep = r <= 1e4  # scipy loses digits at r = 1e8 (gammaln differences); checked exactly below
        expected = stats.nbinom.logpmf(y, r, r / (r + mu))
        np.testing.assert_allclose(np.asarray(core.nb_log_pmf(y, mu, r))[keep], expected[keep], rtol=1e-10, atol=1e-10)
        big = ~keep
        exact = _exact(y, r, np.log)[big] - special.gammaln(y[big] + 1) - r[big] * np.log1p(mu / r[big]) + special.xlogy(
            y[big], mu / (r[big] + mu)
        )
        np.testing.assert_allclose(np.asarray(core.nb_log_pmf(y, mu, r))[big], exact, rtol=1e-10, atol=1e-9)
    # mean 0: all mass at 0
    assert float(core.nb_log_pmf(0.0, 0.0, 2.0)) == 0.0
    assert float(core.nb_log_pmf(3.0, 0.0, 2.0)) == -np.inf


@pytest.mark.float32
def test_nb_log_pmf_float32_accurate():
    y, r = _grid()
    mu = 50.0
    got = np.asarray(core.nb_log_pmf(jnp.asarray(y, jnp.float32), jnp.float32(mu), jnp.asarray(r, jnp.float32)))
    assert got.dtype == np.float32
    expected = _exact(y, r, np.log) - special.gammaln(y + 1) - r * np.log1p(mu / r) + special.xlogy(y, mu / (r + mu))
    # float32 rounds each term of size ~y log y; allow ~4 ulps of the largest one
    scale = 1.0 + y * np.abs(np.log(y + r + 1.0)) + special.gammaln(y + 1)
    assert np.all(np.abs(got - expected) <= 5e-7 * scale + 1e-5 * np.abs(expected))


def test_nb_log_pmf_gradients_match_finite_differences():
    f = lambda mu, r: core.nb_log_pmf(7.0, mu, r)  # noqa: E731
    g_mu, g_r = jax.grad(f, argnums=(0, 1))(3.0, 2.5)
    h = 1e-6
    np.testing.assert_allclose(g_mu, (f(3.0 + h, 2.5) - f(3.0 - h, 2.5)) / (2 * h), rtol=1e-6)
    np.testing.assert_allclose(g_r, (f(3.0, 2.5 + h) - f(3.0, 2.5 - h)) / (2 * h), rtol=1e-6)


@pytest.mark.parametrize("p", [1, 2, 3, 5, 12])
def test_spd_helpers_match_numpy(p):
    rng = np.random.default_rng(p)
    m = rng.normal(size=(4, p, p))
    a = m @ np.swapaxes(m, -1, -2) + p * np.eye(p)
    b = rng.normal(size=(4, p))
    np.testing.assert_allclose(spd.spd_cholesky(a), np.linalg.cholesky(a), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(spd.spd_solve(a, b), np.linalg.solve(a, b[..., None])[..., 0], rtol=1e-10)
    np.testing.assert_allclose(spd.spd_logdet(a), np.linalg.slogdet(a)[1], rtol=1e-12)
    np.testing.assert_allclose(spd.spd_inverse(a), np.linalg.inv(a), rtol=1e-10, atol=1e-12)


def _problem(g=6, n=12, seed=0):
    rng = np.random.default_rng(seed)
    x = np.column_stack([np.ones(n), np.repeat([0.0, 1.0], n // 2), rng.normal(size=n)])
    sf = np.exp(rng.normal(0, 0.2, n))
    beta = np.column_stack([rng.uniform(1, 4, g), rng.normal(0, 1, g), rng.normal(0, 0.3, g)])
    alpha = rng.uniform(0.05, 0.5, g)
    mu = sf * np.exp(beta @ x.T)
    y = rng.negative_binomial(1 / alpha[:, None], 1 / (1 + alpha[:, None] * mu)).astype(float)
    return y, x, sf, alpha


# Small test problems compile at XLA optimisation level 0 (3x faster to build, same numbers).
_jit0 = partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


@partial(_jit0, static_argnames=("min_mu", "tol"))
def _irls(y, x, log_sf, alpha, b0, ridge, min_mu, tol):
    return nb_glm_fit.irls_fit(y, x, log_sf, alpha, b0, ridge, min_mu=min_mu, tol=tol)


def _init(y, x, sf):
    # DESeq2's starting point: least squares of log(normalised counts + 0.1) on the design
    return np.linalg.lstsq(x, np.log(y / sf + 0.1).T, rcond=None)[0].T


def _score(y, x, sf, alpha, beta, ridge):
    # gradient of the ridge-penalised NB log-likelihood in beta (numpy, per gene)
    mu = sf * np.exp(beta @ x.T)
    return ((y - mu) / (1 + alpha[:, None] * mu)) @ x - ridge * beta


def test_irls_reaches_the_penalised_mle():
    # Run to a tight tolerance, IRLS stops where the score is zero and where scipy's optimiser puts
    # the maximum of the same penalised likelihood.
    y, x, sf, alpha = _problem()
    ridge = np.full(3, 1e-6 / np.log(2) ** 2)
    res = _irls(y, x, np.log(sf), alpha, _init(y, x, sf), ridge, 1e-12, 1e-13)
    assert np.all(np.asarray(res.n_iter) < 100)
    beta = np.asarray(res.beta)
    assert np.max(np.abs(_score(y, x, sf, alpha, beta, ridge))) < 1e-5
    i = 0

    def nll(b):
        mu = sf * np.exp(x @ b)
        return -np.sum(stats.nbinom.logpmf(y[i], 1 / alpha[i], 1 / (1 + alpha[i] * mu))) + 0.5 * ridge @ b**2

    ref = optimize.minimize(nll, np.zeros(3), method="BFGS", options={"gtol": 1e-9}).x
    np.testing.assert_allclose(beta[i], ref, atol=1e-5)
    mu = sf * np.exp(x @ beta[i])
    np.testing.assert_allclose(
        res.log_likelihood[i], np.sum(stats.nbinom.logpmf(y[i], 1 / alpha[i], 1 / (1 + alpha[i] * mu))), rtol=1e-12
    )


def test_newton_fallback_agrees_with_irls_and_respects_bounds():
    y, x, sf, alpha = _problem(seed=3)
    ridge = np.full(3, 1e-3)
    irls = _irls(y, x, np.log(sf), alpha, _init(y, x, sf), ridge, 1e-12, 1e-13)
    assert np.all(np.asarray(irls.n_iter) < 100)
    # gene 0 gets all zeros in group B: its group coefficient heads for -inf (where IRLS diverges)
    # and stops at the box bound; the other genes' optima lie inside the box.
    assert np.all(np.abs(np.asarray(irls.beta[1:])) < 5.0)
    y = y.copy()
    y[0, 6:] = 0.0
    newton = _jit0(lambda *a: nb_glm_fit.fit_beta_newton(*a, bound=5.0))
    beta, conv = newton(y, x, np.log(sf), alpha, np.zeros((y.shape[0], 3)), ridge)
    assert np.all(conv)
    np.testing.assert_allclose(beta[1:], irls.beta[1:], atol=1e-6)
    assert float(beta[0, 1]) == pytest.approx(-5.0)


def test_wald_covariance_and_hat_values():
    y, x, sf, alpha = _problem()
    mu = np.maximum(sf * np.exp(np.full((y.shape[0], 3), 0.3) @ x.T), 0.5)
    ridge = np.full(3, 0.01)
    sigma, hat = nb_glm_fit.wald_covariance_and_hat(x, mu, alpha, ridge)
    for i in range(y.shape[0]):
        w = mu[i] / (1 + alpha[i] * mu[i])
        m = x.T @ (w[:, None] * x)
        inv = np.linalg.inv(m + np.diag(ridge))
        np.testing.assert_allclose(sigma[i], inv @ m @ inv, rtol=1e-10)
        hmat = np.sqrt(w)[:, None] * x @ inv @ x.T * np.sqrt(w)[None, :]
        np.testing.assert_allclose(hat[i], np.diag(hmat), rtol=1e-10)
    # without a ridge the hat values of each gene sum to the number of coefficients
    _, hat0 = nb_glm_fit.wald_covariance_and_hat(x, mu, alpha, np.zeros(3))
    np.testing.assert_allclose(np.asarray(hat0).sum(axis=1), 3.0, rtol=1e-10)


@pytest.mark.parametrize("use_prior", [False, True])
@pytest.mark.parametrize("p", [1, 3])
def test_cox_reid_derivatives_match_finite_differences(use_prior, p):
    y, x, sf, alpha = _problem(g=4)
    x = x[:, :p]
    mu = np.maximum(sf * np.exp(np.full((4, p), 0.8) @ x.T), 0.5)
    prior = np.log(alpha) + 0.3
    kw = dict(prior_mean=prior, prior_var=0.7, use_prior=use_prior)
    a = np.log(alpha)
    h = 1e-5
    lp = lambda v: np.asarray(nb_dispersion.cr_log_posterior(v, y, mu, x, **kw))  # noqa: E731
    grad = np.asarray(nb_dispersion.cr_log_posterior_grad(a, y, mu, x, **kw))
    hess = np.asarray(nb_dispersion.cr_log_posterior_hess(a, y, mu, x, **kw))
    np.testing.assert_allclose(grad, (lp(a + h) - lp(a - h)) / (2 * h), rtol=1e-6, atol=1e-6)
    gr = lambda v: np.asarray(nb_dispersion.cr_log_posterior_grad(v, y, mu, x, **kw))  # noqa: E731
    np.testing.assert_allclose(hess, (gr(a + h) - gr(a - h)) / (2 * h), rtol=1e-5, atol=1e-5)
    # and the value is the NB log-likelihood (up to alpha-free terms) minus half log det X'WX
    i = 0
    r = 1 / alpha[i]
    w = 1 / (1 / mu[i] + alpha[i])
    direct = (
        np.sum(stats.nbinom.logpmf(y[i], r, r / (r + mu[i])) + special.gammaln(y[i] + 1) - y[i] * np.log(mu[i]))
        - 0.5 * np.linalg.slogdet(x.T @ (w[:, None] * x))[1]
        - (0.5 * (a[i] - prior[i]) ** 2 / 0.7 if use_prior else 0.0)
    )
    np.testing.assert_allclose(lp(a)[i], direct, rtol=1e-10)


@partial(_jit0, static_argnames=("compact",))
def _ls(y, mu, x, start, compact=None):
    return nb_dispersion.fit_dispersion_line_search(
        y, mu, x, start, start + 0.5, 0.8, use_prior=True, min_log_alpha=np.log(1e-9), compact=compact
    )


def _disp_problem():
    y, x, sf, alpha = _problem(g=8, n=12, seed=5)
    mu = np.maximum(sf * np.exp(_init(y, x, sf) @ x.T), 0.5)
    return y, x, mu, np.log(np.full(8, 0.1))


@pytest.mark.slow
def test_line_search_newton_and_grid_find_the_maximum():
    y, x, mu, start = _disp_problem()
    kw = dict(prior_mean=start + 0.5, prior_var=0.8, use_prior=True)
    nt = _jit0(lambda *a: nb_dispersion.fit_dispersion_newton(*a, lower=np.log(1e-8), upper=np.log(20.0), **kw))(y, mu, x, start)
    a = np.asarray(nt.log_alpha)
    # the exact optimiser: zero derivative, negative curvature
    assert np.max(np.abs(np.asarray(nb_dispersion.cr_log_posterior_grad(a, y, mu, x, **kw)))) < 1e-6
    assert np.all(np.asarray(nb_dispersion.cr_log_posterior_hess(a, y, mu, x, **kw)) < 0)
    # DESeq2's line search climbs and stops within its tolerance (1e-6 per step) of the optimum
    ls = _ls(y, mu, x, start)
    assert np.all(np.asarray(ls.last_lp) >= np.asarray(ls.initial_lp))
    best = np.asarray(nb_dispersion.cr_log_posterior(a, y, mu, x, **kw))
    assert np.all(best - np.asarray(ls.last_lp) < 1e-4)
    assert np.all(np.asarray(ls.n_iter) < 100)
    # the grid fallback lands within one fine-grid step of the optimum
    grid = np.linspace(np.log(1e-8), np.log(20.0), 20)
    g = _jit0(lambda *a: nb_dispersion.fit_dispersion_grid(*a, use_prior=True, grid=grid))(y, mu, x, start + 0.5, 0.8)
    assert np.all(np.abs(np.asarray(g) - a) <= 2 * (grid[1] - grid[0]) / 19 + 1e-12)


def test_line_search_compaction_changes_nothing():
    y, x, mu, start = _disp_problem()
    one = _ls(y, mu, x, start)
    compact = _ls(y, mu, x, start, compact=2)
    np.testing.assert_array_equal(np.asarray(compact.n_iter), np.asarray(one.n_iter))
    np.testing.assert_array_equal(np.asarray(compact.n_accept), np.asarray(one.n_accept))
    for u, v in zip(one, compact):  # chunks of 2 genes sum in another order: last-bit differences only
        np.testing.assert_allclose(np.asarray(v), np.asarray(u), rtol=1e-12, atol=1e-11)


@partial(_jit0, static_argnames=("compact",))
def _ls_active(y, mu, x, start, active, compact=None):
    return nb_dispersion.fit_dispersion_line_search(
        y, mu, x, start, start + 0.5, 0.8, use_prior=True, min_log_alpha=np.log(1e-9), compact=compact,
        active=active,
    )


@partial(_jit0, static_argnames=("compact",))
def _irls_queue(y, x, log_sf, alpha, b0, ridge, active=None, compact=None):
    return nb_glm_fit.irls_fit(y, x, log_sf, alpha, b0, ridge, compact=compact, active=active)


def test_line_search_skips_inactive_rows_and_fits_the_others_as_alone():
    y, x, mu, start = _disp_problem()
    active = np.array([True, False, True, True, False, False, True, False])
    alone = _ls(y[active], mu[active], x, start[active])
    for compact in (None, 2):
        fit = _ls_active(y, mu, x, start, active, compact=compact)
        assert np.all(np.asarray(fit.n_iter)[~active] == 0)
        np.testing.assert_array_equal(np.asarray(fit.n_iter)[active], np.asarray(alone.n_iter))
        for u, v in zip(alone, fit):
            np.testing.assert_allclose(np.asarray(v)[active], np.asarray(u), rtol=1e-12, atol=1e-11)


def test_irls_work_queue_and_inactive_rows_change_nothing():
    # the queue stops each gene at its own convergence, as the one-batch loop does; an inactive row is not
    # iterated, and the others come out as when fitted alone
    y, x, sf, alpha = _problem(g=9, n=12, seed=7)
    ridge = np.full(3, 1e-6 / np.log(2) ** 2)
    b0, log_sf = _init(y, x, sf), np.log(sf)
    one = _irls_queue(y, x, log_sf, alpha, b0, ridge)
    assert len(set(np.asarray(one.n_iter).tolist())) > 1  # genes converge after different numbers of steps
    queue = _irls_queue(y, x, log_sf, alpha, b0, ridge, compact=2)
    np.testing.assert_array_equal(np.asarray(queue.n_iter), np.asarray(one.n_iter))
    for u, v in zip(one, queue):
        np.testing.assert_allclose(np.asarray(v), np.asarray(u), rtol=1e-12, atol=1e-10)
    active = np.arange(9) % 3 != 1
    alone = _irls_queue(y[active], x, log_sf, alpha[active], b0[active], ridge)
    for compact in (None, 2):
        part = _irls_queue(y, x, log_sf, alpha, b0, ridge, active=active, compact=compact)
        assert np.all(np.asarray(part.n_iter)[~active] == 0)
        np.testing.assert_array_equal(np.asarray(part.n_iter)[active], np.asarray(alone.n_iter))
        for name in ("beta", "mu", "deviance", "log_likelihood"):
            np.testing.assert_allclose(np.asarray(getattr(part, name))[active], np.asarray(getattr(alone, name)),
                                       rtol=1e-12, atol=1e-10)


def test_line_search_first_margin_is_the_first_steps_share_of_the_margin():
    y, x, mu, start = _disp_problem()
    fit = _ls(y, mu, x, start)
    first, overall = np.asarray(fit.first_margin), np.asarray(fit.decision_margin)
    assert np.all(np.isfinite(first)) and np.all(first >= overall)  # the minimum over steps includes step 1
    one = np.asarray(fit.n_iter) == 1
    np.testing.assert_array_equal(first[one], overall[one])
    assert np.any(first > overall)  # later steps come closer to a tie on some gene


def test_cooks_distance_formula():
    rng = np.random.default_rng(0)
    y = rng.poisson(10, (3, 6)).astype(float)
    mu = rng.uniform(5, 15, (3, 6))
    hat = rng.uniform(0.05, 0.5, (3, 6))
    a = np.array([0.04, 0.2, 1.0])
    expected = (y - mu) ** 2 / (mu + a[:, None] * mu**2) / 2 * hat / (1 - hat) ** 2
    np.testing.assert_allclose(nb_glm_fit.cooks_distance(y, mu, hat, a, 2), expected, rtol=1e-12)


def test_irls_on_a_batch_of_blocks_equals_the_rows_alone_and_keeps_temporaries_small():
    # 512 genes: the saturated deviance is computed 256 genes at a time; each gene's fit is its own
    y, x, sf, alpha = _problem(g=512, n=12, seed=3)
    ridge = np.full(3, 1e-6 / np.log(2) ** 2)
    b0, log_sf = _init(y, x, sf), np.log(sf)
    whole = _irls_queue(y, x, log_sf, alpha, b0, ridge)
    part = _irls_queue(y[:100], x, log_sf, alpha[:100], b0[:100], ridge)  # one block, computed directly
    np.testing.assert_array_equal(np.asarray(whole.n_iter)[:100], np.asarray(part.n_iter))
    for name in ("beta", "mu", "deviance", "log_likelihood"):
        np.testing.assert_allclose(np.asarray(getattr(whole, name))[:100], np.asarray(getattr(part, name)),
                                   rtol=1e-12, atol=1e-10)
    # XLA's scratch memory for the whole fit (work queue): a few genes x samples tables, not one per step of
    # the saddle-point dnbinom (11 before the blocks, here and at 20,224 x 1,000; 3 with them)
    g, n = 4096, 64
    design = np.column_stack([np.ones(n), np.repeat([0.0, 1.0], n // 2), np.linspace(-1.0, 1.0, n)])
    table = jax.ShapeDtypeStruct((g, n), np.float64)
    compiled = _jit0(lambda c, o, a, b: nb_glm_fit.irls_fit(c, design, o, a, b, ridge, compact=1024)).lower(
        table, table, jax.ShapeDtypeStruct((g,), np.float64), jax.ShapeDtypeStruct((g, 3), np.float64)).compile()
    assert compiled.memory_analysis().temp_size_in_bytes <= 4 * g * n * 8


def _tails(y, width):
    # brute force: how many samples of each gene have a count above i
    return np.array([[np.sum(row > i) for i in range(width)] for row in y], dtype=float)


def test_line_search_over_count_tails_equals_the_sum_over_samples():
    y, x, mu, start = _disp_problem()
    width = int(y.max()) + 3
    plain = _ls(y, mu, x, start)
    tails = _jit0(lambda *a: nb_dispersion.fit_dispersion_line_search(
        *a[:4], start + 0.5, 0.8, use_prior=True, min_log_alpha=np.log(1e-9), count_tail=a[4]))(
        y, mu, x, start, _tails(y, width))
    np.testing.assert_array_equal(np.asarray(tails.n_iter), np.asarray(plain.n_iter))
    for name in ("log_alpha", "initial_lp", "last_lp", "last_dlp"):
        np.testing.assert_allclose(np.asarray(getattr(tails, name)), np.asarray(getattr(plain, name)), rtol=1e-11,
                                   atol=1e-11, err_msg=name)
    # the sums over counts are the Gamma recursion's: exact sums of logs and reciprocals (math.fsum)
    la = np.asarray(plain.log_alpha)
    for use_tail in (False, True):
        parts = nb_dispersion._cr_parts(jnp.asarray(la), y, mu, x, True, False,
                                        count_tail=_tails(y, width) if use_tail else None)
        r = np.exp(-la)[:, None] + np.zeros_like(y)
        lg = _exact(y, r, np.log).sum(1)
        dg = _exact(y, r, lambda v: 1.0 / v).sum(1)
        ll_exact = lg - np.sum(y * np.log(mu + r) + r * np.log1p(mu / r), 1)
        s_exact = np.sum((y - mu) / (mu + r) + np.log1p(mu / r), 1) - dg
        np.testing.assert_allclose(np.asarray(parts["ll"]), ll_exact, rtol=1e-11)
        np.testing.assert_allclose(np.asarray(parts["score"]), s_exact, rtol=1e-9, atol=1e-11)


def test_term_magnitude_bounds_hold_and_are_not_loose():
    rng = np.random.default_rng(3)
    for log_alpha in (-9.0, -3.0, -0.5, 1.5):
        y = rng.negative_binomial(2.0, 0.05, size=(6, 40)).astype(float)
        y[0] = 0.0
        mu = np.maximum(rng.uniform(0.3, 2.0, size=y.shape) * (y.mean(1, keepdims=True) + 0.5), 0.5)
        la = np.full(6, log_alpha)
        r = np.exp(-la)[:, None]
        parts = nb_dispersion._cr_parts(jnp.asarray(la), y, mu, np.ones((40, 1)), True, False)
        c = special.gammaln(y + 1) - y * np.log(mu)
        ll_abs, score_abs = nb_dispersion._term_magnitudes(
            jnp.asarray(la), parts, c.sum(1), np.abs(c).sum(1), y.sum(1), (y > 0).sum(1).astype(float))
        ll_terms = special.gammaln(y + r) - special.gammaln(r) - y * np.log(mu + r) - r * np.log1p(mu / r)
        s_terms = (y - mu) / (mu + r) + np.log1p(mu / r) - (special.digamma(y + r) - special.digamma(r))
        true_ll, true_s = np.abs(ll_terms).sum(1), np.abs(s_terms).sum(1)
        assert np.all(np.asarray(ll_abs) >= true_ll * (1 - 1e-9)), log_alpha
        assert np.all(np.asarray(score_abs) >= true_s * (1 - 1e-9) - 1e-12), log_alpha
        # what the bounds cost: the R-exactness margins use them in place of the true sums
        assert np.all(np.asarray(ll_abs) <= 3.0 * true_ll + 1e-9), (log_alpha, np.asarray(ll_abs) / true_ll)


def test_row_sum_is_the_sum_and_differentiates():
    from diffbio_prob.cores.row_sum import row_sum

    x = jnp.asarray(np.random.default_rng(0).uniform(0.5, 2.0, (3, 5)))
    np.testing.assert_allclose(np.asarray(row_sum(lambda v, m: jnp.log(v) * m, x, None if False else 2.0)),
                               2.0 * np.log(np.asarray(x)).sum(1), rtol=1e-14)
    g = jax.grad(lambda v: row_sum(jnp.log, v).sum())(x)
    np.testing.assert_allclose(np.asarray(g), 1.0 / np.asarray(x), rtol=1e-14)
    batched = jax.vmap(lambda v: row_sum(jnp.log, v))(x[None])
    np.testing.assert_allclose(np.asarray(batched)[0], np.log(np.asarray(x)).sum(1), rtol=1e-14)


def test_saturated_log_pmf_is_the_accurate_log_pmf_at_the_mean():
    # nb_log_pmf_saturated drops dbinom_raw's two bd0 terms, which vanish at mu = y
    y = np.array([0, 1, 2, 3, 7, 14, 15, 16, 17, 40, 100, 1000, 12345, 1e6, 1e9], dtype=float)
    for r in (1e-3, 0.37, 7.9, 8.0, 1e3, 1e8):
        np.testing.assert_allclose(np.asarray(nb_glm_fit.nb_log_pmf_saturated(y, r)),
                                   np.asarray(nb_glm_fit.nb_log_pmf_accurate(y, y, r)), rtol=1e-13, atol=1e-13,
                                   err_msg=str(r))
    # and R's dnbinom(y, size, mu = y, log = TRUE) from its lgamma form where that keeps its digits
    y, r = np.array([1.0, 5.0, 30.0]), 2.5
    ref = (special.gammaln(y + r) - special.gammaln(r) - special.gammaln(y + 1) + r * np.log(r / (r + y))
           + y * np.log(y / (r + y)))
    np.testing.assert_allclose(np.asarray(nb_glm_fit.nb_log_pmf_saturated(y, r)), ref, rtol=1e-13)
