"""Read symbol sequences for the HMM: FASTA, or plain text with one sequence per line.

Plain text lines are either characters (``ACGTTGCA``; whitespace inside is not allowed) or
whitespace-separated integers (``0 3 2 -1 1``; ``-1`` marks a missing observation). Blank lines and
lines starting with ``#`` are skipped. A gzipped file is read as well (detected from its first bytes).
Every error names the file and the 1-based line.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.fa"
    >>> _ = p.write_text(">a\\nACG\\nT\\n>b\\nGGA\\n")
    >>> s = read_sequences(p, alphabet="ACGT")
    >>> s.names, [x.tolist() for x in s.sequences], s.alphabet
    (['a', 'b'], [[0, 1, 2, 3], [2, 2, 0]], ['A', 'C', 'G', 'T'])
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from diffbio_prob.io.base import decode_text

__all__ = ["SequenceSet", "read_sequences"]


@dataclasses.dataclass
class SequenceSet:
    """Integer-coded sequences with their names and alphabet.

    Attributes:
        names: one name per sequence (FASTA header up to the first space, else ``seq1``, ``seq2``...).
        sequences: ``list[np.ndarray]`` of int symbols ``0..M-1``, ``-1`` for missing.
        alphabet: the M symbols as strings; ``sequences`` index into it.
    """

    names: list[str]
    sequences: list[np.ndarray]
    alphabet: list[str]

    @property
    def num_symbols(self) -> int:
        return len(self.alphabet)

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """``(B, T_max)`` array padded with -1, and the ``(B,)`` lengths."""
        lengths = np.array([len(s) for s in self.sequences], dtype=np.int64)
        out = np.full((len(self.sequences), int(lengths.max())), -1, dtype=np.int64)
        for i, s in enumerate(self.sequences):
            out[i, : len(s)] = s
        return out, lengths


def _records(path: Path, lines: list[str]):
    """(name, text, first line, kind, line_starts) per sequence; kind is 'fasta', 'chars' or 'ints';
    line_starts lists (offset in text, line number) of each line the text came from."""
    first = next((ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), None)
    if first is None:
        raise ValueError(f"{path}: no sequences found (empty file)")
    if first.lstrip().startswith(">"):
        name, chunks, start, starts, offset = None, [], 0, [], 0
        for i, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith(";"):
                continue
            if line.startswith(">"):
                if name is not None:
                    yield name, "".join(chunks), start, "fasta", starts
                name = line[1:].split(maxsplit=1)[0] if line[1:].strip() else f"seq{i}"
                chunks, start, starts, offset = [], i, [], 0
            else:
                piece = "".join(line.split())
                chunks.append(piece)
                starts.append((offset, i))
                offset += len(piece)
        if name is not None:
            yield name, "".join(chunks), start, "fasta", starts
        return
    body = [(i, raw.strip()) for i, raw in enumerate(lines, 1) if raw.strip() and not raw.strip().startswith("#")]
    # A line with several whitespace-separated tokens is integer symbols; a single token is characters,
    # unless other lines are integers (then it is a one-step integer sequence).
    any_ints = any(len(line.split()) > 1 for _, line in body)
    for n, (i, line) in enumerate(body, 1):
        if line.startswith(">"):
            raise ValueError(f"{path}:{i}: FASTA header in a plain-text file (a FASTA file starts with '>')")
        kind = "ints" if len(line.split()) > 1 or (any_ints and _is_int(line)) else "chars"
        yield f"seq{n}", line, i, kind, [(0, i)]


def _is_int(token: str) -> bool:
    try:
        int(token)
    except ValueError:
        return False
    return True


def read_sequences(
    path: str | os.PathLike,
    alphabet: str | None = None,
    *,
    missing: str = "",
    ignore_case: bool = True,
    num_symbols: int | None = None,
) -> SequenceSet:
    """Read sequences from a FASTA or plain-text file into integer arrays.

    Args:
        path: the file.
        alphabet: for character sequences, the symbols in order (``"ACGT"`` -> A=0, C=1, G=2, T=3);
            default: the sorted distinct characters found. Not used for integer files.
        missing: characters that mark a missing observation (coded -1), e.g. ``"N"``.
        ignore_case: compare characters case-insensitively (soft-masked FASTA).
        num_symbols: for integer files, M (default ``max + 1``); symbols must lie in ``0..M-1``.

    Returns:
        :class:`SequenceSet`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``"<file>:<line>: ..."`` for an empty sequence, a symbol not in the alphabet, a
            non-integer token, mixed integer and character lines, or an alphabet with repeated symbols.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a sequence file")
    raw = path.read_bytes()
    lines = decode_text(path, raw, expected="FASTA or one sequence per line, optionally gzipped").splitlines()
    records = list(_records(path, lines))
    kinds = {r[3] for r in records}
    if "ints" in kinds and kinds != {"ints"}:
        line = next(r[2] for r in records if r[3] != "ints")
        raise ValueError(f"{path}:{line}: mixes character and whitespace-separated integer sequences")
    for name, text, line, _, _ in records:
        if not text:
            raise ValueError(f"{path}:{line}: sequence {name!r} is empty")

    if kinds == {"ints"}:
        if alphabet is not None:
            raise ValueError(f"alphabet: applies to character sequences; {path} holds integers (symbols 0..M-1)")
        seqs = []
        for name, text, line, _, _ in records:
            tokens = text.split()
            bad = next((t for t in tokens if not _is_int(t)), None)
            if bad is not None:
                raise ValueError(f"{path}:{line}: {bad!r} is not an integer symbol")
            arr = np.array([int(t) for t in tokens], dtype=np.int64)
            if (arr < -1).any():
                raise ValueError(f"{path}:{line}: symbol {int(arr.min())} < -1 (use -1 for a missing observation)")
            seqs.append(arr)
        top = max(int(s.max()) for s in seqs)
        m = top + 1 if num_symbols is None else int(num_symbols)
        if top >= m:
            line = next(r[2] for r, s in zip(records, seqs) if s.max() >= m)
            raise ValueError(f"{path}:{line}: symbol {top} >= num_symbols ({m})")
        if m < 1:
            raise ValueError(f"{path}: every observation is missing (-1)")
        return SequenceSet([r[0] for r in records], seqs, [str(i) for i in range(m)])

    def norm(s: str) -> str:
        return s.upper() if ignore_case else s

    miss = set(norm(missing))
    if alphabet is None:
        symbols = sorted({c for r in records for c in norm(r[1])} - miss)
        if not symbols:
            raise ValueError(f"{path}: every observation is missing")
    else:
        if not isinstance(alphabet, str) or not alphabet:
            raise ValueError(f"alphabet: expected a non-empty string of symbols, got {alphabet!r}")
        symbols = list(norm(alphabet))
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"alphabet: repeated symbols in {alphabet!r}")
        clash = miss & set(symbols)
        if clash:
            raise ValueError(f"missing: {sorted(clash)} also in the alphabet {alphabet!r}")
    code = {c: i for i, c in enumerate(symbols)}
    code.update({c: -1 for c in miss})
    seqs = []
    for name, text, line, kind, starts in records:
        text = norm(text)
        try:
            seqs.append(np.array([code[c] for c in text], dtype=np.int64))
        except KeyError:
            offset = next(j for j, c in enumerate(text) if c not in code)
            bad = text[offset]
            line = max((ln for off, ln in starts if off <= offset), default=line)
            hint = f" (use missing={bad!r} to treat it as missing)" if alphabet is not None else ""
            where = f"sequence {name!r} position {offset + 1}" if kind == "fasta" else f"position {offset + 1}"
            raise ValueError(f"{path}:{line}: symbol {bad!r} at {where} is not in the alphabet {''.join(symbols)}{hint}")
    return SequenceSet([r[0] for r in records], seqs, symbols)
