"""Baum-Welch EM: agrees with hmmlearn's fit from the same start (MLE and Dirichlet MAP), monotone,
ragged batches with missing symbols, no NaN from empty rows, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from diffbio_prob.inference.baum_welch import baum_welch, pad_sequences

# hmmlearn 0.3.3 sets ndarray.shape, deprecated in NumPy 2.5
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:hmmlearn")

S, M = 3, 4


def _model(seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.dirichlet(np.ones(S)),
        rng.dirichlet(np.ones(S) * 0.5, size=S) * 0.5 + np.eye(S) * 0.5,
        rng.dirichlet(np.ones(M) * 0.5, size=S),
    )


def _sequences(lengths=(120, 45, 80, 1), seed=0):
    # every test uses the same padded shape (4, 120): one compiled E-step
    from hmmlearn.hmm import CategoricalHMM

    pi, a, b = _model(seed)
    gen = CategoricalHMM(S, n_features=M, init_params="")
    gen.startprob_, gen.transmat_, gen.emissionprob_ = pi, a, b
    return [gen.sample(n, random_state=i)[0][:, 0] for i, n in enumerate(lengths)]


def _start(seed=5):
    rng = np.random.default_rng(seed)
    return {
        "initial_probs": rng.dirichlet(np.ones(S)),
        "transition_probs": rng.dirichlet(np.ones(S), size=S),
        "emission_probs": rng.dirichlet(np.ones(M), size=S),
    }


@pytest.mark.parametrize("prior", [1.0, 2.5])
def test_matches_hmmlearn_fit_from_same_start(prior):
    from hmmlearn.hmm import CategoricalHMM

    seqs = _sequences()
    init = _start()
    ours = baum_welch(
        seqs, S, M, init=init, num_iters=8, tol=0.0,
        initial_concentration=prior, transition_concentration=prior, emission_concentration=prior,
    )
    ref = CategoricalHMM(
        S, n_features=M, init_params="", params="ste", n_iter=8, tol=-np.inf, implementation="log",
        startprob_prior=prior, transmat_prior=prior, emissionprob_prior=prior,
    )
    ref.startprob_, ref.transmat_, ref.emissionprob_ = (init[k] for k in ("initial_probs", "transition_probs", "emission_probs"))
    ref.fit(np.concatenate(seqs)[:, None], [len(s) for s in seqs])
    np.testing.assert_allclose(ours.initial_probs, ref.startprob_, atol=1e-10)
    np.testing.assert_allclose(ours.transition_probs, ref.transmat_, atol=1e-10)
    np.testing.assert_allclose(ours.emission_probs, ref.emissionprob_, atol=1e-10)
    # hmmlearn's history holds the log-likelihood before each M-step
    np.testing.assert_allclose(ours.log_likelihood_history[:-1], np.asarray(ref.monitor_.history), rtol=1e-12)
    assert ours.log_likelihood == pytest.approx(ref.score(np.concatenate(seqs)[:, None], [len(s) for s in seqs]), rel=1e-12)


def test_monotone_with_ragged_batch_missing_symbols_and_map():
    seqs = _sequences(seed=1)
    seqs[0][[3, 4, 50]] = -1  # missing symbols are marginalised
    padded, lengths = pad_sequences(seqs)
    mle = baum_welch(padded, S, M, lengths=lengths, num_iters=40, tol=0.0, seed=3)
    assert np.all(np.diff(mle.log_likelihood_history) >= -1e-9)
    assert mle.log_likelihood_history[-1] > mle.log_likelihood_history[0] + 10
    np.testing.assert_array_equal(mle.objective_history, mle.log_likelihood_history)
    map_ = baum_welch(padded, S, M, lengths=lengths, num_iters=40, tol=0.0, seed=3,
                      transition_concentration=3.0, emission_concentration=2.0)
    assert np.all(np.diff(map_.objective_history) >= -1e-9)
    # a list of ragged sequences is the same as the padded batch + lengths
    listed = baum_welch(seqs, S, M, num_iters=40, tol=0.0, seed=3)
    np.testing.assert_allclose(listed.transition_probs, mle.transition_probs, atol=1e-12)
    for fit in (mle, map_):
        for p in fit.params.values():
            assert np.all(np.isfinite(p)) and np.allclose(p.sum(-1), 1.0)
    # converges (tol > 0) before the iteration cap
    conv = baum_welch(seqs, S, M, num_iters=500, tol=1e-3, seed=3)
    assert conv.converged and conv.num_iters < 500


def test_unreachable_state_keeps_its_rows_no_nan():
    """State 2 can never be entered: its expected counts are zero. hmmlearn turns such rows into
    0/0 (hmmlearn #169); we keep the previous row."""
    init = {
        "initial_probs": np.array([0.5, 0.5, 0.0]),
        "transition_probs": np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [1 / 3, 1 / 3, 1 / 3]]),
        "emission_probs": np.full((S, M), 1.0 / M),
    }
    fit = baum_welch(_sequences(), S, M, init=init, num_iters=5, tol=0.0)
    np.testing.assert_array_equal(fit.transition_probs[2], init["transition_probs"][2])
    np.testing.assert_array_equal(fit.emission_probs[2], init["emission_probs"][2])
    assert fit.initial_probs[2] == 0.0 and np.all(fit.transition_probs[:2, 2] == 0.0)
    assert np.all(np.diff(fit.log_likelihood_history) >= -1e-9)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(observations=np.array([0.0, 1.0])), TypeError, "observations: expected integer"),
        (dict(observations=np.array([0, 7])), ValueError, "observations: symbols"),
        (dict(observations=np.zeros((2, 3), int), lengths=np.array([3, 4])), ValueError, "lengths: expected values"),
        (dict(observations=np.zeros((2, 3), int), lengths=np.array([3, 0])), ValueError, "lengths: expected values"),
        (dict(observations=np.zeros((2, 3), int), lengths=np.array([3.0, 1.0])), TypeError, "lengths: expected integers"),
        (dict(observations=np.zeros(3, int), init={"initial_probs": np.ones(S)}), ValueError, "init: missing keys"),
        (dict(observations=np.zeros(3, int), transition_concentration=0.0), ValueError, "transition_concentration"),
        (dict(observations=np.zeros(3, int), num_iters=-1), ValueError, "num_iters"),
    ],
)
def test_bad_inputs(kwargs, exc, match):
    obs = kwargs.pop("observations")
    with pytest.raises(exc, match=match):
        baum_welch(obs, S, M, **kwargs)
