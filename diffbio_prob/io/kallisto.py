"""kallisto's files: ``matrix.ec`` / ``pseudoalignments.ec``, ``pseudoalignments.tsv``, ``transcripts.txt``,
and kallisto's effective-length formula (``flens.txt`` is read by :func:`diffbio_prob.io.salmon.read_fld`).

Formats (kallisto 0.46-0.51; ``docs/notes/em.md`` §4):

* ``.ec``: ``ec_id<TAB>t1,t2,...`` with 0-based transcript ids, each once per EC; every EC of the
  index (ECs ``0..T-1`` are the singletons), most with no reads.
* ``pseudoalignments.tsv`` (``kallisto pseudo``): ``ec_id<TAB>count``, each EC at most once, counts
  whole numbers.
* ``transcripts.txt``: one distinct transcript name per line (line rank = id).
* ``matrix.tcc.mtx`` (``kallisto bus`` + ``bustools count --tcc``, the input of ``kallisto quant-tcc``):
  MatrixMarket ``coordinate`` (``integer`` or ``real``, ``general``), rows = cells / samples, columns =
  ECs (column ``j`` is EC id ``j - 1`` of ``matrix.ec``), 1-based; the cell/sample names, when there are
  any, in a one-per-line file (``matrix.cells``, ``output.barcodes.txt``).

Effective length (``weights.cpp`` ``calc_eff_lens``; Bray et al. 2016, PR #62): ``l = L - mu(L) + 1`` with
``mu(L)`` the FLD mean truncated at ``L`` (``mu(999)`` for ``L >= 1000``); ``L`` when that is below 1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from diffbio_prob.io.atomic import atomic_write
from diffbio_prob.io.base import EqClassTable, EqFormat, FormatError, parse_count, read_all_lines

__all__ = [
    "read_kallisto_ec",
    "read_pseudoalignments_tsv",
    "read_transcript_names",
    "read_kallisto_eq_classes",
    "write_kallisto_ec",
    "write_pseudoalignments_tsv",
    "kallisto_effective_lengths",
    "read_matrix_market",
    "read_kallisto_tcc",
    "KALLISTO_EQ_FORMAT",
]


def read_kallisto_ec(path: str | os.PathLike) -> tuple[np.ndarray, list[np.ndarray]]:
    """Read a ``.ec`` file: ``(ec_ids, [transcript ids per EC])``."""
    ec_ids, members = [], []
    for lineno, line in enumerate(read_all_lines(path), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise FormatError(path, lineno, f"expected 'ec_id<TAB>t1,t2,...', got {line[:80]!r}")
        try:
            ec = int(parts[0])
            tids = [int(t) for t in parts[1].split(",")]
        except ValueError:
            raise FormatError(path, lineno, f"expected integers in 'ec_id<TAB>t1,t2,...', got {line[:80]!r}") from None
        if ec < 0 or any(t < 0 for t in tids):
            raise FormatError(path, lineno, f"negative id in {line[:80]!r}")
        if len(set(tids)) != len(tids):
            dup = next(t for t in tids if tids.count(t) > 1)
            raise FormatError(path, lineno, f"transcript id {dup} listed twice in EC {ec}")
        ec_ids.append(ec)
        members.append(np.asarray(tids, np.int64))
    if not ec_ids:
        raise FormatError(path, 1, "empty file, expected equivalence classes")
    ec_arr = np.asarray(ec_ids, np.int64)
    if len(np.unique(ec_arr)) != ec_arr.size:
        dup = int(ec_arr[np.argmax(np.bincount(ec_arr) > 1)]) if ec_arr.max() < 10**8 else "?"
        raise FormatError(path, None, f"duplicate EC id {dup}")
    return ec_arr, members


def read_pseudoalignments_tsv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read ``pseudoalignments.tsv``: ``(ec_ids, counts)``."""
    ec_ids, counts, seen = [], [], {}
    for lineno, line in enumerate(read_all_lines(path), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise FormatError(path, lineno, f"expected 'ec_id<TAB>count', got {line[:80]!r}")
        try:
            ec, count = int(parts[0]), float(parts[1])
        except ValueError:
            raise FormatError(path, lineno, f"expected 'ec_id<TAB>count' numbers, got {line[:80]!r}") from None
        if ec < 0 or not np.isfinite(count) or count < 0:
            raise FormatError(path, lineno, f"expected a non-negative id and count, got {line[:80]!r}")
        parse_count(path, lineno, parts[1], f"the count of EC {ec}")
        if ec in seen:
            raise FormatError(path, lineno, f"EC id {ec} listed twice (first at line {seen[ec]})")
        seen[ec] = lineno
        ec_ids.append(ec)
        counts.append(count)
    if not ec_ids:
        raise FormatError(path, 1, "empty file, expected EC counts")
    return np.asarray(ec_ids, np.int64), np.asarray(counts, float)


def read_transcript_names(path: str | os.PathLike) -> list[str]:
    """Read ``transcripts.txt`` (one name per line)."""
    names, seen = [], {}
    for lineno, line in enumerate(read_all_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 1:
            raise FormatError(path, lineno, f"expected one transcript name per line, got {line[:80]!r}")
        if parts[0] in seen:
            raise FormatError(path, lineno, f"duplicate transcript name {parts[0]!r} (first at line {seen[parts[0]]})")
        seen[parts[0]] = lineno
        names.append(parts[0])
    if not names:
        raise FormatError(path, 1, "empty file, expected transcript names")
    return names


def read_kallisto_eq_classes(ec_path, counts_path, transcripts: str | os.PathLike | Sequence[str] | None = None
                             ) -> EqClassTable:
    """kallisto ECs with their counts as an :class:`EqClassTable` (all ECs kept, in EC-id order).

    Args:
        ec_path: ``matrix.ec`` / ``pseudoalignments.ec``.
        counts_path: ``pseudoalignments.tsv``; ECs it does not list have count 0.
        transcripts: ``transcripts.txt`` or a list of names (default ``t0, t1, ...``).
    """
    ec_ids, members = read_kallisto_ec(ec_path)
    cnt_ids, cnts = read_pseudoalignments_tsv(counts_path)
    order = np.argsort(ec_ids, kind="stable")
    position = {int(e): i for i, e in enumerate(ec_ids[order])}
    counts = np.zeros(ec_ids.size)
    for e, c in zip(cnt_ids.tolist(), cnts.tolist()):
        if e not in position:
            raise FormatError(counts_path, None, f"EC id {e} is not in {ec_path}")
        counts[position[e]] += c
    max_id = max(int(m.max()) for m in members)
    if transcripts is None:
        names = [f"t{i}" for i in range(max_id + 1)]
    elif isinstance(transcripts, (str, os.PathLike)):
        names = read_transcript_names(transcripts)
    else:
        names = [str(n) for n in transcripts]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"transcripts: duplicate transcript name {dup!r}")
    if max_id >= len(names):
        src = transcripts if isinstance(transcripts, (str, os.PathLike)) else "transcripts"
        raise ValueError(f"{ec_path}: transcript id {max_id} out of range for {len(names)} names in {src}")
    sorted_members = [members[i] for i in order]
    sizes = np.asarray([m.size for m in sorted_members])
    return EqClassTable(
        names=names,
        class_ids=np.repeat(np.arange(ec_ids.size), sizes),
        transcript_ids=np.concatenate(sorted_members),
        weights=None,
        counts=counts,
        source=str(ec_path),
        format="kallisto",
    )


def write_kallisto_ec(path: str | os.PathLike, table: EqClassTable) -> Path:
    """Write the table's classes as a kallisto ``.ec`` file (EC id = class index), atomically."""
    lines = [f"{c}\t{','.join(map(str, t.tolist()))}" for c, (t, _, _) in enumerate(table.classes())]
    with atomic_write(path) as fh:
        fh.write("\n".join(lines) + "\n")
    return Path(path)


def write_pseudoalignments_tsv(path: str | os.PathLike, table: EqClassTable, *, skip_zero: bool = True) -> Path:
    """Write ``ec_id<TAB>count`` lines (classes of count 0 left out unless ``skip_zero=False``)."""
    c_arr = np.asarray(table.counts, float)
    if not np.all(np.isfinite(c_arr) & (c_arr >= 0) & (c_arr == np.floor(c_arr))):
        raise ValueError("table.counts: pseudoalignments.tsv holds whole, non-negative fragment counts per EC")
    lines = []
    for c, n in enumerate(table.counts.tolist()):
        if n == 0 and skip_zero:
            continue
        lines.append(f"{c}\t{int(n) if float(n).is_integer() else n!r}")
    with atomic_write(path) as fh:
        fh.write("\n".join(lines) + "\n")
    return Path(path)


def kallisto_effective_lengths(lengths, counts) -> np.ndarray:
    """kallisto's effective lengths ``L - mu(L) + 1`` (``L`` when below 1).

    ``mu(i)`` is the mean of the fragment lengths ``<= i`` in ``counts`` (``flens.txt``: lengths
    0..999), ``mu(n-1)`` for ``L >= n``; ``mu = 0`` before the first observed length, as in kallisto.

    Example:
        >>> kallisto_effective_lengths([1000, 3], [0, 0, 1, 1]).tolist()   # mu(3) = 2.5
        [998.5, 1.5]
    """
    L = np.asarray(lengths, float)
    if L.ndim != 1 or not np.all(np.isfinite(L)) or np.any(L <= 0):
        raise ValueError("lengths: expected a 1-D array of positive transcript lengths")
    m = np.asarray(counts, float)
    cum_w, cum_v = np.cumsum(m), np.cumsum(np.arange(m.size) * m)
    mean = np.where(cum_w > 0, cum_v / np.where(cum_w > 0, cum_w, 1.0), 0.0)
    n = m.size
    idx = np.where(L >= n, n - 1, np.floor(L)).astype(np.int64)
    eff = L - mean[idx] + 1.0
    return np.where(eff < 1.0, L, eff)


def read_matrix_market(path: str | os.PathLike) -> tuple[tuple[int, int], np.ndarray, np.ndarray, np.ndarray]:
    """A MatrixMarket ``coordinate`` ``integer``/``real`` ``general`` file (plain or gzip):
    ``((rows, cols), row_index, col_index, values)`` with 0-based indices, each (row, col) at most once."""
    lines = read_all_lines(path)
    if not lines or not lines[0].lower().startswith("%%matrixmarket"):
        got = lines[0][:80] if lines else ""
        raise FormatError(path, 1, f"expected a '%%MatrixMarket matrix coordinate ...' header, got {got!r}")
    head = lines[0].split()
    if len(head) != 5 or head[1].lower() != "matrix" or head[2].lower() != "coordinate":
        raise FormatError(path, 1, f"expected '%%MatrixMarket matrix coordinate <field> general', got {lines[0][:80]!r}")
    field, symmetry = head[3].lower(), head[4].lower()
    if field not in ("integer", "real", "double"):
        raise FormatError(path, 1, f"field {head[3]!r}: counts need 'integer' or 'real'")
    if symmetry != "general":
        raise FormatError(path, 1, f"symmetry {head[4]!r}: a cells x ECs count matrix is 'general'")
    k = 1
    while k < len(lines) and (not lines[k].strip() or lines[k].lstrip().startswith("%")):
        k += 1
    if k == len(lines):
        raise FormatError(path, len(lines) + 1, "file ends before the size line (rows cols entries)")
    size = lines[k].split()
    if len(size) != 3 or not all(x.isdigit() for x in size):
        raise FormatError(path, k + 1, f"expected the size line 'rows cols entries', got {lines[k][:80]!r}")
    n_rows, n_cols, nnz = map(int, size)
    body = [ln for ln in lines[k + 1:] if ln.strip() and not ln.lstrip().startswith("%")]
    if len(body) != nnz:
        raise FormatError(path, None, f"the size line declares {nnz} entries, the file has {len(body)}"
                                      + (" (truncated?)" if len(body) < nnz else ""))
    if nnz == 0:
        return (n_rows, n_cols), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    try:
        arr = np.array([ln.split() for ln in body], dtype=float)
    except ValueError:
        bad = next(i for i, ln in enumerate(body) if len(ln.split()) != 3 or not _numbers(ln.split()))
        raise FormatError(path, k + 2 + bad, f"expected 'row col value', got {body[bad][:80]!r}") from None
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise FormatError(path, k + 2, "expected three fields per entry: 'row col value'")
    i, j, v = arr[:, 0], arr[:, 1], arr[:, 2]
    bad = (i != np.floor(i)) | (j != np.floor(j)) | (i < 1) | (i > n_rows) | (j < 1) | (j > n_cols)
    if bad.any():
        e = int(np.argmax(bad))
        raise FormatError(path, None, f"entry {e + 1} ({body[e][:60]!r}) is outside the declared {n_rows} x {n_cols}")
    if not np.all(np.isfinite(v) & (v >= 0)):
        e = int(np.argmax(~(np.isfinite(v) & (v >= 0))))
        raise FormatError(path, None, f"entry {e + 1} ({body[e][:60]!r}): counts must be finite and non-negative")
    rows, cols = i.astype(np.int64) - 1, j.astype(np.int64) - 1
    flat = rows * n_cols + cols
    if np.unique(flat).size != flat.size:
        raise FormatError(path, None, "an entry (row, col) is listed twice")
    return (n_rows, n_cols), rows, cols, v


def _numbers(fields) -> bool:
    try:
        [float(f) for f in fields]
    except ValueError:
        return False
    return True


def read_kallisto_tcc(mtx_path, ec_path, transcripts: str | os.PathLike | Sequence[str] | None = None,
                      samples: str | os.PathLike | Sequence[str] | None = None) -> list[EqClassTable]:
    """kallisto's TCC matrix (``matrix.tcc.mtx``, cells/samples x ECs) with its ``matrix.ec``: one
    :class:`EqClassTable` per row (every EC of ``matrix.ec`` in EC-id order, count 0 where the row has no
    entry), its ``source`` ``"<mtx>#<sample name>"``.

    Args:
        mtx_path: the MatrixMarket counts (column ``j`` = EC id ``j - 1``).
        ec_path: ``matrix.ec``.
        transcripts: ``transcripts.txt`` or names (default ``t0, t1, ...``).
        samples: a one-name-per-line file (``matrix.cells``, ``output.barcodes.txt``) or names (default
            the row numbers ``0, 1, ...``).

    Example:
        >>> tables = read_kallisto_tcc("matrix.tcc.mtx", "matrix.ec", "transcripts.txt")  # doctest: +SKIP
        >>> [t.counts.sum() for t in tables]                                              # doctest: +SKIP
    """
    (n_rows, n_cols), rows, cols, vals = read_matrix_market(mtx_path)
    ec_ids, members = read_kallisto_ec(ec_path)
    order = np.argsort(ec_ids, kind="stable")
    sorted_ids = ec_ids[order]
    if n_cols > sorted_ids.size or (n_cols and not np.array_equal(sorted_ids[:n_cols], np.arange(n_cols))):
        missing = next((c for c in range(n_cols) if c >= sorted_ids.size or sorted_ids[c] != c), n_cols - 1)
        raise FormatError(mtx_path, None, f"{n_cols} EC columns, but EC id {missing} is not in {ec_path}"
                                          + (" (is the matrix transposed? rows must be cells/samples)"
                                             if n_rows == sorted_ids.size else ""))
    if samples is None:
        sample_names = [str(r) for r in range(n_rows)]
    elif isinstance(samples, (str, os.PathLike)):
        sample_names = read_transcript_names(samples)
    else:
        sample_names = [str(x) for x in samples]
    if len(sample_names) != n_rows:
        raise ValueError(f"samples: {len(sample_names)} names for the {n_rows} rows of {mtx_path}")
    max_id = max(int(m.max()) for m in members)
    if transcripts is None:
        names = [f"t{i}" for i in range(max_id + 1)]
    elif isinstance(transcripts, (str, os.PathLike)):
        names = read_transcript_names(transcripts)
    else:
        names = [str(n) for n in transcripts]
    if max_id >= len(names):
        raise ValueError(f"{ec_path}: transcript id {max_id} out of range for {len(names)} transcript names")
    sorted_members = [members[i] for i in order]
    sizes = np.asarray([m.size for m in sorted_members])
    class_ids = np.repeat(np.arange(sorted_ids.size), sizes)
    tids = np.concatenate(sorted_members)
    dense = np.zeros((n_rows, sorted_ids.size))
    dense[rows, cols] = vals  # column c is EC id c, which is sorted position c
    return [EqClassTable(names=list(names), class_ids=class_ids.copy(), transcript_ids=tids.copy(), weights=None,
                         counts=dense[r], source=f"{mtx_path}#{sample_names[r]}", format="kallisto")
            for r in range(n_rows)]


def _sniff_kallisto_ec(fields: list[str]) -> bool:
    return len(fields) == 2 and fields[0].isdigit() and all(p.isdigit() for p in fields[1].split(","))


def _read_kallisto_registered(path, counts=None, transcripts=None) -> EqClassTable:
    if counts is None:
        raise ValueError(f"counts: {path} is a kallisto .ec file; give its pseudoalignments.tsv (ec_id<TAB>count) "
                         "or a one-row matrix.tcc.mtx")
    first = read_all_lines(counts)[:1]
    if first and first[0].lower().startswith("%%matrixmarket"):
        tables = read_kallisto_tcc(counts, path, transcripts)
        if len(tables) != 1:
            raise ValueError(f"counts: {counts} holds {len(tables)} cells/samples; quantify one at a time "
                             "(diffbio_prob.io.kallisto.read_kallisto_tcc gives a table per row)")
        return tables[0]
    return read_kallisto_eq_classes(path, counts, transcripts)


#: kallisto's ``matrix.ec`` / ``pseudoalignments.ec`` in the registry of :mod:`diffbio_prob.io.eqclasses`.
KALLISTO_EQ_FORMAT = EqFormat(
    name="kallisto",
    description="kallisto .ec file (ec_id<TAB>t1,t2,...)",
    sniff=_sniff_kallisto_ec,
    read=_read_kallisto_registered,
)
