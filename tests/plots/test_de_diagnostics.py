"""DESeq2's diagnostic figures (plotDispEsts, plotPCA, sample-distance heatmap) and MA plots of shrunken LFCs.

Each figure is built from small synthetic inputs, rendered with Agg, and read back: the drawn
coordinates and image arrays are compared with values computed independently (numpy SVD, covariance
eigenvalues, scipy's pdist/linkage) from the inputs. PCA checks are sign-invariant, since a principal
component's sign is arbitrary (R's prcomp takes it from LAPACK).
"""

from __future__ import annotations

import io

from matplotlib.colors import same_color
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.cluster.hierarchy import dendrogram, leaves_list, linkage
from scipy.spatial.distance import pdist, squareform

from diffbio_prob.plots import (
    dispersion_plot,
    ma_plot,
    pca_of_transformed,
    pca_plot,
    sample_distance_heatmap,
    sample_distances,
    volcano_plot,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _png(fig: Figure) -> bytes:
    """Render with the Agg backend (a non-blank canvas), then as PNG bytes."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    assert rgba.ndim == 3 and len(np.unique(rgba.reshape(-1, 4), axis=0)) > 10
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    data = buf.getvalue()
    assert data.startswith(PNG) and len(data) > 1000
    return data


def _by_gid(fig: Figure, gid: str):
    found = [a for ax in fig.axes for a in ax.get_children() if a.get_gid() == gid]
    assert len(found) <= 1, gid
    return found[0] if found else None


def _offsets(artist) -> np.ndarray:
    return np.asarray(artist.get_offsets(), dtype=float)


def _same_rows(a: np.ndarray, b: np.ndarray) -> None:
    """The same set of 2-D points, in any order."""
    assert a.shape == b.shape
    key = lambda m: m[np.lexsort(m.T[::-1])]  # noqa: E731
    np.testing.assert_allclose(key(a), key(b), rtol=1e-12)


# --- dispersion_plot (plotDispEsts) ---------------------------------------------------------------
@pytest.fixture
def disp_table() -> pd.DataFrame:
    """A fit's dispersions(): a decreasing trend, scatter around it, shrunken finals, some outliers."""
    rng = np.random.default_rng(7)
    n = 150
    base = np.exp(rng.uniform(0.0, 8.0, n))
    fit = 0.05 + 3.0 / base
    gene = fit * np.exp(rng.normal(0.0, 0.9, n))
    outlier = np.log(gene / fit) > 1.5
    final = np.where(outlier, gene, np.exp(0.4 * np.log(gene) + 0.6 * np.log(fit)))
    tab = pd.DataFrame(
        {"baseMean": base, "dispGeneEst": gene, "dispFit": fit, "dispMAP": final, "dispersion": final,
         "dispOutlier": outlier},
        index=[f"g{i}" for i in range(n)],
    )
    tab.iloc[:6, 1:5] = np.nan  # all-zero genes: baseMean 0, no dispersions
    tab.iloc[:6, 0] = 0.0
    tab.iloc[:6, 5] = False
    tab.iloc[6, 0] = np.nan  # a NaN row
    assert tab["dispOutlier"].iloc[7:].sum() >= 3
    return tab


def test_dispersion_plot_draws_each_series_where_deseq2_does(disp_table):
    tab = disp_table
    fig = dispersion_plot(tab)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    sel = tab["baseMean"].to_numpy() > 0  # NaN compares False: dropped too
    kept = tab[sel]
    assert len(kept) == len(tab) - 7

    # gene-wise estimates: every kept gene once, at (baseMean, dispGeneEst); none below the default ymin
    _same_rows(_offsets(_by_gid(fig, "gene-est")), kept[["baseMean", "dispGeneEst"]].to_numpy())
    assert _by_gid(fig, "gene-est-below") is None
    # fitted trend: a line through dispFit ordered by baseMean
    line = _by_gid(fig, "fitted")
    order = np.argsort(kept["baseMean"].to_numpy(), kind="stable")
    np.testing.assert_array_equal(line.get_xdata(), kept["baseMean"].to_numpy()[order])
    np.testing.assert_array_equal(line.get_ydata(), kept["dispFit"].to_numpy()[order])
    assert same_color(line.get_color(), "red")
    # final dispersions: blue dots, outliers circled (open markers), counts as in dispOutlier
    out = kept["dispOutlier"].to_numpy()
    plain, circled = _by_gid(fig, "final"), _by_gid(fig, "final-outlier")
    _same_rows(_offsets(plain), kept.loc[~out, ["baseMean", "dispersion"]].to_numpy())
    _same_rows(_offsets(circled), kept.loc[out, ["baseMean", "dispersion"]].to_numpy())
    assert len(_offsets(circled)) == int(out.sum())
    assert circled.get_facecolors().size == 0 or np.all(circled.get_facecolors()[:, 3] == 0)
    assert same_color(plain.get_facecolors()[0], "dodgerblue")
    assert same_color(_by_gid(fig, "gene-est").get_facecolors()[0], "black")
    # everything is on the one axes
    assert all(a in ax.get_children() for a in (line, plain, circled))
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"gene-est", "fitted", "final"} <= set(texts)
    assert f"dispersion outlier (n={int(out.sum())})" in texts
    assert "7 rows all-zero or NaN not drawn" in ax.get_legend().get_title().get_text()
    assert ax.get_xlabel() == "mean of normalized counts" and ax.get_ylabel() == "dispersion"
    _png(fig)


