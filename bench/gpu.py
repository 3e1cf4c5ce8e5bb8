"""Accelerator benchmark: what a GPU (or any non-CPU backend) buys each part of diffbio-prob, in one process.

Not a test (``tests/test_bench_gpu.py`` runs ``--quick`` on a CPU). Prints the backend and devices, then a
markdown table per section with two timings and their ratio:

  hmm    the HMM core's sequential scan (``lax.scan``) against its parallel one (associative scan) on one
         sequence of random float32 parameters and emission log-likelihoods, T = 1e4, 1e5, 1e6 steps and
         K = 8, 16, 64 states: log-likelihood (``log_likelihood(method=...)``), forward filter
         (``forward_filter`` / ``parallel_filter``) and, up to ``--smoother-max-T`` steps, the smoother
         (``smoother`` / ``parallel_smoother``). Next to the timings: what ``method="auto"`` picks on this
         backend (``cores.hmm.resolve_method``: the parallel scan on any backend but "cpu" from
         ``cores.hmm.PARALLEL_MIN_STEPS`` = 1024 steps on), whether that was the faster scan, and how far the
         two scans' log-likelihoods and filtered marginals are apart (relative 1e-4 expected in float32).
  nuts   ``inference.fit_nuts`` on the Bayesian HMM (``models.hmm.hmm_model``, dishonest-casino rolls) with
         ``chain_method="sequential"`` (one chain after the other) against ``"vectorized"`` (all chains in
         one vmapped program), and ``"parallel"`` (sharded over devices) when there are several devices.
         ``fit_nuts`` compiles on every call, so each fit is timed whole and the XLA compile time measured
         inside it (JAX's ``/jax/core/compile/backend_compile_duration`` events) is printed apart; "run" is
         the wall time less that (tracing stays in it), per chain.
  de     ``workflows.deseq2.fit_deseq2`` + ``results`` (JAX, float64) on DESeq2's
         ``makeExampleDESeqDataSet`` recipe (the one of ``bench/de.py``), samples x genes = 2000 x 30000: the
         first run (compiles) and a second one (programs compiled), genes per second. No peers (those are in
         ``bench/de.py``).
  quant  VBEM of S = 64 samples on one simulated transcriptome: ``workflows.quant.quantify_many`` (one
         compiled program: vmapped over the samples, and ``lax.map`` one sample at a time) against a Python
         loop of ``quantify`` over the samples; what ``batch_size="auto"`` picks on this backend; the largest
         difference between the one-program and the one-by-one reads.

Timings are medians of ``--repeats`` calls after one warm-up (compiling) call, each ended by
``jax.block_until_ready`` (nuts: see above; de: one run of each kind). Ratios > 1 mean the second-named
way is faster. A cell that fails (e.g. out of device memory at T = 1e6, K = 64) prints its error instead
of stopping the run; each row is printed as soon as it is measured (flushed), so a run cut short by a
time limit still reports what it finished.

Run:  .venv/bin/python bench/gpu.py                      # the full sizes above (for an accelerator)
      .venv/bin/python bench/gpu.py --quick              # tiny sizes, well under a minute on 2 CPU cores
      .venv/bin/python bench/gpu.py --hmm-T 10000,100000 --hmm-K 8,64 --skip de,quant --repeats 5
      .venv/bin/python bench/gpu.py --de-size 500x20000 --quant-samples 16 --skip hmm,nuts
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SECTIONS = ("hmm", "nuts", "de", "quant")

#: Sizes without ``--quick`` (the issue's) and with it (a 2-core CPU, under a minute in all: compiling is most
#: of it there, ~2.5 s per parallel-scan program and ~10 s per NUTS program).
FULL = {"hmm_T": "10000,100000,1000000", "hmm_K": "8,16,64", "smoother_max_T": 100_000,
        "nuts_T": 2000, "nuts_chains": 8, "nuts_warmup": 200, "nuts_samples": 200,
        "de_size": "2000x30000", "quant_samples": 64, "quant_transcripts": 20_000, "quant_reads": 2e6}
QUICK = {"hmm_T": "1000,4000", "hmm_K": "4", "smoother_max_T": 1000,
         "nuts_T": 200, "nuts_chains": 2, "nuts_warmup": 100, "nuts_samples": 50,
         "de_size": "10x300", "quant_samples": 4, "quant_transcripts": 300, "quant_reads": 2e4}

#: The XLA compile event JAX records for every program it compiles (not nested, unlike the tracing events).
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def say(*lines: str) -> None:
    print(*lines, sep="\n", flush=True)


def markdown_header(*columns: str) -> None:
    say("| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|")


def markdown_row(*cells) -> None:
    say("| " + " | ".join(str(c) for c in cells) + " |")


def fmt_ratio(num: float | None, den: float | None) -> str:
    """``num / den`` as ``1.23x``; ``n/a`` when either side is missing."""
    if num is None or den is None or not den > 0:
        return "n/a"
    return f"{num / den:.2f}x"


def fmt_ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.2f}"


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"failed: {type(exc).__name__}: {first[:80]}".replace("|", "/")


def median_time(fn, repeats: int):
    """(median wall seconds of ``repeats`` calls after one warm-up call, the last call's output)."""
    out = jax.block_until_ready(fn())
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


class CompileClock:
    """Sums the XLA compile time JAX reports (any thread) while the ``with`` block runs."""

    def __enter__(self):
        self.seconds = 0.0
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def _listen(self, event: str, duration: float, **_kwargs) -> None:
        if event == BACKEND_COMPILE_EVENT:
            self.seconds += duration

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listen)


