"""HMM decoding figure: posterior state probabilities along a sequence, against truth and Viterbi."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from diffbio_prob.plots._common import OKABE_ITO

__all__ = ["posterior_track_plot"]

# Rows of a posterior matrix must sum to one; float32 forward-backward is good to ~1e-6 per row,
# so 1e-3 only catches real mistakes (unnormalised or log-space input).
_ROW_SUM_TOL = 1e-3


def _state_colors(num_states: int) -> list[str]:
    if num_states <= len(OKABE_ITO):
        return list(OKABE_ITO[:num_states])
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return [matplotlib.colors.to_hex(cmap(i % 20)) for i in range(num_states)]


def _check_posteriors(state_posteriors) -> np.ndarray:
    if isinstance(state_posteriors, (str, bytes)) or state_posteriors is None:
        raise TypeError(f"state_posteriors: expected a (T, S) array, got {type(state_posteriors).__name__}")
    post = np.asarray(state_posteriors)
    if not np.issubdtype(post.dtype, np.number) or np.issubdtype(post.dtype, np.complexfloating):
        raise TypeError(f"state_posteriors: expected real numbers, got dtype {post.dtype}")
    if post.ndim != 2:
        raise ValueError(f"state_posteriors: expected shape (T, S), got {post.shape}")
    if post.shape[0] == 0 or post.shape[1] == 0:
        raise ValueError(f"state_posteriors: expected T >= 1 and S >= 1, got shape {post.shape}")
    post = post.astype(np.float64)
    if not np.isfinite(post).all():
        bad = int(np.flatnonzero(~np.isfinite(post).all(axis=1))[0])
        raise ValueError(f"state_posteriors: row {bad} contains NaN or infinite values")
    if (post < -_ROW_SUM_TOL).any() or (post > 1 + _ROW_SUM_TOL).any():
        raise ValueError("state_posteriors: expected probabilities in [0, 1] (not log-probabilities)")
    err = np.abs(post.sum(axis=1) - 1.0)
    if (err > _ROW_SUM_TOL).any():
        bad = int(np.argmax(err))
        raise ValueError(f"state_posteriors: each row must sum to 1; row {bad} sums to {post[bad].sum():.6g}")
    return np.clip(post, 0.0, 1.0)


def _check_path(path, name: str, length: int, num_states: int) -> np.ndarray | None:
    if path is None:
        return None
    arr = np.asarray(path)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: expected integer state indices, got dtype {arr.dtype}")
    if arr.shape != (length,):
        raise ValueError(f"{name}: expected shape ({length},) to match state_posteriors, got {arr.shape}")
    if (arr < 0).any() or (arr >= num_states).any():
        raise ValueError(
            f"{name}: expected states in [0, {num_states - 1}], got values in [{arr.min()}, {arr.max()}]"
        )
    return arr.astype(np.int64)


def _check_observations(observations, length: int) -> np.ndarray | None:
    if observations is None:
        return None
    arr = np.asarray(observations)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"observations: expected integer symbols or real values, got dtype {arr.dtype}")
    if arr.shape != (length,):
        raise ValueError(
            f"observations: expected shape ({length},) to match state_posteriors, got {arr.shape}"
        )
    if np.issubdtype(arr.dtype, np.integer):
        if (arr < -1).any():
            raise ValueError("observations: integer symbols must be >= 0 (or -1 for missing)")
    elif np.isinf(arr).any():
        raise ValueError("observations: contains infinite values (use NaN for missing)")
    return arr


def posterior_track_plot(
    state_posteriors,
    true_states=None,
    viterbi_path=None,
    observations=None,
    *,
    state_names=None,
    title: str | None = None,
    max_points: int = 4000,
) -> Figure:
    """Posterior probability of each hidden state along the sequence, stacked to one.

    Below the stacked posteriors, colour ribbons show the true states and the Viterbi path when given;
    above them, the observations (integer symbols as dots with -1 = missing left out, real values as a
    line with NaN = missing as gaps). With true states, the title reports how often the Viterbi path
    and the posterior argmax agree with them (no relabelling: fit with an ordering constraint or
    relabel first).

    Args:
        state_posteriors: ``Float[Array, "T S"]`` smoothed posteriors, rows summing to one.
        true_states: optional ``Int[Array, "T"]`` true hidden states.
        viterbi_path: optional ``Int[Array, "T"]`` most probable path.
        observations: optional ``(T,)`` integer symbols or real values.
        state_names: optional S names for the legend (default "state 0", ...).
        title: optional title.
        max_points: longer sequences have their posteriors averaged over windows of
            ``ceil(T / max_points)`` positions before stacking (a figure is a few thousand pixels wide;
            averaged rows still sum to one); the title says so. Ribbons and observations are not binned.

    Returns:
        matplotlib Figure.

    Example:
        >>> import numpy as np
        >>> post = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
        >>> fig = posterior_track_plot(post, true_states=np.array([0, 0, 1]))
    """
    post = _check_posteriors(state_posteriors)
    length, num_states = post.shape
    if isinstance(max_points, bool) or not isinstance(max_points, (int, np.integer)) or max_points < 2:
        raise ValueError(f"max_points: expected an integer >= 2, got {max_points!r}")
    truth = _check_path(true_states, "true_states", length, num_states)
    viterbi = _check_path(viterbi_path, "viterbi_path", length, num_states)
    obs = _check_observations(observations, length)
    if state_names is None:
        state_names = [f"state {s}" for s in range(num_states)]
    else:
        state_names = [str(n) for n in state_names]
        if len(state_names) != num_states:
            raise ValueError(f"state_names: expected {num_states} names, got {len(state_names)}")
    colors = _state_colors(num_states)
    ribbons = [(lab, path) for lab, path in (("true", truth), ("Viterbi", viterbi)) if path is not None]

    heights = ([1.2] if obs is not None else []) + [3.0] + [0.35] * len(ribbons)
    fig = Figure(figsize=(10.0, 1.2 + sum(heights)), layout="constrained")
    axes = fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights}, squeeze=False)[
        :, 0
    ]
    t = np.arange(length)
    row = 0
    if obs is not None:
        ax = axes[row]
        if np.issubdtype(obs.dtype, np.integer):
            seen = obs >= 0
            ax.scatter(t[seen], obs[seen], s=4, color="#333333", linewidths=0, gid="observations")
            symbols = np.unique(obs[seen])
            if 0 < symbols.size <= 8:
                ax.set_yticks(symbols)
        else:
            ax.plot(t, obs, lw=0.7, color="#333333", gid="observations")
        ax.set_ylabel("observed")
        row += 1

    ax = axes[row]
    window = -(-length // max_points)
    if window > 1:
        # Average whole windows; the last, shorter window is averaged over its own length.
        starts = np.arange(0, length, window)
        shown = np.add.reduceat(post, starts, axis=0) / np.diff(np.append(starts, length))[:, None]
        centres = starts + (np.minimum(starts + window, length) - 1 - starts) / 2.0
    else:
        shown, centres = post, t
    for s, poly in enumerate(
        ax.stackplot(centres, shown.T, colors=colors, step="mid" if len(centres) <= 400 else None, linewidth=0)
    ):
        poly.set_gid(f"posterior-{s}")
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("P(state | data)")
    ax.legend(
        handles=[Patch(color=c, label=n) for c, n in zip(colors, state_names, strict=True)],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=8,
        frameon=False,
    )
    row += 1
    cmap = ListedColormap(colors)
    for label, path in ribbons:
        ax = axes[row]
        ax.imshow(
            path[None, :],
            aspect="auto",
            cmap=cmap,
            vmin=-0.5,
            vmax=num_states - 0.5,
            interpolation="nearest",
            extent=(-0.5, length - 0.5, 0.0, 1.0),
            gid=f"ribbon-{label}",
        )
        ax.set_yticks([0.5], [label])
        ax.tick_params(axis="y", length=0)
        row += 1
    axes[-1].set_xlim(-0.5, length - 0.5)
    axes[-1].set_xlabel("position")

    parts = [title] if title else []
    if window > 1:
        parts.append(f"posteriors averaged over windows of {window:,} positions")
    if truth is not None:
        acc = [f"posterior argmax {np.mean(post.argmax(axis=1) == truth):.1%}"]
        if viterbi is not None:
            acc.insert(0, f"Viterbi {np.mean(viterbi == truth):.1%}")
        parts.append("agreement with the true states: " + ", ".join(acc))
    if parts:
        fig.suptitle("\n".join(parts), fontsize=10)
    return fig