def test_dispersion_plot_ymin_as_in_r(disp_table):
    tab = disp_table.copy()
    tab.loc["g10", "dispGeneEst"] = 0.0  # below any ymin: a triangle at ymin
    positive = tab["dispGeneEst"][(tab["baseMean"] > 0) & (tab["dispGeneEst"] > 0)]
    r_ymin = 10 ** (np.floor(np.log10(positive.min())) - 0.1)  # R: 10^floor(log10(min(py[py>0])) - 0.1)
    below = _offsets(_by_gid(dispersion_plot(tab), "gene-est-below"))
    np.testing.assert_allclose(below, [[tab.loc["g10", "baseMean"], r_ymin]])

    fig = dispersion_plot(tab, ymin=0.05, legend=False, title=None)
    sel = tab[tab["baseMean"] > 0]
    low = sel["dispGeneEst"] < 0.05
    tri = _offsets(_by_gid(fig, "gene-est-below"))
    assert len(tri) == int(low.sum()) > 1
    np.testing.assert_array_equal(tri[:, 1], 0.05)
    assert len(_offsets(_by_gid(fig, "gene-est"))) == int((~low).sum())
    assert fig.axes[0].get_legend() is None and fig.axes[0].get_title() == ""


def test_dispersion_plot_outlier_flags_as_numbers_or_missing(disp_table):
    tab = disp_table.copy()
    n_out = int(tab["dispOutlier"].sum())
    as_float = tab.assign(dispOutlier=tab["dispOutlier"].astype(float))
    as_float.loc["g0", "dispOutlier"] = np.nan
    assert len(_offsets(_by_gid(dispersion_plot(as_float), "final-outlier"))) == n_out
    as_object = tab.assign(dispOutlier=tab["dispOutlier"].astype(object))
    as_object.loc["g1", "dispOutlier"] = None
    assert len(_offsets(_by_gid(dispersion_plot(as_object), "final-outlier"))) == n_out
    none_out = tab.assign(dispOutlier=False)
    assert _by_gid(dispersion_plot(none_out), "final-outlier") is None


def test_dispersion_plot_on_a_callers_axes(disp_table):
    host = Figure()
    ax = host.add_subplot(1, 2, 2)
    assert dispersion_plot(disp_table, ax=ax) is host
    assert _by_gid(host, "fitted") in ax.get_children()


@pytest.mark.parametrize(
    "mutate, exc, match",
    [
        (lambda t: t.drop(columns=["dispFit", "dispOutlier"]), ValueError, r"missing column\(s\) \['dispFit', 'dispOutlier'\]"),
        (lambda t: t.to_numpy(), TypeError, "pandas DataFrame"),
        (lambda t: t.iloc[:0], ValueError, "no rows"),
        (lambda t: t.assign(baseMean=0.0), ValueError, "no gene has baseMean > 0"),
        (lambda t: t.assign(baseMean=-t["baseMean"]), ValueError, "non-negative mean"),
        (lambda t: t.assign(dispersion=-t["dispersion"]), ValueError, r"table\['dispersion'\]"),
        (lambda t: t.assign(dispFit=np.inf), ValueError, r"table\['dispFit'\]"),
        (lambda t: t.assign(dispGeneEst="x"), TypeError, r"table\['dispGeneEst'\]: expected numbers"),
        (lambda t: t.assign(dispOutlier="yes"), TypeError, r"table\['dispOutlier'\]"),
        (lambda t: t.assign(dispOutlier=2.0), TypeError, r"table\['dispOutlier'\]"),
        (lambda t: t.assign(dispGeneEst=np.nan, dispFit=np.nan, dispersion=np.nan), ValueError, "positive dispersion"),
    ],
)
def test_dispersion_plot_rejects_bad_tables(disp_table, mutate, exc, match):
    with pytest.raises(exc, match=match):
        dispersion_plot(mutate(disp_table))


