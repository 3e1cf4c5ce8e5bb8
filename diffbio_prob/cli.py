"""The ``diffbio-prob`` command (also ``python -m diffbio_prob``).

Subcommands: ``demo`` (all models on embedded data), ``hmm`` (fit and decode an HMM), ``de``
(DESeq2-style differential expression), ``quant`` (salmon-style quantification). Bad input gives one
line on stderr and exit code 2; every output file is written atomically.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

__all__ = ["main", "build_parser"]


class UsageError(Exception):
    """Raised by a subcommand for bad input: printed as one line, exit code 2."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("diffbio-prob")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--x64", action="store_true", help="compute in float64 (default float32)")


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
        help="small sizes and few draws (under a minute on a first run on 2 cores; ~35 s with JAX's "
        "compilation cache warm)",
    )
    _common(p)
    p.set_defaults(run=_run_demo)


def _demo_compilation_cache() -> None:
    """Keep XLA executables between runs (JAX's persistent cache), unless the user chose otherwise.

    Most of a first demo run is XLA compilation; cached, a second run takes ~40% less time. Must run
    before JAX compiles anything, hence here and not in the workflow.
    """
    if os.environ.get("DIFFBIO_PROB_JAX_CACHE", "1").lower() in ("0", "false", "no", "off"):
        return
    import jax

    if os.environ.get("JAX_COMPILATION_CACHE_DIR") or jax.config.jax_compilation_cache_dir:
        return
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "diffbio-prob", "jax")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:  # a read-only home: run without the cache
        return
    jax.config.update("jax_compilation_cache_dir", folder)
    # Cache the many small programs too: their compile time, not their run time, is what a demo waits for.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def _run_demo(args) -> int:
    from diffbio_prob.workflows.demo import run_demo

    _demo_compilation_cache()
    # run_demo checks its arguments before any work and prints, at the end, where everything is.
    run_demo(out=args.out, quick=args.quick, seed=args.seed, quiet=args.quiet)
    return 0


# --- end of demo -------------------------------------------------------------------------------


# --- de ----------------------------------------------------------------------------------------
def _add_de(sub) -> None:
    p = sub.add_parser(
        "de",
        help="DESeq2 differential expression (Wald or likelihood-ratio test) with R's numbers",
        formatter_class=_formatter,
        description="Run R DESeq2's pipeline (size factors, Cox-Reid dispersions with the parametric trend and "
        "MAP shrinkage, NB GLM, Wald test or LRT, Cook's outlier replacement, independent filtering, "
        "Benjamini-Hochberg) on a count table and write DESeq2's results table: baseMean, log2FoldChange, "
        "lfcSE, stat, pvalue, padj. The count table may be genes x samples or samples x genes: samples are "
        "matched to the metadata's first column by name.",
        epilog=textwrap.dedent(
            """\
            examples:
              diffbio-prob de --counts counts.csv --metadata meta.csv --design "~condition" \\
                  --contrast condition B A --out results.csv
              diffbio-prob de --counts counts.tsv --metadata meta.tsv --design "~ group + condition" \\
                  --test lrt --reduced "~ group" --out lrt.csv --plots figures
              diffbio-prob de --counts c.csv --metadata m.csv --design "~ batch + dose" --contrast dose --out r.csv
            outputs:
              --out        CSV (or .tsv) with one row per gene, NA where DESeq2 gives NA
              --plots DIR  ma.png and volcano.png
            """
        ),
    )
    p.add_argument("--counts", required=True, metavar="FILE", help="count table (CSV/TSV, either orientation)")
    p.add_argument("--metadata", required=True, metavar="FILE", help="sample table (CSV/TSV, sample names first)")
    p.add_argument("--design", required=True, metavar="FORMULA", help='design formula, e.g. "~ group + condition"')
    p.add_argument("--out", required=True, metavar="FILE", help="results table to write (.csv or .tsv)")
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
    p.add_argument("--fit-type", choices=("parametric", "mean"), default="parametric", help="dispersion trend")
    p.add_argument("--no-independent-filtering", action="store_true", help="plain BH without filtering")
    p.add_argument(
        "--min-replicates-for-replace",
        type=float,
        default=7,
        metavar="N",
        help="replace Cook's outliers in cells with >= N samples and refit (default 7; inf to disable)",
    )
    p.add_argument("--plots", default=None, metavar="DIR", help="write an MA plot and a volcano plot here")
    _common(p)
    p.set_defaults(run=_run_de)


