"""The count inputs biologists have, read from their content: AnnData ``.h5ad``, featureCounts tables,
htseq-count files (one per sample) and plain CSV/TSV count tables.

:func:`read_count_input` takes one path or several and tells the format from the bytes, not the name:

* ``h5ad``: the file starts with the HDF5 signature ``\\x89HDF\\r\\n\\x1a\\n``; read with
  ``anndata.read_h5ad``, counts from ``X`` or ``layers[layer]`` (obs = samples, var = genes), ``obs``
  returned as the sample table.
* ``featurecounts``: the first line is featureCounts' ``# Program:featureCounts ...`` comment, or the header
  starts ``Geneid Chr Start End Strand Length`` (tab-separated). The annotation columns (and the
  ``--extraAttributes`` columns the comment line names) are kept apart; every column after them is a
  sample, named after the BAM file's stem (``/data/A.bam`` -> ``A``) unless ``sample_names="header"``.
  Several featureCounts files (one run per sample) are joined column-wise.
* ``htseq-count``: ``gene<TAB>count`` lines with no header; chosen for several files, and for a single file
  that has htseq-count's ``__no_feature`` ... rows or whose first lines are two tab-separated fields, the
  second a number (no header line). The special rows (a name starting with ``_``, or one of
  htseq-count < 0.6's ``no_feature``, ``ambiguous``, ``too_low_aQual``, ``not_aligned``,
  ``alignment_not_unique``) are set aside as DESeq2's ``DESeqDataSetFromHTSeqCount`` does. Each file is one
  sample, named after the file without ``.gz`` and the :data:`HTSEQ_NAME_SUFFIXES`
  (``A.htseq.counts.txt.gz`` -> ``A``) unless given.
* ``table``: anything else, one file, through :func:`diffbio_prob.io.counts.read_counts` (either orientation;
  :func:`diffbio_prob.io.counts.align_counts` finds it against the sample table).

The counts come back as float64 whole numbers with unnamed index and columns, so the same data in any
format gives the same DataFrame. Every bad input raises a ``ValueError`` (or ``TypeError`` for a wrong
argument type) naming the argument or file, the line where there is one, and what was expected. The text
formats may be gzipped (recognised from the first bytes, whatever the suffix).

Example:
    >>> inp = read_count_input(["A.htseq.txt", "B.htseq.txt"])  # doctest: +SKIP
    >>> inp.format, list(inp.counts.columns)  # doctest: +SKIP
    ('htseq-count', ['A.htseq', 'B.htseq'])
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import re
import shlex
import warnings
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from diffbio_prob.io.base import GZIP_MAGIC, FormatError, decode_text
from diffbio_prob.io.counts import _counts_from_table, _table_from_text, validate_counts

__all__ = ["CountInput", "read_count_input", "detect_count_format", "COUNT_FORMATS", "HTSEQ_SPECIAL"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
COUNT_FORMATS = ("h5ad", "featurecounts", "htseq-count", "table")
FEATURECOUNTS_COLUMNS = ("Geneid", "Chr", "Start", "End", "Strand", "Length")
# the counters htseq-count appends (>= 0.6 with the "__" prefix; older versions without it)
HTSEQ_SPECIAL = ("no_feature", "ambiguous", "too_low_aQual", "not_aligned", "alignment_not_unique")
_ALIGNMENT_SUFFIX = re.compile(r"\.(bam|sam|cram)$", re.IGNORECASE)
_HTSEQ_SPECIAL_LINE = re.compile(r"^__(" + "|".join(HTSEQ_SPECIAL) + r")\t", re.MULTILINE)
# suffixes dropped from an htseq-count file's name to make the sample name (after .gz, repeatedly)
HTSEQ_NAME_SUFFIXES = (".txt", ".tsv", ".tab", ".csv", ".counts", ".count", ".cnt", ".htseq", ".htseq-count",
                       ".htseq_count", ".htseqcount")


@dataclasses.dataclass(frozen=True, eq=False)
class CountInput:
    """What :func:`read_count_input` read.

    Attributes:
        counts: float64 counts (whole numbers); genes x samples for every format but ``"table"``, which keeps
            the file's orientation (see ``orientation``).
        metadata: the sample table found in the input (an h5ad's ``obs``, index = sample names), else ``None``.
        format: one of :data:`COUNT_FORMATS`.
        sources: the files read, in order.
        orientation: ``"genes x samples"``, or ``None`` for a ``"table"`` (either orientation; the sample
            table decides, :func:`diffbio_prob.io.counts.align_counts`).
        lengths: featureCounts' ``Length`` column (int64, index = genes), else ``None``.
        annotation: featureCounts' other gene columns (``Chr``, ``Start``, ``End``, ``Strand`` and any
            ``--extraAttributes``), index = genes, else ``None``.
        special: htseq-count's counter rows (``__no_feature`` ...) x samples, else ``None``.
    """

    counts: pd.DataFrame
    metadata: pd.DataFrame | None
    format: str
    sources: tuple[str, ...] = ()
    orientation: str | None = "genes x samples"
    lengths: pd.Series | None = None
    annotation: pd.DataFrame | None = None
    special: pd.DataFrame | None = None


def _label(path) -> str:
    return f"counts file {str(path)!r}"


def _read_bytes(path: Path) -> bytes:
    label = _label(path)
    if not path.exists():
        raise FileNotFoundError(f"{label} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{label} is a directory (a zarr store or a folder of files? pass the files)")
    try:
        return path.read_bytes()
    except PermissionError:
        raise PermissionError(f"{label}: permission denied") from None
    except OSError as exc:
        raise ValueError(f"{label}: cannot be read ({exc.strerror or exc})") from None


def _is_hdf5(raw: bytes) -> bool:
    return raw[:8] == HDF5_MAGIC


def _first_lines(text: str, n: int = 3) -> list[str]:
    out = []
    for line in text[: 1 << 20].splitlines():
        if line.strip():
            out.append(line)
            if len(out) >= n:
                break
    return out


def _is_featurecounts_header(line: str) -> bool:
    return tuple(f.strip() for f in line.rstrip("\r").split("\t")[:6]) == FEATURECOUNTS_COLUMNS


def _is_featurecounts_summary(line: str) -> bool:
    return line.split("\t", 1)[0].strip() == "Status"


def _htseq_special(name: str) -> bool:
    return name.startswith("_") or name in HTSEQ_SPECIAL


def _sniff_text(text: str) -> str:
    """``featurecounts``, ``htseq-count`` or ``table`` for one decoded text file (see the module doc)."""
    lines = _first_lines(text)
    if not lines:
        return "table"
    first = lines[0]
    if first.startswith("#") and "featurecounts" in first.lower():
        return "featurecounts"
    if _is_featurecounts_header(first):
        return "featurecounts"
    if len(lines) > 1 and _is_featurecounts_summary(first) and lines[1].split("\t", 1)[0] == "Assigned":
        return "featurecounts-summary"
    if "\t" in first and _HTSEQ_SPECIAL_LINE.search(text):
        return "htseq-count"
    fields = [ln.rstrip("\r").split("\t") for ln in lines]
    if all(len(f) == 2 for f in fields) and _is_number(fields[0][1]):
        return "htseq-count"  # no header line: the first line is already a gene and its count
    return "table"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def detect_count_format(path: str | os.PathLike) -> str:
    """The format of one count file from its content: one of :data:`COUNT_FORMATS`. ``"htseq-count"`` for a
    file with htseq-count's ``__`` counter rows or headerless ``gene<TAB>count`` lines (several files are read
    as htseq-count whatever their rows, see :func:`read_count_input`). featureCounts' ``.summary`` file is a
    ``ValueError``."""
    path = Path(path)
    raw = _read_bytes(path)
    if _is_hdf5(raw):
        return "h5ad"
    fmt = _sniff_text(decode_text(path, raw, expected="a count table, featureCounts or htseq-count output, or an "
                                                       "AnnData .h5ad", label=_label(path)))
    if fmt == "featurecounts-summary":
        _refuse_summary(path)
    return fmt


def _refuse_summary(path: Path):
    name = str(path)
    hint = f" ({name[:-8]!r}?)" if name.endswith(".summary") else ""
    raise ValueError(f"{_label(path)}: this is featureCounts' .summary file (read assignment statistics); give "
                     f"the counts file featureCounts wrote next to it{hint}")


# ---------------------------------------------------------------------------------------------------- h5ad


def _read_h5ad(path: Path, layer: str | None) -> CountInput:
    import anndata

    label = _label(path)
    try:
        with warnings.catch_warnings():  # anndata's read-time notes (e.g. non-unique names) become our errors
            warnings.simplefilter("ignore")
            adata = anndata.read_h5ad(path)
    except Exception as exc:  # h5py / anndata raise many types for a non-AnnData HDF5 file
        msg = " ".join(str(exc).split())[:300]
        raise ValueError(
            f"{label}: an HDF5 file that anndata cannot read as .h5ad ({type(exc).__name__}: {msg}); expected an "
            "AnnData .h5ad (a 10x Genomics .h5 or a .loom file must be converted first, e.g. with scanpy)"
        ) from None
    layers = [k for k in adata.layers.keys() if k is not None]  # anndata >= 0.12 lists X as None
    if layer is not None and not isinstance(layer, str):
        raise TypeError(f"layer: expected a layer name (str) or None for X, got {type(layer).__name__}")
    if layer is None:
        if adata.X is None:
            raise ValueError(f"layer: {label} has no X matrix; choose one of its layers: {layers}")
        x, where = adata.X, "X"
    else:
        if layer not in layers:
            raise ValueError(
                f"layer: {layer!r} is not a layer of {label} (its layers: {layers}; leave layer unset for X)"
            )
        x, where = adata.layers[layer], f"layer {layer!r}"
    if hasattr(x, "toarray"):
        x = x.toarray()
    x = np.asarray(x)
    samples = pd.Index(adata.obs_names.astype(str), name=None)
    genes = pd.Index(adata.var_names.astype(str), name=None)
    if samples.has_duplicates:
        raise ValueError(f"{label}: duplicated sample name {samples[samples.duplicated()][0]!r} in obs_names")
    if genes.has_duplicates:
        raise ValueError(f"{label}: duplicated gene name {genes[genes.duplicated()][0]!r} in var_names "
                         "(adata.var_names_make_unique() renames them)")
    name = f"{label} ({where})"
    try:
        values = validate_counts(x.T, name=name, row_names=genes, column_names=samples)
    except ValueError as exc:
        others = [f"layer {n!r}" for n in layers if n != layer] + (["X"] if layer is not None else [])
        hint = f"; the raw counts may be in another matrix: {others}" if others else ""
        raise ValueError(f"{exc}{hint}") from None
    counts = pd.DataFrame(values, index=genes, columns=samples)
    meta = adata.obs.copy()
    meta.index = samples
    return CountInput(counts, meta, "h5ad", (str(path),))


# ------------------------------------------------------------------------------------------- featureCounts


def _extra_attributes(comment: str) -> list[str]:
    """The ``--extraAttributes`` names in featureCounts' ``# Program:... Command:"featureCounts" ...`` line."""
    _, sep, command = comment.partition("Command:")
    if not sep:
        return []
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.replace('"', " ").split()
    for i, word in enumerate(words[:-1]):
        if word == "--extraAttributes":
            return [a for a in words[i + 1].split(",") if a]
    return []


