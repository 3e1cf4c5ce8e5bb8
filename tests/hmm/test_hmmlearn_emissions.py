"""Poisson and Gaussian (diagonal, full) emissions against hmmlearn 0.3.3 in float64: log-likelihood,
posteriors, Viterbi, and one Baum-Welch iteration from the same start, on a ragged pair of sequences."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from diffbio_prob.cores import hmm as core
from diffbio_prob.inference.baum_welch import baum_welch

# hmmlearn 0.3.3 sets ndarray.shape, deprecated in NumPy 2.5
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:hmmlearn")

S = 3
LENGTHS = (60, 35)
PI = np.array([0.5, 0.3, 0.2])
A = np.array([[0.85, 0.1, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])


def _reference(kind):
    """(hmmlearn model with PI, A and the emission set, our emission, its params, sequences)."""
    from hmmlearn.hmm import GaussianHMM, PoissonHMM

    if kind == "poisson":
        ref = PoissonHMM(S, init_params="", params="stl", n_iter=1, tol=-np.inf, implementation="log")
        rates = np.array([1.0, 6.0, 15.0])
        ref.lambdas_ = rates[:, None]
        params = {"rates": rates}
    else:
        cov = "diag" if kind == "gaussian" else "full"
        ref = GaussianHMM(S, covariance_type=cov, init_params="", params="stmc", n_iter=1, tol=-np.inf,
                          implementation="log", covars_prior=0.0, min_covar=0.0)
        means = np.array([[0.0, 1.0], [2.0, -1.0], [4.0, 3.0]])
        ref.means_ = means
        if cov == "diag":
            scales = np.array([[1.0, 0.5], [0.7, 1.2], [1.5, 1.0]])
            ref.covars_ = scales**2
            params = {"means": means, "scales": scales}
        else:
            covs = np.array([[[1.0, 0.3], [0.3, 0.5]], [[0.6, -0.2], [-0.2, 1.4]], [[2.0, 0.5], [0.5, 1.0]]])
            ref.covars_ = covs
            params = {"means": means, "covariances": covs}
    ref.startprob_, ref.transmat_ = PI, A
    seqs = [ref.sample(n, random_state=10 + i)[0] for i, n in enumerate(LENGTHS)]
    if kind == "poisson":
        seqs = [s[:, 0].astype(np.int64) for s in seqs]
    return ref, core.get_emission(kind), params, seqs


def _hmm_params():
    return core.HMMParams(jnp.log(jnp.asarray(PI)), jnp.log(jnp.asarray(A)))


@pytest.mark.parametrize("kind", ["poisson", "gaussian", "gaussian_full"])
def test_inference_matches_hmmlearn(kind):
    ref, em, params, seqs = _reference(kind)
    for y in seqs:
        x = y[:, None] if kind == "poisson" else y
        ll = em.log_likelihoods(params, jnp.asarray(y))
        post = core.smoother(_hmm_params(), ll)
        np.testing.assert_allclose(float(post.log_likelihood), ref.score(x), rtol=1e-10, atol=1e-8)
        np.testing.assert_allclose(np.asarray(post.smoothed), ref.predict_proba(x), atol=1e-8)
        ref_lp, ref_path = ref.decode(x, algorithm="viterbi")
        path, lp = core.viterbi(_hmm_params(), ll)
        np.testing.assert_array_equal(np.asarray(path), ref_path)
        np.testing.assert_allclose(float(lp), ref_lp, rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("kind", ["poisson", "gaussian", "gaussian_full"])
def test_one_baum_welch_iteration_matches_hmmlearn(kind):
    ref, em, params, seqs = _reference(kind)
    init = {"initial_probs": PI, "transition_probs": A, **{"emission_" + k: v for k, v in params.items()}}
    ours = baum_welch(seqs, S, emission=kind, init=init, num_iters=1, tol=0.0)
    x = np.concatenate([s[:, None] if kind == "poisson" else s for s in seqs])
    ref.fit(x, list(LENGTHS))
    np.testing.assert_allclose(ours.initial_probs, ref.startprob_, atol=1e-8)
    np.testing.assert_allclose(ours.transition_probs, ref.transmat_, atol=1e-8)
    got = ours.emission_params
    if kind == "poisson":
        np.testing.assert_allclose(got["rates"], ref.lambdas_[:, 0], rtol=1e-8)
    else:
        np.testing.assert_allclose(got["means"], ref.means_, atol=1e-8)
        if kind == "gaussian":
            np.testing.assert_allclose(got["scales"] ** 2, ref._covars_, rtol=1e-8)  # covars_ is the (S, D, D) view
        else:
            np.testing.assert_allclose(got["covariances"], ref.covars_, rtol=1e-8, atol=1e-10)
    # our history's first entry is the log-likelihood of the start, which hmmlearn's monitor records too
    np.testing.assert_allclose(ours.log_likelihood_history[0], ref.monitor_.history[0], rtol=1e-10)
