"""Benchmark: our EM/VBEM against ``salmon quant --eqclasses`` on one large synthetic equivalence-class file.

A synthetic transcriptome (default 100,000 transcripts in genes of 1-12 isoforms, 500,000 distinct
classes, 20M fragments) is written as salmon's weighted eq-class file (``--dumpEqWeights`` form, with
trailing ``name efflen`` lines) plus a FASTA of the transcripts. Both tools then quantify the *same file*:

* salmon: ``salmon quant --eqclasses eq.txt -t tx.fa -l A [--useEM] -p THREADS``; wall time of the
  process and of its optimizer (``starting optimizer`` -> ``finished optimizer`` in its log).
* ours: ``read_eq_classes`` + ``cores.em.em`` with salmon's rule (min 100 iterations, 1% relative change),
  compiled once (the compile time is printed separately), then timed; with and without SQUAREM.

Prints median wall times over ``--repeats`` runs, the ratio salmon/ours (> 1: we are faster), the
iterations to converge (plain EM vs SQUAREM, salmon's rule and a tight 1e-6 rule), and the largest
difference from salmon's NumReads. Runs us and the peer in one process.

``--many K[,K...]``: many samples at once. The real samples of ``../shared/quant2de_ref/salmon/*/`` (4
samples on one 10,072-transcript index, salmon 1.10.1's weighted ``eq_classes.txt.gz``) are written as
``--eqclasses`` inputs with each sample's own effective lengths (from its ``quant.sf``) and repeated up
to K samples. Ours: all K in one compiled program (``quantify_many``: VBEM vmapped over samples, and
mapped one sample at a time by ``lax.map``, the CPU default; warm medians, compile time apart), the same
samples one by one (``quantify``, warm), and the whole
``diffbio-prob quant --eq-classes K files --out-dir`` process (import, compile, read, write). salmon:
``salmon quant --eqclasses`` once per sample, the sum of its processes and of its optimizer phases.

    .venv/bin/python bench/em.py                          # full size (a few minutes on 2 cores)
    .venv/bin/python bench/em.py --transcripts 20000 --classes 100000 --reads 4e6 --repeats 3
    .venv/bin/python bench/em.py --many 4,16 --repeats 3  # many samples (64: a few minutes more)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthesize(n_tx: int, n_classes: int, n_reads: float, seed: int):
    """A synthetic transcriptome and its equivalence classes (unique transcript sets, salmon's weights)."""
    from diffbio_prob.io.eqclasses import EqClassTable

    rng = np.random.default_rng(seed)
    # genes of 1..12 isoforms
    sizes = []
    while sum(sizes) < n_tx:
        sizes.append(int(min(12, 1 + rng.poisson(3.0))))
    sizes[-1] -= sum(sizes) - n_tx
    sizes = np.asarray([s for s in sizes if s > 0])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    # classes per gene: all singletons, plus distinct multi-isoform subsets, scaled to hit n_classes
    capacity = (2.0 ** sizes - 1 - sizes).astype(float)
    extra_total = n_classes - n_tx
    if extra_total < 0 or capacity.sum() < extra_total:
        raise SystemExit("cannot place that many distinct classes; raise --transcripts or lower --classes")
    want = capacity / capacity.sum() * extra_total
    want = np.minimum(np.floor(want * 1.0), capacity)
    # distribute the rounding remainder
    short = int(extra_total - want.sum())
    room = np.flatnonzero(want < capacity)
    add = rng.choice(room, size=short, replace=short > room.size) if short > 0 else []
    for g in add:
        if want[g] < capacity[g]:
            want[g] += 1
    class_sets = []
    for g, (k, s) in enumerate(zip(sizes, starts)):
        class_sets.extend([np.array([s + i]) for i in range(k)])
        m = int(want[g])
        if m == 0:
            continue
        masks = np.array([x for x in range(1, 2**k) if bin(x).count("1") >= 2], dtype=np.int64)
        chosen = rng.choice(masks, size=m, replace=False) if m < masks.size else masks
        bits = (chosen[:, None] >> np.arange(k)[None, :]) & 1
        for row in bits:
            class_sets.append(s + np.flatnonzero(row))
    n_c = len(class_sets)
    lengths = rng.integers(400, 4000, size=n_tx).astype(float)
    efflen = lengths - 180.0
    theta = rng.lognormal(0.0, 2.0, size=n_tx) * (rng.uniform(size=n_tx) > 0.1)  # 10% not expressed
    cls_sizes = np.array([len(c) for c in class_sets])
    class_ids = np.repeat(np.arange(n_c), cls_sizes)
    tids = np.concatenate(class_sets)
    aux = rng.uniform(0.2, 1.0, size=tids.size)
    w = aux / efflen[tids]
    w /= np.bincount(class_ids, weights=w)[class_ids]  # salmon's dump: normalised, 1/l included
    # class probabilities: mass of the class's members, split over the classes each transcript is in
    share = rng.uniform(0.2, 1.0, size=tids.size)
    share /= np.bincount(tids, weights=share, minlength=n_tx)[tids]
    p = np.bincount(class_ids, weights=theta[tids] * share, minlength=n_c) + 1e-12
    counts = rng.multinomial(int(n_reads), p / p.sum()).astype(float)
    counts = np.maximum(counts, 1.0)  # every written class has fragments
    names = [f"TX{i:07d}" for i in range(n_tx)]
    table = EqClassTable(names=names, class_ids=class_ids, transcript_ids=tids, weights=w, counts=counts,
                         weights_include_length=True)
    return table, lengths, efflen


def write_fasta(path: Path, names, lengths, seed: int):
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"ACGT", np.uint8)
    with open(path, "w") as fh:
        for n, L in zip(names, lengths.astype(int)):
            seq = alphabet[rng.integers(0, 4, size=L)].tobytes().decode()
            fh.write(f">{n}\n{seq}\n")