def _bam_stem(name: str) -> str:
    base = re.split(r"[/\\]", name)[-1]
    return _ALIGNMENT_SUFFIX.sub("", base) or base


@dataclasses.dataclass
class _FC:
    genes: list[str]
    values: np.ndarray
    samples: list[str]  # header names as written
    lengths: np.ndarray
    annotation: pd.DataFrame


def _parse_featurecounts(text: str, path: Path) -> _FC:
    label = _label(path)
    lines = text.splitlines()
    i, comments = 0, []
    while i < len(lines) and (not lines[i].strip() or lines[i].startswith("#")):
        if lines[i].startswith("#"):
            comments.append(lines[i])
        i += 1
    if i == len(lines):
        raise FormatError(label, None, "has featureCounts' comment line but no header or counts (expected a "
                                       "'Geneid<TAB>Chr<TAB>Start<TAB>End<TAB>Strand<TAB>Length<TAB><BAM file> ...' "
                                       "header, then one line per gene)")
    header_no = i + 1
    header = [f.strip() for f in lines[i].rstrip("\r").split("\t")]
    if tuple(header[:6]) != FEATURECOUNTS_COLUMNS:
        raise FormatError(
            label, header_no,
            "expected featureCounts' header 'Geneid<TAB>Chr<TAB>Start<TAB>End<TAB>Strand<TAB>Length<TAB><one "
            f"column per BAM file>' after the '# Program:featureCounts' line, got {lines[i][:120]!r}",
        )
    extra = set()
    for comment in comments:
        extra.update(_extra_attributes(comment))
    n_annot = 6
    while n_annot < len(header) and header[n_annot] in extra:
        n_annot += 1
    samples = header[n_annot:]
    if not samples:
        raise FormatError(label, header_no, "the featureCounts header has no sample columns after "
                                            f"{header[n_annot - 1]!r} (expected one column per BAM file)")
    if "" in samples:
        raise FormatError(label, header_no, f"sample column {n_annot + samples.index('') + 1} of the header has "
                                            "no name")
    rows, linenos = [], []
    for k in range(i + 1, len(lines)):
        line = lines[k].rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise FormatError(label, k + 1, f"expected {len(header)} tab-separated fields like the header, got "
                                            f"{len(fields)}")
        rows.append(fields)
        linenos.append(k + 1)
    if not rows:
        raise FormatError(label, None, "has a featureCounts header but no gene lines")
    table = np.array(rows, dtype=object)
    genes = [g.strip() for g in table[:, 0]]
    seen = {}
    for g, ln in zip(genes, linenos):
        if not g:
            raise FormatError(label, ln, "no Geneid in the first field")
        if g in seen:
            raise FormatError(label, ln, f"duplicated Geneid {g!r} (also on line {seen[g]})")
        seen[g] = ln
    lengths = np.empty(len(rows), dtype=np.int64)
    for r, (text_len, ln) in enumerate(zip(table[:, 5], linenos)):
        try:
            lengths[r] = int(text_len)
        except ValueError:
            raise FormatError(label, ln, f"expected an integer Length, got {text_len!r}") from None
        if lengths[r] < 0:
            raise FormatError(label, ln, f"expected a Length >= 0, got {text_len!r}")
    raw = table[:, n_annot:]
    try:
        values = raw.astype(float)
    except ValueError:
        for r in range(raw.shape[0]):
            for c in range(raw.shape[1]):
                try:
                    float(raw[r, c])
                except ValueError:
                    hint = (" (an --extraAttributes column? keep featureCounts' '# Program:featureCounts' first "
                            "line, which names them)" if c == 0 and n_annot == 6 else "")
                    raise FormatError(label, linenos[r], f"non-numeric count {raw[r, c]!r} in column "
                                                         f"{samples[c]!r}{hint}") from None
        raise
    try:
        validate_counts(values, name=label, row_names=genes, column_names=samples)
    except ValueError as exc:
        if "integer counts" in str(exc):
            raise ValueError(f"{exc}; featureCounts gives fractional counts with --fraction: recount without "
                             "it (DESeq2 needs whole numbers)") from None
        raise
    annotation = pd.DataFrame(table[:, 1:5], index=genes, columns=list(FEATURECOUNTS_COLUMNS[1:5]))
    for c in range(6, n_annot):
        annotation[header[c]] = table[:, c]
    annotation.index.name = "Geneid"
    return _FC(genes, values, samples, lengths, annotation)


