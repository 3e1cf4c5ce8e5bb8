"""The ``diffbio-prob`` command (also ``python -m diffbio_prob``).

Subcommands: ``demo`` (all models on embedded data), ``hmm`` (fit and decode an HMM), ``de``
(DESeq2-style differential expression), ``quant`` (salmon-style quantification).

Exit codes: 0 done; 2 bad input (arguments, output paths, input files: one line on stderr naming the
argument or file, raised before any fitting starts); 1 a failure that is not the input's fault (disk
full, a computation that overflowed: one line too); 130 Ctrl-C. Every output file is written
atomically, and after a Ctrl-C none is replaced.

Every subcommand runs as one job over several processes (one machine or many) with ``--coordinator
HOST:PORT --num-processes N --process-id I``, or the job the environment describes (SLURM, Open MPI,
JAX_COORDINATOR_ADDRESS: ``diffbio_prob.distributed``): the sharded programs of ``de``, ``quant`` and
``hmm`` span every process's devices, every process computes the same results, and only process 0
writes (the others run their writers into a deleted folder, ``diffbio_prob.io.atomic.discard_writes``).

Every subcommand keeps JAX's compiled programs in ~/.cache/diffbio-prob/jax (or $XDG_CACHE_HOME), so a
second run skips XLA compilation; DIFFBIO_PROB_JAX_CACHE=0 turns that off, JAX_COMPILATION_CACHE_DIR
picks another folder (``diffbio_prob.compile_cache``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import textwrap

from diffbio_prob import compile_cache, compile_queue

__all__ = ["main", "build_parser"]


class UsageError(Exception):
    """Raised by a subcommand for bad input: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error of every other bad input (no usage block; ``--help`` has it)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())} (see {self.prog} --help)\n")


def _finite(flag: str, value: float, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, allow_inf: bool = False) -> float:
    """``value`` if it is a number in the range (NaN never passes; inf only with ``allow_inf``)."""
    import math

    ok = not math.isnan(value) and (allow_inf or math.isfinite(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        want = (f"a number in {lo}, {hi}" if low is not None and high is not None
                else f"a number {'>' if low_open else '>='} {low:g}" if low is not None
                else f"a number {'<' if high_open else '<='} {high:g}" if high is not None else "a finite number")
        raise UsageError(f"{flag}: expected {want}{' (or inf)' if allow_inf else ''}, got {value}")
    return value


_FLOAT32_MAX = 3.4028234663852886e38


_INT32_MAX = 2**31 - 1  # JAX loop counters and shapes are 32-bit
_MAX_STATES = 10_000
_MAX_ITER = 10_000  # quantify's max_iter


def _count(flag: str, value: int, minimum: int = 1, maximum: int = _INT32_MAX, why: str = "") -> int:
    if value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise UsageError(f"{flag}: expected {kind}, got {value}")
    if value > maximum:
        raise UsageError(f"{flag}: expected at most {maximum}{why}, got {value}")
    return value


#: fit_nuts's chain methods (inference.chains.chain_method_names() less any a user registers): spelled out
#: here, because the parser is built before JAX is imported
_CHAIN_METHODS = ("auto", "sequential", "lax_map", "vectorized", "parallel")
_CHAIN_METHOD_HELP = (
    "with {needs}: how NUTS runs its chains: auto (the default: parallel when this is the only process and "
    "at least two of its devices can each take an equal share of the chains, else sequential; on one device "
    "it is sequential), sequential (one compiled chain program, called per chain), lax_map (one program, "
    "chains in turn), vectorized (one program, chains in lock step) or parallel (chains sharded over the "
    "devices; on a CPU set XLA_FLAGS=--xla_force_host_platform_device_count=N)")


def _add_chain_method(parser: argparse.ArgumentParser, needs: str) -> None:
    # default None: a value the user gave is told apart from the default, and refused with a fit that is not NUTS
    parser.add_argument("--chain-method", choices=_CHAIN_METHODS, default=None,
                        help=_CHAIN_METHOD_HELP.format(needs=needs))


def _chain_method(args, nuts: bool, needs: str) -> str:
    """``--chain-method`` for a NUTS fit (``auto`` when not given); with any other fit, a UsageError if given."""
    if nuts:
        return args.chain_method or "auto"
    if args.chain_method is not None:
        raise UsageError(f"--chain-method: only used with {needs}")
    return "sequential"  # the workflows' default; no NUTS runs


def _check_common(args) -> None:
    if not 0 <= args.seed < 2**32:
        raise UsageError(f"--seed: expected an integer in [0, 2^32), got {args.seed}")
    _check_distributed(args)


def _check_distributed(args) -> None:
    """``--coordinator``, ``--num-processes``, ``--process-id``: all three or none (main checks them before
    joining the job, so a bad one is one line and exit 2 in every process, before any work)."""
    from diffbio_prob import distributed

    given = [args.coordinator is not None, args.num_processes is not None, args.process_id is not None]
    if any(given) and not all(given):
        raise UsageError("--coordinator, --num-processes, --process-id: give all three or none (missing "
                         + ", ".join(f for f, g in zip(_JOB_FLAGS, given) if not g) + ")")
    _as_flags(distributed.check_arguments, coordinator=args.coordinator, num_processes=args.num_processes,
              process_id=args.process_id)


_JOB_FLAGS = ("--coordinator", "--num-processes", "--process-id")


# commands that compute nothing across processes (tximport: no JAX; demo: forks its own workers, which a
# jax.distributed client must not be forked into): they never join the job, only process 0 writes
_NO_JOB = ("tximport", "demo")


def _join(args) -> bool:
    """Join the job of several processes the flags or the environment describe (before JAX's backend is
    first used); returns whether this process writes the outputs (process 0, or the only process)."""
    from diffbio_prob import distributed

    _check_distributed(args)
    if args.command in _NO_JOB:
        rank = args.process_id if args.coordinator is not None else distributed.environment_process_id()
        return rank in (None, 0)  # a cluster that states no rank: every process writes the same files
    try:
        joined = distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    except RuntimeError as exc:  # jaxlib's errors (timeout, refused connection) are RuntimeErrors
        where = args.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS") or "the cluster's coordinator"
        raise ConnectionError(f"--coordinator: cannot join the job at {where}: {_one_line(exc)}") from None
    return not joined or distributed.is_primary()


def _as_flags(check, **kwargs) -> None:
    """Run a workflow's own argument check; its messages name the Python argument (``min_replicates_for_replace:
    ...``), reported here under the command line's flag (``--min-replicates-for-replace: ...``)."""
    try:
        check(**kwargs)
    except (ValueError, TypeError) as exc:
        name, sep, rest = str(exc).partition(":")
        if sep and name in kwargs:
            raise UsageError(f"--{name.replace('_', '-')}:{rest}") from None
        raise


def _output(flag: str, path, kind: str = "file", inputs: dict | None = None):
    """An output path checked before any work (see :func:`diffbio_prob.io.atomic.check_output_path`),
    and not one of the ``inputs`` (``{flag: path}``): writing there would replace the user's data."""
    from diffbio_prob.io.atomic import check_output_path

    out = check_output_path(path, flag, kind)
    for in_flag, in_path in (inputs or {}).items():
        if in_path is None:
            continue
        try:
            same = os.path.samefile(out, in_path) if os.path.exists(out) and os.path.exists(in_path) else (
                os.path.abspath(out) == os.path.abspath(in_path))
        except OSError:
            same = False
        if same:
            raise UsageError(f"{flag}: {str(path)!r} is the input file of {in_flag}; writing it would replace the input")
    return out


def _version() -> str:
    from diffbio_prob.io.base import package_version

    return package_version()


def _common(parser: argparse.ArgumentParser, *, x64: bool = True) -> None:
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    if x64:
        parser.add_argument("--x64", action="store_true", help="compute in float64 (default float32)")
    group = parser.add_argument_group(
        "across processes",
        "run the same command in N processes (on one machine or several) as one JAX job; process 0 writes "
        "the outputs. Without these flags a job is read from the environment as jax.distributed does "
        "(JAX_COORDINATOR_ADDRESS, SLURM's srun, Open MPI's mpirun; DIFFBIO_PROB_DISTRIBUTED=0: off)")
    group.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="address of process 0 (127.0.0.1:PORT for processes on one machine)")
    group.add_argument("--num-processes", type=int, default=None, metavar="N", help="how many processes take part")
    group.add_argument("--process-id", type=int, default=None, metavar="I", help="this process's rank, 0 to N-1")


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


# --- demo --------------------------------------------------------------------------------------
def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="fit the models on embedded data three ways and write a report",
        formatter_class=_formatter,
        description="Fit the three models (a dishonest-casino HMM, a DESeq2-style NB-GLM on simulated counts, "
        "EM quantification of salmon's sample data) by gradient, SVI and NUTS on data with a known truth, "
        "and write report.html, the posteriors (netCDF), tables (CSV, quant.sf) and figures (PNG) into an "
        "output folder.",
        epilog=textwrap.dedent(
            """\
            examples:
              diffbio-prob demo
              diffbio-prob demo --quick --out /tmp/demo --seed 1
            outputs (in --out):
              report.html                 one self-contained page: open it in a browser
              hmm/ de/ quant/             posterior_*.nc (arviz.from_netcdf), *.csv, quant.sf, *.png
            compilation cache:
              JIT-compiled code is kept in ~/.cache/diffbio-prob/jax (or $XDG_CACHE_HOME), so a second
              run starts faster; set DIFFBIO_PROB_JAX_CACHE=0 to turn that off, or
              JAX_COMPILATION_CACHE_DIR to use another folder.
            """
        ),
    )
    p.add_argument("--out", default="diffbio-prob-demo", help="output folder (default ./diffbio-prob-demo)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and few draws (under a minute on a first run on 2 cores, 31-41 s measured; "
        "~16 s with JAX's compilation cache warm)",
    )
    _common(p)
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    from diffbio_prob.workflows.demo import run_demo

    # run_demo checks its arguments before any work and prints, at the end, where everything is. This
    # process has only imported and configured JAX (no computation, no backend yet), so the demo may
    # fork its workers.
    run_demo(out=args.out, quick=args.quick, seed=args.seed, quiet=args.quiet, start_method="fork")
    return 0


