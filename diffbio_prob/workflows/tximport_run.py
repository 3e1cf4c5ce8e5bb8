"""salmon output folders -> tximport -> ``counts.csv``, ``abundance.csv``, ``length.csv``
(what ``diffbio-prob tximport`` runs).

Example:
    >>> run_tximport(["salmon/A1", "salmon/B1"], "txi", tx2gene="tx2gene.csv")   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

from diffbio_prob.io.atomic import atomic_write, check_output_path
from diffbio_prob.io.tximport import TximportResult, tximport

__all__ = ["TXIMPORT_OUTPUTS", "run_tximport"]

#: The files :func:`run_tximport` writes into ``out_dir``.
TXIMPORT_OUTPUTS = ("counts.csv", "abundance.csv", "length.csv")


def _bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected True or False, got {type(value).__name__} {value!r}")
    return value


def run_tximport(
    salmon_dirs,
    out_dir: str | os.PathLike,
    *,
    tx2gene=None,
    counts_from_abundance: str = "no",
    tx_out: bool = False,
    samples: Sequence[str] | None = None,
    ignore_tx_version: bool = False,
    ignore_after_bar: bool = False,
    quiet: bool = False,
) -> TximportResult:
    """Import salmon quantifications as R tximport does and write them as CSV tables.

    Args:
        salmon_dirs: salmon output folders (or their ``quant.sf`` files), or a mapping sample -> folder.
        out_dir: output folder (created if needed). It receives ``counts.csv``, ``abundance.csv`` and
            ``length.csv``: features x samples, first column ``gene`` (or ``transcript`` with
            ``tx_out``), values at full precision.
        tx2gene: transcript -> gene table (a CSV/TSV path with a header row, a DataFrame, ...); needed
            unless ``tx_out``.
        counts_from_abundance: ``"no"``, ``"scaledTPM"``, ``"lengthScaledTPM"`` or ``"dtuScaledTPM"``
            (with ``tx_out`` and ``tx2gene``).
        tx_out: transcript-level output.
        samples: sample names, one per folder (default: the folder names).
        ignore_tx_version, ignore_after_bar: see :func:`diffbio_prob.io.tximport.tximport`.
        quiet: no summary line on stderr.

    Returns:
        The :class:`~diffbio_prob.io.tximport.TximportResult` that was written.

    Every argument and input is checked before anything is written; the three files are written
    atomically and replace earlier ones only together (an error leaves ``out_dir`` as it was).
    """
    quiet = _bool(quiet, "quiet")
    out = check_output_path(out_dir, "out_dir", "dir")
    targets = [out / name for name in TXIMPORT_OUTPUTS]
    for path in targets:
        check_output_path(path, "out_dir", "file")
    txi = tximport(salmon_dirs, type="salmon", tx2gene=tx2gene, counts_from_abundance=counts_from_abundance,
                   tx_out=_bool(tx_out, "tx_out"), drop_inf_reps=True, sample_names=samples,
                   ignore_tx_version=_bool(ignore_tx_version, "ignore_tx_version"),
                   ignore_after_bar=_bool(ignore_after_bar, "ignore_after_bar"))
    tables = (txi.counts, txi.abundance, txi.length)
    texts = [t.to_csv(index_label=txi.level) for t in tables]   # rendered before any file is opened
    with contextlib.ExitStack() as stack:   # every file renamed into place only once all are written
        handles = [stack.enter_context(atomic_write(path, newline="")) for path in targets]
        for fh, text in zip(handles, texts):
            fh.write(text)
    if not quiet:
        cfa = "" if txi.counts_from_abundance == "no" else f", counts from abundance ({txi.counts_from_abundance})"
        print(f"tximport: {txi.counts.shape[0]} {txi.level}s x {txi.counts.shape[1]} samples{cfa}; wrote "
              f"{', '.join(str(p) for p in targets)}", file=sys.stderr)
    return txi

