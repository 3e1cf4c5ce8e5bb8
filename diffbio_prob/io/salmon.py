"""salmon's files: ``eq_classes.txt(.gz)``, ``quant.sf``, fragment-length distributions, bootstrap draws.

Formats (salmon 1.10, ``doc/source/file_formats.rst``, ``GZipWriter.cpp``; ``docs/notes/em.md`` §4):

* ``eq_classes.txt.gz`` (``--dumpEq``): ``N``, ``M``, ``N`` names (line rank = transcript id), then ``M``
  lines ``k t_1 .. t_k [w_1 .. w_k] count`` (weights with ``--dumpEqWeights``: normalised per class, with
  ``1/l`` included; ``count`` a whole number of fragments, each transcript at most once per line).
  salmon's ``--eqclasses`` input may end with ``name efflen`` lines.
* ``quant.sf``: ``Name Length EffectiveLength TPM NumReads``.
* ``aux_info/fld.gz``: 1001 little-endian int32 (observed fragment lengths 0..1000);
  ``libParams/flenDist.txt``: one line of 1001 probabilities (the smoothed FLD salmon uses).
* ``aux_info/bootstrap/bootstraps.gz``: raw little-endian float64, ``T`` values per draw, in the order
  of ``names.tsv.gz`` (one tab-separated line).
* the output folder (:func:`read_salmon_dir`, :func:`write_salmon_dir`): ``quant.sf``, ``cmd_info.json``
  (its ``auxDir`` names the aux folder), ``<aux>/meta_info.json`` (``salmon_version``, ``samp_type``,
  ``num_bootstraps``: the number of bootstrap *or* Gibbs draws, ``num_valid_targets``, ...) and the
  draws above. tximport (``readInfRepFish``) needs ``cmd_info.json``, ``salmon_version >= 0.8.0`` and
  ``num_bootstraps > 0``, reads ``num_valid_targets * num_bootstraps`` doubles and ignores ``samp_type``
  and ``names.tsv.gz``.

Effective length (``DistributionUtils.cpp``; checked against salmon 1.10.1's ``quant.sf`` to 0.015):
``l = L - mu(L)`` with ``mu(L)`` the FLD mean truncated at ``L`` (``mu(maxLen - 1)`` for ``L >= maxLen``);
``L`` itself when that is below 1.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import warnings
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from diffbio_prob.io.atomic import atomic_path, atomic_write
from diffbio_prob.io.base import (
    package_version,
    EqClassTable,
    EqFormat,
    FormatError,
    gunzip_bytes,
    parse_count,
    parse_float,
    parse_int,
    read_all_lines,
)

__all__ = [
    "read_salmon_eq_classes",
    "write_salmon_eq_classes",
    "QuantTable",
    "read_quant_sf",
    "write_quant_sf",
    "read_fld",
    "salmon_effective_lengths",
    "read_salmon_bootstraps",
    "SampleData",
    "load_sample_data",
    "SALMON_EQ_FORMAT",
    "SalmonQuant",
    "read_salmon_dir",
    "write_salmon_dir",
    "salmon_tpm",
    "SALMON_FORMAT_VERSION",
    "SAMP_TYPES",
]


def read_salmon_eq_classes(path: str | os.PathLike) -> EqClassTable:
    """Read salmon's ``eq_classes.txt`` or ``.txt.gz`` (gzip detected from the content).

    Handles the plain (collapsed) dump, the ``--dumpEqWeights`` dump (one line per range-factorised
    class, so a transcript set can repeat) and salmon's ``--eqclasses`` input with trailing
    ``name efflen`` lines (returned as ``table.lengths``).

    Example:
        >>> t = read_salmon_eq_classes("aux_info/eq_classes.txt.gz")   # doctest: +SKIP
        >>> t.n_transcripts, t.n_classes, t.weights is not None         # doctest: +SKIP
        (15, 28, True)
    """
    lines = read_all_lines(path)
    n_lines = len(lines)
    if n_lines < 2:
        raise FormatError(path, n_lines + 1, "file ends before the header (number of transcripts, number of classes)")
    n_tx = parse_int(path, 1, lines[0].strip(), "number of transcripts", 1)
    n_cls = parse_int(path, 2, lines[1].strip(), "number of classes", 0)
    if n_lines < 2 + n_tx:
        raise FormatError(path, n_lines + 1, f"file ends after {n_lines - 2} of {n_tx} transcript names (truncated?)")
    names = []
    for i in range(n_tx):
        parts = lines[2 + i].split()
        if len(parts) != 1:
            raise FormatError(path, 3 + i, f"expected one transcript name (line 1 declares {n_tx} transcripts), "
                                           f"got {lines[2 + i][:80]!r}")
        names.append(parts[0])
    if len(set(names)) != n_tx:
        dup = next(n for n in names if names.count(n) > 1)
        raise FormatError(path, 3 + names.index(dup), f"duplicate transcript name {dup!r}")
    start = 2 + n_tx
    if n_lines < start + n_cls:
        raise FormatError(
            path, n_lines + 1, f"file ends after {n_lines - start} of {n_cls} equivalence classes (truncated?)"
        )
    fast = _parse_classes_fast(lines[start:start + n_cls], n_tx)
    if fast is not None:
        class_ids, tids, weights, counts, weighted = fast
    else:  # line by line: slower, but names the offending line
        class_ids, tids, weights, counts, weighted = _parse_classes_slow(path, lines, start, n_cls, n_tx)
    lengths = _trailing_lengths(path, lines, start + n_cls, names)
    return EqClassTable(
        names=names,
        class_ids=np.asarray(class_ids, np.int64),
        transcript_ids=np.asarray(tids, np.int64),
        weights=np.asarray(weights, float) if weighted else None,
        counts=np.asarray(counts, float),
        weights_include_length=bool(weighted),
        lengths=lengths,
        source=str(path),
        format="salmon",
    )


def _parse_classes_fast(class_lines: list[str], n_tx: int):
    """All class lines parsed by one C-level ``np.fromstring`` call, structure checked with NumPy.

    Each line end becomes a ``-1`` marker (no valid field is negative). Returns ``None`` on anything
    unexpected, and the caller reruns the line-by-line parser to name the offending line.
    """
    if not class_lines:
        return [], [], [], [], False
    body = "\n".join(class_lines).replace("\n", " -1 ") + " -1"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            vals = np.fromstring(body, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    if not np.all(np.isfinite(vals)):
        return None
    marks = np.flatnonzero(vals == -1)
    if marks.size != len(class_lines) or np.any(vals[vals < 0] != -1):
        return None
    starts = np.concatenate([[0], marks[:-1] + 1])
    ntok = marks - starts
    k = vals[np.minimum(starts, vals.size - 1)]
    if np.any(ntok < 3) or np.any(k < 1) or np.any(k != np.floor(k)):
        return None
    k = k.astype(np.int64)
    if np.all(ntok == 2 * k + 2):
        weighted = True
    elif np.all(ntok == k + 2):
        weighted = False
    else:
        return None
    n_entries = int(k.sum())
    class_ids = np.repeat(np.arange(k.size), k)
    within = np.arange(n_entries) - np.repeat(np.cumsum(k) - k, k)
    tids = vals[np.repeat(starts + 1, k) + within]
    if np.any(tids != np.floor(tids)) or np.any(tids >= n_tx):
        return None
    tids = tids.astype(np.int64)
    if np.any(k > 1):  # a transcript twice in one class: sort within classes, compare neighbours
        order = np.lexsort((tids, class_ids))
        if np.any((np.diff(class_ids[order]) == 0) & (np.diff(tids[order]) == 0)):
            return None
    weights = vals[np.repeat(starts + 1 + k, k) + within] if weighted else []
    counts = vals[marks - 1]
    if np.any(counts != np.floor(counts)):
        return None
    return class_ids, tids, weights, counts, weighted


def _parse_classes_slow(path, lines, start, n_cls, n_tx):
    class_ids, tids, weights, counts = [], [], [], []
    weighted = None
    for j in range(n_cls):
        lineno = start + j + 1
        parts = lines[start + j].split()
        if not parts:
            raise FormatError(path, lineno, "empty line where an equivalence class was expected")
        if not parts[0].lstrip("-").isdigit():
            raise FormatError(path, lineno, f"expected an integer class size (class {j + 1} of the {n_cls} that "
                                            f"line 2 declares), got {parts[0]!r}")
        k = parse_int(path, lineno, parts[0], "class size", 1)
        if len(parts) == k + 2:
            has_w = False
        elif len(parts) == 2 * k + 2:
            has_w = True
        else:
            raise FormatError(
                path, lineno, f"class of size {k} needs {k + 2} fields (ids, count) or {2 * k + 2} (ids, weights, "
                f"count), got {len(parts)}"
            )
        if weighted is None:
            weighted = has_w
        elif weighted != has_w:
            raise FormatError(path, lineno, "weighted and unweighted classes are mixed in one file")
        ids = [parse_int(path, lineno, p, "transcript id") for p in parts[1:1 + k]]
        bad = [t for t in ids if t >= n_tx]
        if bad:
            raise FormatError(path, lineno, f"transcript id {bad[0]} out of range [0, {n_tx})")
        if len(set(ids)) != k:
            dup = next(t for t in ids if ids.count(t) > 1)
            raise FormatError(path, lineno, f"transcript id {dup} listed twice in one class")
        tids.extend(ids)
        class_ids.extend([j] * k)
        if has_w:
            weights.extend(parse_float(path, lineno, p, "weight") for p in parts[1 + k:1 + 2 * k])
        counts.append(parse_count(path, lineno, parts[-1], "count"))
    return class_ids, tids, weights, counts, bool(weighted)


def _trailing_lengths(path, lines, first, names):
    """salmon's ``--eqclasses`` input may end with ``name efflen`` lines."""
    n_tx = len(names)
    lengths = None
    tail = [(first + i + 1, ln) for i, ln in enumerate(lines[first:]) if ln.strip()]
    if tail:
        index = {n: i for i, n in enumerate(names)}
        # fast path: every line is "name value" with a known name and a positive number
        rows = [ln.split() for _, ln in tail]
        if all(len(r) == 2 for r in rows) and len(tail) == n_tx:
            try:
                order = np.fromiter((index[r[0]] for r in rows), np.int64, count=n_tx)
                values = np.array([r[1] for r in rows], dtype=float)
            except (KeyError, ValueError):
                order = None
            if order is not None and np.all(np.isfinite(values) & (values > 0)) and np.unique(order).size == n_tx:
                lengths = np.empty(n_tx)
                lengths[order] = values
                return lengths
        lengths = np.full(n_tx, np.nan)
        for lineno, line in tail:
            parts = line.split()
            if len(parts) != 2:
                hint = (f"; is the class count on line 2 ({first - 2 - n_tx}) too small?"
                        if parts and parts[0].isdigit() else "")
                raise FormatError(path, lineno, f"expected 'name efflen' after the classes, got {line[:80]!r}{hint}")
            if parts[0] not in index:
                raise FormatError(path, lineno, f"unknown transcript {parts[0]!r}")
            value = parse_float(path, lineno, parts[1], "effective length")
            if value <= 0:
                raise FormatError(path, lineno, f"effective length must be positive, got {parts[1]!r}")
            lengths[index[parts[0]]] = value
        if np.isnan(lengths).any():
            missing = names[int(np.argmax(np.isnan(lengths)))]
            raise FormatError(path, None, f"trailing effective lengths miss transcript {missing!r}")
    return lengths


