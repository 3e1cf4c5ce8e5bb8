"""Whole-process start-up cost of ``diffbio-prob de``, ``quant`` and ``hmm``: cold and warm compilation cache.

Not a test. Each command runs as its own process (``python -m diffbio_prob ...``, CSV/eq-class file in,
table out) three times, timed from outside (wall and CPU seconds of the child):

  * ``no cache``: ``DIFFBIO_PROB_JAX_CACHE=0`` (every program compiled, nothing kept);
  * ``cold``: an empty cache folder (``XDG_CACHE_HOME`` of a fresh temp dir): compiles and writes the cache;
  * ``warm``: the same folder again: every program should come from the cache (``new entries`` 0).

Inputs: DE, bench/de.py's ``makeExampleDESeqDataSet`` recipe (default 100 samples x 10,000 genes, design
``~condition``); quant, bench/em.py's synthetic eq classes (default 10,000 transcripts, 30,000 classes,
1e6 fragments, VBEM); hmm, a dishonest-casino sequence (2 states, 6 symbols, default T=10,000, Baum-Welch).

    .venv/bin/python bench/cold_start.py                       # all three, default sizes
    .venv/bin/python bench/cold_start.py --commands de --genes 2000 --samples 20
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def cache_entries(folder: Path) -> set[str]:
    """Names of the executables in a JAX cache folder (its ``-atime`` files are bookkeeping)."""
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.rglob("*") if p.is_file() and not p.name.endswith("-atime")}


def de_inputs(work: Path, n_genes: int, n_samples: int) -> list[str]:
    from de import simulate  # bench/de.py

    counts, meta = simulate(n_genes, n_samples, 1.0, 0)
    counts.to_csv(work / "counts.csv")
    meta.to_csv(work / "meta.csv")
    return ["de", "--counts", str(work / "counts.csv"), "--metadata", str(work / "meta.csv"),
            "--design", "~condition", "--contrast", "condition", "B", "A", "--out", str(work / "de.csv")]


def quant_inputs(work: Path, n_tx: int, n_classes: int, n_reads: float) -> list[str]:
    from em import synthesize  # bench/em.py

    from diffbio_prob.io.salmon import write_salmon_eq_classes

    table, _, efflen = synthesize(n_tx, n_classes, n_reads, 0)
    write_salmon_eq_classes(work / "eq.txt", table, effective_lengths=efflen)
    return ["quant", "--eq-classes", str(work / "eq.txt"), "--out", str(work / "quant.sf")]


def hmm_inputs(work: Path, length: int) -> list[str]:
    rng = np.random.default_rng(0)
    a = np.array([[0.95, 0.05], [0.1, 0.9]])
    b = np.array([[1 / 6] * 6, [0.1] * 5 + [0.5]])
    z, rolls = 0, []
    for _ in range(length):
        rolls.append(rng.choice(6, p=b[z]))
        z = rng.choice(2, p=a[z])
    (work / "rolls.txt").write_text("".join(str(r + 1) for r in rolls) + "\n")
    return ["hmm", "--input", str(work / "rolls.txt"), "--states", "2", "--out", str(work / "hmm_out")]


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(argv: list[str], env: dict) -> tuple[float, float]:
    """Wall and CPU seconds of one process (CPU time is the steadier figure on a shared machine)."""
    start, cpu = time.perf_counter(), _child_cpu()
    proc = subprocess.run([sys.executable, "-m", "diffbio_prob", *argv, "--quiet"], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return took, _child_cpu() - cpu


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commands", default="de,quant,hmm")
    ap.add_argument("--genes", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--transcripts", type=int, default=10_000)
    ap.add_argument("--classes", type=int, default=30_000)
    ap.add_argument("--reads", type=float, default=1e6)
    ap.add_argument("--length", type=int, default=10_000, help="HMM sequence length")
    args = ap.parse_args(argv)
    base = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "DIFFBIO_PROB_JAX_CACHE")}
    base["JAX_PLATFORMS"] = "cpu"
    print(f"{'':8} {'wall s (cpu s)':^44}")
    print(f"{'command':8} {'no cache':>14} {'cold':>14} {'warm':>14} {'warm/cold':>9} {'entries':>8} {'new (warm)':>10}")
    with tempfile.TemporaryDirectory(prefix="cold_start_") as tmp:
        tmp = Path(tmp)
        for name in args.commands.split(","):
            work = tmp / name
            work.mkdir()
            cmd = {"de": lambda: de_inputs(work, args.genes, args.samples),
                   "quant": lambda: quant_inputs(work, args.transcripts, args.classes, args.reads),
                   "hmm": lambda: hmm_inputs(work, args.length)}[name]()
            xdg = work / "xdg"
            folder = xdg / "diffbio-prob" / "jax"
            off = run(cmd, base | {"DIFFBIO_PROB_JAX_CACHE": "0", "XDG_CACHE_HOME": str(xdg)})
            cold = run(cmd, base | {"XDG_CACHE_HOME": str(xdg)})
            after_cold = cache_entries(folder)
            warm = run(cmd, base | {"XDG_CACHE_HOME": str(xdg)})
            new = cache_entries(folder) - after_cold
            cells = " ".join(f"{w:6.2f} ({c:5.2f})" for w, c in (off, cold, warm))
            print(f"{name:8} {cells} {warm[0] / cold[0]:9.2f} {len(after_cold):8d} {len(new):10d}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
