"""What every part of the demo shares: progress lines, the output folder, a part's report content, and
small helpers for tables and figures."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from diffbio_prob.io.atomic import atomic_path, atomic_write


class Progress:
    """Numbered progress lines on stderr (``[3/13] HMM: NUTS ... 8.1 s``); silent when quiet.

    Progress bars of the fits themselves (tqdm/numpyro) are only shown on a terminal.
    """

    def __init__(self, total: int, quiet: bool, *, first: int = 1, bars: bool | None = None):
        self.total, self.quiet, self.done = total, quiet, first - 1
        self.bars = not quiet and (sys.stderr.isatty() if bars is None else bars)

    def line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        self.done += 1
        number = self.done
        prefix = f"[{number:>2}/{self.total}] {label}"
        if not self.quiet:
            # On a terminal the line is finished in place; elsewhere (logs, pipes) one line per step.
            print(prefix + (" ..." if self.bars else ""), file=sys.stderr, flush=True)
        start, cpu = time.perf_counter(), time.process_time()
        yield
        if not self.quiet:
            extra = f" (CPU {time.process_time() - cpu:.1f} s)" if os.environ.get("DIFFBIO_PROB_TIMING") else ""
            tag = f"[{number:>2}/{self.total}]" if not self.bars else " " * 7
            print(f"{tag} done in {time.perf_counter() - start:.1f} s{extra}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class Outputs:
    """The output folder: every writer goes through ``diffbio_prob.io.atomic``; paths are recorded."""

    root: Path
    files: list[tuple[Path, str]] = dataclasses.field(default_factory=list)

    def path(self, rel: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def _record(self, p: Path, what: str) -> Path:
        self.files.append((p, what))
        return p

    def csv(self, rel: str, frame: pd.DataFrame, what: str, *, index: bool = True) -> Path:
        p = self.path(rel)
        with atomic_write(p, "w", newline="") as fh:
            frame.to_csv(fh, index=index, float_format="%.6g", na_rep="NA")
        return self._record(p, what)

    def png(self, rel: str, fig, what: str) -> bytes:
        """Render a figure once: the PNG bytes go to the file and, returned, into the report."""
        from diffbio_prob.plots import figure_to_png

        data = figure_to_png(fig)
        p = self.path(rel)
        with atomic_write(p, "wb") as fh:
            fh.write(data)
        self._record(p, what)
        return data

    def netcdf(self, rel: str, result, what: str, coords=None, dims=None):
        """Write ``result.to_arviz(coords, dims)``; the DataTree is returned for the summary and plots."""
        p = self.path(rel)
        dt = result.to_arviz(coords=coords, dims=dims)
        with atomic_path(p) as tmp:
            dt.to_netcdf(tmp, engine="h5netcdf")
        self._record(p, what)
        return dt

    def record(self, p: Path, what: str) -> Path:
        return self._record(Path(p), what)


def mean_sd(draws: np.ndarray) -> str:
    return f"{np.mean(draws):.3f} ± {np.std(draws, ddof=1):.3f}"


def loss_figure(curves: list[tuple[str, np.ndarray, str]], title: str):
    """Loss histories of the optimiser fits side by side (negative log-likelihood, negative ELBO)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 2.8), layout="constrained")
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    for ax, (label, loss, ylabel) in zip(axes, curves):
        loss = np.asarray(loss, float)
        ax.plot(np.arange(1, loss.size + 1), loss, lw=1.0, color="#0072B2")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        tail = loss[loss.size // 5 :]
        if tail.size > 2 and np.ptp(tail) > 0:
            # Zoom on the last 80%: the first steps would squash the converged part to a flat line.
            pad = 0.05 * np.ptp(tail)
            ax.set_ylim(tail.min() - pad, min(tail.max() + pad, loss.max() + pad))
    fig.suptitle(title, fontsize=11)
    return fig



@dataclasses.dataclass
class Part:
    """One model's results for the report: prose, facts and an ordered list of blocks.

    Each block is ``(subsection, kind, payload, caption)`` with kind ``"table"`` (a DataFrame),
    ``"summary"`` (``(az.summary DataFrame, divergences, total draws)``), ``"figure"`` (PNG bytes) or
    ``"text"``. ``headline`` is this model's row of the overview table.
    """

    title: str
    intro: str
    facts: dict
    blocks: list[tuple[str, str, Any, str]]
    headline: dict


def summary_table(dt, var_names, order=None):
    """ArviZ summary (mean, sd, 94% HDI, ESS, R-hat) with labels from the DataTree's coordinates."""
    import arviz as az

    table = az.summary(dt, var_names=var_names, ci_kind="hdi", ci_prob=0.94, round_to="none")
    if order is not None:
        table = table.loc[[i for i in order if i in table.index] + [i for i in table.index if i not in set(order)]]
    return table


def ppc_draws(dt, group: str = "posterior_predictive") -> int:
    """How many predictive draws a check of ``plots.diagnostics.ppc_intervals`` uses (at most its 500)."""
    sizes = dt[group].to_dataset().sizes
    return min(500, int(sizes.get("chain", 1)) * int(sizes.get("draw", 1)))


def max_rhat(summary: pd.DataFrame) -> float:
    return float(np.nanmax(summary["r_hat"].to_numpy(float))) if "r_hat" in summary and len(summary) else np.nan


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Hide warnings that say nothing to a demo user (ArviZ/xarray future changes, small-sample ESS)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*[Ss]hape validation.*")
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="arviz.*")
        yield