def _fmt(x: float) -> str:
    """Shortest text that reads back to the same float64 (integers without a decimal point)."""
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 2**53 else repr(x)


def write_salmon_eq_classes(path: str | os.PathLike, table: EqClassTable,
                            effective_lengths: Sequence[float] | None = None) -> Path:
    """Write ``table`` in salmon's eq-class format, atomically (gzip when ``path`` ends in ``.gz``).

    With weights the file is salmon's ``--dumpEqWeights`` form (what ``salmon quant --eqclasses`` needs);
    ``effective_lengths`` adds the trailing ``name efflen`` lines that ``--eqclasses`` reads.
    """
    path = Path(path)
    c = np.asarray(table.counts, float)
    if not np.all(np.isfinite(c) & (c >= 0) & (c == np.floor(c))):
        raise ValueError("table.counts: salmon's format holds whole, non-negative fragment counts per class")
    out = [str(table.n_transcripts), str(table.n_classes), *table.names]
    sizes = table.class_sizes()
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    tids = table.transcript_ids.tolist()
    w = None if table.weights is None else [_fmt(x) for x in table.weights]
    counts = [_fmt(c) for c in table.counts]
    for c in range(table.n_classes):
        lo, hi = int(bounds[c]), int(bounds[c + 1])
        fields = [str(hi - lo), *map(str, tids[lo:hi])]
        if w is not None:
            fields += w[lo:hi]
        fields.append(counts[c])
        out.append("\t".join(fields))
    if effective_lengths is not None:
        eff = np.asarray(effective_lengths, float)
        if eff.shape != (table.n_transcripts,):
            raise ValueError(f"effective_lengths: expected shape ({table.n_transcripts},), got {eff.shape}")
        out += [f"{n}\t{_fmt(e)}" for n, e in zip(table.names, eff)]
    text = "\n".join(out) + "\n"
    if path.name.endswith(".gz"):
        with atomic_path(path) as tmp:
            with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=6) as fh:
                fh.write(text)
    else:
        with atomic_write(path) as fh:
            fh.write(text)
    return path