# --- end of demo -------------------------------------------------------------------------------


# --- de ----------------------------------------------------------------------------------------
def _add_de(sub) -> None:
    p = sub.add_parser(
        "de",
        help="DESeq2 differential expression (Wald or likelihood-ratio test) with R's numbers",
        formatter_class=_formatter,
        description="Run R DESeq2's pipeline (size factors, Cox-Reid dispersions with the parametric, local or "
        "mean trend and MAP shrinkage, NB GLM, Wald test or LRT, Cook's outlier replacement, independent "
        "filtering, Benjamini-Hochberg) on a count table and write DESeq2's results table: baseMean, "
        "log2FoldChange, lfcSE, stat, pvalue, padj. A table may be genes x samples or samples x genes: samples "
        "are matched to the metadata's first column by name. DE always computes in float64, as R does (there "
        "is no --x64).",
        epilog=textwrap.dedent(
            """\
            examples:
              diffbio-prob de --counts counts.csv --metadata meta.csv --design "~condition" \\
                  --contrast condition B A --out results.csv
              diffbio-prob de --counts counts.tsv --metadata meta.tsv --design "~ group + condition" \\
                  --test lrt --reduced "~ group" --out lrt.csv --plots figures
              diffbio-prob de --counts c.csv --metadata m.csv --design "~ batch + dose" --contrast dose --out r.csv
              diffbio-prob de --counts featureCounts.txt --metadata m.csv --design "~condition" \\
                  --shrink apeglm --vst vst.csv --out shrunk.csv
              diffbio-prob de --counts A.htseq.txt B.htseq.txt C.htseq.txt D.htseq.txt --metadata m.csv ...
              diffbio-prob de --counts data.h5ad --layer counts --design "~condition" --out r.csv
              diffbio-prob de --salmon quant/A1 quant/A2 quant/B1 quant/B2 --tx2gene tx2gene.csv \\
                  --metadata m.csv --design "~condition" --contrast condition B A --out genes.csv
              diffbio-prob de --salmon quant/A1 quant/A2 quant/B1 quant/B2 --metadata m.csv \\
                  --design "~condition" --method swish --level transcript --out swish_tx.csv
            outputs:
              --out                CSV (or .tsv) with one row per gene, NA where DESeq2 gives NA
              --vst FILE           vst(blind=TRUE) matrix, genes x samples
              --normalized-counts  counts / size factors, genes x samples
              --plots DIR          ma.png, volcano.png, dispersion.png (plotDispEsts), pca.png (plotPCA of the
                                   vst), sample_distances.png, and ma_shrunken.png with --shrink
            """
        ),
    )
    p.add_argument(
        "--counts",
        nargs="+",
        metavar="FILE",
        help="count table: CSV/TSV (either orientation, gzip ok), .h5ad (obs = samples), featureCounts output, "
        "or one htseq-count file per sample; the format is read from the content",
    )
    p.add_argument(
        "--salmon",
        nargs="+",
        metavar="DIR",
        help="salmon output folders instead of --counts (R's tximport + DESeqDataSetFromTximport: rounded "
        "counts, average-transcript-length normalisation factors); sample names are the folder names",
    )
    p.add_argument("--tx2gene", default=None, metavar="FILE",
                   help="transcript -> gene table (CSV/TSV, two columns) for --salmon; without it, transcript level")
    p.add_argument(
        "--level",
        choices=("gene", "transcript"),
        default=None,
        help="with --salmon: gene (needs --tx2gene; the default when it is given) or transcript",
    )
    p.add_argument(
        "--method",
        choices=("deseq2", "swish", "bayes"),
        default="deseq2",
        help="deseq2 (default); with --salmon also swish (fishpond's Mann-Whitney test over the inferential "
        "replicates; permutations and jitter from R's set.seed(--seed)) or bayes (a NumPyro model of the "
        "quantification uncertainty and biological variation, fitted by SVI: posterior LFC, sd, HDI, "
        "lfsr as pvalue, Bayesian q-value as padj); both compare two groups, design ~ condition",
    )
    p.add_argument(
        "--metadata",
        default=None,
        metavar="FILE",
        help="sample table (CSV/TSV, gzip ok; sample names first); optional for .h5ad, whose obs is used",
    )
    p.add_argument("--layer", default=None, metavar="NAME", help=".h5ad layer holding the counts (default X)")
    p.add_argument(
        "--samples",
        default=None,
        metavar="NAMES",
        help="sample names for htseq-count / featureCounts columns: comma-separated names, 'stem' (file or "
        "BAM name without extension; the default) or 'header' (featureCounts' raw column names)",
    )
    p.add_argument("--design", required=True, metavar="FORMULA", help='design formula, e.g. "~ group + condition"')
    p.add_argument("--out", required=True, metavar="FILE", help="results table to write (.csv, .tsv; .gz to compress)")
    p.add_argument(
        "--contrast",
        nargs="+",
        metavar="TERM",
        default=None,
        help="FACTOR NUMERATOR DENOMINATOR, or one coefficient name (default: the last coefficient)",
    )
    p.add_argument("--contrast-vector", default=None, metavar="V1,V2,..", help="numeric contrast over the coefficients")
    p.add_argument("--test", choices=("wald", "lrt"), default="wald", help="Wald test or likelihood-ratio test")
    p.add_argument("--reduced", default=None, metavar="FORMULA", help='reduced design for --test lrt, e.g. "~ 1"')
    p.add_argument("--alpha", type=float, default=0.1, help="FDR level for independent filtering (default 0.1)")
    p.add_argument(
        "--size-factors", choices=("ratio", "poscounts", "iterate"), default="ratio", help="size factor method"
    )
    p.add_argument(
        "--fit-type",
        choices=("parametric", "local", "mean"),
        default="parametric",
        help="dispersion trend, R's fitType (parametric falls back to local, as R does, when it fails)",
    )
    p.add_argument("--no-independent-filtering", action="store_true", help="plain BH without filtering")
    p.add_argument(
        "--min-replicates-for-replace",
        type=float,
        default=7,
        metavar="N",
        help="replace Cook's outliers in cells with >= N samples and refit (default 7; inf to disable)",
    )
    p.add_argument(
        "--shrink",
        choices=("normal", "apeglm"),
        default=None,
        help="write R's lfcShrink table (shrunken log2FoldChange and lfcSE) to --out; the contrast must be "
        "one coefficient",
    )
    p.add_argument("--vst", default=None, metavar="FILE", help="write the variance-stabilised counts (vst, blind)")
    p.add_argument("--normalized-counts", default=None, metavar="FILE", help="write counts / size factors")
    p.add_argument(
        "--plots",
        default=None,
        metavar="DIR",
        help="write ma.png, volcano.png, dispersion.png, pca.png, sample_distances.png (and ma_shrunken.png)",
    )
    _common(p, x64=False)
    p.set_defaults(run=_run_de)


