"""Simulation-based calibration: the machinery against exact posteriors, and a small NUTS run of em_model.

The rank statistic is uniform when the posterior draws are exact (Talts et al. 2018, Theorem 1): a
conjugate Beta-binomial model gives exact draws, so uniform ranks there test the machinery, and shifted or
inflated draws of the same replicates must be rejected. The NUTS run checks em_model's calibration and that
the same test rejects its posterior once the draws are distorted.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from diffbio_prob.inference import sbc


def test_ranks_count_draws_below_truth():
    truth = np.array([0.5, 2.0])
    draws = np.array([[0.1, 0.7, 0.3, 0.5], [3.0, 4.0, 5.0, 6.0]])
    # brute force: 0.1 and 0.3 below, 0.5 tied (half); nothing below 2.0
    assert sbc.ranks(truth, draws).tolist() == [2, 0]
    assert sbc.ranks(np.array([[1.0, 9.0]]), np.zeros((1, 3, 2)) + 5.0).tolist() == [[0, 3]]


def test_thin_keeps_the_last_of_each_stride():
    x = np.arange(12)[None]
    assert sbc.thin(x, 4).tolist() == [[2, 5, 8, 11]]
    with pytest.raises(ValueError, match="num_draws"):
        sbc.thin(x, 13)


def test_uniformity_pvalue_closed_forms():
    flat = np.repeat(np.arange(100), 2)                        # exactly 10 per bin of 5 rank values
    assert sbc.uniformity_pvalue(flat, 99, bins=20) == pytest.approx(1.0)
    counts = np.array([30, 10, 10, 10])                        # ranks 0..24 | 25..49 | ...
    r = np.concatenate([np.full(c, 25 * i) for i, c in enumerate(counts)])
    stat = np.sum((counts - 15.0) ** 2 / 15.0)                 # Pearson: 20
    assert sbc.uniformity_pvalue(r, 99, bins=4) == pytest.approx(stats.chi2.sf(stat, 3), rel=1e-12)


def test_holm_step_down():
    # Holm (1979): sorted p_(i) times (m - i + 1), running maximum, capped at 1
    p = np.array([0.04, 0.001, 0.03, 0.5])
    expected = {1: 0.004, 2: 0.09, 0: 0.09, 3: 0.5}
    assert sbc.holm(p) == pytest.approx([expected[i] for i in range(4)])
    assert sbc.holm([0.6, 0.7]).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("call, match", [
    (lambda: sbc.ranks(np.zeros(3), np.zeros((4, 10))), "draws"),
    (lambda: sbc.ranks(np.zeros(2), np.full((2, 5), np.nan)), "finite"),
    (lambda: sbc.uniformity_pvalue(np.arange(100), 99, bins=7), "bins"),
    (lambda: sbc.uniformity_pvalue(np.array([0, 100]), 99, bins=2), "rank_values"),
    (lambda: sbc.uniformity_pvalue(np.arange(9), 99), "too few"),
    (lambda: sbc.holm([0.5, 1.5]), "pvalues"),
])
def test_bad_inputs_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_run_sbc_checks_before_fitting():
    problem = sbc.em_problem()
    with pytest.raises(ValueError, match="num_replicates"):
        problem.run(9)                                          # 9 ranks cannot fill 2 bins of 5
    with pytest.raises(ValueError, match="bins"):
        problem.run(200, bins=3)


def _beta_binomial(rng, r, num_draws, n=10, a=2.0, b=3.0):
    theta = rng.beta(a, b, size=r)
    y = rng.binomial(n, theta)
    post_a, post_b = a + y, b + n - y                           # conjugate posterior
    draws = rng.beta(post_a[:, None], post_b[:, None], size=(r, num_draws))
    return theta, draws, post_a, post_b


def test_exact_posterior_gives_uniform_ranks_and_distortions_are_rejected():
    rng = np.random.default_rng(1)
    theta, draws, post_a, post_b = _beta_binomial(rng, 500, 99)
    assert sbc.uniformity_pvalue(sbc.ranks(theta, draws), 99) > 0.01
    sd = np.sqrt(post_a * post_b / ((post_a + post_b) ** 2 * (post_a + post_b + 1)))
    shifted = draws + 0.5 * sd[:, None]
    mean = draws.mean(axis=1, keepdims=True)
    narrow = mean + 0.5 * (draws - mean)                         # over-confident: U-shaped ranks
    wide = mean + 2.0 * (draws - mean)                           # under-confident: a hump
    for bad in (shifted, narrow, wide):
        assert sbc.uniformity_pvalue(sbc.ranks(theta, bad), 99) < 1e-3


@pytest.mark.slow
def test_em_model_nuts_is_calibrated_and_a_distorted_posterior_is_not():
    result = sbc.em_problem().run(40, num_draws=99, thinning=2, num_warmup=200, rng_key=3)
    assert set(result.ranks) == {f"abundances[{t}]" for t in range(4)}
    assert min(result.adjusted.values()) > 1e-3, result.table()
    assert result.divergences.sum() == 0
    for k, draws in result.draws.items():
        mean = draws.mean(axis=1, keepdims=True)
        sd = draws.std(axis=1, keepdims=True)
        for bad in (draws + sd, mean + 3.0 * (draws - mean)):
            assert sbc.uniformity_pvalue(sbc.ranks(result.truth[k], bad), 99, result.bins) < 1e-3, k