# --------------------------------------------------------------------------------------------- htseq-count


@dataclasses.dataclass
class _HTSeq:
    genes: list[str]
    counts: np.ndarray
    special_names: list[str]
    special: np.ndarray


def _parse_htseq(text: str, path: Path, several: bool) -> _HTSeq:
    label = _label(path)
    why = " (several count files are read as htseq-count output, one file per sample)" if several else ""
    genes, values, linenos, special_names, special = [], [], [], [], []
    width = None
    for k, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise FormatError(label, k, f"expected 'gene<TAB>count', got {line[:80]!r} (no tab){why}")
        if width is None:
            width = len(fields)
        elif len(fields) != width:
            raise FormatError(label, k, f"expected {width} tab-separated fields like line 1, got {len(fields)}")
        name, count = fields[0].strip(), fields[-1].strip()
        try:
            value = float(count)
        except ValueError:
            first = "; htseq-count files have no header line" if not genes and not special_names else ""
            raise FormatError(label, k, f"expected a count in the last field, got {count!r}{first}{why}") from None
        if not name:
            raise FormatError(label, k, "no gene name in the first field")
        if _htseq_special(name):
            special_names.append(name)
            special.append(value)
        else:
            genes.append(name)
            values.append(value)
            linenos.append(k)
    if not genes and not special_names:
        raise ValueError(f"{label} is empty")
    if not genes:
        raise FormatError(label, None, "has only htseq-count's counter rows (__no_feature ...), no gene lines")
    seen = {}
    for g, ln in zip(genes, linenos):
        if g in seen:
            raise FormatError(label, ln, f"duplicated gene {g!r} (also on line {seen[g]})")
        seen[g] = ln
    arr = np.asarray(values, float)[:, None]
    validate_counts(arr, name=label, row_names=genes)
    return _HTSeq(genes, arr[:, 0], special_names, np.asarray(special, float))


