"""The demo's driver: the three parts in one process or in parallel worker processes, then the report.

Two process layouts. Where the caller knows that JAX has not started its backend in this process (the
``diffbio-prob demo`` command: it has only imported and configured JAX), ``start_method="fork"``
imports the stack once and forks the HMM and quantification into workers while DE runs here. Otherwise
(a notebook, a test, any process where JAX may already run: forking it is unsafe) one spawned worker,
which imports everything again, runs the HMM while this process runs DE, then quantification.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from diffbio_prob.workflows.demo.data import FULL, QUICK, DemoSizes, stream_rng
from diffbio_prob.workflows.demo.outputs import Outputs, Part, Progress, quiet_libraries
from diffbio_prob.workflows.demo.report import build_report, print_listing

__all__ = ["run_demo"]

#: The parts in report order, with their number of progress steps.
PART_STEPS = (("hmm", 5), ("de", 5), ("quant", 5), ("quant_de", 5))
#: Worker parts that yield the CPU to the others (Unix nice increment): quantification needs about half
#: the CPU of the HMM or DE, so while the three share two cores it would otherwise finish early and
#: leave the longest part to run alone at the end.
LOW_PRIORITY = {"quant": 5}
#: JAX settings a worker process must share with the parent (precision, compilation cache).
JAX_SETTINGS = (
    "jax_enable_x64",
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)
#: What the parts import (some of it lazily): loaded once before worker processes are forked, so
#: they start with it (each import of this stack costs ~4.5 s of CPU on a 2-core machine).
PRELOAD = (
    "arviz", "h5netcdf", "optax", "xarray", "flax.nnx", "numpyro.infer", "matplotlib.figure",
    "diffbio_prob.inference", "diffbio_prob.inference.baum_welch", "diffbio_prob.models",
    "diffbio_prob.operators.statistical", "diffbio_prob.plots", "diffbio_prob.io.counts",
    "diffbio_prob.workflows.hmm", "diffbio_prob.workflows.quant", "diffbio_prob.workflows.de_bayes",
    "diffbio_prob.workflows.deseq2", "diffbio_prob.workflows.report",
)
START_METHODS = ("fork", "spawn")


def run_part(name: str, sizes: DemoSizes, seed: int, out: Outputs, progress: Progress) -> Part:
    from diffbio_prob.workflows.demo import de, hmm, quant, quant_de

    runner = {"hmm": hmm.run_hmm_part, "de": de.run_de_part, "quant": quant.run_quant_part,
              "quant_de": quant_de.run_quant_de_part}[name]
    with quiet_libraries():
        return runner(sizes, seed, out, progress)


def part_in_worker(name: str, sizes: DemoSizes, seed: int, root: str, quiet: bool, first: int, total: int,
                   jax_settings: dict) -> tuple[Part, list]:
    """One part in a worker process: same JAX settings, its own numbered progress lines, no bars."""
    import jax

    for key, value in jax_settings.items():
        jax.config.update(key, value)
    if name in LOW_PRIORITY and hasattr(os, "nice"):
        os.nice(LOW_PRIORITY[name])
    out = Outputs(Path(root))
    part = run_part(name, sizes, seed, out, Progress(total, quiet, first=first, bars=False))
    return part, out.files


def _jax_settings() -> dict:
    import jax

    return {k: getattr(jax.config, k) for k in JAX_SETTINGS if getattr(jax.config, k, None) is not None}


def run_parts(sizes: DemoSizes, seed: int, outputs: Outputs, progress: Progress, parallel: bool,
              start_method: str = "spawn") -> tuple[list[Part], str]:
    """The three parts, in worker processes with ``parallel``; the report keeps the fixed order.

    Most of a demo's time is XLA compiling programs and matplotlib drawing, one thing at a time per
    process: on two cores, parallel processes finish in a little more than half the time. Forked: the
    HMM and quantification in workers while DE runs here (the three parts' CPU times are ~2:1:2).
    Spawned: the HMM in one worker, DE then quantification here. Also returns how the work was laid
    out (for the report).
    """
    starts = np.cumsum([0] + [k for _, k in PART_STEPS])[:-1] + 1
    firsts = {name: int(first) for (name, _), first in zip(PART_STEPS, starts)}
    if not parallel:
        return [run_part(name, sizes, seed, outputs, progress) for name, _ in PART_STEPS], "1 process"
    import concurrent.futures
    import importlib
    import multiprocessing
    import warnings

    if start_method == "fork":
        for module in PRELOAD:
            importlib.import_module(module)
        workers, here = ("hmm", "quant"), ("de", "quant_de")
        layout = "3 processes (HMM and quantification in forked workers)"
    else:
        workers, here = ("hmm",), ("de", "quant", "quant_de")
        layout = "2 processes (HMM in a spawned worker)"
    ctx = multiprocessing.get_context(start_method)
    parts = {}
    with warnings.catch_warnings():
        # Python 3.12 warns on any fork of a process with threads; the only ones here are the BLAS
        # libraries' own pools, which re-create themselves after a fork (pthread_atfork).
        warnings.filterwarnings("ignore", message=".*use of fork\\(\\) may lead to deadlocks.*",
                                category=DeprecationWarning)
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=len(workers), mp_context=ctx)
        with pool:
            futures = {name: pool.submit(part_in_worker, name, sizes, seed, str(outputs.root), progress.quiet,
                                         firsts[name], progress.total, _jax_settings())
                       for name in workers}
            for name in here:
                progress.done = firsts[name] - 1
                parts[name] = run_part(name, sizes, seed, outputs, progress)
            for name, future in futures.items():
                parts[name], worker_files = future.result()
                outputs.files.extend(worker_files)
    order = {name: i for i, (name, _) in enumerate(PART_STEPS)}
    outputs.files.sort(key=lambda f: order.get(f[0].relative_to(outputs.root).parts[0], len(order)))
    progress.done = sum(k for _, k in PART_STEPS)
    return [parts[name] for name, _ in PART_STEPS], layout


def _check_out(out) -> Path:
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out: expected a folder path, got {type(out).__name__}")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"out: {str(path)!r} exists and is not a folder")
    return path


def run_demo(out: str | os.PathLike = "diffbio-prob-demo", quick: bool = False, seed: int = 0,
             quiet: bool = False, parallel: bool | None = None, start_method: str | None = None) -> Path:
    """Fit the three models on data with a known truth, three ways each, and write the report.

    Every fit is a call of a workflow (:func:`~diffbio_prob.workflows.hmm.fit_hmm`,
    :func:`~diffbio_prob.workflows.deseq2.fit_deseq2`, :func:`~diffbio_prob.workflows.de_bayes.bayesian_lfc`,
    :func:`~diffbio_prob.workflows.quant.quantify`, :func:`~diffbio_prob.workflows.quant.posterior`): what
    the page shows is what the API and the commands do.

    Args:
        out: output folder (created; files in it are replaced atomically).
        quick: small sizes and few draws instead of the full demo (2-core CPU, through the CLI: 31-41 s
            on a first run, ~16 s with its compilation cache warm; the full demo ~1 min).
        seed: random seed of the simulated data and the samplers.
        quiet: no progress lines and no final listing.
        parallel: run the parts in parallel processes (default: when the machine has at least two
            cores). Results are identical either way.
        start_method: how the worker processes start: ``"fork"`` (the HMM and quantification in forked
            workers while DE runs here; only safe while JAX has not started its backend in this process,
            which the ``diffbio-prob demo`` command knows; Linux only, elsewhere it falls back to
            spawning) or ``"spawn"`` (the default: the HMM in a spawned worker, safe anywhere).

    Returns:
        The output folder (``report.html`` and the sub-folders ``hmm/``, ``de/``, ``quant/``).

    Raises:
        TypeError / ValueError: a bad ``out``, ``seed`` or ``start_method``, before anything runs.
    """
    root = _check_out(out)
    stream_rng(seed, 0)  # validates the seed before any work
    if not isinstance(quick, bool) or not isinstance(quiet, bool):
        raise TypeError(f"quick, quiet: expected booleans, got {quick!r}, {quiet!r}")
    if parallel is None:
        parallel = (os.cpu_count() or 1) >= 2
    elif not isinstance(parallel, bool):
        raise TypeError(f"parallel: expected a boolean or None, got {parallel!r}")
    if start_method is None:
        start_method = "spawn"
    elif start_method not in START_METHODS:
        raise ValueError(f"start_method: expected one of {START_METHODS} or None, got {start_method!r}")
    if start_method == "fork" and not sys.platform.startswith("linux"):
        start_method = "spawn"  # macOS system frameworks are not fork-safe
    sizes = QUICK if quick else FULL
    progress = Progress(total=sum(k for _, k in PART_STEPS) + 1, quiet=quiet, bars=None if not parallel else False)
    outputs = Outputs(root)
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    progress.line(f"diffbio-prob demo: {'quick' if quick else 'full'} run, seed {seed}, writing to {root}/"
                  + (" (the parts in parallel processes)" if parallel else ""))
    parts, layout = run_parts(sizes, seed, outputs, progress, parallel, start_method)
    with quiet_libraries(), progress.step("Report: report.html"):
        report = build_report(parts, outputs, seed=seed, quick=quick, elapsed=time.perf_counter() - start,
                              layout=layout)
        html_path = report.write(root / "report.html")
    elapsed = time.perf_counter() - start
    if not quiet:
        print_listing(root, html_path, outputs, elapsed)
    return root
