"""``quantify(algorithm="gradient")`` (Adam through unrolled EM) and ``quant.log_likelihood`` on salmon's
sample data (oracles: the EM maximum-likelihood fit, the true counts, the likelihood's invariances)."""

from __future__ import annotations

import numpy as np
import pytest

from diffbio_prob.io.salmon import load_sample_data
from diffbio_prob.workflows.quant import log_likelihood, quantify


@pytest.fixture(scope="module")
def sample():
    return load_sample_data()


@pytest.fixture(scope="module")
def em(sample):
    return quantify(sample.table, sample.effective_lengths, algorithm="em")


def test_gradient_through_unrolled_em_reaches_the_em_likelihood(sample, em):
    res = quantify(sample.table, sample.effective_lengths, algorithm="gradient", num_steps=200, unrolled_steps=10)
    assert res.algorithm == "gradient" and res.n_iterations == 10 and not res.converged
    assert res.num_reads.sum() == pytest.approx(em.num_reads.sum(), rel=1e-5)
    assert res.tpm.sum() == pytest.approx(1e6, rel=1e-5)
    ll_em = log_likelihood(sample.table, sample.effective_lengths, em.num_reads)
    assert res.objective == pytest.approx(log_likelihood(sample.table, sample.effective_lengths, res.num_reads))
    assert ll_em - 0.5 < res.objective <= ll_em + 1e-2  # EM's optimum, approached from below
    loss = res.fit.loss_history
    assert loss.shape == (200,) and loss[-1] < loss[0] - 5
    assert np.abs(res.num_reads - em.num_reads).max() < 5  # of 10,000 reads
    # fewer unrolled EM steps from the same start reach less
    short = quantify(sample.table, sample.effective_lengths, algorithm="gradient", num_steps=1, unrolled_steps=1,
                     learning_rate=1e-8)
    assert short.objective < res.objective - 1 and short.n_iterations == 1


def test_log_likelihood_depends_on_proportions_and_peaks_at_em(sample, em):
    eff = sample.effective_lengths
    ll = log_likelihood(sample.table, eff, em.num_reads)
    assert log_likelihood(sample.table, eff, 7.0 * em.num_reads) == pytest.approx(ll, rel=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(3):
        other = em.num_reads * np.exp(rng.normal(0, 0.2, em.num_reads.size))
        assert log_likelihood(sample.table, eff, other) < ll
    assert log_likelihood(sample.table, eff, sample.true_counts) < ll
    with pytest.raises(ValueError, match="counts"):
        log_likelihood(sample.table, eff, -em.num_reads)
    with pytest.raises(ValueError, match="num_steps"):
        quantify(sample.table, eff, algorithm="gradient", num_steps=0)