# ----------------------------------------------------------------------------------------------- the reader


def _check_sample_names(sample_names, n: int, what: str, allow_header: bool) -> list[str] | str | None:
    """``None``, ``"stem"``/``"header"`` or a list of ``n`` distinct non-empty names."""
    if sample_names is None:
        return None
    if isinstance(sample_names, str):
        if sample_names == "stem" or (sample_names == "header" and allow_header):
            return sample_names
        choices = "'stem', 'header' (featureCounts) or" if allow_header else "'stem' or"
        raise ValueError(
            f"sample_names: expected {choices} a list of {n} names (one per {what}), got the string "
            f"{sample_names!r} (one name must still be a list: [{sample_names!r}])"
        )
    if isinstance(sample_names, (pd.Index, pd.Series, np.ndarray)):
        sample_names = list(sample_names)
    if not isinstance(sample_names, Sequence):
        raise TypeError(f"sample_names: expected a list of names, got {type(sample_names).__name__}")
    names = list(sample_names)
    bad = next((s for s in names if not isinstance(s, str) or not s.strip()), None)
    if bad is not None:
        raise TypeError(f"sample_names: expected non-empty strings, got {bad!r}")
    if len(names) != n:
        raise ValueError(f"sample_names: expected {n} names (one per {what}), got {len(names)}")
    dup = next((s for i, s in enumerate(names) if s in names[:i]), None)
    if dup is not None:
        raise ValueError(f"sample_names: duplicated sample name {dup!r}")
    return names


