"""DESeq2 pipeline benchmark: diffbio-prob against PyDESeq2 in the same process.

Not a test. Simulates DESeq2's ``makeExampleDESeqDataSet`` (R/core.R) with 10,000 genes x 100 samples:
log2 intercepts ~ N(4, 2), log2 fold changes ~ N(0, beta_sd) (default 1), dispersion
``4 / 2^intercept + 0.1``, two conditions of 50, size factors 1, NB counts. Times the whole pipeline
(size factors -> dispersions -> Wald test -> Cook's refit -> results with independent filtering) of

  * diffbio-prob (``fit_deseq2`` + ``results``; JAX float64): one cold run (includes compilation), then
    the median of ``--repeats`` warm runs;
  * PyDESeq2 0.5 (``DeseqDataSet.deseq2`` + ``DeseqStats.summary``) with ``n_cpus=1`` and one BLAS thread
    (its fastest setting on 2 cores, docs/notes/de.md): median of ``--peer-repeats`` runs;

prints the medians, the ratio, and how far the two answers are apart. Reference figures from
docs/notes/de.md (same data recipe, 2-core machine): R DESeq2 18.7 s, glmGamPoi 6.1 s, PyDESeq2 32-36 s.
Goal (issue 3): at most half of glmGamPoi's 6.1 s.

Run:  .venv/bin/python bench/de.py [--genes 10000] [--samples 100] [--repeats 3] [--peer-repeats 2]

Whole-process scaling (issue 14):  .venv/bin/python bench/de.py --sizes 100x10000,500x20000,2000x30000
  For each size (samples x genes) the same simulated table is written to CSV once, then each tool runs as
  its own process from CSV in to CSV out, timed from launch to exit with its peak resident memory:
  ``diffbio-prob de`` on an empty compilation cache (cold) and again on the cache it filled (warm);
  glmGamPoi (``glm_gp`` + ``test_de``), R DESeq2 (``DESeq`` + ``results``, skip with ``--no-deseq2``) and
  PyDESeq2 (when importable; ``--pydeseq2-path`` adds its folder to the path, n_cpus=1) in the same run.
  Prints the times, the ratios to glmGamPoi and how each ratio moves with size.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import pandas as pd


def simulate(n_genes: int, n_samples: int, beta_sd: float, seed: int):
    rng = np.random.default_rng(seed)
    b0 = rng.normal(4.0, 2.0, n_genes)
    b1 = rng.normal(0.0, beta_sd, n_genes)
    disp = 4.0 / 2.0**b0 + 0.1
    n_a = (n_samples + 1) // 2
    cond = np.array(["A"] * n_a + ["B"] * (n_samples - n_a))
    mu = 2.0 ** (b0[:, None] + b1[:, None] * (cond == "B")[None, :])
    size = 1.0 / disp[:, None]
    counts = rng.negative_binomial(size, size / (size + mu))
    samples = [f"sample{j + 1}" for j in range(n_samples)]
    genes = [f"gene{i + 1}" for i in range(n_genes)]
    return pd.DataFrame(counts, index=genes, columns=samples), pd.DataFrame({"condition": cond}, index=samples)


def run_ours(counts, meta):
    from diffbio_prob.workflows.deseq2 import fit_deseq2

    fit = fit_deseq2(counts, meta, "~condition")
    return fit.results(["condition", "B", "A"])


def run_pydeseq2(counts, meta):
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.default_inference import DefaultInference
    from pydeseq2.ds import DeseqStats

    inference = DefaultInference(n_cpus=1)
    dds = DeseqDataSet(counts=counts.T, metadata=meta, design="~condition", inference=inference, quiet=True)
    dds.deseq2()
    ds = DeseqStats(dds, contrast=["condition", "B", "A"], alpha=0.1, inference=inference, quiet=True)
    ds.summary()
    return ds.results_df


CPU = []  # process CPU seconds of each timed call (all threads), next to the wall times


def timed(fn, *args):
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(*args)
    CPU.append(time.process_time() - c0)
    return time.perf_counter() - t0, out


_R_GLMGAMPOI = """
suppressMessages(library(glmGamPoi))
a <- commandArgs(TRUE)
counts <- as.matrix(read.csv(a[1], row.names = 1, check.names = FALSE))
meta <- read.csv(a[2], row.names = 1)
meta$condition <- factor(meta$condition)
fit <- glm_gp(counts, design = ~ condition, col_data = meta, on_disk = FALSE)
res <- test_de(fit, contrast = conditionB)
write.csv(res, a[3], row.names = FALSE)
"""

_R_DESEQ2 = """
suppressMessages(library(DESeq2))
a <- commandArgs(TRUE)
counts <- as.matrix(read.csv(a[1], row.names = 1, check.names = FALSE))
meta <- read.csv(a[2], row.names = 1)
meta$condition <- factor(meta$condition)
dds <- DESeqDataSetFromMatrix(counts, meta, ~ condition)
dds <- DESeq(dds, quiet = TRUE)
write.csv(as.data.frame(results(dds, contrast = c("condition", "B", "A"))), a[3])
"""

_PYDESEQ2 = """
import sys, warnings
import pandas as pd
from threadpoolctl import threadpool_limits
from pydeseq2.dds import DeseqDataSet
from pydeseq2.default_inference import DefaultInference
from pydeseq2.ds import DeseqStats
warnings.simplefilter("ignore")
counts = pd.read_csv(sys.argv[1], index_col=0).T
meta = pd.read_csv(sys.argv[2], index_col=0)
with threadpool_limits(limits=1):
    inference = DefaultInference(n_cpus=1)
    dds = DeseqDataSet(counts=counts, metadata=meta, design="~condition", inference=inference, quiet=True)
    dds.deseq2()
    ds = DeseqStats(dds, contrast=["condition", "B", "A"], inference=inference, quiet=True)
    ds.summary()
