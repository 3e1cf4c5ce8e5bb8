"""ChromHMM's files: binarized marks in; segmentation, emission and transition tables out.

Layouts as ChromHMM 1.27 (Ernst & Kellis 2012, Nat. Methods 9:215; ``ChromHMM.java``
``loadDataFileStubs``, ``printEmissionTable``, ``printTransitionTable``, ``makeOrderingCorrelation``):

* ``<cell>_<chrom>_binary.txt[.gz]``: line 1 ``cell<TAB>chrom``, line 2 the mark names (tab-separated), then
  one row per bin of 0 (absent), 1 (present) or 2 (missing: left out of the likelihood). Bin ``i`` covers
  ``[i * bin_size, (i + 1) * bin_size)`` (``BinarizeBam``'s default bin size is 200 bp).
* ``<cell>_<K>_segments.bed``: ``chrom start end E<k>``, one line per run of bins in one state, no header;
  the last segment ends at ``num_bins * bin_size``.
* ``emissions_<K>.txt``: header ``State (Emission order)<TAB><mark>...``, then ``k<TAB>p(mark present)...``
  per state ``k = 1..K``.
* ``transitions_<K>.txt``: header ``State (from\\to) (Emission order)<TAB>1<TAB>...<TAB>K``, then
  ``k<TAB>p(k -> 1)...`` per state.

ChromHMM's default state order (``Emission``) is its greedy correlation ordering of the emission rows,
:func:`emission_order`. Marks keep their input order (ChromHMM's ``-holdcolumnorder``).

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "K562_chr1_binary.txt").write_text("K562\\tchr1\\nH3K4me3\\tH3K27me3\\n1\\t0\\n0\\t2\\n")
    >>> b = read_binarized([d])
    >>> b.cells, b.chroms, b.marks, b.data[0].tolist()
    (['K562'], ['chr1'], ['H3K4me3', 'H3K27me3'], [[1, 0], [0, 2]])
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from diffbio_prob.io.base import decode_text

__all__ = [
    "BinarizedData",
    "read_binarized",
    "binarized_files",
    "looks_like_binarized",
    "emission_order",
    "write_segments",
    "write_emissions",
    "write_transitions",
    "read_table",
    "MISSING",
    "java_double",
]

MISSING = 2  # ChromHMM's code for a missing observation
_ORDER = "Emission"


@dataclasses.dataclass
class BinarizedData:
    """Binarized marks, one entry per file (a cell type's chromosome).

    Attributes:
        cells, chroms: each file's line 1.
        marks: the mark names (the same in every file).
        data: ``int8 (T_f, D)`` per file: 0, 1, or :data:`MISSING`.
        sources: the files read, in the order of ``data`` (sorted by name, as ChromHMM does).
    """

    cells: list[str]
    chroms: list[str]
    marks: list[str]
    data: list[np.ndarray]
    sources: list[str]


def binarized_files(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The binarized files named by ``paths``: files as given, and for a folder every visible file in it whose
    name contains ``_binary`` (ChromHMM's rule); sorted by name."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(f for f in p.iterdir() if "_binary" in f.name and not f.name.startswith(".") and f.is_file())
            if not inside:
                raise ValueError(f"{p}: no files whose name contains '_binary' (ChromHMM's binarized files)")
            found += inside
        elif not p.exists():
            raise FileNotFoundError(f"{p}: no such file")
        else:
            found.append(p)
    if not found:
        raise ValueError("input: expected at least one binarized file or folder")
    return sorted(found, key=lambda f: f.name)


def looks_like_binarized(lines: Sequence[str]) -> bool:
    """Whether the first three lines look like a ChromHMM binarized file: two tab-separated fields, mark
    names, then a row of 0/1/2 with one value per mark."""
    if len(lines) < 3:
        return False
    head, marks, row = (ln.rstrip("\r\n").split("\t") for ln in lines[:3])
    return (len(head) == 2 and all(f.strip() for f in head) and len(row) == len(marks)
            and all(v.strip() in ("0", "1", "2") for v in row)
            and not all(m.strip() in ("0", "1", "2") for m in marks))


def _read_one(path: Path) -> tuple[str, str, list[str], np.ndarray]:
    text = decode_text(path, path.read_bytes(), expected="a ChromHMM binarized file, optionally gzipped")
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise ValueError(f"{path}:1: expected 'cell<TAB>chrom' (ChromHMM's binarized format), got an empty line")
    head = [f.strip() for f in lines[0].split("\t")]
    if len(head) != 2 or not all(head):
        raise ValueError(f"{path}:1: expected 'cell<TAB>chrom' (2 tab-separated fields), got {lines[0]!r}")
    if len(lines) < 2 or not lines[1].strip():
        raise ValueError(f"{path}:2: expected the mark names (tab-separated)")
    marks = [f.strip() for f in lines[1].split("\t")]
    if not all(marks):
        raise ValueError(f"{path}:2: an empty mark name in {lines[1]!r}")
    if len(set(marks)) != len(marks):
        dup = next(m for m in marks if marks.count(m) > 1)
        raise ValueError(f"{path}:2: mark {dup!r} is listed twice")
    body = lines[2:]
    while body and not body[-1].strip():  # a trailing newline or two
        body.pop()
    if not body:
        raise ValueError(f"{path}: no bins after the two header lines")
    d = len(marks)
    data = np.empty((len(body), d), dtype=np.int8)
    for i, line in enumerate(body):
        fields = line.split("\t")
        if len(fields) != d:
            raise ValueError(f"{path}:{i + 3}: expected {d} tab-separated values (one per mark), got {len(fields)}")
        for j, v in enumerate(fields):
            v = v.strip()
            if v not in ("0", "1", "2"):
                raise ValueError(f"{path}:{i + 3}: mark {marks[j]!r}: expected 0, 1 or 2 (missing), got {v!r}")
            data[i, j] = ord(v) - 48
    return head[0], head[1], marks, data


def read_binarized(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> BinarizedData:
    """Read ChromHMM binarized files (files and/or folders, see :func:`binarized_files`).

    Raises:
        ValueError: ``"<file>:<line>: ..."`` for a malformed header, a row without one value per mark or a
            value other than 0/1/2; ``"<file>: ..."`` for mark names that differ from the first file's (ChromHMM
            only warns; a model over mismatched columns is wrong), a file with no bins, or a cell type and
            chromosome already read from another file.
    """
    files = binarized_files(paths)
    cells, chroms, data, sources = [], [], [], []
    marks: list[str] | None = None
    seen: dict[tuple[str, str], Path] = {}
    for f in files:
        if f.is_dir():
            raise IsADirectoryError(f"{f}: is a directory, expected a binarized file")
        cell, chrom, m, x = _read_one(f)
        if marks is None:
            marks = m
        elif m != marks:
            raise ValueError(f"{f}:2: marks {m} differ from {marks} in {sources[0]}; every file needs the same marks "
                             "in the same order")
        if (cell, chrom) in seen:
            raise ValueError(f"{f}:1: cell {cell!r} chromosome {chrom!r} was already read from {seen[(cell, chrom)]}")
        seen[(cell, chrom)] = f
        cells.append(cell)
        chroms.append(chrom)
        data.append(x)
        sources.append(str(f))
    return BinarizedData(cells, chroms, list(marks), data, sources)


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r by ChromHMM's ``Util.correlation`` formula (sums of squares; 0 when a variance is 0), which
    is exactly symmetric, so tied chains are broken the same way."""
    n = x.shape[0]
    sx, sy = float(x.sum()), float(y.sum())
    vx, vy = float(x @ x) - sx * sx / n, float(y @ y) - sy * sy / n
    if n == 0 or vx * vy <= 0:
        return 0.0
    return (float(x @ y) - sx * sy / n) / np.sqrt(vx * vy)