def test_dispersion_plot_rejects_bad_options(disp_table):
    for bad in (0.0, -1.0, np.inf, "1e-3", True):
        with pytest.raises(ValueError, match="ymin"):
            dispersion_plot(disp_table, ymin=bad)
    with pytest.raises(TypeError, match="legend"):
        dispersion_plot(disp_table, legend="yes")
    with pytest.raises(TypeError, match="ax"):
        dispersion_plot(disp_table, ax="axes")


# --- pca_of_transformed (plotPCA's numbers) -------------------------------------------------------
def _r_plotpca_reference(x: np.ndarray, ntop: int) -> tuple[np.ndarray, np.ndarray]:
    """Closed form of R's plotPCA: top-ntop rowVars (n-1), centre, SVD; sdev^2 from the covariance."""
    rv = x.var(axis=1, ddof=1)
    sel = x[np.argsort(-rv, kind="stable")[: min(ntop, x.shape[0])]]
    centred = (sel - sel.mean(axis=1, keepdims=True)).T
    u, d, _ = np.linalg.svd(centred, full_matrices=False)
    eig = np.sort(np.linalg.eigvalsh(np.atleast_2d(np.cov(sel))))[::-1][: len(d)]  # prcomp's sdev^2
    return u * d, np.clip(eig, 0, None) / np.clip(eig, 0, None).sum()


def _assert_same_up_to_sign(a: np.ndarray, b: np.ndarray, cols: int) -> None:
    for j in range(cols):
        s = np.sign(a[:, j] @ b[:, j]) or 1.0
        np.testing.assert_allclose(a[:, j], s * b[:, j], atol=1e-9)


@pytest.fixture
def two_groups():
    """40 genes × 8 samples; the first 8 genes differ by 4 between the groups (samples 0-3 vs 4-7)."""
    rng = np.random.default_rng(3)
    group = np.repeat([0, 1], 4)
    x = rng.normal(6.0, 0.5, (40, 8))
    x[:8] += 4.0 * group
    return x, group


def test_pca_matches_the_closed_form(two_groups):
    x, _ = two_groups
    for ntop in (500, 12, 3):
        pcs, pv = pca_of_transformed(x, ntop=ntop)
        ref_pcs, ref_pv = _r_plotpca_reference(x, ntop)
        k = min(8, ntop)
        assert pcs.shape == (8, k) and pv.shape == (k,)
        np.testing.assert_allclose(pv, ref_pv, atol=1e-12)
        assert pv.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all(np.diff(pv) <= 1e-15)
        _assert_same_up_to_sign(pcs, ref_pcs, cols=min(k, 7))  # the 8th component is ~0 (centred data)
        # sign-free: the scores' Gram matrix is the centred top-ntop data's
        rv = x.var(axis=1, ddof=1)
        sel = x[np.argsort(-rv, kind="stable")[:ntop]]
        c = (sel - sel.mean(axis=1, keepdims=True)).T
        np.testing.assert_allclose(pcs @ pcs.T, c @ c.T, atol=1e-9)
        np.testing.assert_allclose(pcs.mean(axis=0), 0.0, atol=1e-9)


def test_pca_uses_only_the_top_ntop_genes(two_groups):
    x, _ = two_groups
    rng = np.random.default_rng(0)
    quiet = 6.0 + rng.normal(0.0, 1e-3, (30, 8))  # far less variable than any of the 40
    pcs, pv = pca_of_transformed(x, ntop=40)
    pcs2, pv2 = pca_of_transformed(np.vstack([quiet[:15], x, quiet[15:]]), ntop=40)
    np.testing.assert_allclose(pv2, pv, atol=1e-12)
    np.testing.assert_allclose(pcs2, pcs, atol=1e-9)  # same genes -> same signs too (deterministic rule)