@dataclasses.dataclass
class QuantTable:
    """A ``quant.sf``: names, ``Length``, ``EffectiveLength``, ``TPM``, ``NumReads``."""

    names: list[str]
    lengths: np.ndarray
    effective_lengths: np.ndarray
    tpm: np.ndarray
    num_reads: np.ndarray
    source: str = ""

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(
            {"Length": self.lengths, "EffectiveLength": self.effective_lengths, "TPM": self.tpm,
             "NumReads": self.num_reads},
            index=pd.Index(self.names, name="Name"),
        )


_QUANT_HEADER = ["Name", "Length", "EffectiveLength", "TPM", "NumReads"]


def read_quant_sf(path: str | os.PathLike) -> QuantTable:
    """Read salmon's ``quant.sf`` (header ``Name Length EffectiveLength TPM NumReads``)."""
    lines = read_all_lines(path)
    if not lines or lines[0].split() != _QUANT_HEADER:
        got = lines[0][:80] if lines else ""
        raise FormatError(path, 1, f"expected the quant.sf header {' '.join(_QUANT_HEADER)!r}, got {got!r}")
    names, rows, seen = [], [], {}
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) != 5:
            raise FormatError(path, lineno, f"expected 5 columns, got {len(parts)}: {line[:80]!r}")
        if parts[0] in seen:
            raise FormatError(path, lineno, f"duplicate transcript name {parts[0]!r} (first at line {seen[parts[0]]})")
        seen[parts[0]] = lineno
        names.append(parts[0])
        rows.append([parse_float(path, lineno, p, col) for p, col in zip(parts[1:], _QUANT_HEADER[1:])])
    if not rows:
        raise FormatError(path, None, "no transcripts")
    arr = np.asarray(rows, float)
    return QuantTable(names, arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], str(path))


