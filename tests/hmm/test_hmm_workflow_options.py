"""The HMM workflow's options the demo needs, as users get them: ``fit_hmm(method="svi")``, a start point
``init=``, NUTS started from another fit, ``decode_hmm(draws=...)`` and ``hmm_log_likelihood``.

Oracles: the simulated truth (the dishonest casino), the EM maximum-likelihood fit, a brute-force sum over
every state path, and the plug-in posteriors of each draw."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from diffbio_prob.workflows.demo import CASINO, simulate_casino
from diffbio_prob.workflows.hmm import decode_hmm, fit_hmm, hmm_log_likelihood

PICKS = {"P(fair->fair)": ("transition_probs", (0, 0)), "P(loaded->loaded)": ("transition_probs", (1, 1)),
         "P(six|fair)": ("emission_probs", (0, 5)), "P(six|loaded)": ("emission_probs", (1, 5))}
START = {"initial_probs": np.array([0.5, 0.5]), "transition_probs": np.array([[0.9, 0.1], [0.2, 0.8]]),
         "emission_probs": np.array([[0.2, 0.2, 0.2, 0.15, 0.15, 0.1], [0.1, 0.1, 0.1, 0.1, 0.2, 0.4]])}


@pytest.fixture(scope="module")
def casino():
    return simulate_casino(2000, seed=0)["observations"]


@pytest.fixture(scope="module")
def em_fit(casino):
    return fit_hmm(casino, 2, 6, "em", seed=0, tol=1e-6)


@pytest.mark.slow
def test_svi_recovers_the_casino(casino, em_fit):
    fit = fit_hmm(casino, 2, 6, "svi", num_steps=500, num_samples=200, seed=0)
    assert fit.method == "svi" and fit.history.shape == (500,)
    assert fit.history[-50:].mean() < fit.history[:50].mean()  # the ELBO rose
    draws = fit.result.samples
    assert draws["emission_probs"].shape == (1, 200, 2, 6)
    # every draw relabelled: state 0 (fair) has the smaller P(six)
    assert (draws["emission_probs"][..., 0, 5] < draws["emission_probs"][..., 1, 5]).all()
    for name, (site, idx) in PICKS.items():
        ours, mle, true = fit.params[site][idx], em_fit.params[site][idx], CASINO[site][idx]
        assert abs(ours - mle) < 0.05, (name, ours, mle)  # the posterior mean sits near the MLE
        assert abs(ours - true) < 0.1, (name, ours, true)  # and near the truth
        sd = draws[site][(0, slice(None)) + idx].std()
        assert 0.002 < sd < 0.1, (name, sd)
    # params is the posterior mean of the relabelled draws, and log_likelihood is taken there
    np.testing.assert_allclose(fit.params["transition_probs"], draws["transition_probs"].mean((0, 1)), rtol=1e-5)
    assert fit.log_likelihood == pytest.approx(hmm_log_likelihood(fit.params, casino), rel=1e-9)
    assert em_fit.log_likelihood - 5 < fit.log_likelihood <= em_fit.log_likelihood + 1e-3
    assert fit.elapsed_s > 0


def test_em_init_is_honoured(casino):
    # zero iterations: the fit is the start point itself (states already in canonical order)
    fit = fit_hmm(casino, 2, 6, "em", init=START, num_iters=0)
    for site, value in START.items():
        np.testing.assert_allclose(fit.params[site], value, rtol=1e-12)
    # from two different starts EM follows two different paths (the history's first entry is the start's)
    other = dict(START, transition_probs=np.array([[0.6, 0.4], [0.4, 0.6]]))
    a = fit_hmm(casino, 2, 6, "em", init=START, num_iters=3)
    b = fit_hmm(casino, 2, 6, "em", init=other, num_iters=3)
    assert a.history[0] == pytest.approx(hmm_log_likelihood(START, casino), rel=1e-5)
    assert b.history[0] == pytest.approx(hmm_log_likelihood(other, casino), rel=1e-5)
    assert abs(a.history[0] - b.history[0]) > 1.0


def test_gradient_init_is_honoured(casino):
    fit = fit_hmm(casino, 2, 6, "gradient", init=START, num_steps=2, learning_rate=1e-6)
    # the first loss is the start point's -log-likelihood; a tiny step leaves the parameters there
    assert fit.history[0] == pytest.approx(-hmm_log_likelihood(START, casino), rel=1e-5)
    for site, value in START.items():
        np.testing.assert_allclose(fit.params[site], value, atol=1e-4)
    # a partial start: the given site is used, the others come from the random start for the seed
    part = fit_hmm(casino, 2, 6, "gradient", init={"transition_probs": START["transition_probs"]}, num_steps=2,
                   learning_rate=1e-6, seed=3)
    np.testing.assert_allclose(np.sort(part.params["transition_probs"].diagonal()), [0.8, 0.9], atol=1e-4)


@pytest.mark.slow
def test_nuts_starts_from_another_fit(casino, em_fit):
    fit = fit_hmm(casino[:400], 2, 6, "nuts", init=em_fit.params, num_warmup=60, num_samples=60, num_chains=1,
                  seed=1)
    assert fit.history.size == 0  # no EM was run: the chains started at init
    assert fit.result.samples["emission_probs"].shape == (1, 60, 2, 6)
    draws = fit.result.samples["emission_probs"][..., 1, 5]
    assert 0.3 < draws.mean() < 0.8  # P(six | loaded), truth 0.5, 400 rolls


def test_bad_init_and_restarts_fail_with_the_argument_named(casino):
    with pytest.raises(ValueError, match="init: unknown"):
        fit_hmm(casino, 2, 6, "em", init={"transitions": START["transition_probs"]})
    with pytest.raises(ValueError, match="init: emission_probs"):
        fit_hmm(casino, 2, 6, "em", init={"emission_probs": np.ones((2, 5)) / 5})
    with pytest.raises(ValueError, match="init: transition_probs"):
        fit_hmm(casino, 2, 6, "em", init={"transition_probs": np.array([[0.5, 0.6], [0.5, 0.5]])})
    with pytest.raises(ValueError, match="restarts"):
        fit_hmm(casino, 2, 6, "em", init=START, restarts=3)
    with pytest.raises(ValueError, match="method"):
        fit_hmm(casino, 2, 6, "vb")


def test_hmm_log_likelihood_is_the_sum_over_every_path():
    p = {"initial_probs": np.array([0.3, 0.7]), "transition_probs": np.array([[0.8, 0.2], [0.35, 0.65]]),
         "emission_probs": np.array([[0.5, 0.3, 0.2], [0.1, 0.3, 0.6]])}
    seqs = [np.array([0, 2, 2, 1]), np.array([1, 0, 2])]
    total = 0.0
    for y in seqs:
        lik = 0.0
        for z in itertools.product(range(2), repeat=len(y)):
            pz = p["initial_probs"][z[0]] * p["emission_probs"][z[0], y[0]]
            for t in range(1, len(y)):
                pz *= p["transition_probs"][z[t - 1], z[t]] * p["emission_probs"][z[t], y[t]]
            lik += pz
        total += np.log(lik)
    assert hmm_log_likelihood(p, seqs) == pytest.approx(total, rel=1e-5)


def test_decode_with_draws_averages_the_posteriors_of_the_draws(casino):
    rolls = casino[:300]
    a = {k: np.asarray(v, float) for k, v in CASINO.items()}
    b = dict(a, emission_probs=np.array([[1 / 6] * 6, [0.15] * 5 + [0.25]]))
    post_a, paths = decode_hmm(a, rolls)
    post_b, _ = decode_hmm(b, rolls)
    cols = ["p_state0", "p_state1"]
    draws = {k: np.stack([a[k], b[k], a[k], b[k]]) for k in a}
    mixed, mixed_paths = decode_hmm(a, rolls, draws=draws, max_draws=4)
    np.testing.assert_allclose(mixed[cols].to_numpy(), (post_a[cols].to_numpy() + post_b[cols].to_numpy()) / 2,
                               atol=1e-5)
    # the Viterbi path and the log-likelihood stay those of params
    np.testing.assert_array_equal(mixed["viterbi_state"], post_a["viterbi_state"])
    assert mixed_paths["log_likelihood"][0] == pytest.approx(paths["log_likelihood"][0], rel=1e-9)
    # max_draws picks evenly spaced draws: the first and the last of four (a, b)
    picked, _ = decode_hmm(a, rolls, draws=draws, max_draws=2)
    np.testing.assert_allclose(picked[cols].to_numpy(), mixed[cols].to_numpy(), atol=1e-5)
    assert abs(post_a["p_state1"] - post_b["p_state1"]).max() > 0.05  # the two draws do differ


@pytest.mark.slow
def test_run_hmm_with_svi_writes_the_posterior(tmp_path, casino):
    import arviz as az

    from diffbio_prob.workflows.hmm import run_hmm

    inp = tmp_path / "rolls.txt"
    inp.write_text("".join(str(v + 1) for v in casino[:600]) + "\n")
    written = run_hmm(inp, 2, tmp_path / "out", alphabet="123456", fit="svi", quiet=True)
    assert {"posterior", "posterior_summary", "parameters"} <= set(written)
    post = az.from_netcdf(written["posterior"])["posterior"].to_dataset()
    # the summary and the netCDF hold the same (relabelled) draws: fair first, P(six) smaller
    six = post["emission_probs"].values[..., 5]
    assert (six[..., 0] < six[..., 1]).all()