def _run_de(args) -> int:
    from diffbio_prob.workflows.deseq2 import check_fit_args, run_de

    _check_common(args)
    _finite("--alpha", args.alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    _as_flags(check_fit_args, min_replicates_for_replace=args.min_replicates_for_replace, fit_type=args.fit_type)
    from diffbio_prob.workflows.deseq2.run import PLOT_FILES

    if (args.counts is None) == (args.salmon is None):
        raise UsageError("--counts / --salmon: give one of them (count files, or salmon output folders)")
    if args.tx2gene is not None and args.salmon is None:
        raise UsageError("--tx2gene: only used with --salmon")
    if args.layer is not None and args.salmon is not None:
        raise UsageError("--layer: only used with an .h5ad --counts file")
    inputs = {f"--counts ({c})": c for c in args.counts or ()}
    inputs["--metadata"] = args.metadata
    out = _output("--out", args.out, inputs=inputs)
    written = {os.path.abspath(out): "--out"}
    for flag, path in (("--vst", args.vst), ("--normalized-counts", args.normalized_counts)):
        if path is not None:
            p = _output(flag, path, inputs=inputs)
            if os.path.abspath(p) in written:
                raise UsageError(f"{flag}: names the same path as {written[os.path.abspath(p)]}")
            written[os.path.abspath(p)] = flag
    if args.plots is not None:
        plots = _output("--plots", args.plots, "dir")
        for name in PLOT_FILES + (("ma_shrunken.png",) if args.shrink else ()):
            _output("--plots", plots / name, inputs=inputs)
        if os.path.abspath(plots) in written:
            raise UsageError(f"--plots: names the same path as {written[os.path.abspath(plots)]}")
    if args.shrink is not None and args.test != "wald":
        raise UsageError("--shrink: lfcShrink shrinks Wald-test coefficients; use it with --test wald")
    samples = args.samples
    if samples is not None and samples not in ("stem", "header"):
        samples = [s.strip() for s in samples.split(",")]
    if args.contrast is not None and args.contrast_vector is not None:
        raise UsageError("--contrast and --contrast-vector: give one of them")
    contrast = None
    if args.contrast is not None:
        if len(args.contrast) == 1:
            contrast = args.contrast[0]
        elif len(args.contrast) == 3:
            contrast = list(args.contrast)
        else:
            raise UsageError(
                f"--contrast: expected FACTOR NUMERATOR DENOMINATOR or one coefficient name, got {args.contrast}"
            )
    if args.contrast_vector is not None:
        try:
            contrast = [float(v) for v in args.contrast_vector.split(",")]
        except ValueError:
            raise UsageError(f"--contrast-vector: expected comma-separated numbers, got {args.contrast_vector!r}")
        if not all(v == v and abs(v) != float("inf") for v in contrast):
            raise UsageError(f"--contrast-vector: expected finite numbers, got {args.contrast_vector!r}")
    if args.test == "lrt" and args.reduced is None:
        raise UsageError("--reduced: required with --test lrt (e.g. --reduced '~ 1')")
    if args.test == "wald" and args.reduced is not None:
        raise UsageError("--reduced: only used with --test lrt")
    level = args.level
    if level is not None and args.salmon is None:
        raise UsageError("--level: only used with --salmon")
    if level == "gene" and args.tx2gene is None:
        raise UsageError("--level gene: needs --tx2gene")
    if level == "transcript" and args.tx2gene is not None:
        raise UsageError("--level transcript: drop --tx2gene (it summarises to genes)")
    if args.method in ("swish", "bayes"):
        return _run_quant_de(args, contrast, level or ("gene" if args.tx2gene else "transcript"))
    run_de(
        args.counts,
        args.metadata,
        args.design,
        args.out,
        contrast=contrast,
        test=args.test,
        reduced=args.reduced,
        alpha=args.alpha,
        size_factors=args.size_factors,
        fit_type=args.fit_type,
        independent_filtering=not args.no_independent_filtering,
        min_replicates_for_replace=args.min_replicates_for_replace,
        plots=args.plots,
        shrink=args.shrink,
        vst_out=args.vst,
        normalized_counts_out=args.normalized_counts,
        layer=args.layer,
        sample_names=samples,
        salmon=args.salmon,
        tx2gene=args.tx2gene,
        quiet=args.quiet,
    )
    return 0


def _run_quant_de(args, contrast, level: str) -> int:
    """``de --method swish|bayes``: DE on the salmon folders' inferential replicates."""
    import re

    method = args.method
    if args.salmon is None:
        raise UsageError(f"--method {method}: needs --salmon folders with bootstraps or Gibbs draws")
    if args.metadata is None:
        raise UsageError(f"--metadata: required with --method {method}")
    for flag, given in (("--shrink", args.shrink), ("--vst", args.vst), ("--normalized-counts", args.normalized_counts),
                        ("--plots", args.plots), ("--contrast-vector", args.contrast_vector)):
        if given is not None:
            raise UsageError(f"{flag}: not available with --method {method}")
    if args.test != "wald":
        raise UsageError(f"--test: {method} is its own test; drop --test / --reduced")
    variables = re.findall(r"[A-Za-z_.][A-Za-z0-9_.]*", args.design.replace("~", " "))
    if len(variables) != 1:
        raise UsageError(f"--design: {method} compares two groups of one variable (e.g. '~ condition'), "
                         f"got {args.design!r}")
    condition, levels = variables[0], None
    if isinstance(contrast, list):
        if contrast[0] != condition:
            raise UsageError(f"--contrast: expected {condition} NUMERATOR DENOMINATOR, got {' '.join(contrast)}")
        levels = [contrast[2], contrast[1]]  # reference first: log2FC is numerator vs denominator
    elif contrast is not None:
        raise UsageError(f"--contrast: with --method {method} give FACTOR NUMERATOR DENOMINATOR")
    tx2gene = args.tx2gene if level == "gene" else None
    if method == "swish":
        from diffbio_prob.workflows.swish import run_swish

        run_swish(args.salmon, args.metadata, args.out, level=level, tx2gene=tx2gene, condition=condition,
                  levels=levels, seed=args.seed, quiet=args.quiet)
        return 0
    from diffbio_prob.workflows.bayes_de_from_quant import run_bayes_de

    run_bayes_de(args.salmon, args.metadata, args.out, level=level, tx2gene=tx2gene, condition=condition,
                 reference=None if levels is None else levels[0], seed=args.seed, quiet=args.quiet)
    return 0


# --- end of de ---------------------------------------------------------------------------------


# --- hmm ---------------------------------------------------------------------------------------
def _add_hmm(sub) -> None:
    p = sub.add_parser(
        "hmm",
        help="fit an HMM and decode: symbol sequences, read-depth segments (bedGraph), chromatin states (ChromHMM)",
        formatter_class=_formatter,
        description="Fit a hidden Markov model and decode it. With the default --emission categorical: "
        "sequences (FASTA, or plain text with one sequence per line: characters, or whitespace-separated "
        "integers with -1 for missing) fitted by Baum-Welch EM, gradient ascent, SVI or NUTS; writes "
        "per-position state posteriors, the Viterbi path of every sequence and the fitted parameters into "
        "--out, states ordered by their probability of emitting the alphabet's last symbol. With --emission "
        "poisson, negative-binomial or gaussian: a sorted bedGraph read-depth track (one bin per line, one "
        "sequence per chromosome) segmented into copy-number states by Baum-Welch; state0 has the lowest "
        "depth. With --emission bernoulli: ChromHMM binarized files (files, or folders of *_binary* files; "
        "0/1 per mark and bin, 2 = missing) learnt and decoded the way ChromHMM's LearnModel does, with "
        "ChromHMM's output files and state order.",
        epilog=textwrap.dedent(
            """\
            examples:
              diffbio-prob hmm --input reads.fa --states 2 --alphabet ACGT --out hmm_out
              diffbio-prob hmm --input rolls.txt --states 2 --fit nuts --out casino --seed 1
              diffbio-prob hmm --input rolls.txt --states 2 --fit nuts --chains 4 --chain-method parallel --out c4
              diffbio-prob hmm --input genome.fa --states 3 --alphabet ACGT --missing N --format csv --out gc
              diffbio-prob hmm --emission poisson --input depth.bedgraph --states 3 --out cn
              diffbio-prob hmm --emission bernoulli --input BINARY/ --states 8 --bin-size 200 --out chromhmm
            outputs (in --out), categorical:
              posteriors.tsv   one row per position: sequence, position, symbol, viterbi_state, p_state0..
              viterbi.tsv      one row per sequence: length, log_likelihood, viterbi_log_prob, viterbi_path
              parameters.json  initial/transition/emission probabilities, alphabet, log-likelihood
              posterior_summary.tsv, posterior.nc   (--fit nuts or svi) ArviZ summary and netCDF draws
            poisson | negative-binomial | gaussian (bedGraph):
              segments.bed     BED6+3, one line per run of one Viterbi state over adjacent bins: chrom, start,
                               end, name (state<k>), score (1000 x mean_posterior), strand (.), bins,
                               mean_posterior (mean p(state | data) over the bins), mean_value
              posteriors.tsv   one row per bin: chrom, start, end, value, viterbi_state, p_state0..
              parameters.json  rates / means (+ concentrations, scales), transitions, log-likelihood
            bernoulli (ChromHMM binarized):
              <cell>_<K>_segments.bed   chrom, start, end, E<k> (the state of highest posterior per bin)
              emissions_<K>.txt         state x mark p(mark present), ChromHMM's layout and state order
              transitions_<K>.txt       state x state transition probabilities
              parameters.json           the same numbers, initial probabilities, log-likelihood
            """
        ),
    )
    p.add_argument("--input", required=True, nargs="+", metavar="FILE",
                   help="sequence file, bedGraph, or ChromHMM binarized files / folders (gzip ok)")
    p.add_argument("--states", required=True, type=int, metavar="K", help="number of hidden states (1 to 10000)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--emission", choices=("categorical", "poisson", "negative-binomial", "gaussian", "bernoulli"),
                   default="categorical", help="emission distribution, i.e. the kind of input (default categorical)")
    p.add_argument("--bin-size", type=int, default=None, metavar="BP",
                   help="--emission bernoulli: bin size in bp of the binarized files (default 200, ChromHMM's)")
    p.add_argument("--alphabet", default=None, help="symbols in order, e.g. ACGT (default: the characters found)")
    p.add_argument("--missing", default="", metavar="CHARS", help="characters meaning a missing observation, e.g. N")
    p.add_argument("--fit", choices=("em", "gradient", "svi", "nuts"), default="em",
                   help="fitting method (default em; other emissions: em only)")
    p.add_argument("--format", choices=("tsv", "csv"), default="tsv", help="table format (default tsv)")
    p.add_argument("--iters", type=int, default=200, help="EM iterations per restart (default 200)")
    p.add_argument("--restarts", type=int, default=3, help="EM random restarts (default 3)")
    p.add_argument("--num-warmup", type=int, default=500, help="NUTS warmup draws per chain (default 500)")
    p.add_argument("--num-samples", type=int, default=500, help="NUTS draws per chain (default 500)")
    p.add_argument("--chains", type=int, default=2, help="NUTS chains (default 2)")
    _add_chain_method(p, "--fit nuts")
    _common(p)
    p.set_defaults(run=_run_hmm)


def _run_hmm(args) -> int:
    from diffbio_prob.workflows.hmm import chromhmm_output_names, check_hmm_input, run_hmm, track_output_names

    _check_common(args)
    _count("--states", args.states, maximum=_MAX_STATES, why=" (the K x K transition matrix)")
    for flag, value in (("--iters", args.iters), ("--restarts", args.restarts), ("--num-samples", args.num_samples),
                        ("--chains", args.chains)):
        _count(flag, value)
    _count("--num-warmup", args.num_warmup, 0)
    if args.alphabet is not None and not args.alphabet:
        raise UsageError("--alphabet: expected the symbols in order, e.g. ACGT, got an empty string")
    emission = args.emission
    if emission != "categorical":
        if args.fit != "em":
            raise UsageError(f"--fit: --emission {emission} is fitted by Baum-Welch only (--fit em)")
        for flag, given in (("--alphabet", args.alphabet is not None), ("--missing", bool(args.missing))):
            if given:
                raise UsageError(f"{flag}: only used with --emission categorical")
    chain_method = _chain_method(args, args.fit == "nuts", "--fit nuts")
    if args.bin_size is not None and emission != "bernoulli":
        raise UsageError("--bin-size: only used with --emission bernoulli (a bedGraph's lines are its bins)")
    bin_size = 200 if args.bin_size is None else _count("--bin-size", args.bin_size)
    if emission != "bernoulli" and len(args.input) != 1:
        raise UsageError(f"--input: --emission {emission} reads one file, got {len(args.input)}")
    out = _output("--out", args.out, "dir")
    names = {"categorical": (f"posteriors.{args.format}", f"viterbi.{args.format}", f"posterior_summary.{args.format}",
                             "parameters.json", "posterior.nc"),
             "bernoulli": chromhmm_output_names(args.states)}.get(emission, track_output_names(args.format))
    inputs = {f"--input {p}" if len(args.input) > 1 else "--input": p for p in args.input}
    for name in names:
        _output("--out", out / name, inputs=inputs)
    check_hmm_input(args.input, emission)
    run_hmm(
        args.input if emission == "bernoulli" else args.input[0], args.states, args.out, emission=emission,
        bin_size=bin_size, alphabet=args.alphabet, missing=args.missing, fit=args.fit,
        fmt=args.format, seed=args.seed, num_iters=args.iters, restarts=args.restarts,
        num_warmup=args.num_warmup, num_samples=args.num_samples, num_chains=args.chains, chain_method=chain_method,
        quiet=args.quiet,
    )
    return 0


# --- end of hmm --------------------------------------------------------------------------------


# --- quant -------------------------------------------------------------------------------------
def _add_quant(sub) -> None:
    p = sub.add_parser(
        "quant",
        help="salmon-style transcript quantification from equivalence classes (EM/VBEM)",
        formatter_class=_formatter,
        description="Quantify transcripts from equivalence classes by EM or VBEM with salmon's rules, and write "
        "salmon's quant.sf (--out) or salmon's output folder (--out-dir: quant.sf, cmd_info.json, "
        "aux_info/meta_info.json and the inferential replicates in aux_info/bootstrap/, which tximport and "
        "fishpond read). Replicates: salmon's bootstrap (--num-bootstraps), salmon's Gibbs sampler "
        "(--num-gibbs-samples, --thinning-factor) or posterior draws (--posterior nuts|svi). The input format "
        "is detected from the content: salmon eq_classes.txt(.gz) (with or without --dumpEqWeights), or "
        "kallisto matrix.ec/pseudoalignments.ec with --ec-counts. Several --eq-classes files (samples on one "
        "transcriptome) are quantified in one compiled program and written to --out-dir/<sample>/, each in "
        "salmon's layout; --lengths, --fld, --ec-counts and --transcripts then take one file for all samples "
        "or one per eq-class file, in the same order.",
        epilog=textwrap.dedent(
            """\
            examples:
              diffbio-prob quant --eq-classes aux_info/eq_classes.txt.gz --lengths quant.sf --out my/quant.sf
              diffbio-prob quant --eq-classes eq.txt.gz --lengths quant.sf --num-gibbs-samples 20 --out-dir s1
              diffbio-prob quant --eq-classes eq.txt.gz --lengths quant.sf --num-bootstraps 30 --out-dir s1
              diffbio-prob quant --eq-classes eq.txt.gz --lengths quant.sf --algorithm em --squarem --out q.sf
              diffbio-prob quant --eq-classes pseudoalignments.ec --ec-counts pseudoalignments.tsv \\
                  --transcripts transcripts.txt --lengths lengths.tsv --fld flens.txt \\
                  --length-formula kallisto --out quant.sf
              diffbio-prob quant --eq-classes eq.txt.gz --lengths quant.sf --posterior nuts --out q.sf
              diffbio-prob quant --eq-classes eq.txt.gz --lengths quant.sf --posterior nuts --chain-method vectorized \\
                  --out q.sf
              diffbio-prob quant --eq-classes quant/*/aux_info/eq_classes.txt.gz --lengths quant/*/quant.sf \\
                  --num-bootstraps 30 --out-dir requant           # requant/A1/, requant/A2/, ...
            sample names (several --eq-classes files):
              the salmon folder's name (S/aux_info/eq_classes.txt.gz -> S), else the file name without its
              suffixes (A1.txt.gz -> A1); or --samples FILE: one name per line, in --eq-classes order
            in R:
              tximport(file.path(dirs, "quant.sf"), type = "salmon", txOut = TRUE)   # $infReps: T x R each
            """
        ),
    )
    p.add_argument("--eq-classes", required=True, nargs="+", metavar="FILE",
                   help="salmon eq_classes.txt(.gz) or kallisto .ec file; several: one per sample (needs --out-dir)")
    p.add_argument("--ec-counts", nargs="+", metavar="FILE", help="kallisto pseudoalignments.tsv (ec_id<TAB>count)")
    p.add_argument("--transcripts", nargs="+", metavar="FILE", help="kallisto transcripts.txt (names, one per line)")
    p.add_argument("--lengths", nargs="+", metavar="FILE",
                   help="effective lengths: salmon quant.sf, kallisto abundance.tsv or name<TAB>efflen; with --fld, "
                   "transcript lengths (table or FASTA). Optional when the eq-class file ends with name/efflen lines")
    p.add_argument("--fld", nargs="+", metavar="FILE",
                   help="fragment-length distribution (salmon fld.gz / flenDist.txt, kallisto flens.txt)")
    p.add_argument("--length-formula", choices=("salmon", "kallisto"), default="salmon",
                   help="effective length with --fld: salmon L - mu(L), kallisto L - mu(L) + 1 (default salmon)")
    p.add_argument("--algorithm", choices=("em", "vbem"), default="vbem",
                   help="vbem (salmon's default) or em (salmon --useEM, kallisto)")
    p.add_argument("--prior", type=float, default=None,
                   help="VBEM prior (default 0.01 per transcript, 1e-5 per nucleotide)")
    p.add_argument("--per-nucleotide-prior", action="store_true", help="prior scaled by effective length")
    p.add_argument("--squarem", action="store_true", help="SQUAREM acceleration")
    p.add_argument("--min-iter", type=int, default=100, help="minimum iterations (salmon: 100)")
    p.add_argument("--num-bootstraps", type=int, default=None, metavar="N",
                   help="salmon's bootstrap: class counts resampled, EM/VBEM rerun, N times")
    p.add_argument("--num-gibbs-samples", type=int, default=None, metavar="N",
                   help="salmon's Gibbs sampler over the equivalence classes: N draws")
    p.add_argument("--thinning-factor", type=int, default=None, metavar="K",
                   help="Gibbs rounds per recorded draw (salmon's default 16)")
    p.add_argument("--posterior", choices=("nuts", "svi", "bootstrap", "gibbs"),
                   help="draws of the counts: NUTS or SVI on the Dirichlet model, or bootstrap/Gibbs as above "
                   "(with --out: a table of per-transcript mean, sd, 95%% interval)")
    p.add_argument("--num-samples", type=int, default=None,
                   help="--posterior draws (default: NUTS 500 per chain, SVI 1000, bootstrap and Gibbs 30)")
    _add_chain_method(p, "--posterior nuts")
    p.add_argument("--posterior-out", metavar="FILE",
                   help="table of the draws (default with --out: OUT with .posterior.tsv; with --out-dir: none)")
    p.add_argument("--out", metavar="FILE", help="output quant.sf")
    p.add_argument("--out-dir", metavar="DIR",
                   help="output folder in salmon's layout (quant.sf, cmd_info.json, aux_info/), instead of --out; "
                   "with several --eq-classes files one such folder per sample inside it")
    p.add_argument("--samples", metavar="FILE",
                   help="with several --eq-classes files: their sample names, one per line, in the same order")
    _common(p)
    p.set_defaults(run=_run_quant)


_QUANT_PER_SAMPLE = ("--lengths", "--fld", "--ec-counts", "--transcripts")


def _run_quant(args) -> int:
    from diffbio_prob.workflows.quant import _salmon_dir_files, run_quant

    _check_common(args)
    n_files = len(args.eq_classes)
    for flag in _QUANT_PER_SAMPLE:
        given = getattr(args, flag[2:].replace("-", "_"))
        if given is not None and n_files == 1 and len(given) > 1:
            raise UsageError(f"{flag}: {len(given)} files for one --eq-classes file")
        if given is not None and len(given) not in (1, n_files):
            raise UsageError(f"{flag}: expected 1 file for all samples or {n_files} (one per --eq-classes file), "
                             f"got {len(given)}")
    if n_files > 1:
        return _run_quant_many(args)
    if args.samples is not None:
        raise UsageError("--samples: only used with several --eq-classes files")
    args.eq_classes = args.eq_classes[0]
    for flag in _QUANT_PER_SAMPLE:
        name = flag[2:].replace("-", "_")
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name)[0])
    _count("--min-iter", args.min_iter, 0, maximum=_MAX_ITER, why=" (the iteration limit)")
    if (args.out is None) == (args.out_dir is None):
        raise UsageError("--out, --out-dir: give one (a quant.sf file, or a folder in salmon's layout)"
                         if args.out is None else "--out-dir: give --out or --out-dir, not both")
    draws = _quant_draw_checks(args)
    inputs = {"--eq-classes": args.eq_classes, "--ec-counts": args.ec_counts, "--transcripts": args.transcripts,
              "--lengths": args.lengths, "--fld": args.fld}
    has_draws = bool(draws)
    if args.posterior_out is not None and not has_draws:
        raise UsageError("--posterior-out: only used with --posterior, --num-bootstraps or --num-gibbs-samples")
    written = []
    if args.out is not None:
        written.append(_output("--out", args.out, inputs=inputs))
        if has_draws:
            written.append(_output("--posterior-out", args.posterior_out or written[0].with_suffix(".posterior.tsv"),
                                   inputs=inputs))
    else:
        out_dir = _output("--out-dir", args.out_dir, kind="dir")
        for sub in ("aux_info", os.path.join("aux_info", "bootstrap")):
            _output("--out-dir", out_dir / sub, kind="dir")
        written += [_output("--out-dir", f, inputs=inputs) for f in _salmon_dir_files(out_dir).values()]
        if args.posterior_out is not None:
            written.append(_output("--posterior-out", args.posterior_out, inputs=inputs))
    if len(written) > 1 and os.path.abspath(written[-1]) in {os.path.abspath(w) for w in written[:-1]}:
        raise UsageError(f"--posterior-out: names the same file as {'--out' if args.out else 'an --out-dir file'}")
    run_quant(
        args.eq_classes,
        args.out,
        out_dir=args.out_dir,
        lengths=args.lengths,
        ec_counts=args.ec_counts,
        transcripts=args.transcripts,
        fld=args.fld,
        length_formula=args.length_formula,
        algorithm=args.algorithm,
        prior=args.prior,
        per_nucleotide_prior=args.per_nucleotide_prior,
        squarem=args.squarem,
        min_iter=args.min_iter,
        posterior_method=args.posterior,
        num_samples=args.num_samples,
        posterior_out=args.posterior_out,
        num_bootstraps=args.num_bootstraps,
        num_gibbs_samples=args.num_gibbs_samples,
        thinning_factor=16 if args.thinning_factor is None else args.thinning_factor,
        seed=args.seed,
        quiet=args.quiet,
        chain_method=_quant_chain_method(args),
    )
    return 0