def _unique_names(names: list[str], origins: list[str], what: str) -> None:
    first = {}
    for name, origin in zip(names, origins):
        if name in first:
            raise ValueError(
                f"paths: two samples get the name {name!r} ({first[name]} and {origin}); {what}"
            )
        first[name] = origin


def _htseq_name(path: Path) -> str:
    """The sample name of an htseq-count file: its name without ``.gz`` and then without the
    :data:`HTSEQ_NAME_SUFFIXES` (``A.htseq.counts.txt.gz`` -> ``A``)."""
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    while True:
        low = name.lower()
        suffix = next((x for x in HTSEQ_NAME_SUFFIXES if low.endswith(x) and len(name) > len(x)), None)
        if suffix is None:
            return name
        name = name[: -len(suffix)]


def _same_genes(genes: list[str], ref: list[str], path, ref_path, what: str) -> np.ndarray | None:
    """Index into ``genes`` giving ``ref``'s order (``None`` when already equal); a different set is an error."""
    if genes == ref:
        return None
    gset, rset = set(genes), set(ref)
    if gset != rset:
        only_ref = sorted(rset - gset)
        only_this = sorted(gset - rset)
        example = (f"{only_ref[0]!r} is in {str(ref_path)!r} but not in {str(path)!r}" if only_ref
                   else f"{only_this[0]!r} is in {str(path)!r} but not in {str(ref_path)!r}")
        raise ValueError(
            f"paths: {str(ref_path)!r} and {str(path)!r} have different gene lists ({len(ref)} vs {len(genes)} "
            f"genes, {len(only_ref) + len(only_this)} not shared; e.g. {example}); expected {what} made with the "
            "same annotation"
        )
    pos = {g: i for i, g in enumerate(genes)}
    return np.array([pos[g] for g in ref], dtype=np.int64)


