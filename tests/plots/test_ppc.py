"""ppc_intervals / ppc_interval_plot: predictive quantiles per statistic against numpy, the inside flag against
a brute-force count, a misspecified model caught, and the argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from diffbio_prob.plots.diagnostics import ppc_interval_plot, ppc_intervals


def _tree(observed, predictive):
    """A DataTree as FitResult.to_arviz() lays it out: predictive (chain, draw, ...), observed (...)."""
    dims = [f"d{i}" for i in range(observed.ndim)]
    return xr.DataTree.from_dict({
        "posterior_predictive": xr.Dataset({"y": (["chain", "draw", *dims], predictive)}),
        "observed_data": xr.Dataset({"y": (dims, observed)}),
    })


def test_quantiles_and_inside_flag_match_numpy():
    rng = np.random.default_rng(1)
    pred = rng.poisson([3.0, 30.0, 300.0], (2, 250, 3))  # 2 chains x 250 draws
    observed = np.array([3, 60, 290])
    table = ppc_intervals(_tree(observed, pred), labels=["a", "b", "c"])
    flat = pred.reshape(500, 3)
    np.testing.assert_allclose(table[["q03", "q25", "median", "q75", "q97"]].to_numpy().T,
                               np.quantile(flat, [0.03, 0.25, 0.5, 0.75, 0.97], axis=0))
    assert table["inside"].tolist() == [True, False, True]  # 60 is far above Poisson(30)'s 97% quantile
    assert list(table.index) == ["a", "b", "c"]


def test_statistic_is_applied_to_observed_and_each_draw_and_a_wrong_model_is_caught():
    rng = np.random.default_rng(2)
    observed = rng.negative_binomial(2, 2 / (2 + 20.0), size=(6, 40))  # overdispersed counts, mean 20
    nb = rng.negative_binomial(2, 2 / (2 + 20.0), size=(300, 6, 40))
    poisson = rng.poisson(20.0, (300, 6, 40))

    def stat(x):
        flat = x.reshape(x.shape[0], -1)
        return np.stack([flat.mean(1), flat.std(1)], 1)

    right = ppc_intervals((observed, nb), statistic=stat, labels=["mean", "sd"])
    wrong = ppc_intervals((observed, poisson), statistic=stat, labels=["mean", "sd"])
    assert right.loc["sd", "observed"] == pytest.approx(observed.std())
    assert right["inside"].all()
    assert not wrong.loc["sd", "inside"]  # a Poisson model cannot produce NB's spread


def test_thinning_keeps_num_samples_draws():
    pred = np.arange(1000.0)[:, None]  # draw i predicts the value i
    table = ppc_intervals((np.array([500.0]), pred), num_samples=11)
    # 11 evenly spaced draws 0, 99.9, ... -> rounded indices 0, 100, ..., 999; their median is draw 500
    assert table["median"].iloc[0] == pytest.approx(500.0)


def test_figure_title_counts_the_observed_values_inside():
    rng = np.random.default_rng(3)
    pred = rng.normal(0.0, 1.0, (400, 5))
    fig = ppc_interval_plot((np.array([0.0, 0.5, -0.5, 9.0, 0.1]), pred), title="check")
    assert fig.axes[0].get_title() == "check: 4 of 5 observed values inside their 94% posterior predictive interval"
    # relative: every value over its predictive median, so the observed dots sit at observed / median
    pred = rng.poisson([10.0, 1000.0], (400, 2))
    fig = ppc_interval_plot((np.array([10, 2000]), pred), relative=True)
    dots = fig.axes[0].collections[-1].get_offsets()[:, 1]
    np.testing.assert_allclose(dots, [10, 2000] / np.median(pred, axis=0))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: ppc_intervals((np.zeros(3), np.zeros((10, 4)))), "data"),
        (lambda: ppc_intervals((np.zeros(3),)), "data"),
        (lambda: ppc_intervals([1, 2]), "data"),
        (lambda: ppc_intervals((np.zeros(3), np.zeros((10, 3))), labels=["a"]), "labels"),
        (lambda: ppc_intervals((np.zeros(3), np.zeros((10, 3))), num_samples=0), "num_samples"),
        (lambda: ppc_intervals((np.zeros(3), np.zeros((10, 3))), statistic=3), "statistic"),
        (lambda: ppc_intervals((np.zeros(3), np.zeros((10, 3))), statistic=lambda x: x.sum(-1)), "statistic"),
        (lambda: ppc_intervals(_tree(np.zeros(2), np.zeros((1, 4, 2))), "z"), "var_name"),
        (lambda: ppc_interval_plot((np.ones(2), np.zeros((5, 2))), relative=True), "relative"),
        (lambda: ppc_intervals(xr.DataTree.from_dict({"posterior": xr.Dataset({"a": (["chain", "draw"],
                                                                               np.zeros((1, 2)))})})), "group"),
    ],
)
def test_bad_arguments_name_themselves(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