def _quant_chain_method(args) -> str:
    return _chain_method(args, args.posterior == "nuts", "--posterior nuts")


def _quant_draw_checks(args) -> list[str]:
    """The replicate flags' checks (both forms); returns the draw flags given."""
    _count("--min-iter", args.min_iter, 0, maximum=_MAX_ITER, why=" (the iteration limit)")
    draws = [f for f, v in (("--num-bootstraps", args.num_bootstraps), ("--num-gibbs-samples", args.num_gibbs_samples),
                            ("--posterior", args.posterior)) if v is not None]
    if len(draws) > 1:
        raise UsageError(f"{draws[1]}: give one way to draw replicates, not {' and '.join(draws)}")
    _quant_chain_method(args)
    for flag, value in (("--num-bootstraps", args.num_bootstraps), ("--num-gibbs-samples", args.num_gibbs_samples),
                        ("--thinning-factor", args.thinning_factor)):
        if value is not None:
            _count(flag, value, maximum=100_000 if flag != "--thinning-factor" else 10_000)
    if args.thinning_factor is not None and args.num_gibbs_samples is None and args.posterior != "gibbs":
        raise UsageError("--thinning-factor: only used with --num-gibbs-samples (or --posterior gibbs)")
    if args.num_samples is not None:
        _count("--num-samples", args.num_samples)
        if args.posterior is None:
            raise UsageError("--num-samples: only used with --posterior (or give --num-bootstraps / "
                             "--num-gibbs-samples N)")
    if args.prior is not None:
        _finite("--prior", args.prior, low=0.0, low_open=True)
        if not args.x64 and args.prior > _FLOAT32_MAX:
            raise UsageError(f"--prior: {args.prior:g} overflows float32 (max {_FLOAT32_MAX:.3g}); give a smaller "
                             "prior, or --x64")
        if args.algorithm == "em":
            raise UsageError("--prior: only used with --algorithm vbem (EM has no prior)")
    elif args.per_nucleotide_prior and args.algorithm == "em":
        raise UsageError("--per-nucleotide-prior: only used with --algorithm vbem (EM has no prior)")
    return draws