def _as_paths(paths) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    if isinstance(paths, (bytes, dict)) or not hasattr(paths, "__iter__"):
        raise TypeError(f"paths: expected a file path or a list of them, got {type(paths).__name__}")
    out = []
    for p in paths:
        if not isinstance(p, (str, os.PathLike)):
            raise TypeError(f"paths: expected file paths (str or Path), got {type(p).__name__} {p!r}")
        out.append(Path(p))
    if not out:
        raise ValueError("paths: expected at least one counts file, got none")
    seen = {}
    for p in out:
        key = os.path.realpath(p)
        if key in seen:
            raise ValueError(f"paths: {str(p)!r} is given twice" + (f" (as {str(seen[key])!r})"
                                                                     if str(seen[key]) != str(p) else ""))
        seen[key] = p
    return out


def _gunzipped_hdf5(raw: bytes) -> bool:
    if raw[:2] != GZIP_MAGIC:
        return False
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as fh:
            return fh.read(8) == HDF5_MAGIC
    except (OSError, EOFError, zlib.error):  # damaged gzip: the text decoder reports it, naming the file
        return False


def read_count_input(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    layer: str | None = None,
    sample_names: Sequence[str] | str | None = None,
) -> CountInput:
    """Read counts from one file or several, telling the format from the content (see the module doc).

    Args:
        paths: one path, or several: several htseq-count files (one per sample) or several featureCounts
            tables (joined column-wise; same genes). An h5ad or a plain table must come alone.
        layer: for an h5ad, the layer holding the raw counts (default ``X``); an error for other formats.
        sample_names: ``None`` (the default names: featureCounts' BAM stems, htseq-count file names), a list of
            names (one per sample, in file / column order; featureCounts and htseq-count only), ``"stem"``
            (the default, spelled out) or ``"header"`` (featureCounts: the header's names as written, e.g.
            ``/data/A.bam``).

    Returns:
        A :class:`CountInput`.

    Raises:
        FileNotFoundError, IsADirectoryError: a path is missing or a folder.
        TypeError: an argument of the wrong type.
        ValueError: an unreadable, empty or malformed file, counts that are not non-negative whole numbers,
            htseq-count / featureCounts files with different genes, duplicated sample or gene names, a missing
            ``layer``, an h5ad given with other files, or an argument that does not fit the format.
    """
    files = _as_paths(paths)
    raws = [_read_bytes(p) for p in files]
    hdf5 = [p for p, raw in zip(files, raws) if _is_hdf5(raw)]
    if hdf5:
        if len(files) > 1:
            others = [str(p) for p in files if p not in hdf5]
            raise ValueError(
                f"paths: {str(hdf5[0])!r} is an AnnData .h5ad, which holds every sample; give it alone"
                + (f", not with {others}" if others else " (one .h5ad at a time)")
            )
        if sample_names is not None:
            raise ValueError("sample_names: not used for an .h5ad (the sample names are its obs_names; rename "
                             "them in the AnnData)")
        return _read_h5ad(files[0], layer)
    if layer is not None:
        raise ValueError(f"layer: only an AnnData .h5ad has layers; {str(files[0])!r} is a text file")
    for p, raw in zip(files, raws):
        if _gunzipped_hdf5(raw):
            raise ValueError(f"{_label(p)}: a gzipped HDF5 (.h5ad) file; gunzip it first (anndata reads only "
                             "uncompressed .h5ad files)")
        if p.suffix.lower() == ".h5ad":
            raise ValueError(f"{_label(p)}: the name ends in .h5ad but the content is not HDF5 (expected the "
                             f"signature {HDF5_MAGIC!r}, got {raw[:8]!r}); the file is damaged or misnamed")
    expected = "a count table, featureCounts or htseq-count output, or an AnnData .h5ad"
    texts = [decode_text(p, raw, expected=expected, label=_label(p)) for p, raw in zip(files, raws)]
    for p, text in zip(files, texts):
        if not text.strip():
            raise ValueError(f"{_label(p)} is empty")
    formats = [_sniff_text(t) for t in texts]
    for p, fmt in zip(files, formats):
        if fmt == "featurecounts-summary":
            _refuse_summary(p)
    if "featurecounts" in formats:
        if len(set(formats)) > 1:
            other = files[next(i for i, f in enumerate(formats) if f != "featurecounts")]
            raise ValueError(f"paths: {str(files[formats.index('featurecounts')])!r} is featureCounts output but "
                             f"{str(other)!r} is not; give featureCounts tables only, or one other file")
        return _featurecounts_input(files, texts, sample_names)
    if len(files) == 1 and formats[0] == "table":
        if sample_names is not None:
            raise ValueError("sample_names: not used for a count table (its header names the samples); it is "
                             "for featureCounts and htseq-count files")
        df = _counts_from_table(_table_from_text(texts[0], files[0], _label(files[0])), files[0])
        df.index.name = df.columns.name = None  # the same frame as the other formats give
        return CountInput(df, None, "table", (str(files[0]),), orientation=None)
    return _htseq_input(files, texts, sample_names)