def int_list(text: str) -> list[int]:
    try:
        values = [int(float(x)) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def de_size(text: str) -> tuple[int, int]:
    try:
        samples, genes = (int(float(x)) for x in str(text).lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SAMPLESxGENES (e.g. 2000x30000), got {text!r}") from None
    if samples < 2 or genes < 1:
        raise argparse.ArgumentTypeError(f"expected at least 2 samples and 1 gene, got {text!r}")
    return samples, genes


def skip_list(text: str) -> set[str]:
    names = {x.strip() for x in str(text).split(",") if x.strip()}
    unknown = names - set(SECTIONS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown section(s) {sorted(unknown)}; expected some of {SECTIONS}")
    return names


# ------------------------------------------------------------------------------------------------ hmm
def hmm_problem(num_steps: int, num_states: int, seed: int = 0):
    """Random float32 parameters (sticky transitions) and (T, K) emission log-likelihoods, made on the device."""
    from diffbio_prob.cores import hmm as core

    k_pi, k_a, k_ll = jax.random.split(jax.random.PRNGKey(seed), 3)
    log_pi = jax.nn.log_softmax(jax.random.normal(k_pi, (num_states,), jnp.float32))
    sticky = 3.0 * jnp.eye(num_states, dtype=jnp.float32)
    logits = jax.random.normal(k_a, (num_states, num_states), jnp.float32) + sticky
    log_a = jax.nn.log_softmax(logits, axis=1)
    ll = 1.5 * jax.random.normal(k_ll, (num_steps, num_states), jnp.float32)
    return core.HMMParams(log_pi, log_a), jax.block_until_ready(ll)


def bench_hmm(args, summary: list) -> None:
    from diffbio_prob.cores import hmm as core

    backend = jax.default_backend()
    say("", "## HMM: sequential scan vs parallel (associative) scan, one sequence, float32", "",
        f"`method=\"auto\"` rule (`cores.hmm.resolve_method`): the parallel scan on any backend but \"cpu\" from "
        f"`PARALLEL_MIN_STEPS` = {core.PARALLEL_MIN_STEPS} steps on; this backend: {backend}. "
        "seq/par > 1: the parallel scan is faster.", "")
    fns = {
        "log-likelihood": (jax.jit(lambda p, ll: core.log_likelihood(p, ll, method="sequential")),
                           jax.jit(lambda p, ll: core.log_likelihood(p, ll, method="parallel"))),
        "filter": (jax.jit(core.forward_filter), jax.jit(core.parallel_filter)),
        "smoother": (jax.jit(core.smoother), jax.jit(core.parallel_smoother)),
    }
    markdown_header("T", "K", "quantity", "sequential ms", "parallel ms", "seq/par", "auto picks", "auto was faster")
    checks = []
    for t_len in args.hmm_T:
        for k in args.hmm_K:
            try:
                params, ll = hmm_problem(t_len, k)
            except Exception as exc:  # e.g. out of device memory
                markdown_row(t_len, k, "(problem)", short_error(exc), "", "n/a", "", "")
                continue
            auto = core.resolve_method("auto", t_len)
            values = {}
            for name, (seq_fn, par_fn) in fns.items():
                if name == "smoother" and t_len > args.smoother_max_T:
                    markdown_row(t_len, k, name, f"skipped (T > --smoother-max-T {args.smoother_max_T})", "", "n/a",
                                 auto, "")
                    continue
                timings = []
                for fn in (seq_fn, par_fn):
                    try:
                        seconds, out = median_time(lambda fn=fn: fn(params, ll), args.repeats)
                        timings.append(seconds)
                        values.setdefault(name, []).append(out)
                    except Exception as exc:
                        timings.append(exc)
                    gc.collect()
                seq_s, par_s = (t if isinstance(t, float) else None for t in timings)
                cells = [fmt_ms(t) if isinstance(t, float) else short_error(t) for t in timings]
                faster = "" if seq_s is None or par_s is None else (
                    "yes" if (auto == "parallel") == (par_s < seq_s) else "no")
                markdown_row(t_len, k, name, *cells, fmt_ratio(seq_s, par_s), auto, faster)
                if name == "log-likelihood":
                    summary.append((f"HMM log-likelihood T={t_len} K={k}: sequential / parallel",
                                    fmt_ratio(seq_s, par_s)))
            ll_pair, filt_pair = values.get("log-likelihood", []), values.get("filter", [])
            if len(ll_pair) == 2:
                a, b = (float(v) for v in ll_pair)
                rel = abs(a - b) / max(abs(a), 1e-30)
                filt = (float(jnp.max(jnp.abs(filt_pair[0].filtered - filt_pair[1].filtered)))
                        if len(filt_pair) == 2 else float("nan"))
                checks.append((t_len, k, a, b, rel, filt))
            del params, ll, values, ll_pair, filt_pair
            gc.collect()
    say("", "Agreement of the two scans (float32):", "")
    markdown_header("T", "K", "log-lik sequential", "log-lik parallel", "relative difference",
                    "max abs filtered difference")
    for t_len, k, a, b, rel, filt in checks:
        markdown_row(t_len, k, f"{a:.6g}", f"{b:.6g}", f"{rel:.2e}", f"{filt:.2e}")
    worst = max((c[4] for c in checks), default=float("nan"))
    verdict = "ok" if worst <= 1e-4 else "ABOVE 1e-4"
    say("", f"HMM max relative log-likelihood difference parallel vs sequential: {worst:.3e} ({verdict})")


# ------------------------------------------------------------------------------------------------ nuts
def casino(num_steps: int, seed: int = 0) -> np.ndarray:
    """Rolls of the dishonest casino (as ``bench/hmm_nuts.py``): state 0 fair, state 1 loaded (six: 1/2)."""
    rng = np.random.default_rng(seed)
    trans = np.array([[0.95, 0.05], [0.10, 0.90]])
    emit = np.array([[1 / 6] * 6, [0.1] * 5 + [0.5]])
    z = np.empty(num_steps, int)
    z[0] = rng.choice(2, p=[2 / 3, 1 / 3])
    u_z = rng.random(num_steps)
    for t in range(1, num_steps):
        z[t] = int(u_z[t] < trans[z[t - 1], 1])
    u = rng.random(num_steps)
    return (u[:, None] > np.cumsum(emit[z], axis=1)).sum(axis=1).astype(np.int32)


def bench_nuts(args, summary: list) -> None:
    from diffbio_prob.cores import hmm as core
    from diffbio_prob.inference import fit_nuts
    from diffbio_prob.models.hmm import hmm_model

    chains, t_len = args.nuts_chains, args.nuts_T
    rolls = jnp.asarray(casino(t_len))
    auto = core.resolve_method("auto", t_len)
    say("", f"## NUTS chains: `fit_nuts(hmm_model)`, dishonest casino T = {t_len} (the HMM's auto scan: {auto}), "
        f"{chains} chains x ({args.nuts_warmup} warmup + {args.nuts_samples} draws)", "",
        "Every fit compiles (fit_nuts builds its program per call): wall = compile + run; run = wall less the "
        "XLA compile time measured inside the fit. sequential/this > 1: this chain method is faster.", "")
    methods = ["sequential", "vectorized", "parallel"]
    n_dev = len(jax.devices())
    base = None
    markdown_header("chain_method", "devices", "wall s", "XLA compile s", "run s", "run s per chain",
                    "sequential/this (run)", "sequential/this (wall)", "mean accept prob")
    for method in methods:
        if method == "parallel" and n_dev < 2:
            say(f"| {method} | {n_dev} | chain_method='parallel' not timed: one {jax.default_backend()} device "
                "(it would be 'vectorized') | | | | | | |")
            continue
        walls, runs = [], []
        try:
            for _ in range(max(1, args.nuts_repeats)):
                with CompileClock() as clock:
                    t0 = time.perf_counter()
                    fit = fit_nuts(hmm_model, rolls, num_states=2, num_emissions=6, num_warmup=args.nuts_warmup,
                                   num_samples=args.nuts_samples, num_chains=chains, chain_method=method,
                                   rng_key=0, progress=False, posterior_predictive=False)
                    wall = time.perf_counter() - t0
                walls.append(wall)
                runs.append(max(wall - clock.seconds, 1e-9))
        except Exception as exc:  # a chain map the backend cannot run
            say(f"| {method} | {n_dev} | chain_method={method!r} unavailable on {jax.default_backend()}: "
                f"{short_error(exc)} | | | | | | |")
            continue
        wall, run = statistics.median(walls), statistics.median(runs)
        accept = float(np.mean(np.asarray(fit.sample_stats["acceptance_rate"])))
        if method == "sequential":
            base = (run, wall)
        markdown_row(method, n_dev, f"{wall:.2f}", f"{wall - run:.2f}", f"{run:.2f}", f"{run / chains:.3f}",
                     fmt_ratio(base[0] if base else None, run), fmt_ratio(base[1] if base else None, wall),
                     f"{accept:.3f}")
        if method != "sequential":
            summary.append((f"NUTS {chains} chains, run time: sequential / {method}",
                            fmt_ratio(base[0] if base else None, run)))


# ------------------------------------------------------------------------------------------------ de
def simulate_de(n_genes: int, n_samples: int, beta_sd: float = 1.0, seed: int = 0):
    """DESeq2's ``makeExampleDESeqDataSet`` recipe: ``bench/de.py``'s ``simulate``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_de", Path(__file__).resolve().parent / "de.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.simulate(n_genes, n_samples, beta_sd, seed)


def bench_de(args, summary: list) -> None:
    from diffbio_prob.workflows.deseq2 import fit_deseq2

    n_samples, n_genes = args.de_size
    say("", f"## DE: `fit_deseq2(~condition)` + `results`, {n_samples} samples x {n_genes} genes (float64)", "")
    counts, meta = simulate_de(n_genes, n_samples)

    def run():
        return fit_deseq2(counts, meta, "~condition").results(["condition", "B", "A"])

    t0 = time.perf_counter()
    first = run()
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = run()
    warm = time.perf_counter() - t0
    same = float(np.nanmax(np.abs(first["log2FoldChange"].to_numpy() - second["log2FoldChange"].to_numpy())))
    n_sig = int((second["padj"] < 0.1).sum())
    markdown_header("samples", "genes", "first run s (compiles)", "second run s", "first/second", "genes/s (second)",
                    "padj < 0.1", "max abs LFC difference between runs")
    markdown_row(n_samples, n_genes, f"{cold:.2f}", f"{warm:.2f}", fmt_ratio(cold, warm), f"{n_genes / warm:.0f}",
                 n_sig, f"{same:.1e}")
    summary.append((f"DE {n_samples}x{n_genes}: first run / second run", fmt_ratio(cold, warm)))


# ------------------------------------------------------------------------------------------------ quant
def simulate_quant(n_samples: int, n_transcripts: int, n_reads: float, seed: int = 0):
    """One transcriptome in genes of 1-6 isoforms; classes: every transcript alone, each pair of neighbouring
    isoforms of a gene, and each gene of 3 or more isoforms whole; per sample its own abundances and reads."""
    from diffbio_prob.io.base import EqClassTable

    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < n_transcripts:
        sizes.append(int(rng.integers(1, 7)))
    sizes[-1] -= sum(sizes) - n_transcripts
    sets = [[t] for t in range(n_transcripts)]
    start = 0
    for size in sizes:
        members = list(range(start, start + size))
        sets.extend([members[i], members[i + 1]] for i in range(size - 1))
        if size >= 3:
            sets.append(members)
        start += size
    class_ids = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
    tids = np.concatenate([np.asarray(s) for s in sets])
    efflen = rng.integers(400, 4000, n_transcripts).astype(float) - 180.0
    names = [f"TX{i:07d}" for i in range(n_transcripts)]
    tables = []
    for _ in range(n_samples):
        theta = rng.lognormal(0.0, 2.0, n_transcripts) * (rng.random(n_transcripts) > 0.1)
        share = rng.uniform(0.2, 1.0, tids.size)
        share /= np.bincount(tids, weights=share, minlength=n_transcripts)[tids]
        p = np.bincount(class_ids, weights=theta[tids] * share, minlength=len(sets)) + 1e-12
        counts = np.maximum(rng.multinomial(int(n_reads), p / p.sum()), 1).astype(float)
        tables.append(EqClassTable(names=names, class_ids=class_ids, transcript_ids=tids, weights=None,
                                   counts=counts))
    return tables, efflen


def bench_quant(args, summary: list) -> None:
    from diffbio_prob.workflows import quant

    n_samples = args.quant_samples
    tables, efflen = simulate_quant(n_samples, args.quant_transcripts, args.quant_reads)
    try:
        auto = quant._samples_per_step("auto", n_samples)  # the rule quantify_many's batch_size="auto" uses
        auto = "vmapped (batch_size=None)" if auto is None else f"lax.map (batch_size={auto})"
    except Exception:
        auto = "unknown"
    say("", f"## Quantification: VBEM of {n_samples} samples, {args.quant_transcripts} transcripts, "
        f"{tables[0].n_classes} classes, {args.quant_reads:.3g} reads each", "",
        f"`quantify_many(batch_size=\"auto\")` picks on {jax.default_backend()} with {len(jax.devices())} device(s): "
        f"{auto}. loop/this > 1: this one program is faster than the Python loop.", "")
    ways = {
        f"Python loop of quantify ({n_samples} calls)": lambda: [quant.quantify(t, efflen) for t in tables],
        "quantify_many, vmapped (batch_size=None)": lambda: quant.quantify_many(tables, efflen, batch_size=None),
        "quantify_many, lax.map (batch_size=1)": lambda: quant.quantify_many(tables, efflen, batch_size=1),
    }
    results, loop_s = {}, None
    markdown_header("way", "wall s", "s per sample", "loop/this", "max abs reads difference from the loop")
    for label, fn in ways.items():
        try:
            seconds, out = median_time(fn, args.repeats)
        except Exception as exc:
            markdown_row(label, short_error(exc), "", "n/a", "")
            continue
        reads = np.stack([r.num_reads for r in out])
        if loop_s is None and label.startswith("Python loop"):
            loop_s, results["loop"] = seconds, reads
        diff = float(np.max(np.abs(reads - results["loop"]))) if "loop" in results else float("nan")
        markdown_row(label, f"{seconds:.3f}", f"{seconds / n_samples:.4f}", fmt_ratio(loop_s, seconds), f"{diff:.2e}")
        if not label.startswith("Python loop"):
            summary.append((f"quant {n_samples} samples: loop / {label.split(', ')[1]}", fmt_ratio(loop_s, seconds)))


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a CPU check); explicit size flags still win")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls after the warm-up one (median)")
    ap.add_argument("--skip", type=skip_list, default=set(), help=f"comma-separated sections of {','.join(SECTIONS)}")
    ap.add_argument("--hmm-T", type=int_list, default=None, help=f"sequence lengths (default {FULL['hmm_T']})")
    ap.add_argument("--hmm-K", type=int_list, default=None, help=f"numbers of states (default {FULL['hmm_K']})")
    ap.add_argument("--smoother-max-T", type=int, default=None,
                    help=f"time the smoothers only up to this T (default {FULL['smoother_max_T']})")
    ap.add_argument("--nuts-T", type=int, default=None, help=f"casino rolls (default {FULL['nuts_T']})")
    ap.add_argument("--nuts-chains", type=int, default=None, help=f"chains (default {FULL['nuts_chains']})")
    ap.add_argument("--nuts-warmup", type=int, default=None, help=f"warmup steps (default {FULL['nuts_warmup']})")
    ap.add_argument("--nuts-samples", type=int, default=None, help=f"draws (default {FULL['nuts_samples']})")
    ap.add_argument("--nuts-repeats", type=int, default=1, help="fits per chain method (each compiles; median)")
    ap.add_argument("--de-size", type=de_size, default=None, help=f"SAMPLESxGENES (default {FULL['de_size']})")
    ap.add_argument("--quant-samples", type=int, default=None, help=f"samples (default {FULL['quant_samples']})")
    ap.add_argument("--quant-transcripts", type=int, default=None,
                    help=f"transcripts (default {FULL['quant_transcripts']})")
    ap.add_argument("--quant-reads", type=float, default=None,
                    help=f"reads per sample (default {FULL['quant_reads']:g})")
    args = ap.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    converters = {"hmm_T": int_list, "hmm_K": int_list, "de_size": de_size}
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, converters[key](value) if key in converters else value)
    for key in ("repeats", "nuts_T", "nuts_chains", "nuts_samples", "quant_samples", "quant_transcripts"):
        if getattr(args, key) < 1:
            ap.error(f"--{key.replace('_', '-')}: expected a positive integer")
    if args.nuts_warmup < 0 or args.quant_reads < 1:
        ap.error("--nuts-warmup must be >= 0 and --quant-reads >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    devices = jax.devices()
    say("# diffbio-prob accelerator benchmark" + (" (--quick)" if args.quick else ""), "",
        f"jax {jax.__version__}, backend {jax.default_backend()}, {len(devices)} device(s): "
        + ", ".join(f"{d.platform}:{d.id} {getattr(d, 'device_kind', '')}".strip() for d in devices),
        f"host: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
        f"x64 {'on' if jax.config.jax_enable_x64 else 'off'}, repeats {args.repeats}")
    summary: list[tuple[str, str]] = []
    runners = {"hmm": bench_hmm, "nuts": bench_nuts, "de": bench_de, "quant": bench_quant}
    for name in SECTIONS:
        if name in args.skip:
            say("", f"## {name}: skipped (--skip)")
            continue
        t0 = time.perf_counter()
        runners[name](args, summary)
        say("", f"({name} section: {time.perf_counter() - t0:.1f} s)")
    say("", "## Ratios (> 1: the second-named way is faster)", "")
    markdown_header("comparison", "ratio")
    for label, value in summary:
        markdown_row(label, value)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