def _stamp(line: str) -> float:
    m = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\]", line)
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp() if m else float("nan")


def run_salmon(eq: Path, fasta: Path, out: Path, use_em: bool, threads: int):
    if out.exists():
        shutil.rmtree(out)
    cmd = ["salmon", "quant", "--eqclasses", str(eq), "-t", str(fasta), "-l", "A", "-p", str(threads), "-o", str(out)]
    if use_em:
        cmd.append("--useEM")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"salmon failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    log = (out / "logs" / "salmon_quant.log").read_text().splitlines()
    start = next(_stamp(ln) for ln in log if "starting optimizer" in ln)
    end = next(_stamp(ln) for ln in log if "finished optimizer" in ln)
    iters = [int(m.group(1)) for ln in log if (m := re.search(r"iteration = (\d+)", ln))]
    return wall, end - start, max(iters) if iters else -1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transcripts", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=500_000)
    ap.add_argument("--reads", type=float, default=20e6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="salmon -p (default: all cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--float32", action="store_true", help="ours in float32 (default float64, salmon's precision)")
    ap.add_argument("--workdir", default=str(ROOT / "bench" / "out" / "em"))
    ap.add_argument("--skip-salmon", action="store_true")
    ap.add_argument("--many", default=None, metavar="K[,K...]",
                    help="many-sample mode: the quant2de samples repeated to K samples (e.g. 4,16,64)")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "quant2de_ref" / "salmon"),
                    help="salmon folders of the many-sample mode")
    args = ap.parse_args(argv)
    if args.many:
        return many_main(args)

    import jax

    jax.config.update("jax_enable_x64", not args.float32)
    import jax.numpy as jnp

    from diffbio_prob.cores import em as core
    from diffbio_prob.io.eqclasses import read_eq_classes
    from diffbio_prob.io.salmon import read_quant_sf, write_salmon_eq_classes
    from diffbio_prob.workflows.quant import to_eq_classes

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    tag = f"T{args.transcripts}_C{args.classes}_N{int(args.reads)}_s{args.seed}"
    eq_path, fa_path = work / f"eq_{tag}.txt", work / f"tx_{tag}.fa"
    t0 = time.perf_counter()
    if not eq_path.exists() or not fa_path.exists():
        table, lengths, efflen = synthesize(args.transcripts, args.classes, args.reads, args.seed)
        write_salmon_eq_classes(eq_path, table, effective_lengths=efflen)
        write_fasta(fa_path, table.names, lengths, args.seed)
        print(f"wrote {eq_path} and {fa_path} in {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    table = read_eq_classes(eq_path)
    t_read = time.perf_counter() - t0
    eqc = to_eq_classes(table)
    eff = jnp.asarray(table.lengths, eqc.counts.dtype)
    print(f"data: {table.n_transcripts:,} transcripts, {table.n_classes:,} classes, {table.n_entries:,} entries, "
          f"{table.counts.sum():,.0f} fragments; read in {t_read:.1f} s; jax {jax.__version__} on "
          f"{jax.devices()[0].platform}, {'float32' if args.float32 else 'float64'}")

    use_salmon = not args.skip_salmon and shutil.which("salmon") is not None
    if use_salmon:
        version = subprocess.run(["salmon", "--version"], capture_output=True, text=True).stdout.strip()
        print(f"peer: {version}, -p {args.threads}")
    # Ours and salmon alternate within each repeat, so both see the same machine load.
    results = {}
    for algorithm in ("em", "vbem"):
        def go(squarem, algorithm=algorithm, **kw):
            r = core.em(eqc, eff, algorithm=algorithm, squarem=squarem, **kw)
            r.counts.block_until_ready()
            return r

        compile_s = {}
        for squarem in (False, True):
            t0 = time.perf_counter()
            go(squarem)
            compile_s[squarem] = time.perf_counter() - t0
        times = {False: [], True: []}
        sal_wall, sal_opt, sal_it = [], [], []
        for _ in range(args.repeats):
            for squarem in (False, True):
                t0 = time.perf_counter()
                res = go(squarem)
                times[squarem].append(time.perf_counter() - t0)
                results[(algorithm, squarem, "res")] = res
            if use_salmon:
                wall, opt, it = run_salmon(eq_path, fa_path, work / f"salmon_{algorithm}", algorithm == "em",
                                           args.threads)
                sal_wall.append(wall)
                sal_opt.append(opt)
                sal_it.append(it)
        for squarem in (False, True):
            res = results[(algorithm, squarem, "res")]
            rule0 = go(squarem, min_iter=0)
            tight = go(squarem, min_iter=0, rel_tol=1e-6, max_iter=100_000)
            results[(algorithm, squarem)] = dict(times=times[squarem], res=res, rule0=rule0, tight=tight)
            med = statistics.median(times[squarem])
            print(f"ours {algorithm:4s} squarem={squarem!s:5s}: median {med:7.3f} s, min {min(times[squarem]):7.3f} s "
                  f"(first call +{compile_s[squarem] - med:.1f} s compile); salmon rule: {int(res.n_iterations)} "
                  f"iterations / {int(res.n_evaluations)} map evaluations; same rule without minIter: "
                  f"{int(rule0.n_evaluations)}; tight 1e-6 rule: {int(tight.n_evaluations)} evaluations "
                  f"(converged={bool(tight.converged)})")
        plain, fast = results[(algorithm, False)], results[(algorithm, True)]
        ev = {k: (int(fast[k].n_evaluations), int(plain[k].n_evaluations)) for k in ("res", "rule0", "tight")}
        print(f"  {algorithm}: SQUAREM/plain map evaluations, salmon rule {ev['res'][0]}/{ev['res'][1]} = "
              f"{ev['res'][0] / ev['res'][1]:.2f}; without minIter {ev['rule0'][0]}/{ev['rule0'][1]} = "
              f"{ev['rule0'][0] / ev['rule0'][1]:.2f}; tight rule {ev['tight'][0]}/{ev['tight'][1]} = "
              f"{ev['tight'][0] / ev['tight'][1]:.2f}; distance to the converged maximum: plain "
              f"{float(jnp.abs(plain['res'].counts - plain['tight'].counts).max()):.3f} reads, SQUAREM "
              f"{float(jnp.abs(fast['res'].counts - plain['tight'].counts).max()):.3f} reads")
        if use_salmon:
            sal = read_quant_sf(work / f"salmon_{algorithm}" / "quant.sf")
            diff = np.abs(np.asarray(plain["res"].counts) - sal.num_reads)
            o_plain, o_fast = statistics.median(plain["times"]), statistics.median(fast["times"])
            m_wall, m_opt = statistics.median(sal_wall), statistics.median(sal_opt)
            print(f"  salmon {algorithm}: process median {m_wall:7.3f} s, optimizer median {m_opt:7.3f} s, min "
                  f"{min(sal_opt):7.3f} s (log's last iteration mark {max(sal_it)}); max |ours - salmon| NumReads "
                  f"= {diff.max():.3f}, salmon's distance to the converged maximum "
                  f"{np.abs(sal.num_reads - np.asarray(plain['tight'].counts)).max():.3f} reads")
            print(f"  ratio salmon/ours (> 1: ours faster): optimizer vs EM plain {m_opt / o_plain:.2f}x (min/min "
                  f"{min(sal_opt) / min(plain['times']):.2f}x), SQUAREM {m_opt / o_fast:.2f}x; process vs our "
                  f"read + EM {m_wall / (t_read + o_plain):.2f}x")
    if not use_salmon:
        print("\nsalmon not run (" + ("--skip-salmon" if args.skip_salmon else "not installed") + ")")
    return 0

def many_main(args) -> int:
    """Ours on K samples in one program against salmon --eqclasses once per sample (see the module docstring)."""
    import jax

    jax.config.update("jax_enable_x64", not args.float32)
    from diffbio_prob.io.eqclasses import read_eq_classes
    from diffbio_prob.io.salmon import read_quant_sf, write_salmon_eq_classes
    from diffbio_prob.workflows.quant import quantify, quantify_many

    sizes = [int(x) for x in args.many.split(",")]
    src = sorted(d for d in Path(args.shared).iterdir() if (d / "aux_info" / "eq_classes.txt.gz").is_file())
    if not src:
        raise SystemExit(f"no salmon folders with aux_info/eq_classes.txt.gz in {args.shared}")
    work = Path(args.workdir) / "many"
    work.mkdir(parents=True, exist_ok=True)
    base, fasta = [], work / "tx.fa"
    for d in src:  # salmon's --eqclasses input: the weighted dump plus trailing "name efflen" lines
        path = work / d.name / "aux_info" / "eq_classes.txt"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            table, quant = read_eq_classes(d / "aux_info" / "eq_classes.txt.gz"), read_quant_sf(d / "quant.sf")
            assert quant.names == table.names
            write_salmon_eq_classes(path, table, effective_lengths=quant.effective_lengths)
            if not fasta.exists():
                write_fasta(fasta, table.names, quant.lengths, args.seed)
        base.append(path)
    use_salmon = not args.skip_salmon and shutil.which("salmon") is not None
    if use_salmon:
        version = subprocess.run(["salmon", "--version"], capture_output=True, text=True).stdout.strip()
        print(f"peer: {version}, -p {args.threads}, one process per sample")
    for K in sizes:
        files = []
        for k in range(K):  # copies named per sample, so the command's folder names differ
            f = work / f"K{K}" / f"S{k:03d}.txt"
            if not f.exists():
                f.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(base[k % len(base)], f)
            files.append(f)
        t0 = time.perf_counter()
        unique = [read_eq_classes(f) for f in base]
        t_read = (time.perf_counter() - t0) * K / len(base)  # every file is read once in the command
        tables = [unique[k % len(base)] for k in range(K)]
        effs = np.stack([t.lengths for t in tables])
        t0 = time.perf_counter()
        many = quantify_many(tables, effs, batch_size=None)
        first = time.perf_counter() - t0
        quantify_many(tables, effs, batch_size=1)
        for t, e in zip(unique, effs):
            quantify(t, e)  # compiled once per distinct sample shape
        ours, mapped, loop, proc, sal_wall, sal_opt = [], [], [], [], [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            many = quantify_many(tables, effs, batch_size=None)
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            quantify_many(tables, effs, batch_size=1)
            mapped.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            alone = [quantify(t, e) for t, e in zip(tables, effs)]
            loop.append(time.perf_counter() - t0)
            out = work / f"K{K}" / "ours"
            if out.exists():
                shutil.rmtree(out)
            cmd = [sys.executable, "-m", "diffbio_prob", "quant", "--eq-classes", *map(str, files),
                   "--out-dir", str(out), "--quiet"] + ([] if args.float32 else ["--x64"])
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=ROOT)
            proc.append(time.perf_counter() - t0)
            if use_salmon:
                walls, opts = [], []
                for k, f in enumerate(files):
                    wall, opt, _ = run_salmon(f, fasta, work / f"K{K}" / "salmon" / f"S{k:03d}", False, args.threads)
                    walls.append(wall)
                    opts.append(opt)
                sal_wall.append(sum(walls))
                sal_opt.append(sum(opts))
        med = statistics.median
        iters = [r.n_iterations for r in many]
        diff = max(float(np.abs(a.num_reads - b.num_reads).max()) for a, b in zip(many, alone))
        print(f"K={K:3d}: ours one program: vmapped {med(ours):7.3f} s (first call +{first - med(ours):.1f} s "
              f"compile), lax.map (batch_size=1) {med(mapped):7.3f} s; sample by sample {med(loop):7.3f} s; "
              f"whole command {med(proc):7.2f} s (read {t_read:.2f} s); "
              f"VBEM iterations {min(iters)}..{max(iters)} (lock step: {K * max(iters)} sample-iterations for "
              f"{sum(iters)} needed); max |one program - alone| {diff:.2e} reads")
        if use_salmon:
            theirs = [read_quant_sf(work / f"K{K}" / "salmon" / f"S{k:03d}" / "quant.sf") for k in range(len(base))]
            gap = max(float(np.abs(many[k].num_reads - theirs[k].num_reads).max()) for k in range(len(base)))
            print(f"        salmon {K} processes {med(sal_wall):7.2f} s (optimizers {med(sal_opt):6.3f} s); ratio "
                  f"salmon/ours (> 1: ours faster): optimizers vs one program {med(sal_opt) / med(ours):.2f}x vmapped, "
                  f"{med(sal_opt) / med(mapped):.2f}x lax.map, "
                  f"processes vs whole command {med(sal_wall) / med(proc):.2f}x; max |ours - salmon| NumReads "
                  f"{gap:.2e}")
    if not use_salmon:
        print("\nsalmon not run (" + ("--skip-salmon" if args.skip_salmon else "not installed") + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