def write_quant_sf(path: str | os.PathLike, names: Sequence[str], lengths, effective_lengths, tpm,
                   num_reads) -> Path:
    """Write salmon's ``quant.sf`` atomically, in salmon's number formats (``%.3f`` lengths and reads,
    ``%.6f`` TPM; integer lengths without decimals)."""
    arrays = [np.asarray(a, float) for a in (lengths, effective_lengths, tpm, num_reads)]
    for label, a in zip(("lengths", "effective_lengths", "tpm", "num_reads"), arrays):
        if a.shape != (len(names),):
            raise ValueError(f"{label}: expected shape ({len(names)},), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{label}: contains non-finite values")
    lengths, eff, tpm_, reads = arrays
    out = ["\t".join(_QUANT_HEADER)]
    for n, L, e, t, r in zip(names, lengths, eff, tpm_, reads):
        ltxt = str(int(L)) if float(L).is_integer() else f"{L:.3f}"
        out.append(f"{n}\t{ltxt}\t{e:.3f}\t{t:.6f}\t{r:.3f}")
    with atomic_write(path) as fh:
        fh.write("\n".join(out) + "\n")
    return Path(path)


def read_fld(path: str | os.PathLike, sample: int | None = None) -> np.ndarray:
    """A fragment-length distribution as masses over lengths ``0, 1, ..`` (format from the content).

    * salmon ``aux_info/fld.gz``: gzip of little-endian int32 counts (1001 values);
    * salmon ``libParams/flenDist.txt``: one line of probabilities;
    * kallisto ``flens.txt``: one line of 1000 counts per sample (``sample`` picks one when there are
      several).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gunzip_bytes(path, raw)
        if b"\x00" in raw:  # binary counts (salmon fld.gz)
            if len(raw) % 4:
                raise FormatError(path, None, f"binary FLD of {len(raw)} bytes is not a whole number of int32")
            masses = np.frombuffer(raw, "<i4").astype(float)
            if (masses < 0).any():
                raise FormatError(path, None, "negative fragment-length count")
            return _check_fld(path, masses)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(path, None, "neither a gzipped int32 FLD nor a text FLD") from None
    rows = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    if not rows:
        raise FormatError(path, 1, "empty file, expected a fragment-length distribution")
    if len(rows) > 1 and sample is None:
        raise ValueError(f"sample: {path} holds {len(rows)} distributions (one per line); pick one with sample=")
    idx = 0 if sample is None else int(sample)
    if not 0 <= idx < len(rows):
        raise ValueError(f"sample: {path} has {len(rows)} line(s), got sample={sample}")
    lineno, line = rows[idx]
    values = np.asarray([parse_float(path, lineno, p, "fragment-length mass") for p in line.split()], float)
    return _check_fld(path, values)


def _check_fld(path, masses: np.ndarray) -> np.ndarray:
    if masses.size < 2 or masses.sum() <= 0:
        raise FormatError(path, None, "fragment-length distribution has no mass")
    return masses


def _conditional_means(masses: np.ndarray) -> np.ndarray:
    """``mu(i) = sum_{l <= i} l m_l / sum_{l <= i} m_l`` (0 where no mass yet)."""
    m = np.asarray(masses, float)
    cum_w = np.cumsum(m)
    cum_v = np.cumsum(np.arange(m.size) * m)
    return np.where(cum_w > 0, cum_v / np.where(cum_w > 0, cum_w, 1.0), 0.0)


def _check_lengths(lengths) -> np.ndarray:
    L = np.asarray(lengths, float)
    if L.ndim != 1 or not np.all(np.isfinite(L)) or np.any(L <= 0):
        raise ValueError("lengths: expected a 1-D array of positive transcript lengths")
    return L


def salmon_effective_lengths(lengths, masses) -> np.ndarray:
    """salmon's effective lengths ``L - mu(L)`` (``L`` when below 1), ``mu`` the truncated FLD mean.

    Example:
        >>> salmon_effective_lengths([1000, 3], [0, 0, 1, 1]).tolist()   # mu = 2.5 (L >= 4 uses mu(3))
        [997.5, 3.0]
    """
    L = _check_lengths(lengths)
    cm = _conditional_means(masses)
    n = cm.size
    idx = np.where(L >= n, n - 1, np.floor(L)).astype(np.int64)
    eff = L - cm[idx]
    return np.where(eff < 1.0, L, eff)


def read_salmon_bootstraps(aux_dir: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """salmon's ``aux_info/bootstrap`` draws: ``(names, Float[(n_draws, T)])`` (NumReads per draw)."""
    aux_dir = Path(aux_dir)
    folder = aux_dir / "bootstrap" if (aux_dir / "bootstrap").is_dir() else aux_dir
    names_path, draws_path = folder / "names.tsv.gz", folder / "bootstraps.gz"
    name_lines = [ln for ln in read_all_lines(names_path) if ln.strip()]
    names = [n for n in name_lines[0].split("\t") if n] if name_lines else []
    if not names:
        raise FormatError(names_path, 1, "no transcript names (expected one tab-separated line)")
    if not draws_path.exists():
        raise FileNotFoundError(f"{draws_path}: no such file")
    raw = gunzip_bytes(draws_path, draws_path.read_bytes())
    if len(raw) % (8 * len(names)):
        raise FormatError(draws_path, None, f"{len(raw)} bytes is not a whole number of draws of {len(names)} float64")
    draws = np.frombuffer(raw, "<f8").reshape(-1, len(names)).copy()
    bad = ~(np.isfinite(draws) & (draws >= 0))
    if bad.any():
        d, t = np.unravel_index(int(np.argmax(bad)), draws.shape)
        raise FormatError(draws_path, None, f"draw {d} of {names[t]!r} is {float(draws[d, t])!r}; expected a finite "
                                            "non-negative count")
    return names, draws