def _run_quant_many(args) -> int:
    """Several --eq-classes files: one program, OUT/<sample>/ each in salmon's layout."""
    from diffbio_prob.workflows.quant import _salmon_dir_files, run_quant_many, sample_names

    n = len(args.eq_classes)
    if args.out is not None:
        raise UsageError(f"--out: writes one quant.sf; with {n} --eq-classes files give --out-dir (a salmon folder "
                         "per sample inside it)")
    if args.out_dir is None:
        raise UsageError(f"--out-dir: required with {n} --eq-classes files (a salmon folder per sample inside it)")
    if args.posterior_out is not None:
        raise UsageError("--posterior-out: one table; with several --eq-classes files the draws go into each "
                         "sample's aux_info/bootstrap/")
    if args.seed + n - 1 >= 2**32:
        raise UsageError(f"--seed: sample k draws with seed + k; expected at most {2**32 - n}, got {args.seed}")
    _quant_draw_checks(args)
    given = _read_sample_names(args.samples) if args.samples is not None else None
    if given is not None and len(given) != n:
        raise UsageError(f"--samples: {len(given)} names for {n} --eq-classes files")
    try:
        names = sample_names(args.eq_classes, given)
    except ValueError as exc:
        where, _, rest = str(exc).partition(":")
        raise UsageError(f"--{where.replace('_', '-')}:{rest}") from None
    inputs = {f"--eq-classes ({f})": f for f in args.eq_classes}
    for flag in _QUANT_PER_SAMPLE:
        for f in getattr(args, flag[2:].replace("-", "_")) or ():
            inputs[f"{flag} ({f})"] = f
    out_dir = _output("--out-dir", args.out_dir, kind="dir", inputs=inputs)
    for name in names:
        sample_dir = _output("--out-dir", out_dir / name, kind="dir", inputs=inputs)
        for sub in ("aux_info", os.path.join("aux_info", "bootstrap")):
            _output("--out-dir", sample_dir / sub, kind="dir")
        for f in _salmon_dir_files(sample_dir).values():
            _output("--out-dir", f, inputs=inputs)
    run_quant_many(
        args.eq_classes, out_dir, samples=names, lengths=args.lengths, ec_counts=args.ec_counts,
        transcripts=args.transcripts, fld=args.fld, length_formula=args.length_formula, algorithm=args.algorithm,
        prior=args.prior, per_nucleotide_prior=args.per_nucleotide_prior, squarem=args.squarem,
        min_iter=args.min_iter, posterior_method=args.posterior, num_samples=args.num_samples,
        num_bootstraps=args.num_bootstraps, num_gibbs_samples=args.num_gibbs_samples,
        thinning_factor=16 if args.thinning_factor is None else args.thinning_factor, seed=args.seed,
        quiet=args.quiet, chain_method=_quant_chain_method(args))
    return 0


