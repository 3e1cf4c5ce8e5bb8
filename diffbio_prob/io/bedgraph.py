"""bedGraph read-depth tracks in, BED segments out.

bedGraph (UCSC, https://genome.ucsc.edu/goldenPath/help/bedgraph.html): optional ``track`` / ``browser``
lines first, then ``chrom start end value`` per line (0-based, half-open; whitespace-separated). Each data
line is one bin of the HMM; each chromosome is one sequence. The file must be sorted (``sort -k1,1
-k2,2n``): a chromosome's lines together, intervals in increasing order, none overlapping. Lines starting
with ``#`` and blank lines are skipped. Gzip is recognised from the bytes.

A segment is a run of bins with the same state and no gap between them (a bin that starts where the
previous one ended), so a segment never covers sequence the track does not cover.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "d.bedgraph"
    >>> _ = p.write_text("track type=bedGraph\\nchr1\\t0\\t100\\t3\\nchr1\\t100\\t200\\t5\\n")
    >>> g = read_bedgraph(p, values="counts")
    >>> g.chroms, g.values[0].tolist()
    (['chr1'], [3.0, 5.0])
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from diffbio_prob.io.base import decode_text

__all__ = ["BedGraph", "read_bedgraph", "looks_like_bedgraph", "runs", "write_bed"]

_VALUES = ("real", "nonnegative", "counts")
_HEADERS = ("track", "browser")


@dataclasses.dataclass
class BedGraph:
    """A bedGraph track, one entry per chromosome in file order.

    Attributes:
        chroms: chromosome names.
        starts, ends: ``int64 (T_c,)`` 0-based half-open bin coordinates per chromosome.
        values: ``float64 (T_c,)`` the bins' values.
        source: the file read.
        lines: ``int64 (T_c,)`` the 1-based line each bin was read from (for messages).
    """

    chroms: list[str]
    starts: list[np.ndarray]
    ends: list[np.ndarray]
    values: list[np.ndarray]
    source: str = ""
    lines: list[np.ndarray] | None = None

    @property
    def num_bins(self) -> int:
        return int(sum(len(v) for v in self.values))

    def bin_width(self) -> int:
        """The track's bin width: the most common interval width (the smallest of equally common ones), each
        chromosome's last interval left out where there are others (it may end short, at the chromosome's end)."""
        inner = [e[:-1] - s[:-1] for s, e in zip(self.starts, self.ends) if len(s) > 1]
        pool = np.concatenate(inner) if inner else np.concatenate([e - s for s, e in zip(self.starts, self.ends)])
        widths, counts = np.unique(pool, return_counts=True)
        return int(widths[np.argmax(counts)])

    def fixed_bins(self) -> "BedGraph":
        """The track in bins of one width (:meth:`bin_width`): an interval ``k`` times as wide is ``k`` bins of
        its value (deepTools ``bamCoverage`` writes runs of equal bins as one line); a chromosome's last
        interval may end in a shorter bin (the chromosome's end).

        Raises:
            ValueError: ``"<file>:<line>: ..."`` for an interval whose width is not a multiple of the bin width.

        Example:
            >>> g = BedGraph(["c"], [np.array([0, 10, 30, 40])], [np.array([10, 30, 40, 45])],
            ...              [np.array([1., 2., 3., 4.])])
            >>> h = g.fixed_bins()
            >>> h.starts[0].tolist(), h.ends[0].tolist(), h.values[0].tolist()
            ([0, 10, 20, 30, 40], [10, 20, 30, 40, 45], [1.0, 2.0, 2.0, 3.0, 4.0])
        """
        w = self.bin_width()
        lines = self.lines or [np.zeros(len(v), np.int64) for v in self.values]
        out: tuple[list, list, list, list] = ([], [], [], [])
        for st, en, val, ln in zip(self.starts, self.ends, self.values, lines):
            d = en - st
            bad = np.flatnonzero(d[:-1] % w)
            if bad.size:
                i = bad[0]
                raise ValueError(f"{self.source}:{ln[i]}: interval of {d[i]} bp is not a multiple of the track's "
                                 f"{w} bp bins; segment a track of fixed bins (e.g. bedtools makewindows + "
                                 "bedtools map)")
            k = d // w
            k[-1] = -(-d[-1] // w)  # the last one may end in a short bin
            idx = np.repeat(np.arange(len(st)), k)
            offset = np.arange(len(idx)) - np.repeat(np.cumsum(k) - k, k)
            starts = st[idx] + offset * w
            out[0].append(starts)
            out[1].append(np.minimum(starts + w, en[idx]))
            out[2].append(val[idx])
            out[3].append(ln[idx])
        return BedGraph(list(self.chroms), out[0], out[1], out[2], self.source, out[3])


def _data_fields(line: str) -> list[str] | None:
    """The fields of a data line, or None for a header, comment or blank line."""
    text = line.strip()
    if not text or text.startswith("#") or text.split(maxsplit=1)[0] in _HEADERS:
        return None
    return text.split()


def looks_like_bedgraph(lines: Sequence[str]) -> bool:
    """Whether the first lines of a file look like a bedGraph: a ``track`` / ``browser`` line, or a first data
    line of four fields whose 2nd and 3rd are integers and 4th a number."""
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.split(maxsplit=1)[0] in _HEADERS:
            return True
        fields = text.split()
        if len(fields) != 4:
            return False
        try:
            int(fields[1]), int(fields[2]), float(fields[3])
        except ValueError:
            return False
        return True
    return False


def read_bedgraph(path: str | os.PathLike, *, values: str = "real") -> BedGraph:
    """Read a sorted bedGraph into one array per chromosome.

    Args:
        path: the file (gzip ok).
        values: ``"real"`` (any finite number, e.g. log ratios for a Gaussian HMM), ``"nonnegative"`` or
            ``"counts"`` (non-negative whole numbers: read depths for a Poisson or negative-binomial HMM).

    Returns:
        :class:`BedGraph`.

    Raises:
        ValueError: ``"<file>:<line>: ..."`` for a line without four fields, a non-integer or negative
            coordinate, an empty interval, a value that is not a finite number (or negative / fractional
            where ``values`` forbids it), a header line after the data, an interval that overlaps or precedes
            the previous one, or a chromosome whose lines are not together; ``"<file>: ..."`` for a file
            with no data.
    """
    if values not in _VALUES:
        raise ValueError(f"values: expected one of {_VALUES}, got {values!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a bedGraph file")
    text = decode_text(path, path.read_bytes(), expected="a bedGraph file (chrom start end value), optionally gzipped")
    chroms: list[str] = []
    blocks: list[list[tuple[int, int, float, int]]] = []
    first_line: dict[str, int] = {}
    prev_end, prev_line = 0, 0
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = _data_fields(line)
        if fields is None:
            word = line.strip().split(maxsplit=1)[0] if line.strip() else ""
            if word in _HEADERS and blocks:
                raise ValueError(f"{path}:{lineno}: a {word!r} line after the data (one track per file)")
            continue
        if len(fields) != 4:
            raise ValueError(f"{path}:{lineno}: expected 4 fields (chrom start end value), got {len(fields)}")
        chrom, s, e, v = fields
        try:
            start, end = int(s), int(e)
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected integer start and end, got {s!r} and {e!r}") from None
        if start < 0:
            raise ValueError(f"{path}:{lineno}: start {start} is negative")
        if end <= start:
            raise ValueError(f"{path}:{lineno}: empty interval (end {end} <= start {start})")
        try:
            value = float(v)
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected a number for the value, got {v!r}") from None
        if not np.isfinite(value):
            raise ValueError(f"{path}:{lineno}: expected a finite value, got {v!r}")
        if values != "real" and value < 0:
            raise ValueError(f"{path}:{lineno}: negative value {v} (read depths are >= 0)")
        if values == "counts" and value != np.floor(value):
            raise ValueError(f"{path}:{lineno}: expected a whole-number read count, got {v!r} "
                             "(for a normalised signal use a Gaussian emission)")
        if not chroms or chrom != chroms[-1]:
            if chrom in first_line:
                raise ValueError(f"{path}:{lineno}: chromosome {chrom!r} appears again (first block at line "
                                 f"{first_line[chrom]}); the file is not sorted (sort -k1,1 -k2,2n)")
            first_line[chrom] = lineno
            chroms.append(chrom)
            blocks.append([])
        elif start < blocks[-1][-1][0]:
            raise ValueError(f"{path}:{lineno}: interval {chrom}:{start}-{end} starts before the previous one "
                             f"(line {prev_line}); the file is not sorted (sort -k1,1 -k2,2n)")
        elif start < prev_end:
            raise ValueError(f"{path}:{lineno}: interval {chrom}:{start}-{end} overlaps the previous one "
                             f"(line {prev_line}, ending at {prev_end})")
        blocks[-1].append((start, end, value, lineno))
        prev_end, prev_line = end, lineno
    if not blocks:
        raise ValueError(f"{path}: no data lines (expected chrom start end value)")
    arrays = [np.array(b, dtype=np.float64) for b in blocks]
    return BedGraph(
        chroms,
        [a[:, 0].astype(np.int64) for a in arrays],
        [a[:, 1].astype(np.int64) for a in arrays],
        [a[:, 2] for a in arrays],
        str(path),
        [a[:, 3].astype(np.int64) for a in arrays],
    )


def runs(starts: np.ndarray, ends: np.ndarray, states: np.ndarray) -> np.ndarray:
    """``int64 (R, 2)`` ``[first, last + 1)`` bin indices of the runs of equal ``states`` over adjacent bins
    (a run also ends where a bin does not start at the previous bin's end).

    Example:
        >>> runs(np.array([0, 10, 20, 40]), np.array([10, 20, 30, 50]), np.array([1, 1, 1, 1])).tolist()
        [[0, 3], [3, 4]]
    """
    states = np.asarray(states)
    n = states.shape[0]
    if n == 0:
        return np.zeros((0, 2), dtype=np.int64)
    brk = np.flatnonzero((states[1:] != states[:-1]) | (np.asarray(starts)[1:] != np.asarray(ends)[:-1])) + 1
    edges = np.concatenate([[0], brk, [n]]).astype(np.int64)
    return np.stack([edges[:-1], edges[1:]], axis=1)


def write_bed(path, chrom: Sequence[str], start, end, columns: Mapping[str, Sequence], *,
              header: bool = True, track: str | None = None, float_format: str = "%.6g") -> Path:
    """Write BED rows ``chrom start end <columns...>`` atomically (tab-separated, no index).

    Args:
        path: the output file.
        chrom, start, end: the first three BED columns.
        columns: the further columns in order (``name``, ``score``, ... or any extra ones).
        header: a ``#chrom<TAB>start<TAB>end<TAB>...`` line naming the columns (bedtools and the UCSC browser
            skip ``#`` lines).
        track: an optional ``track`` line's attributes, e.g. ``'name="cn" description="..."'``.
        float_format: for float columns.
    """
    import pandas as pd

    from diffbio_prob.io.atomic import atomic_write

    frame = pd.DataFrame({"chrom": list(chrom), "start": np.asarray(start, np.int64),
                          "end": np.asarray(end, np.int64), **{k: list(v) if not isinstance(v, np.ndarray) else v
                                                               for k, v in columns.items()}})
    path = Path(path)
    with atomic_write(path) as fh:
        if track is not None:
            fh.write(f"track {track}\n")
        if header:
            fh.write("#" + "\t".join(frame.columns) + "\n")
        frame.to_csv(fh, sep="\t", index=False, header=False, float_format=float_format)
    return path
