"""Quantification figure: estimated against true read counts per transcript, with posterior intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from diffbio_prob.plots._common import OKABE_ITO, as_float_vector, new_axes

__all__ = ["counts_vs_truth_plot", "mard"]


def mard(estimated, truth) -> float:
    """Mean absolute relative difference, the accuracy measure of the salmon paper.

    ``MARD = mean_i |x_i - y_i| / (x_i + y_i)`` with the term taken as 0 when ``x_i = y_i = 0``
    (Patro et al. 2017, Nature Methods 14:417, Online Methods). 0 is perfect, 1 is worst.

    Example:
        >>> mard([0.0, 10.0], [0.0, 30.0])
        0.25
    """
    x = np.asarray(estimated, dtype=np.float64)
    y = np.asarray(truth, dtype=np.float64)
    total = x + y
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(total > 0, np.abs(x - y) / total, 0.0)
    return float(terms.mean())


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def counts_vs_truth_plot(
    estimated,
    truth,
    lower=None,
    upper=None,
    names=None,
    *,
    ax=None,
    label_top: int = 0,
    title: str | None = "Estimated vs true counts",
) -> Figure:
    """Estimated against true counts per transcript on log-log axes, with the identity line.

    Both axes show ``count + 1`` so that transcripts with zero counts stay on the plot. Posterior
    intervals (``lower``, ``upper``) are drawn as vertical bars; the legend reports Spearman's rank
    correlation, the MARD (:func:`mard`) and, with intervals, how many true counts they cover. Rows with
    a NaN in ``estimated`` or ``truth`` are left out and counted on the figure.

    Args:
        estimated: ``(N,)`` estimated counts (e.g. posterior means), array or pandas Series.
        truth: ``(N,)`` true counts.
        lower: optional ``(N,)`` lower ends of the posterior intervals (with ``upper``).
        upper: optional ``(N,)`` upper ends.
        names: optional ``(N,)`` transcript names for ``label_top`` (default: the Series index, if any).
        ax: matplotlib Axes to draw on (default: a new figure).
        label_top: name this many transcripts with the largest |log ratio| between estimate and truth.
        title: axes title.

    Returns:
        matplotlib Figure.

    Example:
        >>> fig = counts_vs_truth_plot([10.0, 0.0, 95.0], [12.0, 1.0, 100.0],
        ...                            lower=[8.0, 0.0, 90.0], upper=[13.0, 2.0, 99.0])
    """
    if names is None and isinstance(estimated, pd.Series):
        names = list(estimated.index)
    est = as_float_vector(estimated, "estimated")
    n = est.shape[0]
    if n == 0:
        raise ValueError("estimated: expected at least one transcript, got an empty array")
    true = as_float_vector(truth, "truth", length=n)
    if (lower is None) != (upper is None):
        raise ValueError("lower, upper: give both ends of the posterior intervals or neither")
    lo = as_float_vector(lower, "lower", length=n) if lower is not None else None
    hi = as_float_vector(upper, "upper", length=n) if upper is not None else None
    for name, arr in (("estimated", est), ("truth", true), ("lower", lo), ("upper", hi)):
        if arr is None:
            continue
        if np.isinf(arr).any():
            raise ValueError(f"{name}: contains infinite values")
        if (arr < 0).any():
            raise ValueError(f"{name}: expected non-negative counts")
    if names is not None:
        names = [str(v) for v in names]
        if len(names) != n:
            raise ValueError(f"names: expected {n} names, got {len(names)}")
    if isinstance(label_top, bool) or not isinstance(label_top, (int, np.integer)) or label_top < 0:
        raise ValueError(f"label_top: expected a non-negative integer, got {label_top!r}")
    if label_top and names is None:
        raise ValueError("label_top: needs transcript names (pass names= or Series inputs)")

    keep = np.isfinite(est) & np.isfinite(true)
    if not keep.any():
        raise ValueError("estimated, truth: no transcript has both values (all rows are NaN)")
    with_interval = None
    if lo is not None:
        with_interval = keep & np.isfinite(lo) & np.isfinite(hi)
        if (lo[with_interval] > hi[with_interval]).any():
            bad = int(np.flatnonzero(with_interval & (lo > hi))[0])
            raise ValueError(f"lower, upper: lower > upper at row {bad} ({lo[bad]:g} > {hi[bad]:g})")

    fig, ax = new_axes(ax, (6.0, 5.6))
    x, y = true[keep] + 1.0, est[keep] + 1.0
    if with_interval is not None and with_interval.any():
        ax.vlines(
            true[with_interval] + 1.0,
            lo[with_interval] + 1.0,
            hi[with_interval] + 1.0,
            color=OKABE_ITO[0],
            alpha=0.35,
            lw=1.0,
            zorder=1,
            label="posterior interval",
            gid="intervals",
        )
    rho = _spearman(true[keep], est[keep])
    label = (
        f"transcripts (n={int(keep.sum())}); Spearman ρ = {rho:.3f}, MARD = {mard(est[keep], true[keep]):.3f}"
    )
    ax.scatter(x, y, s=10, color=OKABE_ITO[0], linewidths=0, zorder=2, label=label, gid="transcripts")
    span = (min(x.min(), y.min()), max(x.max(), y.max()))
    if with_interval is not None and with_interval.any():
        span = (min(span[0], lo[with_interval].min() + 1.0), max(span[1], hi[with_interval].max() + 1.0))
    span = (span[0] / 1.3, span[1] * 1.3)
    ax.plot(span, span, color="#333333", lw=0.8, ls="--", zorder=0, label="estimate = truth")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(span)
    ax.set_ylim(span)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("true count + 1")
    ax.set_ylabel("estimated count + 1")
    if title:
        ax.set_title(title)
    if label_top:
        ratio = np.where(keep, np.abs(np.log((est + 1.0) / (true + 1.0))), -np.inf)
        for i in np.argsort(-ratio, kind="stable")[: min(label_top, int(keep.sum()))]:
            ax.annotate(
                names[i],
                (true[i] + 1.0, est[i] + 1.0),
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=7,
                color="#222222",
            )
    notes = []
    if with_interval is not None:
        covered = with_interval & (lo <= true) & (true <= hi)
        notes.append(f"intervals cover the truth for {int(covered.sum())} of {int(with_interval.sum())}")
    dropped = int((~keep).sum())
    if dropped:
        notes.append(f"{dropped} row{'s' if dropped != 1 else ''} with NaN not drawn")
    ax.legend(
        loc="upper left",
        fontsize=8,
        frameon=False,
        title="\n".join(notes) or None,
        title_fontsize=8,
        alignment="left",
    )
    return fig