def test_pca_first_component_separates_two_groups(two_groups):
    x, group = two_groups
    pcs, pv = pca_of_transformed(pd.DataFrame(x, columns=[f"s{i}" for i in range(8)]), ntop=500)
    pc1 = pcs[:, 0]
    assert len(set(np.sign(pc1[group == 0]))) == 1 and len(set(np.sign(pc1[group == 1]))) == 1
    assert np.sign(pc1[group == 0][0]) != np.sign(pc1[group == 1][0])
    assert pv[0] > 0.5 and pv[0] > 3 * pv[1]
    # the group difference is 4 on 8 genes: PC1 scores are about ±sqrt(8 * 2^2) = ±5.7
    assert np.abs(pc1).mean() == pytest.approx(np.sqrt(8 * 4.0), rel=0.15)


def test_pca_tiny_cases_by_hand():
    pcs, pv = pca_of_transformed(np.array([[1.0, 2.0, 3.0, 4.0]]))  # one gene: PC1 = centred values
    assert pv.tolist() == [1.0]
    np.testing.assert_allclose(np.abs(pcs[:, 0]), [1.5, 0.5, 0.5, 1.5])
    pcs, pv = pca_of_transformed(np.array([[0.0, 2.0], [0.0, 0.0], [1.0, 1.0]]))  # two samples
    assert pcs.shape == (2, 2)
    np.testing.assert_allclose(np.abs(pcs[:, 0]), [1.0, 1.0])
    np.testing.assert_allclose(pv, [1.0, 0.0], atol=1e-12)


@pytest.mark.parametrize(
    "matrix, ntop, exc, match",
    [
        (np.arange(5.0), 500, ValueError, "2-D"),
        (np.ones((4, 1)), 500, ValueError, "at least 1 gene .* 2 samples"),
        (np.array([[1.0, np.nan], [2.0, 3.0]]), 500, ValueError, "NaN or infinite"),
        (np.array([["a", "b"]]), 500, TypeError, "numbers"),
        ("counts.tsv", 500, TypeError, "str"),
        (pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}), 500, TypeError, r"non-numeric column\(s\) \['b'\]"),
        (np.ones((3, 4)), 500, ValueError, "zero variance"),
        (np.eye(3), 0, ValueError, "ntop"),
        (np.eye(3), 2.5, ValueError, "ntop"),
        (np.eye(3), True, ValueError, "ntop"),
    ],
)
def test_pca_rejects_bad_input(matrix, ntop, exc, match):
    with pytest.raises(exc, match=match):
        pca_of_transformed(matrix, ntop=ntop)


# --- pca_plot (plotPCA's figure) ------------------------------------------------------------------
def test_pca_plot_draws_pc1_against_pc2_by_group(two_groups):
    x, group = two_groups
    pcs, pv = pca_of_transformed(x)
    cond = np.where(group == 1, "treated", "control")
    fig = pca_plot(pcs, pv, cond, labels=[f"s{i}" for i in range(8)], title="PCA")
    ax = fig.axes[0]
    for level in ("control", "treated"):
        np.testing.assert_allclose(_offsets(_by_gid(fig, f"group={level}")), pcs[cond == level, :2])
    assert ax.get_xlabel() == f"PC1: {round(pv[0] * 100)}% variance"
    assert ax.get_ylabel() == f"PC2: {round(pv[1] * 100)}% variance"
    assert ax.get_aspect() == 1.0  # coord_fixed()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["control", "treated"]
    assert ax.get_legend().get_title().get_text() == "group"
    assert sorted(t.get_text() for t in ax.texts) == sorted(f"s{i}" for i in range(8))
    assert ax.get_title() == "PCA"
    _png(fig)


def test_pca_plot_axis_labels_round_as_r():
    pcs = np.array([[1.0, 0.0], [-1.0, 0.5], [0.0, -0.5]])
    ax = pca_plot(pcs, [0.574, 0.125, 0.301], ["a", "b", "a"]).axes[0]
    assert ax.get_xlabel() == "PC1: 57% variance"
    assert ax.get_ylabel() == "PC2: 12% variance"  # R's round(12.5) is 12 (half to even), as Python's