@dataclasses.dataclass
class SampleData:
    """salmon's sample data (15 RefSeq transcripts, 10,000 simulated pairs) as shipped with the package.

    Attributes:
        table: the ``--dumpEqWeights`` equivalence classes of salmon 1.10.1's default (VBEM) run.
        names: transcript names.
        lengths: transcript lengths; effective_lengths: salmon's (from the same run's ``quant.sf``).
        salmon_num_reads: that run's NumReads (VBEM, prior 0.01 per transcript).
        true_counts: simulated fragments per transcript (sum 10,000).
    """

    table: EqClassTable
    names: list[str]
    lengths: np.ndarray
    effective_lengths: np.ndarray
    salmon_num_reads: np.ndarray
    true_counts: np.ndarray


def sample_data_dir() -> Path:
    """Folder of the packaged sample data."""
    return Path(str(resources.files("diffbio_prob") / "data" / "salmon_sample"))


def load_sample_data() -> SampleData:
    """Load salmon's sample equivalence classes, effective lengths, salmon's estimate and the truth.

    Example:
        >>> d = load_sample_data()
        >>> d.table.n_transcripts, d.table.n_classes, int(d.true_counts.sum())
        (15, 28, 10000)
    """
    folder = sample_data_dir()
    table = read_salmon_eq_classes(folder / "eq_classes.txt.gz")
    quant = read_quant_sf(folder / "quant.sf")
    if quant.names != table.names:
        raise FormatError(folder / "quant.sf", None, "transcript order differs from eq_classes.txt.gz")
    truth = {}
    for line in read_all_lines(folder / "true_counts.tsv")[1:]:
        parts = line.split()
        truth[parts[0]] = float(parts[2])
    return SampleData(
        table=table,
        names=list(table.names),
        lengths=quant.lengths,
        effective_lengths=quant.effective_lengths,
        salmon_num_reads=quant.num_reads,
        true_counts=np.asarray([truth[n] for n in table.names]),
    )


def _sniff_salmon_eq(fields: list[str]) -> bool:
    return len(fields) == 1 and fields[0].isdigit()


def _read_salmon_registered(path, counts=None, transcripts=None) -> EqClassTable:
    if counts is not None:
        raise ValueError("counts: salmon eq_classes files carry their own counts; --ec-counts is for kallisto")
    if transcripts is not None:
        raise ValueError("transcripts: salmon eq_classes files carry their own names (--transcripts is for "
                         "kallisto)")
    return read_salmon_eq_classes(path)


#: salmon's ``eq_classes.txt(.gz)`` in the registry of :mod:`diffbio_prob.io.eqclasses`.
SALMON_EQ_FORMAT = EqFormat(
    name="salmon",
    description="salmon eq_classes file (first line: number of transcripts)",
    sniff=_sniff_salmon_eq,
    read=_read_salmon_registered,
)


# --- salmon's output folder: quant.sf, cmd_info.json, aux_info/meta_info.json, inferential replicates ---------
#: The salmon output-format version the folders written here follow (``salmon_version`` in their JSON files:
#: tximport requires ``>= 0.8.0`` and parses it with R's ``package_version``, so it must be a dotted number).
SALMON_FORMAT_VERSION = "1.10.1"

#: salmon's ``samp_type`` values, and this package's for posterior draws (tximport reads the field but
#: does not use it; fishpond never reads it).
SAMP_TYPES = ("none", "bootstrap", "gibbs", "nuts", "svi")