def _run_de(args) -> int:
    from diffbio_prob.workflows.deseq2 import run_de

    if not (0.0 < args.alpha < 1.0):
        raise UsageError(f"--alpha: expected a number in (0, 1), got {args.alpha}")
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
    if args.test == "lrt" and args.reduced is None:
        raise UsageError("--reduced: required with --test lrt (e.g. --reduced '~ 1')")
    if args.test == "wald" and args.reduced is not None:
        raise UsageError("--reduced: only used with --test lrt")
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
        quiet=args.quiet,
    )
    return 0


# --- end of de ---------------------------------------------------------------------------------


# --- hmm ---------------------------------------------------------------------------------------
def _add_hmm(sub) -> None:
    p = sub.add_parser(
        "hmm",
        help="fit a discrete HMM to symbol sequences and decode them (posteriors + Viterbi)",
        formatter_class=_formatter,
        description="Fit a categorical hidden Markov model to sequences (FASTA, or plain text with one "
        "sequence per line: characters, or whitespace-separated integers with -1 for missing) by "
        "Baum-Welch EM, gradient ascent or NUTS, then write per-position state posteriors, the Viterbi "
        "path of every sequence and the fitted parameters into --out. States are ordered by their "
        "probability of emitting the alphabet's last symbol.",
        epilog=textwrap.dedent(
            """\
            examples:
              diffbio-prob hmm --input reads.fa --states 2 --alphabet ACGT --out hmm_out
              diffbio-prob hmm --input rolls.txt --states 2 --fit nuts --out casino --seed 1
              diffbio-prob hmm --input genome.fa --states 3 --alphabet ACGT --missing N --format csv --out gc
            outputs (in --out):
              posteriors.tsv   one row per position: sequence, position, symbol, viterbi_state, p_state0..
              viterbi.tsv      one row per sequence: length, log_likelihood, viterbi_log_prob, viterbi_path
              parameters.json  initial/transition/emission probabilities, alphabet, log-likelihood
              posterior_summary.tsv, posterior.nc   (--fit nuts) ArviZ summary and netCDF draws
            """
        ),
    )
    p.add_argument("--input", required=True, metavar="FILE", help="FASTA or plain-text sequence file")
    p.add_argument("--states", required=True, type=int, metavar="K", help="number of hidden states")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--alphabet", default=None, help="symbols in order, e.g. ACGT (default: the characters found)")
    p.add_argument("--missing", default="", metavar="CHARS", help="characters meaning a missing observation, e.g. N")
    p.add_argument("--fit", choices=("em", "gradient", "nuts"), default="em", help="fitting method (default em)")
    p.add_argument("--format", choices=("tsv", "csv"), default="tsv", help="table format (default tsv)")
    p.add_argument("--iters", type=int, default=200, help="EM iterations per restart (default 200)")
    p.add_argument("--restarts", type=int, default=3, help="EM random restarts (default 3)")
    p.add_argument("--num-warmup", type=int, default=500, help="NUTS warmup draws per chain (default 500)")
    p.add_argument("--num-samples", type=int, default=500, help="NUTS draws per chain (default 500)")
    p.add_argument("--chains", type=int, default=2, help="NUTS chains (default 2)")
    _common(p)
    p.set_defaults(run=_run_hmm)


def _run_hmm(args) -> int:
    from diffbio_prob.workflows.hmm import run_hmm

    if args.states < 1:
        raise UsageError(f"--states: expected a positive integer, got {args.states}")
    for flag, value in (("--iters", args.iters), ("--restarts", args.restarts), ("--num-samples", args.num_samples),
                        ("--chains", args.chains)):
        if value < 1:
            raise UsageError(f"{flag}: expected a positive integer, got {value}")
    if args.num_warmup < 0:
        raise UsageError(f"--num-warmup: expected a non-negative integer, got {args.num_warmup}")
    run_hmm(
        args.input, args.states, args.out, alphabet=args.alphabet, missing=args.missing, fit=args.fit,
        fmt=args.format, seed=args.seed, num_iters=args.iters, restarts=args.restarts,
        num_warmup=args.num_warmup, num_samples=args.num_samples, num_chains=args.chains, quiet=args.quiet,
    )
    return 0