def test_pca_plot_groups_from_categorical_series_dataframe(two_groups):
    x, group = two_groups
    pcs, pv = pca_of_transformed(x)
    df = pd.DataFrame(pcs[:, :2], index=[f"s{i}" for i in range(8)], columns=["PC1", "PC2"])
    cat = pd.Series(pd.Categorical(np.where(group == 1, "trt", "ctl"), categories=["trt", "ctl"]), name="condition")
    fig = pca_plot(df, pv, cat, labels=True)
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["trt", "ctl"]  # the categories' order
    assert legend.get_title().get_text() == "condition"
    assert sorted(t.get_text() for t in fig.axes[0].texts) == sorted(df.index)

    cols = pd.DataFrame({"condition": np.where(group == 1, "trt", "ctl"), "batch": list("ABABABAB")})
    fig = pca_plot(df, pv, cols)
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["ctl : A", "ctl : B", "trt : A", "trt : B"]
    assert legend.get_title().get_text() == "condition : batch"
    np.testing.assert_allclose(_offsets(_by_gid(fig, "group=trt : B")), pcs[[5, 7], :2])

    numeric = pca_plot(pcs, pv, [10, 2, 2, 10, 2, 10, 2, 10])  # numbers sort as numbers
    assert [t.get_text() for t in numeric.axes[0].get_legend().get_texts()] == ["2", "10"]


@pytest.mark.parametrize(
    "args, exc, match",
    [
        ((np.ones((3, 1)), [0.6, 0.4], ["a"] * 3), ValueError, "≥ 2 columns"),
        ((np.ones(3), [0.6, 0.4], ["a"] * 3), ValueError, "2-D"),
        ((np.array([[1.0, np.nan], [0.0, 1.0]]), [0.6, 0.4], ["a", "b"]), ValueError, "finite"),
        ((np.eye(2), [57.0, 43.0], ["a", "b"]), ValueError, "not percentages"),
        ((np.eye(2), [0.6], ["a", "b"]), ValueError, "at least 2 components"),
        ((np.eye(2), [0.6, 0.4], ["a", "b", "c"]), ValueError, "expected 2 labels"),
        ((np.eye(2), [0.6, 0.4], "ab"), TypeError, "color_by"),
        ((np.array([["a", "b"]]), [0.6, 0.4], ["a"]), TypeError, "pcs"),
        ((pd.DataFrame({"PC1": [1.0, 2.0]}), [0.6, 0.4], ["a", "b"]), ValueError, "at least 2 columns"),
    ],
)
def test_pca_plot_rejects_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        pca_plot(*args)


def test_pca_plot_labels_true_needs_a_dataframe():
    with pytest.raises(ValueError, match="labels=True"):
        pca_plot(np.eye(2), [0.6, 0.4], ["a", "b"], labels=True)


# --- sample_distance_heatmap ----------------------------------------------------------------------
def test_sample_distances_match_scipy(two_groups):
    x, group = two_groups
    dist, order = sample_distances(x)
    np.testing.assert_allclose(dist, squareform(pdist(x.T)), atol=1e-12)  # R's dist(t(x))
    np.testing.assert_allclose(dist, np.sqrt(((x[:, :, None] - x[:, None, :]) ** 2).sum(axis=0)), atol=1e-9)
    np.testing.assert_array_equal(order, leaves_list(linkage(pdist(x.T), method="complete")))
    assert sorted(order.tolist()) == list(range(8))
    # the two groups are contiguous in the clustering order
    assert set(group[order[:4]].tolist()) in ({0}, {1})


def test_sample_distance_heatmap_shows_the_ordered_matrix(two_groups):
    x, _ = two_groups
    names = [f"s{i}" for i in range(8)]
    fig = sample_distance_heatmap(pd.DataFrame(x, columns=names))
    order = leaves_list(linkage(pdist(x.T), method="complete"))
    img = _by_gid(fig, "distances")
    np.testing.assert_allclose(np.asarray(img.get_array()), squareform(pdist(x.T))[np.ix_(order, order)], atol=1e-12)
    ax = img.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == [names[i] for i in order]
    assert [t.get_text() for t in ax.get_yticklabels()] == [names[i] for i in order]
    assert any(a.get_ylabel() == "Euclidean distance" for a in fig.axes)  # the colour bar
    assert img.get_clim()[0] == 0.0
    # the dendrogram's leaves sit over the heatmap's columns, in the same order
    tree = dendrogram(linkage(pdist(x.T), method="complete"), no_plot=True)
    assert tree["leaves"] == order.tolist()
    top = next(a for a in ax.child_axes if a.get_gid() == "dendrogram")
    xs = np.concatenate([line.get_xdata() for line in top.get_lines()])
    assert xs.min() == pytest.approx(0.0) and xs.max() == pytest.approx(7.0)
    assert top.get_title() == "Sample-to-sample distances"
    _png(fig)