@dataclasses.dataclass
class SalmonQuant:
    """A salmon output folder (``read_salmon_dir``): ``quant.sf``, the run's JSON metadata and the
    inferential replicates.

    Attributes:
        path: the folder.
        names, lengths, effective_lengths, tpm, num_reads: ``quant.sf``'s columns.
        draws: ``(R, T)`` replicates (NumReads per draw, the file's replicate-major rows, columns in
            ``quant.sf`` order), or ``None`` when the run has none.
        samp_type: ``meta_info.json``'s ``samp_type`` (``"bootstrap"``, ``"gibbs"``, ``"none"``, ...).
        cmd_info, meta_info: the parsed JSON files (``{}`` when absent).
        aux_dir: the auxiliary folder (``cmd_info.json``'s ``auxDir``, default ``aux_info``).
    """

    path: Path
    names: list[str]
    lengths: np.ndarray
    effective_lengths: np.ndarray
    tpm: np.ndarray
    num_reads: np.ndarray
    draws: np.ndarray | None
    samp_type: str | None
    cmd_info: dict
    meta_info: dict
    aux_dir: Path

    @property
    def num_bootstraps(self) -> int:
        return 0 if self.draws is None else int(self.draws.shape[0])

    @property
    def inf_reps(self) -> np.ndarray | None:
        """``(T, R)``: what tximport returns as ``infReps`` for the sample (column k = replicate k)."""
        return None if self.draws is None else self.draws.T

    @property
    def num_mapped(self) -> float | None:
        value = self.meta_info.get("num_mapped")
        return None if value is None else float(value)

    def to_frame(self):
        return QuantTable(self.names, self.lengths, self.effective_lengths, self.tpm, self.num_reads,
                          str(self.path)).to_frame()


def _read_json(path: Path) -> dict:
    import json

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FormatError(path, None, "not UTF-8 text; expected a JSON object") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(path, exc.lineno, f"not valid JSON: {exc.msg}") from None
    if not isinstance(obj, dict):
        raise FormatError(path, 1, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _meta_int(meta: dict, key: str, path: Path) -> int | None:
    if key not in meta:
        return None
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        raise FormatError(path, None, f"{key}: expected a non-negative integer, got {value!r}")
    return int(value)


def _read_replicates(folder: Path, n_draws: int, n_targets: int) -> np.ndarray:
    """``bootstraps.gz`` as ``(n_draws, n_targets)`` float64; as tximport, 4-byte integers when the file
    does not hold ``n_draws * n_targets`` doubles."""
    path = folder / "bootstraps.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (meta_info.json declares {n_draws} replicates)")
    raw = gunzip_bytes(path, path.read_bytes())
    expected = n_draws * n_targets
    if len(raw) == 8 * expected:
        draws = np.frombuffer(raw, "<f8").astype(float)
    elif len(raw) == 4 * expected:
        draws = np.frombuffer(raw, "<i4").astype(float)
    else:
        raise FormatError(path, None, f"{len(raw)} bytes; meta_info.json's {n_draws} replicates of {n_targets} "
                                      f"targets need {8 * expected} (float64) or {4 * expected} (int32)")
    draws = draws.reshape(n_draws, n_targets).copy()
    bad = ~(np.isfinite(draws) & (draws >= 0))
    if bad.any():
        d, t = np.unravel_index(int(np.argmax(bad)), draws.shape)
        raise FormatError(path, None, f"replicate {d}, target {t} is {float(draws[d, t])!r}; expected a finite "
                                      "non-negative count")
    return draws