# --- end of hmm --------------------------------------------------------------------------------


# --- quant -------------------------------------------------------------------------------------
def _add_quant(sub) -> None:
    p = sub.add_parser(
        "quant",
        help="salmon-style transcript quantification from equivalence classes (EM/VBEM)",
        formatter_class=_formatter,
        description="Quantify transcripts from equivalence classes by EM or VBEM with salmon's rules, write "
        "salmon's quant.sf, and optionally the posterior of the counts (NUTS, SVI or bootstrap). The input "
        "format is detected from the content: salmon eq_classes.txt(.gz) (with or without --dumpEqWeights), "
        "or kallisto matrix.ec/pseudoalignments.ec with --ec-counts.",
        epilog=textwrap.dedent(
            """\
            examples:
              diffbio-prob quant --eq-classes aux_info/eq_classes.txt.gz --lengths quant.sf --out my/quant.sf
              diffbio-prob quant --eq-classes eq.txt.gz --lengths quant.sf --algorithm em --squarem --out q.sf
              diffbio-prob quant --eq-classes pseudoalignments.ec --ec-counts pseudoalignments.tsv \\
                  --transcripts transcripts.txt --lengths lengths.tsv --fld flens.txt \\
                  --length-formula kallisto --out quant.sf
              diffbio-prob quant --eq-classes eq.txt.gz --lengths quant.sf --posterior nuts --out q.sf
            """
        ),
    )
    p.add_argument("--eq-classes", required=True, metavar="FILE",
                   help="salmon eq_classes.txt(.gz) or kallisto .ec file")
    p.add_argument("--ec-counts", metavar="FILE", help="kallisto pseudoalignments.tsv (ec_id<TAB>count)")
    p.add_argument("--transcripts", metavar="FILE", help="kallisto transcripts.txt (names, one per line)")
    p.add_argument("--lengths", metavar="FILE",
                   help="effective lengths: salmon quant.sf, kallisto abundance.tsv or name<TAB>efflen; with --fld, "
                   "transcript lengths (table or FASTA). Optional when the eq-class file ends with name/efflen lines")
    p.add_argument("--fld", metavar="FILE",
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
    p.add_argument("--posterior", choices=("nuts", "svi", "bootstrap"),
                   help="also estimate the posterior of the counts (per-transcript mean, sd, 95%% interval)")
    p.add_argument("--num-samples", type=int, default=None,
                   help="posterior draws (default: NUTS 500 per chain, SVI 1000, bootstrap 30)")
    p.add_argument("--posterior-out", metavar="FILE", help="posterior table (default: OUT with .posterior.tsv)")
    p.add_argument("--out", required=True, metavar="FILE", help="output quant.sf")
    _common(p)
    p.set_defaults(run=_run_quant)


def _run_quant(args) -> int:
    from diffbio_prob.workflows.quant import run_quant

    if args.min_iter < 0:
        raise UsageError(f"--min-iter: expected a non-negative integer, got {args.min_iter}")
    if args.num_samples is not None and args.num_samples < 1:
        raise UsageError(f"--num-samples: expected a positive integer, got {args.num_samples}")
    if args.prior is not None and not args.prior > 0:
        raise UsageError(f"--prior: expected a positive number, got {args.prior}")
    run_quant(
        args.eq_classes,
        args.out,
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
        seed=args.seed,
        quiet=args.quiet,
    )
    return 0


# --- end of quant ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffbio-prob",
        formatter_class=_formatter,
        description="Probabilistic models for bioinformatics: HMM decoding, DESeq2-style differential "
        "expression and salmon-style quantification, fitted by gradient, SVI or NUTS.",
        epilog="Run `diffbio-prob SUBCOMMAND --help` for examples of each.",
    )
    parser.add_argument("--version", action="version", version=f"diffbio-prob {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    _add_demo(sub)
    for name in ("hmm", "de", "quant"):
        adder = globals().get(f"_add_{name}")
        if adder is not None:
            adder(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "x64", False):
        os.environ["JAX_ENABLE_X64"] = "1"
        import jax

        jax.config.update("jax_enable_x64", True)
    try:
        return int(args.run(args) or 0)
    except (UsageError, ValueError, TypeError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"diffbio-prob {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"diffbio-prob {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