# --- end of quant ------------------------------------------------------------------------------


# --- tximport ----------------------------------------------------------------------------------
def _add_tximport(sub) -> None:
    p = sub.add_parser(
        "tximport",
        help="R tximport: salmon quantifications to gene- (or transcript-) level counts, abundance, length",
        formatter_class=_formatter,
        description="Read salmon output folders as R tximport 1.26 does (type = 'salmon') and write the "
        "counts, abundance (TPM) and average transcript length tables, features x samples, with R's numbers. "
        "Summarises to genes with --tx2gene; --tx-out keeps transcripts.",
        epilog=textwrap.dedent(
            """\
            examples:
              diffbio-prob tximport --salmon quant/A1 quant/A2 quant/B1 quant/B2 --tx2gene tx2gene.csv \\
                  --out-dir txi
              diffbio-prob tximport --salmon quant/* --tx-out --counts-from-abundance scaledTPM --out-dir tx
            outputs (in --out-dir):
              counts.csv, abundance.csv, length.csv   first column gene (or transcript), one column per sample
            sample names:
              the folder names, or --samples FILE: one name per line (a first line 'sample' is a header)
            """
        ),
    )
    p.add_argument("--salmon", required=True, nargs="+", metavar="DIR", help="salmon output folders (or quant.sf)")
    p.add_argument("--tx2gene", default=None, metavar="FILE", help="transcript -> gene table (CSV/TSV, 2 columns)")
    p.add_argument("--tx-out", action="store_true", help="keep transcripts (R's txOut = TRUE)")
    p.add_argument(
        "--counts-from-abundance",
        choices=("no", "scaledTPM", "lengthScaledTPM", "dtuScaledTPM"),
        default="no",
        help="R's countsFromAbundance (default no: salmon's NumReads)",
    )
    p.add_argument("--samples", default=None, metavar="FILE", help="sample names, one per line, in --salmon order")
    p.add_argument("--out-dir", required=True, metavar="DIR", help="folder for counts.csv, abundance.csv, length.csv")
    _common(p, x64=False)
    p.set_defaults(run=_run_tximport)


