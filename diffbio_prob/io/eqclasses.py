"""Equivalence-class tables and effective lengths: one container, format detection, length files.

The readers of salmon's and kallisto's files (``io/salmon.py``, ``io/kallisto.py``) all return an
:class:`EqClassTable` (NumPy arrays, names, the source file). :func:`read_eq_classes` detects the format
from the file's content; :func:`read_lengths` reads effective lengths from a salmon ``quant.sf``, a
kallisto ``abundance.tsv`` or a two-column ``name<TAB>length`` table, or computes them from transcript
lengths (table or FASTA) and a fragment-length distribution with salmon's or kallisto's formula.

Every malformed or truncated file raises one ``ValueError`` naming the file and the line.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

__all__ = [
    "EqClassTable",
    "FormatError",
    "open_text",
    "read_eq_classes",
    "detect_eq_format",
    "read_lengths",
    "LengthTable",
]


class FormatError(ValueError):
    """A malformed input file (a ``ValueError`` whose message names the file and line)."""

    def __init__(self, path, line: int | None, message: str):
        where = f"{path}" if line is None else f"{path}, line {line}"
        super().__init__(f"{where}: {message}")
        self.path, self.line = str(path), line


@dataclasses.dataclass
class EqClassTable:
    """Equivalence classes read from a file (flat entries, like ``cores.em.EquivalenceClasses``).

    Attributes:
        names: transcript names; position = transcript id.
        class_ids: ``int64 (E,)`` class of each entry (non-decreasing).
        transcript_ids: ``int64 (E,)`` transcript of each entry.
        weights: ``float64 (E,)`` per-entry weights, or ``None`` (plain classes).
        counts: ``float64 (C,)`` fragments per class.
        weights_include_length: the weights already contain ``1/l_t`` (salmon's ``--dumpEqWeights``).
        lengths: effective lengths found in the file (salmon ``--eqclasses`` trailing ``name efflen``
            lines), or ``None``.
        source: the file read; format: ``"salmon"`` or ``"kallisto"``.
    """

    names: list[str]
    class_ids: np.ndarray
    transcript_ids: np.ndarray
    weights: np.ndarray | None
    counts: np.ndarray
    weights_include_length: bool = False
    lengths: np.ndarray | None = None
    source: str = ""
    format: str = ""

    @property
    def n_transcripts(self) -> int:
        return len(self.names)

    @property
    def n_classes(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_entries(self) -> int:
        return int(self.class_ids.shape[0])

    def class_sizes(self) -> np.ndarray:
        """``int (C,)`` number of transcripts per class."""
        return np.bincount(self.class_ids, minlength=self.n_classes)

    def classes(self) -> Iterator[tuple[np.ndarray, np.ndarray | None, float]]:
        """Iterate ``(transcript_ids, weights_or_None, count)`` per class."""
        bounds = np.concatenate([[0], np.cumsum(self.class_sizes())])
        for c in range(self.n_classes):
            lo, hi = bounds[c], bounds[c + 1]
            yield (self.transcript_ids[lo:hi], None if self.weights is None else self.weights[lo:hi],
                   float(self.counts[c]))

    def with_counts(self, counts: np.ndarray) -> "EqClassTable":
        """A copy with other class counts (e.g. a bootstrap draw)."""
        counts = np.asarray(counts, float)
        if counts.shape != self.counts.shape:
            raise ValueError(f"counts: expected shape {self.counts.shape}, got {counts.shape}")
        return dataclasses.replace(self, counts=counts)

    def drop_empty(self) -> "EqClassTable":
        """Without classes of count 0 (kallisto lists every EC of the index, most with no reads)."""
        keep = self.counts > 0
        if keep.all():
            return self
        new_id = np.cumsum(keep) - 1
        entry_keep = keep[self.class_ids]
        return dataclasses.replace(
            self,
            class_ids=new_id[self.class_ids[entry_keep]],
            transcript_ids=self.transcript_ids[entry_keep],
            weights=None if self.weights is None else self.weights[entry_keep],
            counts=self.counts[keep],
        )


def open_text(path: str | os.PathLike):
    """Open a text file, gunzipping when its first bytes are the gzip magic (any suffix)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a file")
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def read_all_lines(path) -> list[str]:
    """All lines of a (possibly gzipped) text file; a truncated gzip stream is a ``FormatError``."""
    try:
        with open_text(path) as fh:
            return fh.read().splitlines()
    except (EOFError, gzip.BadGzipFile, OSError, UnicodeDecodeError) as exc:
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise FormatError(path, None, f"cannot read ({type(exc).__name__}: {exc}); the file may be truncated") from exc


def _first_content_lines(path, n: int = 3) -> list[str]:
    out = []
    with open_text(path) as fh:
        try:
            for line in fh:
                if line.strip():
                    out.append(line.rstrip("\n"))
                if len(out) >= n:
                    break
        except (EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
            raise FormatError(path, None, f"cannot read ({type(exc).__name__}: {exc})") from exc
    return out


def detect_eq_format(path) -> str:
    """``"salmon"`` (first line a single integer: the number of transcripts) or ``"kallisto"`` (lines
    ``ec_id<TAB>t1,t2,...``), from the content."""
    lines = _first_content_lines(path, 2)
    if not lines:
        raise FormatError(path, 1, "empty file, expected equivalence classes")
    first = lines[0].split()
    if len(first) == 1 and first[0].isdigit():
        return "salmon"
    if len(first) == 2 and first[0].isdigit() and all(p.isdigit() for p in first[1].split(",")):
        return "kallisto"
    raise FormatError(
        path, 1, f"not a salmon eq_classes file (first line: number of transcripts) nor a kallisto .ec file "
        f"(ec_id<TAB>t1,t2,...); got {lines[0][:80]!r}"
    )


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
    fmt = detect_eq_format(path)
    if fmt == "salmon":
        from diffbio_prob.io.salmon import read_salmon_eq_classes

        if counts is not None:
            raise ValueError("counts: salmon eq_classes files carry their own counts; --ec-counts is for kallisto")
        if transcripts is not None:
            raise ValueError("transcripts: salmon eq_classes files carry their own names (--transcripts is for "
                             "kallisto)")
        return read_salmon_eq_classes(path)
    from diffbio_prob.io.kallisto import read_kallisto_eq_classes

    if counts is None:
        raise ValueError(f"counts: {path} is a kallisto .ec file; give its pseudoalignments.tsv (ec_id<TAB>count)")
    return read_kallisto_eq_classes(path, counts, transcripts)


@dataclasses.dataclass
class LengthTable:
    """Transcript names with effective lengths (and transcript lengths when the file has them)."""

    names: list[str]
    effective_lengths: np.ndarray
    lengths: np.ndarray | None = None
    source: str = ""

    def aligned(self, names: Sequence[str]) -> "LengthTable":
        """Reorder to ``names`` (the eq classes' order); a missing name is a ``ValueError``."""
        index = {n: i for i, n in enumerate(self.names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise ValueError(
                f"{self.source}: no length for {len(missing)} transcript(s) of the equivalence classes, "
                f"e.g. {missing[:3]}"
            )
        order = np.array([index[n] for n in names], dtype=np.int64)
        return LengthTable(
            list(names), self.effective_lengths[order], None if self.lengths is None else self.lengths[order],
            self.source,
        )


def _parse_number(path, lineno, text, what):
    try:
        value = float(text)
    except ValueError:
        raise FormatError(path, lineno, f"expected a number for {what}, got {text!r}") from None
    if not np.isfinite(value):
        raise FormatError(path, lineno, f"expected a finite number for {what}, got {text!r}")
    return value


def _read_fasta_lengths(path) -> tuple[list[str], np.ndarray]:
    names, lengths, current = [], [], None
    for lineno, line in enumerate(read_all_lines(path), 1):
        if line.startswith(">"):
            name = line[1:].split()[0] if line[1:].split() else ""
            if not name:
                raise FormatError(path, lineno, "FASTA header without a name")
            names.append(name)
            lengths.append(0)
            current = lineno
        elif line.strip():
            if current is None:
                raise FormatError(path, lineno, "sequence before the first FASTA header")
            lengths[-1] += len(line.strip())
    if not names:
        raise FormatError(path, None, "no FASTA records")
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
    if header is None and ncol != 2:
        raise FormatError(path, lines[0][0], f"expected 'name<TAB>length' (2 columns), got {ncol} columns")
    names, values = [], []
    for lineno, line in rows:
        parts = line.split()
        if len(parts) != ncol:
            raise FormatError(path, lineno, f"expected {ncol} columns, got {len(parts)}: {line[:80]!r}")
        names.append(parts[0])
        values.append(parts[1:])
    if not names:
        raise FormatError(path, None, "no rows")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise FormatError(path, None, f"duplicate transcript name {dup!r}")
    columns = (header or ["Name", "value"])[1:]
    out = {col: [row[j] for row in values] for j, col in enumerate(columns)}
    return names, out, columns, rows


def read_lengths(path, *, fld=None, formula: str = "salmon", names: Sequence[str] | None = None) -> LengthTable:
    """Effective lengths from a file, optionally computed from transcript lengths and an FLD.

    Without ``fld``: a salmon ``quant.sf`` (its ``EffectiveLength``), a kallisto ``abundance.tsv``
    (``eff_length``) or a two-column ``name<TAB>efflen`` table. With ``fld`` (a path read by
    :func:`diffbio_prob.io.salmon.read_fld`, or an array of masses over lengths 0..): ``path`` gives
    transcript lengths (FASTA, ``quant.sf``/``abundance.tsv`` ``Length`` column, or a two-column
    ``name<TAB>length`` table) and the effective lengths follow salmon's ``L - mu(L)`` or kallisto's
    ``L - mu(L) + 1`` (``formula``).

    Args:
        path: the file.
        fld: fragment-length distribution (path or array), or ``None``.
        formula: ``"salmon"`` or ``"kallisto"`` (with ``fld``).
        names: reorder to these transcript names (missing ones are an error).
    """
    if formula not in ("salmon", "kallisto"):
        raise ValueError(f"formula: expected 'salmon' or 'kallisto', got {formula!r}")
    first = _first_content_lines(path, 1)
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

        def column(name):
            vals = []
            for (lineno, _), v in zip(rows, cols[name]):
                vals.append(_parse_number(path, lineno, v, name))
            return np.asarray(vals, float)

        if "EffectiveLength" in cols:  # salmon quant.sf
            eff, lengths = column("EffectiveLength"), column("Length")
        elif "eff_length" in cols:  # kallisto abundance.tsv
            eff, lengths = column("eff_length"), column("length")
        elif len(columns) == 1:
            values = column(columns[0])
            eff, lengths = (None, values) if fld is not None else (values, None)
        elif "Length" in cols or "length" in cols:
            lengths = column("Length" if "Length" in cols else "length")
            eff = None
        else:
            raise FormatError(path, 1, f"no length column (EffectiveLength, eff_length, Length) in header {columns}")
        if fld is None and eff is None:
            raise ValueError(f"fld: {path} has transcript lengths only; give a fragment-length distribution")
    if fld is not None:
        from diffbio_prob.io.kallisto import kallisto_effective_lengths
        from diffbio_prob.io.salmon import read_fld, salmon_effective_lengths

        masses = read_fld(fld) if isinstance(fld, (str, os.PathLike)) else np.asarray(fld, float)
        fn = salmon_effective_lengths if formula == "salmon" else kallisto_effective_lengths
        eff = fn(lengths, masses)
    bad = ~(np.isfinite(eff) & (eff > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{path}: effective length of {tx_names[i]!r} must be positive, got {eff[i]}")
    table = LengthTable(list(tx_names), np.asarray(eff, float), lengths, str(path))
    return table.aligned(names) if names is not None else table