def read_salmon_dir(path: str | os.PathLike) -> SalmonQuant:
    """Read a salmon output folder (salmon's own, or one written by :func:`write_salmon_dir`).

    Reads ``quant.sf``; ``cmd_info.json`` for ``auxDir`` (default ``aux_info``); ``<aux>/meta_info.json``;
    and, when it declares ``num_bootstraps > 0``, ``<aux>/bootstrap/bootstraps.gz`` as tximport does
    (``num_valid_targets``, else ``num_targets``, else quant.sf's row count, values per replicate;
    float64, or int32 when the size says so). Unlike tximport, it checks that the target count equals
    quant.sf's rows and that ``names.tsv.gz``, when present, lists quant.sf's names in the same order.

    Args:
        path: the folder, or its ``quant.sf``.

    Example:
        >>> q = read_salmon_dir("salmon/A1")            # doctest: +SKIP
        >>> q.draws.shape, q.samp_type                  # doctest: +SKIP
        ((20, 10072), 'bootstrap')
    """
    path = Path(path)
    folder = path.parent if path.name == "quant.sf" and path.is_file() else path
    if not folder.is_dir():
        raise FileNotFoundError(f"{path}: no such salmon output folder")
    quant_path = folder / "quant.sf"
    if not quant_path.exists():
        raise FileNotFoundError(f"{quant_path}: no such file (not a salmon output folder?)")
    quant = read_quant_sf(quant_path)
    cmd_path = folder / "cmd_info.json"
    cmd_info = _read_json(cmd_path) if cmd_path.exists() else {}
    aux_name = cmd_info.get("auxDir", "aux_info")
    if not isinstance(aux_name, str) or not aux_name:
        raise FormatError(cmd_path, None, f"auxDir: expected a folder name, got {aux_name!r}")
    aux_dir = folder / aux_name
    meta_path = aux_dir / "meta_info.json"
    meta = _read_json(meta_path) if meta_path.exists() else {}
    n_draws = _meta_int(meta, "num_bootstraps", meta_path) or 0
    draws = None
    if n_draws > 0:
        n_targets = _meta_int(meta, "num_valid_targets", meta_path)
        if n_targets is None:
            n_targets = _meta_int(meta, "num_targets", meta_path)
        if n_targets is None:
            n_targets = len(quant.names)
        if n_targets != len(quant.names):
            raise FormatError(meta_path, None, f"{n_targets} targets, but {quant_path} has {len(quant.names)} rows")
        boot = aux_dir / "bootstrap"
        draws = _read_replicates(boot, n_draws, n_targets)
        names_path = boot / "names.tsv.gz"
        if names_path.exists():
            lines = [ln for ln in read_all_lines(names_path) if ln.strip()]
            names = [n for n in lines[0].rstrip("\n").split("\t") if n] if lines else []
            if names != quant.names:
                where = next((i for i, (a, b) in enumerate(zip(names, quant.names)) if a != b), min(len(names),
                                                                                               len(quant.names)))
                raise FormatError(names_path, 1, f"{len(names)} names that differ from quant.sf's {len(quant.names)} "
                                                 f"from position {where}")
    samp = meta.get("samp_type")
    return SalmonQuant(folder, quant.names, quant.lengths, quant.effective_lengths, quant.tpm, quant.num_reads,
                       draws, None if samp is None else str(samp), cmd_info, meta, aux_dir)


def salmon_tpm(num_reads, effective_lengths) -> np.ndarray:
    """salmon's TPM in float64: ``1e6 (n_t / l_t) / sum_j n_j / l_j`` (zeros if every count is 0)."""
    n = np.asarray(num_reads, np.float64)
    rate = n / np.asarray(effective_lengths, np.float64)
    total = rate.sum()
    return 1e6 * rate / total if total > 0 else np.zeros_like(rate)


def _salmon_time(t: float) -> str:
    import time

    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(t))


