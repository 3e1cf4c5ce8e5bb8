"""``bayesian_lfc(method="gradient")``: the NNX NB-GLM's maximum-likelihood fit as a table, next to DESeq2's
MLE (oracle: DESeq2's unshrunk log2 fold changes and the simulated truth)."""

from __future__ import annotations

import numpy as np
import pytest

from diffbio_prob.workflows.de_bayes import bayesian_lfc
from diffbio_prob.workflows.demo import simulate_de_counts
from diffbio_prob.workflows.deseq2 import fit_deseq2


@pytest.fixture(scope="module")
def dfit():
    counts, samples, _ = simulate_de_counts(80, 8, seed=5)
    return fit_deseq2(counts, samples[["condition"]], "~ condition")


def test_gradient_lfc_is_the_maximum_likelihood_fold_change(dfit):
    table, result = bayesian_lfc(dfit, ["condition", "B", "A"], method="gradient", num_steps=400, rng_key=0)
    res = dfit.results(["condition", "B", "A"])
    keep = ~np.asarray(dfit.gene["allZero"], bool)
    assert list(table.index) == list(dfit.genes[keep]) and table.attrs["method"] == "gradient"
    ours, deseq = table["log2FoldChange"].to_numpy(), res.loc[table.index, "log2FoldChange"].to_numpy()
    well = res.loc[table.index, "baseMean"].to_numpy() > 20
    assert well.sum() > 20
    # the NB MLE of the fold change barely depends on the dispersion: DESeq2's (MAP dispersion) and
    # ours (ML dispersion) agree for well-expressed genes
    assert np.median(np.abs(ours[well] - deseq[well])) < 0.05
    assert np.corrcoef(ours[well], deseq[well])[0, 1] > 0.99
    # the loss fell; a point estimate has no posterior columns
    assert result.loss_history[-1] < result.loss_history[0] and result.loss_history.shape == (400,)
    assert table[["lfcSE", "hdi_lower", "hdi_upper", "prob_abs_lfc_gt"]].isna().all().all()
    np.testing.assert_allclose(table["baseMean"], res.loc[table.index, "baseMean"], rtol=1e-12)


def test_gradient_learning_rate_is_honoured(dfit):
    # one Adam step moves each coefficient by about the learning rate, whatever the gradient's size
    t_small, _ = bayesian_lfc(dfit, method="gradient", num_steps=1, learning_rate=1e-4)
    t_big, _ = bayesian_lfc(dfit, method="gradient", num_steps=1, learning_rate=1e-1)
    small, big = np.abs(t_small["log2FoldChange"]).median(), np.abs(t_big["log2FoldChange"]).median()
    assert small == pytest.approx(1e-4 / np.log(2), rel=0.05) and big == pytest.approx(1e-1 / np.log(2), rel=0.05)
    with pytest.raises(ValueError, match="learning_rate"):
        bayesian_lfc(dfit, method="gradient", learning_rate=-1.0)
    with pytest.raises(ValueError, match="method"):
        bayesian_lfc(dfit, method="mcmc")