def _read_sample_names(path) -> list[str]:
    from pathlib import Path

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UsageError(f"--samples: {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--samples: cannot read {str(path)!r}: {exc}") from None
    names = [ln.replace(",", "\t").split("\t")[0].strip() for ln in lines if ln.strip()]
    if names and names[0].lower() in ("sample", "samples", "name", "names"):
        names = names[1:]
    if not names:
        raise UsageError(f"--samples: {str(path)!r} holds no sample names")
    return names


def _run_tximport(args) -> int:
    from diffbio_prob.workflows.tximport_run import TXIMPORT_OUTPUTS, run_tximport

    _check_common(args)
    inputs = {f"--salmon ({d})": d for d in args.salmon}
    out_dir = _output("--out-dir", args.out_dir, "dir", inputs=inputs)
    for name in TXIMPORT_OUTPUTS:
        _output("--out-dir", out_dir / name, inputs=inputs)
    samples = _read_sample_names(args.samples) if args.samples is not None else None
    if samples is not None and len(samples) != len(args.salmon):
        raise UsageError(f"--samples: {len(samples)} names for {len(args.salmon)} --salmon folders")
    if args.tx2gene is None and not args.tx_out:
        raise UsageError("--tx2gene: required to summarise to genes (or give --tx-out to keep transcripts)")
    run_tximport(args.salmon, out_dir, tx2gene=args.tx2gene, counts_from_abundance=args.counts_from_abundance,
                 tx_out=args.tx_out, samples=samples, quiet=args.quiet)
    return 0