def test_sample_distance_heatmap_options(two_groups):
    x, _ = two_groups
    fig = sample_distance_heatmap(x, dendrogram=False, title="d", cmap="viridis")
    ax = fig.axes[0]
    assert not ax.child_axes and ax.get_title() == "d"
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        str(i + 1) for i in leaves_list(linkage(pdist(x.T), method="complete"))
    ]
    host = Figure()
    assert sample_distance_heatmap(x[:, :3], ["a", "b", "c"], ax=host.add_subplot()) is host
    _png(host)


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((np.ones((3, 4)), ["a", "b"]), {}, ValueError, "expected 4 labels"),
        ((np.ones((3, 4)), "abcd"), {}, TypeError, "labels"),
        ((np.ones((3, 1)),), {}, ValueError, "2 samples"),
        ((np.array([[1.0, np.inf], [0.0, 1.0]]),), {}, ValueError, "NaN or infinite"),
        ((np.ones((3, 4)),), {"cmap": "no-such-map"}, ValueError, "cmap"),
        ((np.ones((3, 4)),), {"dendrogram": "yes"}, TypeError, "dendrogram"),
    ],
)
def test_sample_distance_heatmap_rejects_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        sample_distance_heatmap(*args, **kwargs)


# --- MA plot of shrunken fold changes ---------------------------------------------------------------
@pytest.fixture
def shrunk() -> pd.DataFrame:
    """An lfcShrink(type="apeglm") table: no stat column; NA rows for all-zero genes."""
    rng = np.random.default_rng(11)
    n = 40
    base = np.exp(rng.normal(4.0, 1.5, n))
    lfc = rng.normal(0.0, 0.4, n)
    lfc[:5] += 3.0
    se = 0.1 + 0.5 / np.sqrt(base)
    from scipy.stats import false_discovery_control, norm

    pvalue = 2 * norm.sf(np.abs(lfc / se))
    res = pd.DataFrame({"baseMean": base, "log2FoldChange": lfc, "lfcSE": se, "pvalue": pvalue,
                        "padj": false_discovery_control(pvalue)}, index=[f"g{i}" for i in range(n)])
    res.loc["g39"] = [0.0, np.nan, np.nan, np.nan, np.nan]
    return res


def test_ma_plot_of_a_shrinkage_table(shrunk):
    res = shrunk
    assert "stat" not in res.columns
    fig = ma_plot(res, alpha=0.05, lfc_sd="lfcSE", title="MA plot: apeglm", ylim=(-2.0, 2.0))
    ax = fig.axes[0]
    assert ax.get_title() == "MA plot: apeglm"
    lo, hi = ax.get_ylim()
    assert lo < -2.0 < 2.0 < hi and hi - lo == pytest.approx(4.0 * 1.06)
    keep = res["baseMean"] > 0
    sig = keep & (res["padj"] < 0.05)
    edge = keep & (res["log2FoldChange"].abs() > 2.0)
    drawn = {gid: _offsets(a) for gid in ("significant", "other", "significant-edge", "other-edge")
             if (a := _by_gid(fig, gid)) is not None}
    assert sum(len(v) for v in drawn.values()) == int(keep.sum())
    _same_rows(drawn["significant"], res.loc[sig & ~edge, ["baseMean", "log2FoldChange"]].to_numpy())
    assert np.all(np.abs(drawn["significant-edge"][:, 1]) == 2.0)
    assert len(drawn["significant-edge"]) == int((sig & edge).sum()) > 0
    assert "1 row with baseMean 0" in ax.get_legend().get_title().get_text()
    _png(fig)

    # the defaults callers rely on are unchanged; title=None (plotMA's main="") leaves it off
    assert ma_plot(res).axes[0].get_title() == "MA plot"
    assert ma_plot(res, title=None).axes[0].get_title() == ""
    assert volcano_plot(res).axes[0].get_title() == "Volcano plot"


def test_ma_plot_rejects_a_bad_ylim(shrunk):
    for bad in ((2.0, -2.0), (0.0, np.inf), (1.0,)):
        with pytest.raises(ValueError, match="ylim"):
            ma_plot(shrunk, ylim=bad)
