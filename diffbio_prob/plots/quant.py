"""Quantification figures against a simulation's truth: estimated against true read counts per transcript,
and posterior log fold changes (quantification -> DE) against the true ones, with their intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from diffbio_prob.plots._common import BACKGROUND, OKABE_ITO, SIGNIFICANT, as_float_vector, new_axes

__all__ = ["counts_vs_truth_plot", "lfc_vs_truth_plot", "mard"]


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


def lfc_vs_truth_plot(
    estimate,
    truth,
    lower,
    upper,
    *,
    changed=None,
    called=None,
    reference=None,
    reference_label: str = "reference",
    ax=None,
    interval_label: str = "94% HDI",
    title: str | None = None,
) -> Figure:
    """Estimated against true log2 fold changes per feature, with each estimate's interval.

    Truly changed features (``changed``, default ``truth != 0``) and unchanged ones get their own colour;
    ``called`` features are ringed; ``reference`` (e.g. DESeq2's maximum-likelihood estimates) is drawn
    in grey behind. Unchanged features are spread a little along x (their truth is exactly 0) so that
    their intervals stay readable. The title (default) says how many intervals cover the truth. Rows
    with a NaN estimate or interval (features not tested) are left out and counted in the legend.

    Args:
        estimate, truth, lower, upper: ``(N,)`` posterior means, true values, interval ends (log2 scale).
        changed: ``(N,)`` bool, the simulation's truly changed features (default ``truth != 0``).
        called: ``(N,)`` bool, features the method calls.
        reference: ``(N,)`` another method's estimates; reference_label: its legend entry.
        ax: matplotlib Axes (default: a new figure). interval_label: what the intervals are.
        title: axes title (default: the coverage).

    Returns:
        matplotlib Figure.

    Example:
        >>> fig = lfc_vs_truth_plot([1.1, 0.1, -2.0], [1.0, 0.0, -2.5], [0.6, -0.3, -2.6], [1.5, 0.4, -1.4])
    """
    est = as_float_vector(estimate, "estimate")
    n = est.shape[0]
    if n == 0:
        raise ValueError("estimate: expected at least one feature, got an empty array")
    true = as_float_vector(truth, "truth", length=n)
    lo = as_float_vector(lower, "lower", length=n)
    hi = as_float_vector(upper, "upper", length=n)
    if not np.all(np.isfinite(true)):
        raise ValueError("truth: expected finite true log fold changes")
    ch = true != 0 if changed is None else as_float_vector(changed, "changed", length=n).astype(bool)
    cl = None if called is None else as_float_vector(called, "called", length=n).astype(bool)
    ref = None if reference is None else as_float_vector(reference, "reference", length=n)
    keep = np.isfinite(est) & np.isfinite(lo) & np.isfinite(hi)
    if not keep.any():
        raise ValueError("estimate, lower, upper: no feature has an estimate and an interval (all NaN)")
    if (lo[keep] > hi[keep]).any():
        bad = int(np.flatnonzero(keep & (lo > hi))[0])
        raise ValueError(f"lower, upper: lower > upper at row {bad} ({lo[bad]:g} > {hi[bad]:g})")

    fig, ax = new_axes(ax, (6.4, 5.2))
    jitter = np.where(true == 0, np.random.default_rng(0).uniform(-0.08, 0.08, n), 0.0)
    x = true + jitter
    if ref is not None:
        r = keep & np.isfinite(ref)
        ax.scatter(x[r], ref[r], s=7, color=BACKGROUND, linewidths=0, zorder=1, label=reference_label,
                   gid="reference")
    for mask, color, label in ((keep & ~ch, OKABE_ITO[4], "unchanged"), (keep & ch, SIGNIFICANT, "truly changed")):
        if not mask.any():
            continue
        # the mean of a skewed posterior can sit just outside its HDI: bar lengths clipped at 0
        yerr = [np.maximum(est[mask] - lo[mask], 0.0), np.maximum(hi[mask] - est[mask], 0.0)]
        ax.errorbar(x[mask], est[mask], yerr=yerr, fmt="o", ms=3, color=color, ecolor=color, elinewidth=0.7,
                    alpha=0.7, zorder=2, label=f"{label} (n={int(mask.sum())}): mean, {interval_label}",
                    gid="estimates")
    if cl is not None and (keep & cl).any():
        m = keep & cl
        ax.scatter(x[m], est[m], s=42, facecolors="none", edgecolors="#222222", linewidths=0.7, zorder=3,
                   label=f"called (n={int(m.sum())})", gid="called")
    span = np.concatenate([true[keep], lo[keep], hi[keep]] + ([ref[keep & np.isfinite(ref)]] if ref is not None else []))
    lim = min(float(np.max(np.abs(span))) * 1.08 + 0.1, 10.0)
    ax.plot([-lim, lim], [-lim, lim], color="#333333", lw=0.8, ls="--", zorder=0)
    ax.axhline(0.0, color="#bbbbbb", lw=0.6, zorder=0)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_xlabel("true log2 fold change")
    ax.set_ylabel("estimated log2 fold change")
    covered = keep & (lo <= true) & (true <= hi)
    if title is None:
        parts = [f"{interval_label}s cover the truth: {int(covered[keep & ch].sum())} of {int((keep & ch).sum())} "
                 "changed"]
        if (keep & ~ch).any():
            parts.append(f"{int(covered[keep & ~ch].sum())} of {int((keep & ~ch).sum())} unchanged")
        title = ", ".join(parts)
    ax.set_title(title, fontsize=10)
    dropped = int((~keep).sum())
    ax.legend(loc="upper left", fontsize=8, frameon=False,
              title=f"{dropped} not tested, not drawn" if dropped else None, title_fontsize=8, alignment="left")
    return fig
