"""The figures draw exactly the numbers they are given, survive NA rows, and reject bad input clearly.

Each test reads back what was drawn (scatter offsets, error-bar segments, image arrays, reference
lines) and compares it with values computed independently from the inputs, then checks the figure
renders to a non-empty PNG.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from diffbio_prob.plots import (
    counts_vs_truth_plot,
    ma_plot,
    mard,
    posterior_plot,
    posterior_track_plot,
    save_figure,
    trace_plot,
    volcano_plot,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    data = buf.getvalue()
    assert data.startswith(PNG) and len(data) > 1000
    return data


def _by_gid(fig: Figure, gid: str):
    found = [a for ax in fig.axes for a in ax.get_children() if a.get_gid() == gid]
    assert len(found) <= 1, gid
    return found[0] if found else None


# --- differential expression ---------------------------------------------------------------------
@pytest.fixture
def de_results() -> pd.DataFrame:
    """A DESeq2-shaped table with every kind of NA row DESeq2 produces."""
    rng = np.random.default_rng(1)
    n = 60
    base = np.exp(rng.normal(4.0, 1.5, n))
    lfc = rng.normal(0.0, 1.0, n)
    lfc[:10] += 3.0
    se = 0.2 + 1.0 / np.sqrt(base)
    from scipy.stats import false_discovery_control, norm

    pvalue = 2 * norm.sf(np.abs(lfc / se))
    res = pd.DataFrame(
        {
            "baseMean": base,
            "log2FoldChange": lfc,
            "lfcSE": se,
            "stat": lfc / se,
            "pvalue": pvalue,
            "padj": false_discovery_control(pvalue),
        },
        index=[f"g{i}" for i in range(n)],
    )
    res.iloc[50, :] = np.nan  # an all-NA row
    res.loc["g51", ["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]] = [0.0] + [np.nan] * 5
    res.loc["g52", "padj"] = np.nan  # independent filtering
    res.loc["g53", ["log2FoldChange", "stat", "pvalue", "padj"]] = np.nan  # outlier
    res.loc["g0", "pvalue"] = 0.0  # underflow
    res.loc["g0", "padj"] = 0.0
    return res


def test_ma_plot_draws_each_gene_once_in_its_group(de_results):
    res = de_results
    fig = ma_plot(res, alpha=0.1)
    drawable = (res["baseMean"] > 0) & res["log2FoldChange"].notna()
    significant = drawable & (res["padj"] < 0.1)  # NaN padj compares False: not significant
    sig = _by_gid(fig, "significant").get_offsets()
    other = _by_gid(fig, "other").get_offsets()
    assert len(sig) == significant.sum() and len(other) == (drawable & ~significant).sum()
    np.testing.assert_allclose(sig, res.loc[significant, ["baseMean", "log2FoldChange"]].to_numpy())
    np.testing.assert_allclose(
        other, res.loc[drawable & ~significant, ["baseMean", "log2FoldChange"]].to_numpy()
    )
    assert fig.axes[0].get_xscale() == "log"
    _png(fig)


def test_ma_plot_error_bars_are_plus_minus_one_posterior_sd(de_results):
    res = de_results
    sd = pd.Series(np.linspace(0.1, 0.6, len(res)), index=res.index[::-1])[::-1]  # aligned by name
    fig = ma_plot(res, lfc_sd=sd)
    drawable = (res["baseMean"] > 0) & res["log2FoldChange"].notna()
    significant = drawable & (res["padj"] < 0.1)
    segments = _by_gid(fig, "significant-sd").get_segments()
    lows = np.array([seg[0][1] for seg in segments])
    highs = np.array([seg[1][1] for seg in segments])
    expected_sd = sd.reindex(res.index)[significant].to_numpy()
    lfc = res.loc[significant, "log2FoldChange"].to_numpy()
    np.testing.assert_allclose(lows, lfc - expected_sd)
    np.testing.assert_allclose(highs, lfc + expected_sd)
    # A column name works the same way.
    fig2 = ma_plot(res, lfc_sd="lfcSE")
    segs2 = _by_gid(fig2, "other-sd").get_segments()
    other = drawable & ~significant & res["lfcSE"].notna()
    np.testing.assert_allclose([s[1][1] - s[0][1] for s in segs2], 2 * res.loc[other, "lfcSE"].to_numpy())


def test_ma_plot_ylim_puts_outliers_on_the_edge(de_results):
    res = de_results
    fig = ma_plot(res, ylim=(-2.0, 2.0))
    drawable = (res["baseMean"] > 0) & res["log2FoldChange"].notna()
    significant = drawable & (res["padj"] < 0.1)
    above = significant & (res["log2FoldChange"] > 2.0)
    edge = np.concatenate(
        [a.get_offsets() for ax in fig.axes for a in ax.get_children() if a.get_gid() == "significant-edge"]
    )
    assert above.sum() > 0 and len(edge) == (significant & (res["log2FoldChange"].abs() > 2.0)).sum()
    assert np.all(np.abs(edge[:, 1]) == 2.0)
    inner = _by_gid(fig, "significant").get_offsets()
    assert np.all(np.abs(inner[:, 1]) <= 2.0)


def test_volcano_heights_are_minus_log10_p_and_the_cut_is_bh(de_results):
    res = de_results
    fig = volcano_plot(res, alpha=0.1, lfc_sd="lfcSE", label_top=3)
    drawable = res["log2FoldChange"].notna() & res["pvalue"].notna()
    significant = drawable & (res["padj"] < 0.1)
    positive = significant & (res["pvalue"] > 0)
    sig = _by_gid(fig, "significant").get_offsets()
    np.testing.assert_allclose(sig[:, 1], -np.log10(res.loc[positive, "pvalue"].to_numpy()))
    np.testing.assert_allclose(sig[:, 0], res.loc[positive, "log2FoldChange"].to_numpy())
    zero = _by_gid(fig, "significant-zero").get_offsets()
    assert len(zero) == 1 and zero[0, 1] > sig[:, 1].max()  # p = 0 is drawn above every finite height
    cut = _by_gid(fig, "bh-cut").get_ydata()[0]
    assert cut == pytest.approx(-np.log10(res.loc[significant, "pvalue"].max()))
    # Every gene above the cut line is significant and every one below is not (BH is monotone in p).
    other = _by_gid(fig, "other").get_offsets()
    assert np.all(other[:, 1] < cut) and np.all(sig[:, 1] >= cut - 1e-12)
    labels = sorted(t.get_text() for t in fig.axes[0].texts)
    assert labels == sorted(res.loc[drawable].sort_values("pvalue").index[:3])
    _png(fig)


def test_de_plots_draw_on_a_given_axes(de_results):
    host = Figure()
    ax = host.add_subplot(1, 2, 2)
    assert ma_plot(de_results, ax=ax) is host
    assert volcano_plot(de_results, ax=host.add_subplot(1, 2, 1)) is host
    assert len(host.axes) == 2 and all(a.collections for a in host.axes)


@pytest.mark.parametrize(
    "mutate, exc, match",
    [
        (lambda r: r.to_numpy(), TypeError, "results: expected a pandas DataFrame"),
        (lambda r: r.drop(columns="padj"), ValueError, r"missing column\(s\) \['padj'\]"),
        (lambda r: r.assign(padj="x"), TypeError, r"results\['padj'\]: expected numbers"),
        (lambda r: r.iloc[:0], ValueError, "no rows"),
        (lambda r: r.assign(baseMean=-r["baseMean"]), ValueError, "baseMean.*non-negative"),
        (lambda r: r.assign(log2FoldChange=np.inf), ValueError, "infinite"),
        (lambda r: r.assign(log2FoldChange=np.nan), ValueError, "no row has"),
    ],
)
def test_ma_plot_rejects_bad_tables(de_results, mutate, exc, match):
    with pytest.raises(exc, match=match):
        ma_plot(mutate(de_results))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"alpha": 0.0}, ValueError, "alpha"),
        ({"alpha": 1.5}, ValueError, "alpha"),
        ({"alpha": "0.1"}, TypeError, "alpha"),
        ({"lfc_sd": [0.1, 0.2]}, ValueError, "lfc_sd: expected length 60"),
        ({"lfc_sd": -np.ones(60)}, ValueError, "lfc_sd: expected non-negative"),
        ({"lfc_sd": "nope"}, ValueError, "lfc_sd: column 'nope'"),
        ({"lfc_sd": pd.Series([0.1], index=["g0"])}, ValueError, "lfc_sd: a Series"),
        ({"ax": "not axes"}, TypeError, "ax: expected a matplotlib Axes"),
    ],
)
def test_de_plots_reject_bad_arguments(de_results, kwargs, exc, match):
    for plot in (ma_plot, volcano_plot):
        with pytest.raises(exc, match=match):
            plot(de_results, **kwargs)


def test_volcano_rejects_p_values_outside_unit_interval(de_results):
    with pytest.raises(ValueError, match=r"results\['pvalue'\]: expected p-values in \[0, 1\]"):
        volcano_plot(de_results.assign(pvalue=de_results["pvalue"] + 1.0))
    with pytest.raises(ValueError, match="label_top"):
        volcano_plot(de_results, label_top=-1)


# --- HMM -----------------------------------------------------------------------------------------
def _casino(T=120, seed=0):
    rng = np.random.default_rng(seed)
    states = ((np.arange(T) // 30) % 2).astype(np.int32)
    post = np.where(states[:, None] == np.arange(2), 0.8, 0.2) + rng.uniform(-0.1, 0.1, (T, 1)) * [1, -1]
    return states, post, rng.integers(0, 6, T)


def test_posterior_track_plot_stacks_to_one_and_shows_the_paths():
    states, post, obs = _casino()
    obs[5:9] = -1  # missing symbols are left out
    viterbi = states.copy()
    viterbi[:12] = 1 - viterbi[:12]  # 12 of 120 positions wrong -> 90.0 %
    fig = posterior_track_plot(
        post, true_states=states, viterbi_path=viterbi, observations=obs, state_names=["fair", "loaded"]
    )
    assert len(fig.axes) == 4
    top = _by_gid(fig, "posterior-1").get_paths()[0].vertices[:, 1]
    np.testing.assert_allclose(top.max(), 1.0)  # the last stacked band reaches exactly 1
    np.testing.assert_array_equal(_by_gid(fig, "ribbon-true").get_array()[0], states)
    np.testing.assert_array_equal(_by_gid(fig, "ribbon-Viterbi").get_array()[0], viterbi)
    assert len(_by_gid(fig, "observations").get_offsets()) == 120 - 4
    argmax_acc = np.mean(post.argmax(axis=1) == states)
    assert fig.get_suptitle() == (
        f"agreement with the true states: Viterbi 90.0%, posterior argmax {argmax_acc:.1%}"
    )
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert legend == ["fair", "loaded"]
    _png(fig)


def test_posterior_track_plot_real_observations_with_gaps():
    states, post, _ = _casino(T=50)
    obs = np.linspace(-1.0, 1.0, 50)
    obs[10:15] = np.nan
    fig = posterior_track_plot(post.astype(np.float32), observations=obs)
    assert len(fig.axes) == 2 and fig.get_suptitle() == ""
    np.testing.assert_array_equal(_by_gid(fig, "observations").get_ydata(), obs)
    _png(fig)


def test_posterior_track_plot_averages_long_sequences_in_windows():
    rng = np.random.default_rng(4)
    post = rng.dirichlet([1.0, 1.0], 1005)
    fig = posterior_track_plot(post, max_points=100)  # windows of ceil(1005 / 100) = 11 positions
    assert fig.get_suptitle() == "posteriors averaged over windows of 11 positions"
    means = [post[i : i + 11, 0].mean() for i in range(0, 1005, 11)]  # the last window has 4 positions
    assert len(means) == 92
    drawn = _by_gid(fig, "posterior-0").get_paths()[0].vertices[:, 1]
    np.testing.assert_allclose(np.unique(np.round(drawn[drawn > 0], 12)), np.unique(np.round(means, 12)))
    with pytest.raises(ValueError, match="max_points"):
        posterior_track_plot(post, max_points=1)


@pytest.mark.parametrize(
    "change, exc, match",
    [
        ({"state_posteriors": np.ones(5)}, ValueError, r"state_posteriors: expected shape \(T, S\)"),
        ({"state_posteriors": "abc"}, TypeError, "state_posteriors"),
        (
            {"state_posteriors": np.full((4, 2), 0.5) * [[1], [1], [np.nan], [1]]},
            ValueError,
            "row 2 contains NaN",
        ),
        ({"state_posteriors": np.full((4, 2), 0.4)}, ValueError, "row 0 sums to 0.8"),
        ({"state_posteriors": np.log(np.full((4, 2), 0.5))}, ValueError, "not log-probabilities"),
        ({"true_states": np.zeros(4)}, TypeError, "true_states: expected integer"),
        ({"true_states": np.zeros(3, int)}, ValueError, r"true_states: expected shape \(4,\)"),
        ({"viterbi_path": np.array([0, 1, 2, 0])}, ValueError, r"viterbi_path: expected states in \[0, 1\]"),
        ({"observations": np.array([0, 1, -2, 3])}, ValueError, "observations: integer symbols"),
        ({"observations": np.array([0.0, np.inf, 1.0, 2.0])}, ValueError, "observations: contains infinite"),
        ({"state_names": ["a"]}, ValueError, "state_names: expected 2 names"),
    ],
)
def test_posterior_track_plot_rejects_bad_input(change, exc, match):
    kwargs = {"state_posteriors": np.full((4, 2), 0.5)} | change
    with pytest.raises(exc, match=match):
        posterior_track_plot(**kwargs)


# --- quantification ------------------------------------------------------------------------------
def test_mard_matches_its_definition():
    rng = np.random.default_rng(3)
    x = rng.poisson(5.0, 40).astype(float)
    y = rng.poisson(5.0, 40).astype(float)
    x[:3] = y[:3] = 0.0
    brute = np.mean([0.0 if a + b == 0 else abs(a - b) / (a + b) for a, b in zip(x, y, strict=True)])
    assert mard(x, y) == pytest.approx(brute, rel=1e-14)
    assert mard([0.0, 10.0], [0.0, 30.0]) == 0.25


def test_counts_vs_truth_plot_draws_points_intervals_and_identity():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(2)
    truth = rng.poisson(np.exp(rng.normal(3.0, 1.5, 80))).astype(float)
    est = truth * np.exp(rng.normal(0.0, 0.2, 80))
    lower, upper = est * 0.85, est * 1.15 + 0.5
    est[7] = np.nan  # NaN row is dropped and counted
    names = pd.Index([f"tx{i}" for i in range(80)])
    fig = counts_vs_truth_plot(pd.Series(est, index=names), truth, lower, upper, label_top=2)
    keep = ~np.isnan(est)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    np.testing.assert_allclose(
        _by_gid(fig, "transcripts").get_offsets(), np.c_[truth[keep] + 1, est[keep] + 1]
    )
    segments = _by_gid(fig, "intervals").get_segments()
    np.testing.assert_allclose([s[:, 1] for s in segments], np.c_[lower[keep] + 1, upper[keep] + 1])
    identity = [line for line in ax.lines if line.get_label() == "estimate = truth"][0]
    np.testing.assert_allclose(identity.get_xdata(), identity.get_ydata())
    rho = spearmanr(truth[keep], est[keep]).statistic
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(
        f"Spearman ρ = {rho:.3f}" in t and f"MARD = {mard(est[keep], truth[keep]):.3f}" in t for t in texts
    )
    covered = int(np.sum(keep & (lower <= truth) & (truth <= upper)))
    title = ax.get_legend().get_title().get_text()
    assert f"intervals cover the truth for {covered} of 79" in title and "1 row with NaN not drawn" in title
    ratio = np.abs(np.log((est + 1) / (truth + 1)))
    worst = names[np.argsort(-np.where(keep, ratio, -np.inf))[:2]]
    assert sorted(t.get_text() for t in ax.texts) == sorted(worst)
    _png(fig)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"estimated": "abc"}, TypeError, "estimated"),
        ({"estimated": np.ones((2, 2))}, ValueError, "estimated: expected a 1-D array"),
        ({"truth": np.ones(2)}, ValueError, "truth: expected length 3"),
        ({"truth": [1.0, -1.0, 2.0]}, ValueError, "truth: expected non-negative"),
        ({"lower": [0.0, 0.0, 0.0]}, ValueError, "lower, upper: give both"),
        ({"lower": [2.0, 0.0, 0.0], "upper": [1.0, 1.0, 1.0]}, ValueError, "lower > upper at row 0"),
        ({"estimated": [np.nan] * 3}, ValueError, "all rows are NaN"),
        ({"estimated": [1.0, np.inf, 2.0]}, ValueError, "estimated: contains infinite"),
        ({"label_top": 2}, ValueError, "label_top: needs transcript names"),
        ({"names": ["a"]}, ValueError, "names: expected 3 names"),
    ],
)
def test_counts_vs_truth_plot_rejects_bad_input(kwargs, exc, match):
    args = {"estimated": [1.0, 2.0, 3.0], "truth": [1.0, 2.0, 4.0]} | kwargs
    with pytest.raises(exc, match=match):
        counts_vs_truth_plot(**args)


# --- ArviZ diagnostics ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def posterior_tree():
    import arviz as az

    rng = np.random.default_rng(0)
    diverging = np.zeros((2, 100), bool)
    diverging[0, [5, 50]] = True
    return az.from_dict(
        {
            "posterior": {
                "mu": rng.normal(size=(2, 100)),
                "beta": rng.normal(size=(2, 100, 20)),
                "p": rng.dirichlet([3.0, 2.0, 1.0], size=(2, 100)),
            },
            "log_likelihood": {"y": rng.normal(size=(2, 100, 7))},
            "sample_stats": {"diverging": diverging},
        }
    )


def test_trace_plot_from_datatree_fitresult_and_dict(posterior_tree):
    fig = trace_plot(posterior_tree, var_names=["mu", "p"])
    assert isinstance(fig, Figure) and len(fig.axes) == 4  # (density, trace) per variable
    assert any(c.get_offsets().shape[0] == 2 for ax in fig.axes for c in ax.collections)  # the 2 divergences
    _png(fig)

    class FitLike:  # the FitResult contract: anything with to_arviz()
        def to_arviz(self):
            return posterior_tree

    assert len(trace_plot(FitLike(), "mu").axes) == 2
    draws = {"mu": posterior_tree["posterior"]["mu"].values}
    assert len(trace_plot(draws).axes) == 2


def test_trace_plot_cuts_long_variables_and_says_so(posterior_tree):
    fig = trace_plot(posterior_tree, var_names="beta", max_elements=5)
    assert fig.get_suptitle() == "showing the first 5 of 20 along beta_dim_0"
    trace_ax = [ax for ax in fig.axes if ax.get_xlabel() == "Draw"][0]
    assert len(trace_ax.lines) == 2 * 5  # 2 chains x 5 elements


def test_posterior_plot_dist_draws_reference_lines_at_the_values(posterior_tree):
    fig = posterior_plot(posterior_tree, var_names=["mu", "p"], ref_values={"mu": 0.25, "p": [0.5, 0.3, 0.2]})
    assert len(fig.axes) == 4  # dist kind: one panel per scalar element
    refs = sorted(
        line.get_xdata()[0] for ax in fig.axes for line in ax.lines if line.get_color() == "#D55E00"
    )
    np.testing.assert_allclose(refs, [0.2, 0.25, 0.3, 0.5])
    _png(fig)


def test_posterior_plot_forest_marks_references_and_cuts(posterior_tree):
    truth = np.arange(20) / 10.0
    fig = posterior_plot(
        posterior_tree, var_names="beta", kind="forest", ref_values={"beta": truth}, max_elements=6
    )
    marks = [
        c
        for ax in fig.axes
        for c in ax.collections
        if c.get_offsets().shape == (1, 2)
        and np.allclose(c.get_facecolor()[0][:3], (0xD5 / 255, 0x5E / 255, 0.0))
    ]
    np.testing.assert_allclose(sorted(m.get_offsets()[0, 0] for m in marks), truth[:6])
    assert "first 6 of 20" in fig.get_suptitle()

    # "auto" switches from densities to a forest above 6 scalar elements.
    def panels(fig):
        return sum(ax.get_title().startswith("beta") for ax in fig.axes)

    assert panels(posterior_plot(posterior_tree, var_names="beta", max_elements=6)) == 6
    assert (
        panels(posterior_plot(posterior_tree["posterior"].to_dataset(), var_names="beta", max_elements=7))
        == 0
    )


def test_forest_label_headers_do_not_overlap():
    # Two label columns with long underscore names (as the HMM's from_state / to_state) side by side.
    rng = np.random.default_rng(0)
    draws = {"transition_probs": rng.dirichlet([5.0, 5.0], size=(2, 40, 2))}
    fig = posterior_plot(draws, var_names="transition_probs", kind="forest")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    # ArviZ writes the column headers as tick labels of the label axis
    boxes = [t.get_window_extent(renderer) for ax in fig.axes for t in ax.get_xticklabels() if t.get_text()
             and not t.get_text().replace(".", "").isdigit()]
    assert len(boxes) == 3  # the variable column and one per dimension
    boxes.sort(key=lambda b: b.x0)
    for left, right in zip(boxes, boxes[1:]):
        assert left.x1 <= right.x0 + 1.0, (left, right)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda t: trace_plot(42), TypeError, "data: expected an xarray.DataTree"),
        (lambda t: trace_plot({}), ValueError, "empty dict"),
        (lambda t: trace_plot({"mu": np.ones(5)}), ValueError, r"data\['mu'\]: expected draws shaped"),
        (
            lambda t: trace_plot(t, var_names=["nope"]),
            ValueError,
            r"var_names: \['nope'\] not in the posterior",
        ),
        (lambda t: trace_plot(t, var_names=[1]), TypeError, "var_names"),
        (lambda t: trace_plot(t, max_elements=0), ValueError, "max_elements"),
        (lambda t: trace_plot(t, coords={"nope": [0]}), ValueError, r"coords: dimensions \['nope'\]"),
        (
            lambda t: trace_plot(t["log_likelihood"]),
            ValueError,
            "data: the DataTree has no 'posterior' group",
        ),
        (lambda t: posterior_plot(t, kind="violin"), ValueError, "kind"),
        (lambda t: posterior_plot(t, ci_prob=1.5), ValueError, "ci_prob"),
        (lambda t: posterior_plot(t, ref_values={"zz": 1.0}), ValueError, r"ref_values: 'zz'"),
        (
            lambda t: posterior_plot(t, ref_values={"p": [1.0, 2.0]}),
            ValueError,
            r"ref_values\['p'\]: expected",
        ),
        (lambda t: posterior_plot(t, ref_values={"mu": np.nan}), ValueError, "NaN"),
    ],
)
def test_diagnostics_reject_bad_input(posterior_tree, call, exc, match):
    with pytest.raises(exc, match=match):
        call(posterior_tree)


# --- saving --------------------------------------------------------------------------------------
def test_save_figure_writes_png_atomically(tmp_path):
    fig = Figure()
    fig.add_subplot().plot([0, 1, 4])
    out = save_figure(fig, tmp_path / "sub" / "fig.png")
    data = out.read_bytes()
    assert data.startswith(PNG) and len(data) > 1000
    assert save_figure(fig, tmp_path / "fig.svg").read_text().lstrip().startswith("<?xml")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["fig.png", "fig.svg", "sub"]


def test_save_figure_leaves_no_partial_file(tmp_path, monkeypatch):
    fig = Figure()
    fig.add_subplot().plot([0, 1])
    target = tmp_path / "fig.png"
    target.write_bytes(b"old")

    def broken(path, **kwargs):
        with open(path, "wb") as fh:
            fh.write(PNG[:4])  # half an image, then the crash
        raise KeyboardInterrupt

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(KeyboardInterrupt):
        save_figure(fig, target)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["fig.png"]


def test_save_figure_rejects_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="fig: expected a matplotlib Figure"):
        save_figure("figure", tmp_path / "a.png")
    with pytest.raises(ValueError, match="path: expected a file name ending in .png"):
        save_figure(Figure(), tmp_path / "a.jpg")
    assert not list(tmp_path.iterdir())
    assert isinstance(Figure().add_subplot(), Axes)
