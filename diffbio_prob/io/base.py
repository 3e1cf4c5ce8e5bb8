"""What the eq-class readers share: the containers, the error type, text opening and field parsing.

``io/salmon.py`` and ``io/kallisto.py`` import from here, and ``io/eqclasses.py`` imports them (format
detection through :data:`diffbio_prob.io.eqclasses.EQ_FORMATS`, the registry of :class:`EqFormat`), so the
imports run one way: ``base`` <- ``salmon``, ``kallisto`` <- ``eqclasses``. The public names keep their
old home too: ``diffbio_prob.io.eqclasses`` re-exports everything here.

Every malformed, truncated or undecodable file raises one :class:`FormatError` (a ``ValueError``) naming
the file and, where there is one, the line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import io
import os
import zlib
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

__all__ = [
    "package_version",
    "EqClassTable",
    "LengthTable",
    "FormatError",
    "EqFormat",
    "open_text",
    "read_all_lines",
    "first_content_lines",
    "decode_text",
    "gunzip_bytes",
    "parse_int",
    "parse_float",
    "parse_count",
]

GZIP_MAGIC = b"\x1f\x8b"


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


@dataclasses.dataclass(frozen=True)
class EqFormat:
    """One equivalence-class file format in the registry of ``io/eqclasses.py``.

    Attributes:
        name: the table's ``format`` (``"salmon"``, ``"kallisto"``).
        description: what the first line looks like, for the "not any known format" error.
        sniff: ``sniff(fields)`` is true when the first non-blank line, split on whitespace, starts a
            file of this format.
        read: ``read(path, counts, transcripts) -> EqClassTable``; it rejects the companion files its
            format does not use and requires the ones it does, each with a ``ValueError``.
    """

    name: str
    description: str
    sniff: Callable[[list[str]], bool]
    read: Callable[..., EqClassTable]


def _undecodable(path, exc: BaseException, expected: str = "a text file", label: str | None = None) -> FormatError:
    """The one message for a file whose bytes cannot be read as (gzipped) UTF-8 text (named ``label`` or its path)."""
    name = path if label is None else label
    if isinstance(exc, UnicodeDecodeError):
        hint = ("the name ends in .gz but the content is neither gzip nor UTF-8 text"
                if str(path).lower().endswith(".gz") else f"expected {expected}")
        return FormatError(name, None, f"not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at offset "
                                       f"{exc.start}); {hint}")
    if isinstance(exc, EOFError):
        return FormatError(name, None, "the gzip stream ends early; the file is truncated")
    return FormatError(name, None, f"corrupt gzip data ({type(exc).__name__}: {exc}); the file is damaged or "
                                   "truncated")


@contextlib.contextmanager
def _decoding(path) -> Iterator[None]:
    """Turn the errors of gunzipping / decoding ``path`` into one :class:`FormatError`."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError) as exc:
        raise _undecodable(path, exc) from exc
    except OSError as exc:  # other gzip/OS read failures
        raise _undecodable(path, exc) from exc


def open_text(path: str | os.PathLike):
    """Open a text file, gunzipping when its first bytes are the gzip magic (any suffix)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a file")
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == GZIP_MAGIC:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")


def read_all_lines(path) -> list[str]:
    """All lines of a (possibly gzipped) text file; a truncated or corrupt file is a ``FormatError``."""
    with _decoding(path):
        with open_text(path) as fh:
            return fh.read().splitlines()


def first_content_lines(path, n: int = 3) -> list[str]:
    """The first ``n`` non-blank lines (fewer at the end of the file), for format detection."""
    out = []
    with _decoding(path):
        with open_text(path) as fh:
            for line in fh:
                if line.strip():
                    out.append(line.rstrip("\n"))
                if len(out) >= n:
                    break
    return out


def decode_text(path, raw: bytes, *, expected: str = "a text file", label: str | None = None) -> str:
    """A file's bytes as text: gunzipped when they start with the gzip magic (whatever the suffix), decoded as
    UTF-8 without a byte-order mark. A truncated or corrupt gzip stream or undecodable bytes are one
    :class:`FormatError` naming the file (``label``, e.g. ``"counts file 'x.csv'"``, or else ``path``) and,
    for text that is not UTF-8, ``expected`` (what the file should have been)."""
    try:
        if raw[:2] == GZIP_MAGIC:
            raw = gzip.decompress(raw)
        return raw.decode("utf-8-sig")
    except (EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError, OSError) as exc:
        raise _undecodable(path, exc, expected, label) from None


def gunzip_bytes(path, raw: bytes) -> bytes:
    """``raw`` gunzipped; a truncated or corrupt stream is a ``FormatError`` naming ``path``."""
    with _decoding(path):
        return gzip.decompress(raw)


def parse_int(path, lineno, text, what, minimum=0) -> int:
    """``int(text)``, at least ``minimum``; otherwise a ``FormatError`` naming the file and line."""
    try:
        value = int(text)
    except ValueError:
        raise FormatError(path, lineno, f"expected an integer {what}, got {text!r}") from None
    if value < minimum:
        raise FormatError(path, lineno, f"expected {what} >= {minimum}, got {value}")
    return value


def parse_float(path, lineno, text, what, *, nonnegative: bool = True) -> float:
    """A finite ``float(text)`` (non-negative unless told); otherwise a ``FormatError``."""
    try:
        value = float(text)
    except ValueError:
        raise FormatError(path, lineno, f"expected a number for {what}, got {text!r}") from None
    if not np.isfinite(value) or (nonnegative and value < 0):
        kind = "finite non-negative" if nonnegative else "finite"
        raise FormatError(path, lineno, f"expected a {kind} {what}, got {text!r}")
    return value


def parse_count(path, lineno, text, what="count") -> float:
    """A fragment count: a finite, non-negative whole number (``7`` or ``7.0``; ``5.5`` is an error)."""
    value = parse_float(path, lineno, text, what)
    if value != np.floor(value):
        raise FormatError(path, lineno, f"expected a whole number of fragments for {what}, got {text!r}")
    return value


def package_version() -> str:
    """The installed diffbio-prob version (``0+unknown`` from a source tree), as written into output metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("diffbio-prob")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"