def emission_order(present_probs: np.ndarray) -> np.ndarray:
    """ChromHMM's ``Emission`` state order: the greedy nearest-neighbour chain over the distance
    ``sqrt(1 - r)`` between emission rows (``r`` Pearson's correlation, 0 for a constant row), started from
    each state in turn, keeping the chain of least total distance.

    A chain and its reverse have the same total, and ChromHMM keeps whichever its strict ``<`` meets first,
    which depends on the states' labels before ordering (its random or information start) and on
    rounding. Here a tie (totals within 1e-9) goes to the chain whose first state has the most marks
    present (the largest row sum; then the first found), so the order does not depend on those labels:
    the same as ChromHMM's or its reverse.

    Returns:
        ``int (K,)``: ``order[new] = old``.

    Example:
        >>> emission_order(np.array([[0.9, 0.1, 0.0], [0.0, 0.1, 0.9], [0.8, 0.2, 0.1]])).tolist()
        [2, 0, 1]
        >>> emission_order(np.array([[0.1, 0.9], [0.8, 0.9]])).tolist()  # a tie: the busier state first
        [1, 0]
    """
    p = np.asarray(present_probs, np.float64)
    k = p.shape[0]
    # r can round above 1 for parallel rows; clamped so sqrt stays real
    dist = np.array([[np.sqrt(max(1.0 - _correlation(p[i], p[j]), 0.0)) for j in range(k)] for i in range(k)])
    chains = []
    for first in range(k):
        order, used, total = [first], {first}, 0.0
        for _ in range(k - 1):
            prev = order[-1]
            nxt = min((s for s in range(k) if s not in used), key=lambda s: (dist[s, prev], s))
            total += dist[nxt, prev]
            order.append(nxt)
            used.add(nxt)
        chains.append((total, order))
    least = min(t for t, _ in chains)
    tied = [c for t, c in chains if t <= least + 1e-9]
    mass = p.sum(1)
    return np.array(max(tied, key=lambda c: mass[c[0]]))  # max keeps the first of equal masses


