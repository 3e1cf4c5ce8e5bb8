"""Differential-expression figures on DESeq2-shaped result tables: MA plot and volcano plot.

Both take a ``pandas.DataFrame`` with DESeq2's ``results()`` columns (``baseMean``, ``log2FoldChange``,
``lfcSE``, ``stat``, ``pvalue``, ``padj``; only the ones a plot needs are required), one row per gene.
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

from diffbio_prob.plots._common import BACKGROUND, SIGNIFICANT, as_float_vector, check_alpha, new_axes

__all__ = ["ma_plot", "volcano_plot"]

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