ds.results_df.to_csv(sys.argv[3])
"""


def _process(cmd: list[str], env: dict | None = None) -> tuple[float, float, int]:
    """Wall seconds from launch to exit, peak resident memory (MiB) and the exit code of ``cmd``."""
    import subprocess

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace").strip().splitlines()
    if proc.returncode:
        print(f"    {cmd[0]} failed ({proc.returncode}): {err[-1] if err else ''}")
    return wall, usage.ru_maxrss / 1024.0, proc.returncode


def scaling(sizes: list[tuple[int, int]], *, seed: int, beta_sd: float, deseq2: bool, pydeseq2_path: str | None):
    """Whole-process timings per size (see the module docstring); returns the rows printed."""
    import shutil
    import sys
    import tempfile

    here = os.path.dirname(os.path.abspath(sys.executable))
    ours_cli = os.path.join(here, "diffbio-prob")
    rscript = shutil.which("Rscript")
    rows = []
    print(f"whole process, CSV in -> CSV out; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print("| samples x genes | tool | wall s | peak MiB | / glmGamPoi |")
    print("|---|---|---|---|---|")
    for n, g in sizes:
        with tempfile.TemporaryDirectory(prefix="diffbio-bench-de-") as tmp:
            counts, meta = simulate(g, n, beta_sd, seed)
            c_path, m_path = os.path.join(tmp, "counts.csv"), os.path.join(tmp, "meta.csv")
            counts.to_csv(c_path)
            meta.to_csv(m_path)
            del counts
            out = os.path.join(tmp, "out.csv")
            runs = {}
            env = dict(os.environ, XDG_CACHE_HOME=os.path.join(tmp, "cache"))
            ours = [ours_cli, "de", "--counts", c_path, "--metadata", m_path, "--design", "~condition", "--out", out,
                    "--quiet"]
            runs["diffbio-prob (cold cache)"] = _process(ours, env)
            runs["diffbio-prob (warm cache)"] = _process(ours, env)
            if rscript:
                for name, code in (("glmGamPoi", _R_GLMGAMPOI), ("R DESeq2", _R_DESEQ2 if deseq2 else None)):
                    if code is None:
                        continue
                    script = os.path.join(tmp, "run.R")
                    with open(script, "w") as fh:
                        fh.write(code)
                    runs[name] = _process([rscript, script, c_path, m_path, out])
            py_env = dict(os.environ)
            if pydeseq2_path:
                py_env["PYTHONPATH"] = pydeseq2_path + os.pathsep + py_env.get("PYTHONPATH", "")
            script = os.path.join(tmp, "run_pydeseq2.py")
            with open(script, "w") as fh:
                fh.write(_PYDESEQ2)
            probe = _process([sys.executable, "-c", "import pydeseq2"], py_env)
            if probe[2] == 0:
                runs["PyDESeq2 (n_cpus=1)"] = _process([sys.executable, script, c_path, m_path, out], py_env)
        peer = runs.get("glmGamPoi")
        for tool, (wall, mem, rc) in runs.items():
            ratio = f"{wall / peer[0]:.2f}x" if peer and peer[2] == 0 and rc == 0 else "-"
            shown = f"{wall:.1f}" if rc == 0 else "failed"
            print(f"| {n} x {g} | {tool} | {shown} | {mem:.0f} | {ratio} |", flush=True)
            rows.append((n, g, tool, wall, mem, rc))
    by_tool = {}
    for n, g, tool, wall, _, rc in rows:
        peer = next((w for n2, g2, t2, w, _, r2 in rows if (n2, g2, t2) == (n, g, "glmGamPoi") and r2 == 0), None)
        if peer and rc == 0 and tool != "glmGamPoi":
            by_tool.setdefault(tool, []).append(f"{n}x{g}: {wall / peer:.2f}x")
    for tool, ratios in by_tool.items():
        print(f"  {tool} / glmGamPoi as size grows: " + ", ".join(ratios))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--genes", type=int, default=10000)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--beta-sd", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-peer", action="store_true", help="time diffbio-prob only")
    ap.add_argument("--sizes", help="whole-process scaling: comma-separated SAMPLESxGENES, e.g. 100x10000,500x20000")
    ap.add_argument("--no-deseq2", action="store_true", help="with --sizes: skip R DESeq2 (slow at large sizes)")
    ap.add_argument("--pydeseq2-path", help="with --sizes: a folder holding pydeseq2 (pip install --target)")
    args = ap.parse_args()
    if args.sizes:
        try:
            sizes = [tuple(int(v) for v in item.lower().split("x")) for item in args.sizes.split(",")]
            assert all(len(sz) == 2 and min(sz) > 1 for sz in sizes)
        except (ValueError, AssertionError):
            ap.error(f"--sizes: expected SAMPLESxGENES[,SAMPLESxGENES...], got {args.sizes!r}")
        scaling(sizes, seed=args.seed, beta_sd=args.beta_sd, deseq2=not args.no_deseq2,
                pydeseq2_path=args.pydeseq2_path)
        return

    import jax

    counts, meta = simulate(args.genes, args.samples, args.beta_sd, args.seed)
    print(
        f"DESeq2 pipeline, {args.genes} genes x {args.samples} samples (~condition), "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__} "
        f"on {jax.devices()[0].platform}"
    )
    cold, _ = timed(run_ours, counts, meta)
    warm = []
    for _ in range(args.repeats):
        t, ours = timed(run_ours, counts, meta)
        warm.append(t)
    ours_med = float(np.median(warm))
    ours_cpu = float(np.median(CPU[1:]))
    print(
        f"  diffbio-prob  cold (with compilation) {cold:7.2f} s   warm median of {args.repeats}: {ours_med:7.2f} s "
        f"wall, {ours_cpu:7.2f} s CPU (all threads)"
    )
    print(f"  goal: <= 3.05 s (half of glmGamPoi's 6.1 s, docs/notes/de.md) -> {'met' if ours_med <= 3.05 else 'not met'}")
    if args.skip_peer:
        return
    try:
        import pydeseq2  # noqa: F401
    except ImportError:
        print("  PyDESeq2 not installed (pip install pydeseq2): peer skipped")
        return
    from threadpoolctl import threadpool_limits

    peer_times = []
    n_ours = len(CPU)
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(args.peer_repeats):
            t, peer = timed(run_pydeseq2, counts, meta)
            peer_times.append(t)
    peer_med = float(np.median(peer_times))
    peer_cpu = float(np.median(CPU[n_ours:]))
    print(
        f"  PyDESeq2 {pydeseq2.__version__} median of {args.peer_repeats}: {peer_med:7.2f} s wall, {peer_cpu:7.2f} s CPU "
        "(n_cpus=1, 1 BLAS thread)"
    )
    print(
        f"  ratio PyDESeq2 / diffbio-prob (warm): {peer_med / ours_med:5.1f}x wall, {peer_cpu / ours_cpu:5.1f}x CPU;  "
        f"including our compilation: {peer_med / cold:5.1f}x wall"
    )
    # how far apart the answers are (PyDESeq2 optimises dispersions exactly, R/we use DESeq2's line search)
    peer = peer.reindex(ours.index)
    both = ours["pvalue"].notna() & peer["pvalue"].notna()
    lfc = np.abs(ours["log2FoldChange"] - peer["log2FoldChange"]) / np.abs(peer["log2FoldChange"])
    pv = np.abs(ours["pvalue"] - peer["pvalue"]) / peer["pvalue"]
    print(
        f"  agreement with PyDESeq2 ({int(both.sum())} genes with p-values in both): median rel. diff LFC "
        f"{np.nanmedian(lfc):.1e}, p-value {np.nanmedian(pv[both]):.1e}; padj<0.1: ours "
        f"{int((ours['padj'] < 0.1).sum())}, PyDESeq2 {int((peer['padj'] < 0.1).sum())}"
    )


if __name__ == "__main__":
    main()