# --- end of tximport ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="diffbio-prob",
        formatter_class=_formatter,
        description="Probabilistic models for bioinformatics: HMM decoding, DESeq2-style differential "
        "expression and salmon-style quantification, fitted by gradient, SVI or NUTS.",
        epilog="Run `diffbio-prob SUBCOMMAND --help` for examples of each.",
    )
    parser.add_argument("--version", action="version", version=f"diffbio-prob {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    _add_demo(sub)
    for name in ("hmm", "de", "quant", "tximport"):
        adder = globals().get(f"_add_{name}")
        if adder is not None:
            adder(sub)
    return parser


def _importing(frame) -> bool:
    """Whether ``frame`` runs inside an import (module-level code of a module other than ``__main__``)."""
    while frame is not None:
        code = frame.f_code
        if code.co_filename.startswith("<frozen importlib") or (
            code.co_name == "<module>" and frame.f_globals.get("__name__") != "__main__"
        ):
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def _interrupts():
    """Ctrl-C is never lost while a command runs.

    The SIGINT handler records the interrupt before raising ``KeyboardInterrupt``, so even when that
    exception is swallowed (raised inside a garbage-collector callback such as JAX's, where Python only
    prints "Exception ignored in ..."), the atomic writers refuse to replace any output and :func:`main`
    exits 130. A swallowed ``KeyboardInterrupt`` is delivered again a moment later, so the run stops at
    once rather than at its first write; so is one that arrives during an import, where raising it would
    break the importing module (a C extension turns it into an ``ImportError`` and prints a traceback).
    """
    import signal
    import threading
    import time

    from diffbio_prob.io import atomic

    atomic.clear_interrupted()
    if threading.current_thread() is not threading.main_thread():
        try:
            yield
        finally:
            atomic.clear_interrupted()
        return
    lock = threading.Lock()
    state = {"done": False, "pending": False, "deferred": 0}
    timers: list[threading.Timer] = []

    def resend():
        with lock:
            state["pending"] = False
            if not state["done"]:
                os.kill(os.getpid(), signal.SIGINT)

    def later():
        with lock:
            if state["done"] or state["pending"]:
                return
            state["pending"] = True
            timer = threading.Timer(0.05, resend)
            timer.daemon = True
            timers.append(timer)
            timer.start()

    def on_sigint(signum, frame):
        atomic.mark_interrupted()
        if state["done"]:
            return
        if _importing(frame) and state["deferred"] < 200:  # at most ~10 s: main() itself may run in an import
            state["deferred"] += 1
            later()
            return
        raise KeyboardInterrupt

    previous_hook = sys.unraisablehook

    def unraisable(info):
        if isinstance(info.exc_value, KeyboardInterrupt) or (
            isinstance(info.exc_type, type) and issubclass(info.exc_type, KeyboardInterrupt)
        ):
            atomic.mark_interrupted()
            later()
            return
        previous_hook(info)

    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except (ValueError, OSError):  # not settable here (an embedded interpreter)
        try:
            yield
        finally:
            atomic.clear_interrupted()
        return
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        with lock:
            state["done"] = True
        for timer in timers:
            timer.cancel()
            timer.join()
        time.sleep(0.001)  # a SIGINT already sent is handled here, by on_sigint, which now only records it
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGINT, previous)
        atomic.clear_interrupted()  # main has answered it; later writes in this process (a caller of main) work


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def console_main() -> None:
    """The ``diffbio-prob`` command: :func:`main`, then the process ends without tearing the interpreter down.

    Python's teardown (finalising every module of JAX, pandas and SciPy, and compiling programs a run
    queued but never called) took 0.25-0.4 s of each command's wall time. The command's work is done by
    then: its outputs are written and closed, its streams are flushed here and the ``atexit`` handlers
    (logging, ``jax.distributed``) run as usual before ``os._exit``.
    """
    code = main()
    _exit_now(code)


def _exit_now(code: int) -> None:
    import atexit

    compile_queue.abandon()
    atexit._run_exitfuncs()  # what a normal exit runs first; os._exit skips it otherwise
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can be said on it
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """Run ``diffbio-prob``; returns the exit code (0 done, 2 bad input, 1 failed write, 130 Ctrl-C)."""
    from diffbio_prob.io import atomic

    with _interrupts():  # first: Ctrl-C is handled from the start, while the parser is being built too
        try:
            parser = build_parser()
            args, extra = parser.parse_known_args(argv)
        except KeyboardInterrupt:
            print("diffbio-prob: interrupted", file=sys.stderr)
            return 130
        if extra:  # reported by the subcommand's parser, whose --help lists what it takes
            owner = parser
            if args.command is not None:
                sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
                owner = sub.choices[args.command]
            owner.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command is None:
            parser.print_help()
            return 2
        prefix = f"diffbio-prob {args.command}"
        try:
            # every subcommand: before JAX compiles anything (the folder and the off switch: compile_cache)
            with compile_cache.process_cache():
                if getattr(args, "x64", False):
                    os.environ["JAX_ENABLE_X64"] = "1"
                    import jax

                    jax.config.update("jax_enable_x64", True)
                # before the first JAX computation: jax.distributed must set up the backend itself
                if not _join(args):
                    # the other processes compute alike (their share of every sharded program) and
                    # run every writer into a deleted folder; their progress would repeat process 0's
                    atomic.discard_writes(True)
                    args.quiet = True
                code = int(args.run(args) or 0)
            atomic.raise_if_interrupted()  # a Ctrl-C swallowed somewhere: still an interrupted run
            return code
        except KeyboardInterrupt:
            pass
        except (UsageError, ValueError, TypeError, FileNotFoundError, FileExistsError, IsADirectoryError,
                NotADirectoryError, PermissionError) as exc:
            if not atomic.interrupted():
                print(f"{prefix}: error: {_one_line(exc)}", file=sys.stderr)
                return 2
        except (OSError, ArithmeticError, MemoryError) as exc:
            # not the input's fault (disk full, an I/O error, a fit that overflowed, no memory): one line, exit 1
            if not atomic.interrupted():
                print(f"{prefix}: error: {_one_line(exc)}", file=sys.stderr)
                return 1
        except BaseException:
            # A Ctrl-C can surface as another exception: during the import of a C extension (jaxlib) it
            # becomes "ImportError: Encountered an error while initializing the extension".
            if not atomic.interrupted():
                raise
        finally:
            atomic.discard_writes(False)  # main may run in-process: later writes of its caller happen
    print(f"{prefix}: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
