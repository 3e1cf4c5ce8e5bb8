"""Equivalence-class tables and effective lengths: format detection through a registry, length files.

The readers of salmon's and kallisto's files (``io/salmon.py``, ``io/kallisto.py``) all return an
:class:`EqClassTable` (NumPy arrays, names, the source file). :func:`read_eq_classes` detects the format
from the file's content by asking each registered :class:`EqFormat` (:data:`EQ_FORMATS`; add one with
:func:`register_eq_format`); :func:`read_lengths` reads effective lengths from a salmon ``quant.sf``, a
kallisto ``abundance.tsv`` or a two-column ``name<TAB>length`` table, or computes them from transcript
lengths (table or FASTA) and a fragment-length distribution with salmon's or kallisto's formula.

The containers, :class:`FormatError` and :func:`open_text` live in ``io/base.py`` (which the format
modules import, so nothing imports in a circle) and are re-exported here, where they have always been
importable from.

Every malformed or truncated file raises one ``ValueError`` naming the file and the line.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from diffbio_prob.io.base import (
    EqClassTable,
    EqFormat,
    FormatError,
    LengthTable,
    first_content_lines,
    open_text,
    parse_float,
    read_all_lines,
)
from diffbio_prob.io.kallisto import KALLISTO_EQ_FORMAT, kallisto_effective_lengths
from diffbio_prob.io.salmon import SALMON_EQ_FORMAT, read_fld, salmon_effective_lengths

__all__ = [
    "EqClassTable",
    "EqFormat",
    "FormatError",
    "open_text",
    "read_all_lines",
    "EQ_FORMATS",
    "register_eq_format",
    "read_eq_classes",
    "detect_eq_format",
    "read_lengths",
    "LengthTable",
]

#: The equivalence-class formats :func:`read_eq_classes` knows, by name, tried in this order.
EQ_FORMATS: dict[str, EqFormat] = {}


def register_eq_format(fmt: EqFormat) -> EqFormat:
    """Add a format to :data:`EQ_FORMATS` (detection tries formats in registration order)."""
    if not isinstance(fmt, EqFormat):
        raise TypeError(f"fmt: expected an EqFormat, got {type(fmt).__name__}")
    if fmt.name in EQ_FORMATS:
        raise ValueError(f"fmt: an equivalence-class format named {fmt.name!r} is already registered")
    EQ_FORMATS[fmt.name] = fmt
    return fmt


register_eq_format(SALMON_EQ_FORMAT)
register_eq_format(KALLISTO_EQ_FORMAT)


def detect_eq_format(path) -> str:
    """The name of the registered format whose ``sniff`` accepts the file's first non-blank line:
    ``"salmon"`` (a single integer: the number of transcripts) or ``"kallisto"`` (``ec_id<TAB>t1,t2,...``)."""
    lines = first_content_lines(path, 1)
    if not lines:
        raise FormatError(path, 1, "empty file, expected equivalence classes")
    fields = lines[0].split()
    for fmt in EQ_FORMATS.values():
        if fmt.sniff(fields):
            return fmt.name
    known = " nor ".join(f"a {f.description}" for f in EQ_FORMATS.values())
    raise FormatError(path, 1, f"not {known}; got {lines[0][:80]!r}")


def read_eq_classes(path, counts: str | os.PathLike | None = None,
                    transcripts: str | os.PathLike | Sequence[str] | None = None) -> EqClassTable:
    """Read equivalence classes, detecting the format from the content.

    Args:
        path: salmon ``eq_classes.txt``/``.txt.gz`` (``--dumpEq``, with or without ``--dumpEqWeights``;
            also salmon's ``--eqclasses`` input with trailing ``name efflen`` lines), or kallisto
            ``matrix.ec``/``pseudoalignments.ec``.
        counts: kallisto ``pseudoalignments.tsv`` (``ec_id<TAB>count``); required for kallisto input.
        transcripts: kallisto ``transcripts.txt`` (one name per line) or a list of names; without it
            kallisto transcripts are named ``t0, t1, ...``.

    Example:
        >>> table = read_eq_classes("aux_info/eq_classes.txt.gz")  # doctest: +SKIP
        >>> table.n_transcripts, table.n_classes                    # doctest: +SKIP
        (15, 28)
    """
    return EQ_FORMATS[detect_eq_format(path)].read(path, counts, transcripts)


#: Length-table layouts with a header, tried in this order: (what it is, effective-length column,
#: transcript-length column).
LENGTH_LAYOUTS: tuple[tuple[str, str, str], ...] = (
    ("salmon quant.sf", "EffectiveLength", "Length"),
    ("kallisto abundance.tsv", "eff_length", "length"),
)


def _read_fasta_lengths(path) -> tuple[list[str], np.ndarray]:
    names, lengths, header_lines = [], [], []
    for lineno, line in enumerate(read_all_lines(path), 1):
        if line.startswith(">"):
            name = line[1:].split()[0] if line[1:].split() else ""
            if not name:
                raise FormatError(path, lineno, "FASTA header without a name")
            names.append(name)
            lengths.append(0)
            header_lines.append(lineno)
        elif line.strip():
            if not names:
                raise FormatError(path, lineno, "sequence before the first FASTA header")
            lengths[-1] += len(line.strip())
    if not names:
        raise FormatError(path, None, "no FASTA records")
    seen = {}
    for name, length, lineno in zip(names, lengths, header_lines):
        if length == 0:
            raise FormatError(path, lineno, f"FASTA record {name!r} has no sequence")
        if name in seen:
            raise FormatError(path, lineno, f"duplicate transcript name {name!r} (first at line {seen[name]})")
        seen[name] = lineno
    return names, np.asarray(lengths, float)


def _read_table(path) -> tuple[list[str], dict[str, list[str]], list[str], list[tuple[int, str]]]:
    """A whitespace-separated table with a header line of names, or a headerless ``name value`` table."""
    lines = [(i, ln) for i, ln in enumerate(read_all_lines(path), 1) if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise FormatError(path, 1, "empty file, expected a length table")
    first = lines[0][1].split()
    try:
        float(first[-1])
        header = None
    except ValueError:
        header = first
    rows = lines if header is None else lines[1:]
    ncol = len(first)
    if ncol == 1:
        raise FormatError(path, lines[0][0], f"expected a length table (name and length columns) or FASTA (first "
                                             f"line '>name'), got one column: {lines[0][1][:80]!r}")
    if header is None and ncol != 2:
        raise FormatError(path, lines[0][0], f"expected 'name<TAB>length' (2 columns), got {ncol} columns")
    names, values, seen = [], [], {}
    for lineno, line in rows:
        parts = line.split()
        if len(parts) != ncol:
            raise FormatError(path, lineno, f"expected {ncol} columns, got {len(parts)}: {line[:80]!r}")
        if parts[0] in seen:
            raise FormatError(path, lineno, f"duplicate transcript name {parts[0]!r} (first at line "
                                            f"{seen[parts[0]]})")
        seen[parts[0]] = lineno
        names.append(parts[0])
        values.append(parts[1:])
    if not names:
        raise FormatError(path, None, "no rows")
    columns = (header or ["Name", "value"])[1:]
    out = {col: [row[j] for row in values] for j, col in enumerate(columns)}
    return names, out, columns, rows


def read_lengths(path, *, fld=None, formula: str = "salmon", names: Sequence[str] | None = None) -> LengthTable:
    """Effective lengths from a file, optionally computed from transcript lengths and an FLD.

    Without ``fld``: a salmon ``quant.sf`` (its ``EffectiveLength``), a kallisto ``abundance.tsv``
    (``eff_length``; the layouts are :data:`LENGTH_LAYOUTS`) or a two-column ``name<TAB>efflen`` table.
    With ``fld`` (a path read by :func:`diffbio_prob.io.salmon.read_fld`, or an array of masses over
    lengths 0..): ``path`` gives transcript lengths (FASTA, ``quant.sf``/``abundance.tsv`` ``Length``
    column, or a two-column ``name<TAB>length`` table) and the effective lengths follow salmon's
    ``L - mu(L)`` or kallisto's ``L - mu(L) + 1`` (``formula``).

    Every length read must be a finite positive number (a ``FormatError`` naming the line otherwise).

    Args:
        path: the file.
        fld: fragment-length distribution (path or array), or ``None``.
        formula: ``"salmon"`` or ``"kallisto"`` (with ``fld``).
        names: reorder to these transcript names (missing ones are an error).
    """
    if formula not in ("salmon", "kallisto"):
        raise ValueError(f"formula: expected 'salmon' or 'kallisto', got {formula!r}")
    first = first_content_lines(path, 1)
    if not first:
        raise FormatError(path, 1, "empty file, expected lengths")
    lengths = None
    if first[0].startswith(">"):
        if fld is None:
            raise ValueError(f"fld: {path} is a FASTA file (transcript lengths); give a fragment-length distribution")
        tx_names, lengths = _read_fasta_lengths(path)
        eff = None
    else:
        tx_names, cols, columns, rows = _read_table(path)

        def column(name, what):
            vals = []
            for (lineno, _), tx, v in zip(rows, tx_names, cols[name]):
                value = parse_float(path, lineno, v, name, nonnegative=False)
                if value <= 0:
                    raise FormatError(path, lineno, f"{what} of {tx!r} must be positive, got {v!r}")
                vals.append(value)
            return np.asarray(vals, float)

        layout = next(((e, L) for _, e, L in LENGTH_LAYOUTS if e in cols), None)
        if layout is not None:
            eff, lengths = column(layout[0], "effective length"), column(layout[1], "length")
        elif len(columns) == 1:
            if fld is not None:
                eff, lengths = None, column(columns[0], "length")
            else:
                eff, lengths = column(columns[0], "effective length"), None
        elif "Length" in cols or "length" in cols:
            lengths = column("Length" if "Length" in cols else "length", "length")
            eff = None
        else:
            wanted = ", ".join(c for _, e, L in LENGTH_LAYOUTS for c in (e, L))
            raise FormatError(path, 1, f"no length column ({wanted}) in header {columns}")
        if fld is None and eff is None:
            raise ValueError(f"fld: {path} has transcript lengths only; give a fragment-length distribution")
    if fld is not None:
        masses = read_fld(fld) if isinstance(fld, (str, os.PathLike)) else np.asarray(fld, float)
        fn = salmon_effective_lengths if formula == "salmon" else kallisto_effective_lengths
        eff = fn(lengths, masses)
    bad = ~(np.isfinite(eff) & (eff > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{path}: effective length of {tx_names[i]!r} must be positive, got {eff[i]}")
    table = LengthTable(list(tx_names), np.asarray(eff, float), lengths, str(path))
    return table.aligned(names) if names is not None else table
