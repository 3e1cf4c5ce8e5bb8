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
        description="Fit the models on embedded data by gradient, SVI and NUTS and write posteriors, "
        "tables and figures into an output folder.",
        epilog=textwrap.dedent(
            """\
            examples:
              diffbio-prob demo
              diffbio-prob demo --quick --out /tmp/demo --seed 1
            """
        ),
    )
    p.add_argument("--out", default="diffbio-prob-demo", help="output folder (default ./diffbio-prob-demo)")
    p.add_argument("--quick", action="store_true", help="small sizes and few draws (under a minute)")
    _common(p)
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    from diffbio_prob.workflows.demo import run_demo

    run_demo(out=args.out, quick=args.quick, seed=args.seed, quiet=args.quiet)
    return 0


# --- end of demo -------------------------------------------------------------------------------


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
