"""Differential-expression figures: MA and volcano plots of result tables, and DESeq2's diagnostics.

- :func:`ma_plot`, :func:`volcano_plot`: DESeq2-shaped ``results()`` / ``lfcShrink()`` tables.
- :func:`dispersion_plot`: ``plotDispEsts`` on the table of a fit's ``dispersions()``.
- :func:`pca_plot`: ``plotPCA`` on principal components (from :func:`~diffbio_prob.plots.pca.pca_of_transformed`).
- :func:`sample_distance_heatmap`: the vignette's heatmap of ``dist(t(assay(vsd)))``.

MA and volcano plots:

Both take a ``pandas.DataFrame`` with DESeq2's ``results()`` columns (``baseMean``, ``log2FoldChange``,
``lfcSE``, ``stat``, ``pvalue``, ``padj``; only the ones a plot needs are required, so ``lfcShrink``
tables, which have no ``stat`` with apeglm or ashr, work as they are), one row per gene.
Rows DESeq2 leaves as NA are handled as DESeq2's ``plotMA`` does: genes with ``baseMean == 0`` or a
missing fold change are not drawn, and a missing ``padj`` (independent filtering, outliers) counts as
not significant. How many rows were left out is written on the figure.

The optional ``lfc_sd`` is the posterior standard deviation of each log2 fold change (e.g. from a NUTS
or SVI fit); it is drawn as a ±1 sd bar per gene.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from diffbio_prob.plots._common import BACKGROUND, OKABE_ITO, SIGNIFICANT, as_float_vector, check_alpha, new_axes
from diffbio_prob.plots.pca import sample_distances

__all__ = ["ma_plot", "volcano_plot", "dispersion_plot", "pca_plot", "sample_distance_heatmap"]

# -log10 of the smallest positive double: where p-values of exactly 0 are drawn when nothing else is finite.
_NEG_LOG10_TINY = -np.log10(np.finfo(np.float64).tiny)


def _check_results(results, required: tuple[str, ...]) -> pd.DataFrame:
    if not isinstance(results, pd.DataFrame):
        raise TypeError(f"results: expected a pandas DataFrame (DESeq2-shaped), got {type(results).__name__}")
    missing = [c for c in required if c not in results.columns]
    if missing:
        raise ValueError(
            f"results: missing column(s) {missing}; expected DESeq2-shaped columns "
            f"(baseMean, log2FoldChange, lfcSE, stat, pvalue, padj), got {list(results.columns)}"
        )
    for col in required:
        if not pd.api.types.is_numeric_dtype(results[col]) or pd.api.types.is_bool_dtype(results[col]):
            raise TypeError(f"results[{col!r}]: expected numbers, got dtype {results[col].dtype}")
    if len(results) == 0:
        raise ValueError("results: the table has no rows")
    return results


def _column(results: pd.DataFrame, col: str) -> np.ndarray:
    values = results[col].to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(values).any():
        raise ValueError(f"results[{col!r}]: contains infinite values (use NaN for missing)")
    return values


def _lfc_sd(results: pd.DataFrame, lfc_sd) -> np.ndarray | None:
    """Posterior sd of each LFC as a float array aligned with ``results`` rows (NaN: no bar)."""
    if lfc_sd is None:
        return None
    if isinstance(lfc_sd, str):
        if lfc_sd not in results.columns:
            raise ValueError(f"lfc_sd: column {lfc_sd!r} not in results (columns: {list(results.columns)})")
        sd = as_float_vector(results[lfc_sd].to_numpy(dtype=np.float64, na_value=np.nan), "lfc_sd")
    elif isinstance(lfc_sd, pd.Series):
        if not results.index.isin(lfc_sd.index).all():
            raise ValueError("lfc_sd: a Series must be indexed by the genes of results (some are missing)")
        sd = as_float_vector(
            lfc_sd.reindex(results.index).to_numpy(dtype=np.float64, na_value=np.nan), "lfc_sd"
        )
    else:
        sd = as_float_vector(lfc_sd, "lfc_sd", length=len(results))
    if np.isinf(sd).any() or (sd < 0).any():
        raise ValueError("lfc_sd: expected non-negative finite standard deviations (NaN for none)")
    return sd


def _significant(padj: np.ndarray, alpha: float) -> np.ndarray:
    # NaN padj (filtered or outlier genes) is not significant, as in DESeq2's summary().
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(padj, nan=np.inf) < alpha


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _gene_groups(keep: np.ndarray, sig: np.ndarray, alpha: float) -> tuple:
    """``(gid, mask, colour, legend label, opacity)`` of the non-significant and significant genes."""
    other = keep & ~sig
    return (
        ("other", other, BACKGROUND, f"padj ≥ {alpha:g} or NA (n={int(other.sum())})", 0.5),
        ("significant", sig, SIGNIFICANT, f"padj < {alpha:g} (n={int(sig.sum())})", 0.85),
    )


def _draw_genes(ax, x, y, points, bars, sd, *, gid: str, color, label: str, opacity: float, sd_axis: str) -> None:
    """One group of genes: ±1 sd bars along ``sd_axis`` ("x" or "y") under the points.

    The artists carry ``gid`` (and ``gid-sd`` for the bars) so tests and callers can find each group.
    """
    if sd is not None:
        bars = bars & np.isfinite(sd)
        err = {"xerr" if sd_axis == "x" else "yerr": sd[bars]}
        ax.errorbar(
            x[bars], y[bars], fmt="none", ecolor=color, elinewidth=0.6, alpha=0.35, zorder=1,
            label="_nolegend_", **err,
        )[2][0].set_gid(f"{gid}-sd")
    ax.scatter(x[points], y[points], s=7, color=color, alpha=opacity, linewidths=0, label=label, zorder=2, gid=gid)


def ma_plot(
    results: pd.DataFrame,
    alpha: float = 0.1,
    ax=None,
    lfc_sd=None,
    *,
    ylim: tuple[float, float] | None = None,
    title: str | None = "MA plot",
) -> Figure:
    """MA plot: log2 fold change against mean normalised count, significant genes coloured.

    As DESeq2's ``plotMA``: genes with ``padj < alpha`` in colour, the rest grey, x on a log axis.
    With ``ylim``, genes beyond it are drawn as triangles on the edge.

    Args:
        results: DESeq2-shaped table; needs ``baseMean``, ``log2FoldChange`` and ``padj``.
        alpha: significance level for ``padj``.
        ax: matplotlib Axes to draw on (default: a new figure).
        lfc_sd: posterior sd of each log2 fold change: a column name of ``results``, a Series indexed by
            gene, or an array aligned with the rows; drawn as ±1 sd bars.
        ylim: optional ``(low, high)`` limits of the fold-change axis.
        title: axes title.

    Returns:
        The matplotlib Figure.

    Example:
        >>> import pandas as pd
        >>> res = pd.DataFrame({"baseMean": [10.0, 200.0], "log2FoldChange": [0.1, -2.0],
        ...                     "padj": [0.8, 0.001]})
        >>> fig = ma_plot(res)
    """
    alpha = check_alpha(alpha)
    _check_results(results, ("baseMean", "log2FoldChange", "padj"))
    base, lfc, padj = (_column(results, c) for c in ("baseMean", "log2FoldChange", "padj"))
    if (base < 0).any():
        raise ValueError("results['baseMean']: expected non-negative mean counts")
    if ylim is not None:
        if len(ylim) != 2 or not all(np.isfinite(ylim)) or not ylim[0] < ylim[1]:
            raise ValueError(f"ylim: expected (low, high) with low < high, got {ylim!r}")
    sd = _lfc_sd(results, lfc_sd)
    keep = np.isfinite(base) & (base > 0) & np.isfinite(lfc)
    if not keep.any():
        raise ValueError("results: no row has baseMean > 0 and a finite log2FoldChange")
    sig = keep & _significant(padj, alpha)
    fig, ax = new_axes(ax, (7.0, 4.8))

    y = lfc.copy()
    clipped = np.zeros_like(keep)
    if ylim is not None:
        clipped = keep & ((lfc < ylim[0]) | (lfc > ylim[1]))
        y = np.clip(lfc, *ylim)
    for gid, mask, color, label, opacity in _gene_groups(keep, sig, alpha):
        inner = mask & ~clipped
        _draw_genes(ax, base, y, inner, inner, sd, gid=gid, color=color, label=label, opacity=opacity, sd_axis="y")
        for side, marker in ((lfc > ylim[1], "^"), (lfc < ylim[0], "v")) if ylim is not None else ():
            edge = mask & clipped & side
            if edge.any():
                ax.scatter(
                    base[edge],
                    y[edge],
                    s=18,
                    marker=marker,
                    color=color,
                    linewidths=0,
                    label="_nolegend_",
                    zorder=3,
                    gid=f"{gid}-edge",
                )
    ax.set_xscale("log")
    ax.axhline(0.0, color="#333333", lw=0.8, zorder=0)
    if ylim is not None:
        pad = 0.03 * (ylim[1] - ylim[0])
        ax.set_ylim(ylim[0] - pad, ylim[1] + pad)
    ax.set_xlabel("mean of normalised counts (baseMean)")
    ax.set_ylabel("log2 fold change")
    if title:
        ax.set_title(title)
    if sd is not None:
        ax.errorbar([], [], yerr=[], fmt="none", ecolor="#555555", elinewidth=0.6, label="±1 posterior sd")
    dropped = int((~keep).sum())
    note = f"{int(sig.sum())} of {int(keep.sum())} genes with padj < {alpha:g}"
    if dropped:
        note += f"\n{_rows(dropped)} with baseMean 0 or no fold change not drawn"
    ax.legend(loc="lower right", fontsize=8, frameon=False, title=note, title_fontsize=8, alignment="left")
    return fig


def volcano_plot(
    results: pd.DataFrame,
    alpha: float = 0.1,
    ax=None,
    lfc_sd=None,
    *,
    label_top: int = 0,
    title: str | None = "Volcano plot",
) -> Figure:
    """Volcano plot: -log10 p-value against log2 fold change, genes with ``padj < alpha`` coloured.

    The dashed line marks the largest p-value among significant genes (where the Benjamini-Hochberg
    cut falls). P-values of exactly 0 are drawn as triangles at the top, above every finite value.

    Args:
        results: DESeq2-shaped table; needs ``log2FoldChange``, ``pvalue`` and ``padj``.
        alpha: significance level for ``padj``.
        ax: matplotlib Axes to draw on (default: a new figure).
        lfc_sd: posterior sd of each log2 fold change (column name, Series or array), drawn as ±1 sd
            horizontal bars.
        label_top: write the row labels (gene names) of this many genes with the smallest p-values.
        title: axes title.

    Returns:
        The matplotlib Figure.

    Example:
        >>> import pandas as pd
        >>> res = pd.DataFrame({"log2FoldChange": [0.1, -2.0], "pvalue": [0.5, 1e-6],
        ...                     "padj": [0.5, 2e-6]})
        >>> fig = volcano_plot(res, label_top=1)
    """
    alpha = check_alpha(alpha)
    if isinstance(label_top, bool) or not isinstance(label_top, (int, np.integer)) or label_top < 0:
        raise ValueError(f"label_top: expected a non-negative integer, got {label_top!r}")
    _check_results(results, ("log2FoldChange", "pvalue", "padj"))
    lfc, pvalue, padj = (_column(results, c) for c in ("log2FoldChange", "pvalue", "padj"))
    with np.errstate(invalid="ignore"):
        if ((pvalue < 0) | (pvalue > 1)).any():
            raise ValueError("results['pvalue']: expected p-values in [0, 1]")
        if ((padj < 0) | (padj > 1)).any():
            raise ValueError("results['padj']: expected adjusted p-values in [0, 1]")
    sd = _lfc_sd(results, lfc_sd)
    keep = np.isfinite(lfc) & np.isfinite(pvalue)
    if not keep.any():
        raise ValueError("results: no row has both a finite log2FoldChange and a p-value")
    sig = keep & _significant(padj, alpha)
    with np.errstate(divide="ignore"):
        y = -np.log10(pvalue)
    zero = keep & (pvalue == 0)
    finite_y = y[keep & ~zero]
    top = finite_y.max() * 1.08 if finite_y.size and finite_y.max() > 0 else _NEG_LOG10_TINY
    y = np.where(zero, top, y)

    fig, ax = new_axes(ax, (7.0, 4.8))
    for gid, mask, color, label, opacity in _gene_groups(keep, sig, alpha):
        _draw_genes(ax, lfc, y, mask & ~zero, mask, sd, gid=gid, color=color, label=label, opacity=opacity,
                    sd_axis="x")
        edge = mask & zero
        if edge.any():
            ax.scatter(
                lfc[edge],
                y[edge],
                s=20,
                marker="^",
                color=color,
                linewidths=0,
                zorder=3,
                label=f"p = 0, drawn at the top (n={int(edge.sum())})",
                gid=f"{gid}-zero",
            )
    if sig.any():
        cut = -np.log10(np.nanmax(np.where(sig, pvalue, np.nan))) if (sig & ~zero).any() else top
        ax.axhline(
            cut, color="#333333", lw=0.8, ls="--", zorder=0, label=f"BH cut at padj < {alpha:g}", gid="bh-cut"
        )
    ax.axvline(0.0, color="#333333", lw=0.6, zorder=0)
    if label_top:
        order = np.argsort(np.where(keep, pvalue, np.inf), kind="stable")[: min(label_top, int(keep.sum()))]
        for i in order:
            ax.annotate(
                str(results.index[i]),
                (lfc[i], y[i]),
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=7,
                color="#222222",
            )
    ax.set_xlabel("log2 fold change")
    ax.set_ylabel("-log10 p-value")
    if title:
        ax.set_title(title)
    if sd is not None:
        ax.errorbar([], [], xerr=[], fmt="none", ecolor="#555555", elinewidth=0.6, label="±1 posterior sd")
    dropped = int((~keep).sum())
    note = f"{int(sig.sum())} of {int(keep.sum())} genes with padj < {alpha:g}"
    if dropped:
        note += f"\n{_rows(dropped)} without a p-value or fold change not drawn"
    ax.legend(loc="upper left", fontsize=8, frameon=False, title=note, title_fontsize=8, alignment="left")
    return fig


# --- DESeq2's diagnostics: plotDispEsts, plotPCA, sample-distance heatmap -----------------------------
_DISPERSION_COLUMNS = ("baseMean", "dispGeneEst", "dispFit", "dispersion", "dispOutlier")
# plotDispEsts' defaults: genecol = "black", fitcol = "red", finalcol = "dodgerblue".
_GENE_COLOUR, _FIT_COLOUR, _FINAL_COLOUR = "black", "red", "dodgerblue"


def _outlier_flags(table: pd.DataFrame) -> np.ndarray:
    """``dispOutlier`` as bools: True/False, 1/0, or missing (NaN, None, pd.NA: not an outlier)."""
    col = table["dispOutlier"]
    if pd.api.types.is_bool_dtype(col):
        return col.fillna(False).to_numpy(dtype=bool)
    values = col.to_numpy(dtype=object)
    missing = pd.isna(values)
    ok = np.array([m or (isinstance(v, (bool, np.bool_, int, np.integer, float, np.floating)) and v in (0, 1))
                   for v, m in zip(values, missing)], dtype=bool)
    if not ok.all():
        bad = values[~ok][:3].tolist()
        raise TypeError(f"table['dispOutlier']: expected True/False (or 1/0, NaN for none), got e.g. {bad!r}")
    return np.array([not m and bool(v) for v, m in zip(values, missing)], dtype=bool)


def dispersion_plot(
    table: pd.DataFrame,
    ax=None,
    *,
    ymin: float | None = None,
    legend: bool = True,
    title: str | None = "Dispersion estimates",
) -> Figure:
    """DESeq2's ``plotDispEsts``: gene-wise, fitted and final dispersions against the mean count.

    As in R (``R/plots.R``): only genes with ``baseMean > 0`` are drawn (all-zero genes, and rows
    whose values are NaN, are left out and counted on the figure); both axes are logarithmic;
    gene-wise estimates are black dots, with those below ``ymin`` drawn as down-pointing triangles at
    ``ymin``; final dispersions are blue, circled (open, larger) for the genes flagged
    ``dispOutlier`` (gene-wise estimate kept because it lies far above the trend); the fitted trend
    is red. R draws the trend as red points, here it is a red line through the same values
    (``dispFit`` ordered by ``baseMean``).

    Args:
        table: one row per gene with columns ``baseMean``, ``dispGeneEst``, ``dispFit``,
            ``dispersion`` and ``dispOutlier`` (what the DESeq2 fit's ``dispersions()`` returns).
        ax: matplotlib Axes to draw on (default: a new figure).
        ymin: lower bound for gene-wise estimates; default R's
            ``10^(floor(log10(min positive dispGeneEst)) - 0.1)``.
        legend: draw the legend (gene-est, fitted, final, outliers).
        title: axes title (``None`` or ``""``: none).

    Returns:
        The matplotlib Figure. Artists carry gids: ``gene-est``, ``gene-est-below`` (triangles),
        ``fitted`` (the line), ``final``, ``final-outlier``.

    Example:
        >>> import pandas as pd
        >>> tab = pd.DataFrame({"baseMean": [0.0, 5.0, 50.0, 500.0], "dispGeneEst": [float("nan"), 0.4, 0.1, 0.02],
        ...                     "dispFit": [float("nan"), 0.3, 0.08, 0.03], "dispersion": [float("nan"), 0.35, 0.09, 0.03],
        ...                     "dispOutlier": [False, False, False, False]})
        >>> fig = dispersion_plot(tab)
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table: expected a pandas DataFrame (a fit's dispersions()), got {type(table).__name__}")
    missing = [c for c in _DISPERSION_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"table: missing column(s) {missing}; expected {list(_DISPERSION_COLUMNS)} "
            f"(a DESeq2 fit's dispersions()), got {list(table.columns)}"
        )
    for col in _DISPERSION_COLUMNS[:-1]:
        if not pd.api.types.is_numeric_dtype(table[col]) or pd.api.types.is_bool_dtype(table[col]):
            raise TypeError(f"table[{col!r}]: expected numbers, got dtype {table[col].dtype}")
    if len(table) == 0:
        raise ValueError("table: the table has no rows")
    if ymin is not None and (isinstance(ymin, bool) or not isinstance(ymin, (int, float, np.integer, np.floating))
                             or not np.isfinite(ymin) or ymin <= 0):
        raise ValueError(f"ymin: expected a positive finite number, got {ymin!r}")
    if not isinstance(legend, (bool, np.bool_)):
        raise TypeError(f"legend: expected True or False, got {type(legend).__name__}")
    base, gene, fit, final = (
        table[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in _DISPERSION_COLUMNS[:-1]
    )
    outlier = _outlier_flags(table)
    with np.errstate(invalid="ignore"):
        if (base < 0).any():
            raise ValueError("table['baseMean']: expected non-negative mean counts")
        for name, v in (("dispGeneEst", gene), ("dispFit", fit), ("dispersion", final)):
            if (v < 0).any() or np.isinf(v).any():
                raise ValueError(f"table[{name!r}]: expected non-negative finite dispersions (NaN for none)")
    sel = np.isfinite(base) & (base > 0)  # R: sel = (baseMean > 0)
    if not sel.any():
        raise ValueError("table: no gene has baseMean > 0 (all genes are all-zero or NaN); nothing to draw")
    gene_ok = sel & np.isfinite(gene)
    if ymin is None:
        positive = gene[gene_ok & (gene > 0)]
        if positive.size == 0:
            others = np.concatenate([fit[sel], final[sel]])
            positive = others[np.isfinite(others) & (others > 0)]
        if positive.size == 0:
            raise ValueError("table: no gene with baseMean > 0 has a positive dispersion; nothing to draw")
        ymin = 10.0 ** (np.floor(np.log10(positive.min())) - 0.1)
    ymin = float(ymin)
    below = gene_ok & (gene < ymin)
    above = gene_ok & ~below
    fit_ok = sel & np.isfinite(fit) & (fit > 0)
    final_ok = sel & np.isfinite(final) & (final > 0)

    fig, ax = new_axes(ax, (6.4, 4.8))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.scatter(base[above], gene[above], s=4, color=_GENE_COLOUR, linewidths=0, zorder=2, label="gene-est",
               gid="gene-est")
    if below.any():
        ax.scatter(base[below], np.full(int(below.sum()), ymin), s=14, marker="v", facecolors="none",
                   edgecolors=_GENE_COLOUR, linewidths=0.8, zorder=2,
                   label=f"gene-est < {ymin:.2g}, drawn at it (n={int(below.sum())})", gid="gene-est-below")
    plain, circled = final_ok & ~outlier, final_ok & outlier
    ax.scatter(base[plain], final[plain], s=5, color=_FINAL_COLOUR, linewidths=0, zorder=3, label="final",
               gid="final")
    if circled.any():
        ax.scatter(base[circled], final[circled], s=36, facecolors="none", edgecolors=_FINAL_COLOUR,
                   linewidths=1.4, zorder=3, label=f"dispersion outlier (n={int(circled.sum())})",
                   gid="final-outlier")
    order = np.flatnonzero(fit_ok)[np.argsort(base[fit_ok], kind="stable")]
    ax.plot(base[order], fit[order], color=_FIT_COLOUR, lw=1.6, zorder=4, label="fitted", gid="fitted")
    ax.set_xlabel("mean of normalized counts")
    ax.set_ylabel("dispersion")
    if title:
        ax.set_title(title)
    if legend:
        dropped = int((~sel).sum())
        note = f"{int(sel.sum())} genes with baseMean > 0"
        if dropped:
            note += f"\n{_rows(dropped)} all-zero or NaN not drawn"
        ax.legend(loc="lower right", fontsize=8, frameon=True, facecolor="white", title=note, title_fontsize=8,
                  alignment="left")
    return fig


def _sample_labels(value, n: int, name: str) -> list[str]:
    if isinstance(value, (str, bytes)) or value is None or np.ndim(value) != 1:
        raise TypeError(f"{name}: expected a 1-D sequence of {n} sample labels, got {type(value).__name__}")
    labels = [str(v) for v in (value.tolist() if hasattr(value, "tolist") else list(value))]
    if len(labels) != n:
        raise ValueError(f"{name}: expected {n} labels (one per sample), got {len(labels)}")
    return labels


def _groups(color_by, n: int) -> tuple[list[str], list[str], str]:
    """``(group of each sample, levels in legend order, legend title)`` from ``color_by``.

    Levels follow a ``Categorical``'s categories, otherwise sorted as R's ``factor()`` would; a
    DataFrame's columns are pasted with " : " as ``plotPCA`` does for several ``intgroup`` columns.
    """
    if isinstance(color_by, pd.DataFrame):
        if color_by.shape[1] == 0:
            raise ValueError("color_by: the DataFrame has no columns")
        if len(color_by) != n:
            raise ValueError(f"color_by: expected {n} rows (one per sample), got {len(color_by)}")
        groups = [" : ".join(str(v) for v in row) for row in color_by.itertuples(index=False)]
        return groups, sorted(set(groups)), " : ".join(str(c) for c in color_by.columns)
    title = str(color_by.name) if isinstance(color_by, pd.Series) and color_by.name is not None else "group"
    cats = None
    if isinstance(color_by, (pd.Series, pd.Categorical)) and isinstance(getattr(color_by, "dtype", None),
                                                                       pd.CategoricalDtype):
        cats = [str(c) for c in color_by.dtype.categories]
    groups = _sample_labels(color_by, n, "color_by")
    if cats is None:
        uniq = set(groups)
        try:
            numeric = sorted(uniq, key=float)  # numbers sort as numbers, as R's factor() of a numeric vector
        except ValueError:
            numeric = None
        cats = numeric if numeric is not None else sorted(uniq)
    present = set(groups)
    return groups, [c for c in cats if c in present], title


def _group_colours(k: int) -> list:
    if k <= len(OKABE_ITO):
        return list(OKABE_ITO[:k])
    from matplotlib import colormaps

    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, k)]


def pca_plot(
    pcs,
    percent_var,
    color_by,
    *,
    labels=None,
    ax=None,
    title: str | None = None,
) -> Figure:
    """DESeq2's ``plotPCA`` look: samples on PC1 against PC2, coloured by group, equal axis scales.

    The axis labels are R's ``paste0("PC1: ", round(percentVar[1] * 100), "% variance")`` (half to
    even rounding in both). Compute the inputs with
    :func:`~diffbio_prob.plots.pca.pca_of_transformed`; a component's sign is arbitrary, so the plot
    may be R's mirrored.

    Args:
        pcs: samples × k scores, k ≥ 2 (array or DataFrame; a DataFrame with ``PC1``/``PC2`` columns
            uses those, otherwise its first two columns).
        percent_var: fraction of variance per component (0-1, as R's ``percentVar``), at least 2.
        color_by: one group label per sample (list, array, Series, Categorical), or a DataFrame whose
            columns are pasted with " : " (R's several ``intgroup``). Legend title: the Series name or
            the DataFrame's column names, else "group".
        labels: optional sample names written next to the points (True: the index of a DataFrame ``pcs``).
        ax: matplotlib Axes to draw on (default: a new figure).
        title: axes title.

    Returns:
        The matplotlib Figure; each group's points carry gid ``group=<level>``.

    Example:
        >>> import numpy as np
        >>> from diffbio_prob.plots.pca import pca_of_transformed
        >>> x = np.array([[1.0, 2.0, 9.0, 10.0], [5.0, 5.5, 5.0, 6.0], [0.0, 1.0, 0.0, 1.5]])
        >>> pcs, pv = pca_of_transformed(x)
        >>> fig = pca_plot(pcs, pv, ["a", "a", "b", "b"])
    """
    index = None
    if isinstance(pcs, pd.DataFrame):
        index = list(pcs.index)
        cols = ["PC1", "PC2"] if {"PC1", "PC2"} <= set(pcs.columns) else list(pcs.columns[:2])
        if len(cols) < 2:
            raise ValueError(f"pcs: expected at least 2 columns (PC1, PC2), got {list(pcs.columns)}")
        for c in cols:
            if not pd.api.types.is_numeric_dtype(pcs[c]) or pd.api.types.is_bool_dtype(pcs[c]):
                raise TypeError(f"pcs[{c!r}]: expected numbers, got dtype {pcs[c].dtype}")
        xy = pcs[cols].to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        if isinstance(pcs, (str, bytes)) or pcs is None:
            raise TypeError(f"pcs: expected a 2-D samples × components array, got {type(pcs).__name__}")
        arr = np.asarray(pcs)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_:
            raise TypeError(f"pcs: expected a 2-D samples × components array of numbers, got dtype {arr.dtype}")
        if arr.ndim != 2 or arr.shape[1] < 2:
            raise ValueError(f"pcs: expected a 2-D samples × components array with ≥ 2 columns, got shape {arr.shape}")
        xy = arr[:, :2].astype(np.float64)
    n = xy.shape[0]
    if n < 1:
        raise ValueError("pcs: no samples (rows)")
    if not np.isfinite(xy).all():
        raise ValueError("pcs: PC1 and PC2 must be finite")
    pv = as_float_vector(percent_var, "percent_var")
    if pv.size < 2:
        raise ValueError(f"percent_var: expected at least 2 components, got {pv.size}")
    if not np.isfinite(pv).all() or (pv < 0).any() or pv.sum() > 1 + 1e-6:
        raise ValueError(
            "percent_var: expected fractions of variance in [0, 1] summing to at most 1 (R's percentVar, "
            f"not percentages), got {pv[:3].tolist()}..."
        )
    groups, levels, legend_title = _groups(color_by, n)
    if labels is True:
        if index is None:
            raise ValueError("labels=True needs pcs as a DataFrame indexed by sample; pass the names instead")
        labels = index
    names = None if labels is None or labels is False else _sample_labels(labels, n, "labels")

    fig, ax = new_axes(ax, (6.0, 4.8))
    g = np.asarray(groups, dtype=object)
    for level, colour in zip(levels, _group_colours(len(levels))):
        mask = g == level
        ax.scatter(xy[mask, 0], xy[mask, 1], s=45, color=colour, linewidths=0, label=level, zorder=2,
                   gid=f"group={level}")
    if names is not None:
        for (x, y), name in zip(xy, names):
            ax.annotate(name, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7, color="#222222")
    ax.set_xlabel(f"PC1: {round(pv[0] * 100)}% variance")
    ax.set_ylabel(f"PC2: {round(pv[1] * 100)}% variance")
    ax.set_aspect("equal", adjustable="datalim")  # ggplot's coord_fixed()
    ax.grid(True, color="#e5e5e5", lw=0.6, zorder=0)
    ax.set_axisbelow(True)
    if title:
        ax.set_title(title)
    ax.legend(title=legend_title, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, title_fontsize=8,
              frameon=False)
    return fig


def sample_distance_heatmap(
    matrix,
    labels=None,
    *,
    ax=None,
    title: str | None = "Sample-to-sample distances",
    cmap: str = "Blues_r",
    dendrogram: bool = True,
) -> Figure:
    """Heatmap of Euclidean distances between samples, ordered by complete-linkage clustering.

    As the DESeq2 vignette's ``pheatmap(as.matrix(dist(t(assay(vsd)))), col = rev(Blues))``: distances
    between the columns of the transformed matrix, rows and columns in the leaf order of a complete
    linkage on those distances (pheatmap's default method; scipy's ``leaves_list``, which may order
    the leaves of the same tree differently from R's ``hclust``), dark blue for close samples, a
    colour bar, and the column dendrogram on top.

    Args:
        matrix: transformed expression (VST, rlog, log2(x + 1)), genes × samples; finite values.
        labels: sample names (default: the DataFrame's columns, else "1", "2", ...).
        ax: matplotlib Axes to draw on (default: a new figure).
        title: figure title.
        cmap: matplotlib colormap name.
        dendrogram: draw the clustering tree above the heatmap.

    Returns:
        The matplotlib Figure; the image (gid ``distances``) holds the distance matrix with rows and
        columns in the clustering order, and its tick labels name the samples in that order.

    Example:
        >>> import numpy as np
        >>> x = np.array([[1.0, 1.2, 5.0, 5.1], [2.0, 2.1, 0.5, 0.4]])
        >>> fig = sample_distance_heatmap(x, ["a1", "a2", "b1", "b2"])
    """
    from matplotlib import colormaps

    if not isinstance(cmap, str) or cmap not in colormaps:
        raise ValueError(f"cmap: expected a matplotlib colormap name, got {cmap!r}")
    if not isinstance(dendrogram, (bool, np.bool_)):
        raise TypeError(f"dendrogram: expected True or False, got {type(dendrogram).__name__}")
    dist, order = sample_distances(matrix)
    n = dist.shape[0]
    if labels is None:
        labels = list(matrix.columns) if isinstance(matrix, pd.DataFrame) else [str(i + 1) for i in range(n)]
    names = _sample_labels(labels, n, "labels")
    shown = dist[np.ix_(order, order)]
    ordered = [names[i] for i in order]

    fig, ax = new_axes(ax, (0.32 * n + 3.2, 0.32 * n + 2.6) if n > 8 else (5.8, 5.0))
    im = ax.imshow(shown, cmap=cmap, vmin=0.0, interpolation="nearest", aspect="equal")
    im.set_gid("distances")
    ax.set_xticks(np.arange(n), ordered, rotation=90, fontsize=8)
    ax.set_yticks(np.arange(n), ordered, fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.colorbar(im, ax=ax, label="Euclidean distance", shrink=0.8)
    if dendrogram and n > 1:
        from scipy.cluster.hierarchy import dendrogram as tree, linkage
        from scipy.spatial.distance import squareform

        z = linkage(squareform(dist, checks=False), method="complete")
        d = tree(z, no_plot=True)
        top = ax.inset_axes([0.0, 1.01, 1.0, 0.16], sharex=ax)
        height = max(float(np.max(d["dcoord"])), 1e-300)
        for xs, ys in zip(d["icoord"], d["dcoord"]):
            top.plot((np.asarray(xs) - 5.0) / 10.0, np.asarray(ys) / height, color="#444444", lw=0.8)
        top.set_ylim(0.0, 1.05)
        top.axis("off")
        top.set_gid("dendrogram")
        if title:
            top.set_title(title)
    elif title:
        ax.set_title(title)
    return fig
