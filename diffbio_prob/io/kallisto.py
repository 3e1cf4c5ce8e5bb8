"""kallisto's files: ``matrix.ec`` / ``pseudoalignments.ec``, ``pseudoalignments.tsv``, ``transcripts.txt``,
and kallisto's effective-length formula (``flens.txt`` is read by :func:`diffbio_prob.io.salmon.read_fld`).

Formats (kallisto 0.46-0.51; ``docs/notes/em.md`` §4):

* ``.ec``: ``ec_id<TAB>t1,t2,...`` with 0-based transcript ids, each once per EC; every EC of the
  index (ECs ``0..T-1`` are the singletons), most with no reads.
* ``pseudoalignments.tsv`` (``kallisto pseudo``): ``ec_id<TAB>count``, each EC at most once, counts
  whole numbers.
* ``transcripts.txt``: one distinct transcript name per line (line rank = id).

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


def _sniff_kallisto_ec(fields: list[str]) -> bool:
    return len(fields) == 2 and fields[0].isdigit() and all(p.isdigit() for p in fields[1].split(","))


def _read_kallisto_registered(path, counts=None, transcripts=None) -> EqClassTable:
    if counts is None:
        raise ValueError(f"counts: {path} is a kallisto .ec file; give its pseudoalignments.tsv (ec_id<TAB>count)")
    return read_kallisto_eq_classes(path, counts, transcripts)


#: kallisto's ``matrix.ec`` / ``pseudoalignments.ec`` in the registry of :mod:`diffbio_prob.io.eqclasses`.
KALLISTO_EQ_FORMAT = EqFormat(
    name="kallisto",
    description="kallisto .ec file (ec_id<TAB>t1,t2,...)",
    sniff=_sniff_kallisto_ec,
    read=_read_kallisto_registered,
)
