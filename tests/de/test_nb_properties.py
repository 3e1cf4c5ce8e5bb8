"""Property-based tests of the NB core (hypothesis): the log-pmf against SciPy in the package's
parameterisation (``cores/nb.py``: size ``r``, ``Var = mu + mu**2 / r``, i.e. ``scipy.stats.nbinom(n=r,
p=r / (r + mu))``), and the special-function differences against SciPy.

Arrays have a fixed length (16), so each jitted function compiles once for the whole file.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from diffbio_prob.cores import nb as core

N = 16
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)
log_pmf = jax.jit(core.nb_log_pmf)

counts = st.lists(st.integers(0, 5000), min_size=N, max_size=N)
means = st.lists(st.floats(1e-3, 1e4), min_size=N, max_size=N)
sizes = st.lists(st.floats(1e-3, 1e5), min_size=N, max_size=N)


@SETTINGS
@given(k=counts, mu=means, r=sizes)
def test_log_pmf_matches_scipy_nbinom(k, mu, r):
    k, mu, r = (np.asarray(v, float) for v in (k, mu, r))
    ref = stats.nbinom.logpmf(k, r, r / (r + mu))
    got = np.asarray(log_pmf(jnp.asarray(k), jnp.asarray(mu), jnp.asarray(r)))
    # SciPy's own lgamma differences lose ~1e-16 * lgamma(k + r) absolutely; so allow that much.
    tol = 1e-9 * np.maximum(1.0, np.abs(ref)) + 4e-16 * np.abs(special.gammaln(k + r))
    assert np.all(np.abs(got - ref) <= tol), np.max(np.abs(got - ref) - tol)


@SETTINGS
@given(mu=means, r=sizes)
def test_log_pmf_sums_to_one_and_has_the_right_mean(mu, r):
    """Over k = 0..K (K far in the tail) the pmf sums to 1 and has mean mu and variance mu + mu^2 / r."""
    mu, r = float(np.clip(mu[0], 1e-3, 50.0)), float(np.clip(r[0], 0.5, 1e5))
    k = np.arange(4000.0)
    p = np.exp(np.asarray(log_pmf(jnp.asarray(k), jnp.full(k.shape, mu), jnp.full(k.shape, r))))
    np.testing.assert_allclose(p.sum(), 1.0, atol=1e-10)
    np.testing.assert_allclose(p @ k, mu, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(p @ (k - mu) ** 2, mu + mu**2 / r, rtol=1e-7, atol=1e-10)


def test_log_pmf_at_mean_zero():
    """mu = 0 is a point mass at 0: log-pmf 0 at k = 0, -inf above (no NaN)."""
    got = np.asarray(core.nb_log_pmf(jnp.array([0.0, 1.0, 7.0]), jnp.zeros(3), jnp.full(3, 2.0)))
    assert got[0] == 0.0 and np.all(got[1:] == -np.inf)


@SETTINGS
@given(y=st.lists(st.integers(0, 10**6), min_size=N, max_size=N),
       r=st.lists(st.floats(1e-6, 1e8), min_size=N, max_size=N))
def test_gamma_differences_match_scipy(y, r):
    y, r = np.asarray(y, float), np.asarray(r, float)
    lg = np.asarray(jax.jit(core.lgamma_ratio)(jnp.asarray(y), jnp.asarray(r)))
    ref = special.gammaln(y + r) - special.gammaln(r)
    np.testing.assert_allclose(lg, ref, rtol=1e-9, atol=1e-9 + 4e-16 * np.abs(special.gammaln(y + r)).max())
    dg = np.asarray(jax.jit(core.digamma_ratio)(jnp.asarray(y), jnp.asarray(r)))
    ref = special.digamma(y + r) - special.digamma(r)
    np.testing.assert_allclose(dg, ref, rtol=1e-9, atol=1e-9)
