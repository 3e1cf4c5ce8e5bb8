"""Shared helpers for the figures: a pyplot-free Figure factory, argument checks, atomic saving.

Figures are built on ``matplotlib.figure.Figure`` directly rather than through ``pyplot``: they never
register with a GUI backend, are rendered by Agg when saved, and are freed when the last reference
goes (no "more than 20 figures open" warnings in long workflows).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from diffbio_prob.io.atomic import atomic_path

__all__ = ["save_figure", "figure_to_png", "PNG_SIGNATURE"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}

# Colours that stay distinct for colour-blind readers (Okabe & Ito 2008).
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
SIGNIFICANT = "#D55E00"
BACKGROUND = "#9a9a9a"


def new_axes(ax, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """Return ``(figure, axes)``: the caller's ``ax`` and its figure, or a fresh pyplot-free pair."""
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, fig.add_subplot()
    if not isinstance(ax, Axes):
        raise TypeError(f"ax: expected a matplotlib Axes or None, got {type(ax).__name__}")
    return ax.get_figure(root=True), ax


def check_alpha(alpha) -> float:
    """Validate a significance level: a real number strictly between 0 and 1."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)):
        raise TypeError(f"alpha: expected a number in (0, 1), got {type(alpha).__name__}")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha: expected a number in (0, 1), got {alpha!r}")
    return float(alpha)


def as_float_vector(value, name: str, length: int | None = None) -> np.ndarray:
    """Convert array-likes (lists, numpy, JAX, pandas) to a 1-D float64 array, or raise naming ``name``."""
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name}: expected a 1-D array of numbers, got {type(value).__name__}")
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{name}: expected a 1-D array of numbers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if length is not None and arr.shape[0] != length:
        raise ValueError(f"{name}: expected length {length}, got {arr.shape[0]}")
    return arr.astype(np.float64)


def figure_to_png(fig: Figure, *, dpi: float = 144) -> bytes:
    """Render ``fig`` to PNG bytes (Agg), trimmed to its content."""
    if not isinstance(fig, Figure):
        raise TypeError(f"fig: expected a matplotlib Figure, got {type(fig).__name__}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: float = 144) -> Path:
    """Write ``fig`` to ``path`` atomically (a crash never leaves a half-written image).

    The format follows the suffix: ``.png`` (default use), ``.svg`` or ``.pdf``.

    Args:
        fig: a matplotlib Figure (e.g. from :func:`ma_plot`).
        path: target file; its folder is created if needed.
        dpi: resolution for PNG output.

    Returns:
        The path written.

    Example:
        >>> from matplotlib.figure import Figure
        >>> fig = Figure(); _ = fig.add_subplot().plot([0, 1])
        >>> save_figure(fig, "/tmp/diffbio_prob_example.png").name
        'diffbio_prob_example.png'
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig: expected a matplotlib Figure, got {type(fig).__name__}")
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"path: expected a file name ending in .png, .svg or .pdf, got {str(path)!r}")
    if path.is_dir():
        raise IsADirectoryError(f"path: {str(path)!r} is a directory")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", facecolor="white")
    return path