def _featurecounts_input(files: list[Path], texts: list[str], sample_names) -> CountInput:
    parts = [_parse_featurecounts(t, p) for p, t in zip(files, texts)]
    header_names = [s for part in parts for s in part.samples]
    origins = [f"column {s!r} of {str(p)!r}" for p, part in zip(files, parts) for s in part.samples]
    names = _check_sample_names(sample_names, len(header_names), "featureCounts sample column", True)
    if names == "header":
        names = header_names
        _unique_names(names, origins, "the same header name in two featureCounts files; give sample_names")
    elif names is None or names == "stem":
        names = [_bam_stem(s) for s in header_names]
        _unique_names(names, origins, 'use sample_names="header" for the names as written, or give sample_names')
    ref = parts[0]
    blocks = [ref.values]
    for p, part in zip(files[1:], parts[1:]):
        order = _same_genes(part.genes, ref.genes, p, files[0], "featureCounts tables")
        lengths = part.lengths if order is None else part.lengths[order]
        if not np.array_equal(lengths, ref.lengths):
            g = int(np.flatnonzero(lengths != ref.lengths)[0])
            raise ValueError(
                f"paths: {str(files[0])!r} and {str(p)!r} give gene {ref.genes[g]!r} different lengths "
                f"({ref.lengths[g]} vs {lengths[g]}); expected featureCounts runs with the same annotation"
            )
        blocks.append(part.values if order is None else part.values[order])
    genes = pd.Index(ref.genes, name=None)
    counts = pd.DataFrame(np.hstack(blocks), index=genes, columns=pd.Index(names))
    lengths = pd.Series(ref.lengths, index=genes, name="Length")
    annotation = ref.annotation.copy()
    annotation.index = genes
    return CountInput(counts, None, "featurecounts", tuple(map(str, files)), lengths=lengths,
                      annotation=annotation)


def _htseq_input(files: list[Path], texts: list[str], sample_names) -> CountInput:
    several = len(files) > 1
    parts = [_parse_htseq(t, p, several) for p, t in zip(files, texts)]
    names = _check_sample_names(sample_names, len(files), "htseq-count file", False)
    if names is None or names == "stem":
        names = [_htseq_name(p) for p in files]
        _unique_names(names, [repr(str(p)) for p in files], "give sample_names")
    ref = parts[0]
    columns = [ref.counts]
    for p, part in zip(files[1:], parts[1:]):
        order = _same_genes(part.genes, ref.genes, p, files[0], "htseq-count files")
        columns.append(part.counts if order is None else part.counts[order])
    genes = pd.Index(ref.genes)
    counts = pd.DataFrame(np.column_stack(columns), index=genes, columns=pd.Index(names))
    special_names = list(dict.fromkeys(n for part in parts for n in part.special_names))
    special = None
    if special_names:
        special = pd.DataFrame(
            [[dict(zip(part.special_names, part.special)).get(n, np.nan) for part in parts] for n in special_names],
            index=special_names, columns=pd.Index(names),
        )
    return CountInput(counts, None, "htseq-count", tuple(map(str, files)), special=special)