def java_double(x: float) -> str:
    """``x`` as Java's ``Double.toString`` prints it (ChromHMM's tables): the shortest round-trip digits,
    plain between 1e-3 and 1e7 (``0.25``, ``3.0``), else ``d.dddE-n`` (``9.76368493802267E-29``).

    Example:
        >>> [java_double(v) for v in (0.5, 1.0, 1e-5, 0.0005, 12345678.0, 0.0)]
        ['0.5', '1.0', '1.0E-5', '5.0E-4', '1.2345678E7', '0.0']
    """
    x = float(x)
    if not np.isfinite(x):
        return "NaN" if np.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    if x == 0 or 1e-3 <= abs(x) < 1e7:
        text = repr(x)
        if "e" in text:  # repr goes scientific below 1e-4; Java stays plain down to 1e-3
            text = np.format_float_positional(x, trim="-")
        return text if "." in text else text + ".0"
    mantissa, exponent = np.format_float_scientific(x, trim="-").split("e")
    return f"{mantissa if '.' in mantissa else mantissa + '.0'}E{int(exponent)}"


def _write_table(path, header: list[str], labels: Sequence[str], matrix: np.ndarray) -> Path:
    from diffbio_prob.io.atomic import atomic_write

    path = Path(path)
    with atomic_write(path) as fh:
        fh.write("\t".join(header) + "\n")
        for label, row in zip(labels, np.asarray(matrix, np.float64)):
            fh.write("\t".join([str(label), *map(java_double, row)]) + "\n")
    return path


def write_emissions(path, marks: Sequence[str], present_probs: np.ndarray) -> Path:
    """``emissions_<K>.txt``: ``State (Emission order)`` then the marks; one row per state (1-based) of
    p(mark present | state)."""
    p = np.asarray(present_probs)
    if p.ndim != 2 or p.shape[1] != len(marks):
        raise ValueError(f"present_probs: expected shape (K, {len(marks)}), got {p.shape}")
    return _write_table(path, [f"State ({_ORDER} order)", *marks], [str(i + 1) for i in range(p.shape[0])], p)


def write_transitions(path, transition_probs: np.ndarray) -> Path:
    """``transitions_<K>.txt``: ``State (from\\to) (Emission order)`` then ``1..K``; row i holds p(i -> j)."""
    a = np.asarray(transition_probs)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"transition_probs: expected a square (K, K) matrix, got {a.shape}")
    labels = [str(i + 1) for i in range(a.shape[0])]
    return _write_table(path, [f"State (from\\to) ({_ORDER} order)", *labels], labels, a)


def write_segments(path, chroms: Sequence[str], states: Sequence[np.ndarray], bin_size: int) -> Path:
    """``<cell>_<K>_segments.bed``: ``chrom start end E<k>`` per run of one state (0-based ``states``, written
    1-based), bins of ``bin_size`` bp from 0, the last segment ending at ``num_bins * bin_size``."""
    from diffbio_prob.io.bedgraph import runs, write_bed

    out_chrom, out_start, out_end, out_name = [], [], [], []
    for chrom, path_states in zip(chroms, states):
        s = np.asarray(path_states)
        idx = np.arange(s.shape[0], dtype=np.int64)
        for lo, hi in runs(idx, idx + 1, s):
            out_chrom.append(chrom)
            out_start.append(lo * bin_size)
            out_end.append(hi * bin_size)
            out_name.append(f"E{int(s[lo]) + 1}")
    return write_bed(path, out_chrom, out_start, out_end, {"name": out_name}, header=False)


def read_table(path) -> tuple[str, list[str], list[str], np.ndarray]:
    """Read an ``emissions_<K>.txt`` / ``transitions_<K>.txt`` table: ``(corner, columns, row labels, matrix)``."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
    header = lines[0].split("\t")
    rows = [ln.split("\t") for ln in lines[1:]]
    return header[0], header[1:], [r[0] for r in rows], np.array([[float(v) for v in r[1:]] for r in rows])