def write_salmon_dir(
    out_dir: str | os.PathLike,
    names: Sequence[str],
    lengths,
    effective_lengths,
    num_reads,
    *,
    tpm=None,
    draws=None,
    samp_type: str | None = None,
    opt_type: str = "vb",
    num_mapped: float | None = None,
    num_processed: float | None = None,
    num_eq_classes: int | None = None,
    library_types: Sequence[str] = ("A",),
    frag_length_mean: float | None = None,
    frag_length_sd: float | None = None,
    cmd_info: dict | None = None,
    meta: dict | None = None,
    aux_dir: str = "aux_info",
    start_time: float | None = None,
) -> Path:
    """Write salmon's output layout: everything tximport and fishpond read.

    * ``quant.sf`` (:func:`write_quant_sf`; TPM from ``num_reads`` in float64 unless given);
    * ``cmd_info.json``: ``salmon_version`` (:data:`SALMON_FORMAT_VERSION`), ``diffbio_prob_version``,
      ``auxDir`` and the entries of ``cmd_info`` (salmon writes every value as a string);
    * ``<aux>/meta_info.json``: salmon 1.10's fields (``samp_type``, ``opt_type``, ``num_bootstraps``,
      ``num_valid_targets``, ``num_processed``, ``num_mapped``, ``percent_mapped``, ``library_types``,
      ``frag_length_mean``/``sd`` when known, ``call: "quant"``, times) plus ``meta``'s entries;
    * with ``draws`` (``(R, T)``): ``<aux>/bootstrap/bootstraps.gz`` (gzip of little-endian float64,
      replicate-major) and ``names.tsv.gz`` (the names on one tab-separated line).

    Every file is first written to a temporary file beside its target; the renames happen only once all
    are written (so a failure leaves the folder as it was). A stale ``bootstrap/`` pair from an earlier
    run is removed when there are no draws now.

    Args:
        out_dir: the folder (created).
        names, lengths, effective_lengths, num_reads: ``quant.sf``'s columns.
        tpm: default :func:`salmon_tpm`.
        draws: ``(R, T)`` inferential replicates, or ``None``.
        samp_type: one of :data:`SAMP_TYPES` (default ``"bootstrap"`` with draws, ``"none"`` without).
        opt_type: ``"vb"`` or ``"em"``.
        num_mapped: mapped fragments (default ``sum(num_reads)``); num_processed: fragments processed
            (default ``num_mapped``).
        aux_dir: the auxiliary folder's name (``cmd_info.json``'s ``auxDir``).
    """
    import contextlib
    import json
    import time

    from diffbio_prob.io.atomic import check_output_path

    T = len(names)
    reads = np.asarray(num_reads, np.float64)
    eff = np.asarray(effective_lengths, np.float64)
    if reads.shape != (T,) or eff.shape != (T,):
        raise ValueError(f"num_reads, effective_lengths: expected shape ({T},), got {reads.shape}, {eff.shape}")
    tpm = salmon_tpm(reads, eff) if tpm is None else np.asarray(tpm, np.float64)
    if samp_type is None:
        samp_type = "none" if draws is None else "bootstrap"
    if samp_type not in SAMP_TYPES:
        raise ValueError(f"samp_type: expected one of {', '.join(SAMP_TYPES)}, got {samp_type!r}")
    if opt_type not in ("vb", "em", "none"):
        raise ValueError(f"opt_type: expected 'vb' or 'em', got {opt_type!r}")
    if not isinstance(aux_dir, str) or not aux_dir or os.path.isabs(aux_dir) or ".." in Path(aux_dir).parts:
        raise ValueError(f"aux_dir: expected a folder name inside out_dir, got {aux_dir!r}")
    payload = None
    if draws is not None:
        d = np.asarray(draws, np.float64)
        if d.ndim != 2 or d.shape[1] != T or d.shape[0] < 1:
            raise ValueError(f"draws: expected shape (R, {T}) with R >= 1, got {d.shape}")
        if not np.all(np.isfinite(d) & (d >= 0)):
            raise ValueError("draws: expected finite non-negative counts")
        payload = np.ascontiguousarray(d, "<f8").tobytes()
    if any(("\t" in n or "\n" in n) for n in names):
        raise ValueError("names: transcript names may not contain tabs or newlines")
    mapped = float(reads.sum()) if num_mapped is None else float(num_mapped)
    processed = mapped if num_processed is None else float(num_processed)
    out = check_output_path(out_dir, "out_dir", "dir")
    aux = out / aux_dir
    boot = aux / "bootstrap"
    for folder, what in ((aux, "aux_dir"), (boot, "bootstrap folder")):
        check_output_path(folder, what, "dir")

    def num(x):
        return int(x) if float(x).is_integer() else float(x)

    now = time.time()
    cmd = {"salmon_version": SALMON_FORMAT_VERSION, "diffbio_prob_version": package_version()}
    cmd.update({k: v for k, v in (cmd_info or {}).items()})
    cmd["auxDir"] = aux_dir
    info = {
        "salmon_version": SALMON_FORMAT_VERSION,
        "diffbio_prob_version": package_version(),
        "samp_type": samp_type,
        "opt_type": opt_type,
        "quant_errors": [],
        "num_libraries": len(library_types),
        "library_types": list(library_types),
    }
    if frag_length_mean is not None:
        info["frag_length_mean"] = float(frag_length_mean)
    if frag_length_sd is not None:
        info["frag_length_sd"] = float(frag_length_sd)
    info.update({"seq_bias_correct": False, "gc_bias_correct": False, "mapping_type": "mapping",
                 "num_valid_targets": T, "num_decoy_targets": 0})
    if num_eq_classes is not None:
        info["num_eq_classes"] = int(num_eq_classes)
    info.update({
        "serialized_eq_classes": False,
        "num_bootstraps": 0 if payload is None else int(np.asarray(draws).shape[0]),
        "num_processed": num(processed),
        "num_mapped": num(round(mapped, 6)),
        "percent_mapped": 100.0 * mapped / processed if processed > 0 else 0.0,
        "call": "quant",
        "start_time": _salmon_time(now if start_time is None else start_time),
        "end_time": _salmon_time(now),
    })
    for key, value in (meta or {}).items():
        if key not in ("num_bootstraps", "num_valid_targets", "samp_type", "salmon_version"):
            info[key] = value

    def json_text(obj):
        return json.dumps(obj, indent=4) + "\n"

    with contextlib.ExitStack() as stack:
        # all temporary files first; the renames run as the stack unwinds (bootstraps first, quant.sf last)
        quant_tmp = stack.enter_context(atomic_path(out / "quant.sf"))
        cmd_tmp = stack.enter_context(atomic_path(out / "cmd_info.json"))
        meta_tmp = stack.enter_context(atomic_path(aux / "meta_info.json"))
        if payload is not None:
            names_tmp = stack.enter_context(atomic_path(boot / "names.tsv.gz"))
            boot_tmp = stack.enter_context(atomic_path(boot / "bootstraps.gz"))
            with gzip.open(boot_tmp, "wb", compresslevel=6) as fh:
                fh.write(payload)
            with gzip.open(names_tmp, "wt", encoding="utf-8", compresslevel=6) as fh:
                fh.write("\t".join(names) + "\n")
        meta_tmp.write_text(json_text(info), encoding="utf-8")
        cmd_tmp.write_text(json_text(cmd), encoding="utf-8")
        write_quant_sf(quant_tmp, names, lengths, eff, tpm, reads)
    if payload is None:
        for stale in (boot / "bootstraps.gz", boot / "names.tsv.gz"):
            if stale.is_file():
                stale.unlink()
    return out
