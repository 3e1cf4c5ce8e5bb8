"""Count tables and sample metadata in, DESeq2-shaped result tables out.

Readers accept CSV/TSV files (optionally gzipped; first column = row names), pandas DataFrames and
AnnData objects. A count table may come genes x samples (DESeq2's and R's habit) or samples x genes
(AnnData's, PyDESeq2's): :func:`align_counts` finds the orientation by matching sample names
against the metadata index and refuses to guess when both orientations match. Every error names the
file or argument and what was expected. Results are written atomically (a crash leaves the old file
or none, never half a table).

Example:
    >>> import pandas as pd
    >>> counts = pd.DataFrame({"s1": [1, 2], "s2": [3, 4]}, index=["g1", "g2"])
    >>> meta = pd.DataFrame({"condition": ["A", "B"]}, index=["s1", "s2"])
    >>> aligned, meta2, orientation = align_counts(counts, meta)
    >>> aligned.shape, orientation
    ((2, 2), 'genes x samples')
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from diffbio_prob.io.atomic import atomic_path, atomic_write
from diffbio_prob.io.base import decode_text

__all__ = [
    "read_table",
    "read_counts",
    "read_metadata",
    "align_counts",
    "from_anndata",
    "validate_counts",
    "write_results",
    "RESULT_COLUMNS",
]

MAX_COUNT = 2**31 - 1  # R's integer maximum: DESeq2 refuses larger counts

RESULT_COLUMNS = ["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]


def _sep_for(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith((".tsv", ".tab", ".txt")):
        return "\t"
    if name.endswith(".csv"):
        return ","
    return None


def _read_text(path: Path, what: str) -> str:
    """The file's text: gunzipped when its first bytes are the gzip magic (whatever its suffix)."""
    label = f"{what} file {str(path)!r}"
    try:
        raw = path.read_bytes()
    except PermissionError:
        raise PermissionError(f"{label}: permission denied") from None
    except OSError as exc:
        raise ValueError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    return decode_text(path, raw, expected="a CSV/TSV table, optionally gzipped", label=label)


def _head(text: str, n: int = 60) -> list[str]:
    """The first ``n`` lines (without splitting the whole of a large file)."""
    limit = 1 << 23
    lines = text[:limit].splitlines()
    if len(text) > limit and len(lines) > 1:
        lines = lines[:-1]  # possibly cut short
    return lines[:n]


def _count_unquoted(line: str, sep: str) -> int:
    n, quoted = 0, False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            n += 1
    return n


def _delimiter(text: str, path: Path) -> str:
    """Tab, comma or semicolon, from the content (the suffix only breaks ties); whitespace as a last resort.

    A candidate must appear outside quotes on every one of the first lines, the same number of times
    on every data line (the header may have one field fewer: R's ``write.table`` leaves the row-name
    column unnamed)."""
    lines = [ln for ln in _head(text) if ln.strip()][:30]
    if not lines:
        return _sep_for(path) or ","
    header, data = lines[0], lines[1:] or lines[:1]
    viable = []
    for sep in ("\t", ",", ";"):
        counts = {_count_unquoted(ln, sep) for ln in data}
        if len(counts) == 1 and min(counts) > 0 and _count_unquoted(header, sep) in (min(counts), min(counts) - 1):
            viable.append(sep)
    hint = _sep_for(path)
    if hint in viable:
        return hint
    if viable:
        return viable[0]
    if all(len(ln.split()) > 1 for ln in lines):
        return r"\s+"
    return hint or ","


def _header_fields(text: str, sep: str) -> list[str]:
    first = next((ln for ln in _head(text) if ln.strip()), "")
    if sep == r"\s+":
        return first.split()
    return next(csv.reader([first], delimiter=sep), [])


def read_table(path: str | os.PathLike, *, what: str = "table") -> pd.DataFrame:
    """Read a CSV/TSV table with row names in column 1 (gzipped or not, whatever the suffix).

    The delimiter (tab, comma or semicolon) is found from the content, so a tab-separated file named
    ``.csv`` reads correctly; the gzip compression from the first bytes.

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
        IsADirectoryError: the path is a folder.
        ValueError: the file is empty, truncated or corrupt (gzip), not text, unparsable, has no data
            columns, unnamed or duplicated column names, or unnamed or duplicated row names.
    """
    path = Path(path)
    label = f"{what} file {str(path)!r}"
    if not path.exists():
        raise FileNotFoundError(f"{label} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{label} is a directory")
    return _table_from_text(_read_text(path, what), path, label)


def _table_from_text(text: str, path: Path, label: str) -> pd.DataFrame:
    """:func:`read_table` on the decoded text of ``path`` (``label`` names the file in the messages)."""
    if not text.strip():
        raise ValueError(f"{label} is empty")
    sep = _delimiter(text, path)
    header = _header_fields(text, sep)
    data = [ln for ln in _head(text)[1:] if ln.strip()]
    if (sep != r"\s+" and data and all(ln.endswith(sep) for ln in data)
            and _count_unquoted(data[0], sep) == _count_unquoted(_head(text)[0], sep) + 1):
        raise ValueError(
            f"{label}: the data lines end with a stray delimiter {sep!r} (an empty last column); remove it"
        )
    names = [h.strip() for h in header[1:]]
    if "" in names:
        raise ValueError(
            f"{label}: column {names.index('') + 2} of the header has no name (a stray delimiter at the end of "
            "the header line?)"
        )
    dup = next((h for i, h in enumerate(names) if h in names[:i]), None)
    if dup is not None:
        raise ValueError(f"{label}: duplicated column name {dup!r}")
    try:
        kwargs = {"sep": sep, "engine": "python"} if sep == r"\s+" else {"sep": sep}
        df = pd.read_csv(io.StringIO(text), index_col=0, **kwargs)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{label} is empty") from None
    except (pd.errors.ParserError, ValueError) as exc:
        msg = " ".join(str(exc).split())
        raise ValueError(f"{label} is not a readable CSV/TSV table: {msg}") from None
    if df.shape[1] == 0 or df.shape[0] == 0:
        raise ValueError(f"{label} has no data (expected a header line, then row names and values)")
    unnamed = [c for c in df.columns.astype(str) if c.startswith("Unnamed: ")]
    if unnamed:
        raise ValueError(f"{label}: a column of the header has no name ({unnamed[0]!r})")
    if df.index.isna().any():
        row = int(np.flatnonzero(df.index.isna())[0]) + 2
        raise ValueError(f"{label}: line {row} has no row name (the first column holds the row names)")
    df.index = df.index.astype(str)
    df.columns = df.columns.astype(str)
    if df.index.has_duplicates:
        dup = df.index[df.index.duplicated()][0]
        raise ValueError(f"{label}: duplicated row name {dup!r}")
    return df


def validate_counts(values: np.ndarray, *, name: str = "counts", row_names=None, column_names=None) -> np.ndarray:
    """Check a count matrix: numeric, finite, non-negative integers up to ``MAX_COUNT``. Returns float64 values.

    ``row_names`` / ``column_names`` (genes, samples), when given, are named next to the position of the
    first offending entry.

    Raises:
        ValueError / TypeError naming ``name`` and the first offending entry.
    """

    def at(i: int, j: int) -> str:
        where = f"at row {i}, column {j}"
        named = [f"{kind} {str(labels[k])!r}"
                 for kind, labels, k in (("gene", row_names, i), ("sample", column_names, j))
                 if labels is not None and k < len(labels)]
        return where + (f" ({', '.join(named)})" if named else "")

    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.integer) and arr.ndim == 2 and arr.size:
        # integers (what a count CSV parses to) are finite and whole: only the range needs a look
        lo, hi = arr.min(), arr.max()
        if lo >= 0 and hi <= MAX_COUNT:
            return arr.astype(float)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        try:
            arr = arr.astype(float)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: expected numeric counts, found non-numeric entries") from None
    arr = arr.astype(float)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D count matrix, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: the count matrix is empty")
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise ValueError(f"{name}: expected finite counts, found {arr[i, j]} {at(i, j)}")
    if (arr < 0).any():
        i, j = map(int, np.argwhere(arr < 0)[0])
        raise ValueError(f"{name}: expected non-negative counts, found {arr[i, j]} {at(i, j)}")
    if (arr > MAX_COUNT).any():
        i, j = map(int, np.argwhere(arr > MAX_COUNT)[0])
        raise ValueError(
            f"{name}: expected counts <= {MAX_COUNT} (R DESeq2 stores counts as 32-bit integers), found "
            f"{arr[i, j]:.6g} {at(i, j)}"
        )
    frac = arr != np.round(arr)
    if frac.any():
        i, j = map(int, np.argwhere(frac)[0])
        raise ValueError(
            f"{name}: expected integer counts (DESeq2 models raw counts), found {arr[i, j]} "
            f"{at(i, j)}"
        )
    return arr


def read_counts(path: str | os.PathLike) -> pd.DataFrame:
    """Read a count table file; checks that every entry is a non-negative integer."""
    return _counts_from_table(read_table(path, what="counts"), path)


def _counts_from_table(df: pd.DataFrame, path) -> pd.DataFrame:
    """The table's values checked as counts (:func:`validate_counts`), as float64."""
    try:
        values = df.apply(pd.to_numeric, errors="raise").to_numpy(dtype=float)
    except (ValueError, TypeError):
        for col in df.columns:
            bad = pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()
            if bad.any():
                raise ValueError(
                    f"counts file {str(path)!r}: non-numeric entry {df[col][bad].iloc[0]!r} in column "
                    f"{col!r}"
                ) from None
        raise
    validate_counts(values, name=f"counts file {str(path)!r}")
    return pd.DataFrame(values, index=df.index, columns=df.columns)


def read_metadata(path: str | os.PathLike) -> pd.DataFrame:
    """Read a sample metadata table (samples in rows, variables in columns)."""
    return read_table(path, what="metadata")


def align_counts(
    counts: pd.DataFrame, metadata: pd.DataFrame, *, counts_name: str = "counts", metadata_name: str = "metadata"
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Orient a count table as genes x samples with the samples in the metadata's order.

    The samples are matched by name to ``metadata.index``: columns matching means genes x samples,
    the index matching means samples x genes. Both matching (a square table whose row and column
    names are both the sample names) is ambiguous and an error, as is neither.

    Returns:
        ``(counts_genes_x_samples, metadata, orientation)``.
    """
    if not isinstance(counts, pd.DataFrame):
        raise TypeError(f"{counts_name}: expected a pandas DataFrame, got {type(counts).__name__}")
    if not isinstance(metadata, pd.DataFrame):
        raise TypeError(f"{metadata_name}: expected a pandas DataFrame, got {type(metadata).__name__}")
    if metadata.index.has_duplicates:
        raise ValueError(f"{metadata_name}: duplicated sample names in the index")
    samples = pd.Index(metadata.index.astype(str))
    cols = pd.Index(counts.columns.astype(str))
    rows = pd.Index(counts.index.astype(str))
    col_match = set(cols) == set(samples) and len(cols) == len(samples)
    row_match = set(rows) == set(samples) and len(rows) == len(samples)
    if col_match and row_match:
        raise ValueError(
            f"{counts_name}: both the rows and the columns are named after the samples of {metadata_name}; "
            "cannot tell genes from samples (rename the genes)"
        )
    meta = metadata.copy()
    meta.index = samples
    if col_match:
        out = counts.copy()
        out.columns = cols
        out = out[samples]
        orientation = "genes x samples"
    elif row_match:
        out = counts.copy()
        out.index = rows
        out = out.loc[samples].T
        orientation = "samples x genes"
    else:
        missing_c = sorted(set(samples) - set(cols))[:5]
        missing_r = sorted(set(samples) - set(rows))[:5]
        best = "columns" if len(missing_c) <= len(missing_r) else "rows"
        missing = missing_c if best == "columns" else missing_r
        extra_src = cols if best == "columns" else rows
        extra = sorted(set(extra_src) - set(samples))[:5]
        raise ValueError(
            f"{counts_name}: its sample names do not match the index of {metadata_name} in either orientation "
            f"(closest: the {best}; samples missing from {counts_name}: {missing}; names not in "
            f"{metadata_name}: {extra})"
        )
    if out.index.has_duplicates:
        raise ValueError(f"{counts_name}: duplicated gene name {out.index[out.index.duplicated()][0]!r}")
    return out, meta, orientation


def from_anndata(adata, *, layer: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Counts (genes x samples) and metadata (``adata.obs``) from an AnnData (obs = samples).

    Args:
        adata: an ``anndata.AnnData`` with raw counts in ``X`` or ``layers[layer]``.
        layer: layer name (default ``X``).
    """
    if not (hasattr(adata, "obs") and hasattr(adata, "var") and hasattr(adata, "X")):
        raise TypeError(f"adata: expected an AnnData object, got {type(adata).__name__}")
    if layer is None:
        x = adata.X
    else:
        if layer not in adata.layers:
            layers = [k for k in adata.layers.keys() if k is not None]  # anndata >= 0.12 lists X as None
            raise ValueError(f"layer: {layer!r} is not a layer of the AnnData (has {layers})")
        x = adata.layers[layer]
    if hasattr(x, "toarray"):
        x = x.toarray()
    x = np.asarray(x)
    counts = pd.DataFrame(x.T, index=adata.var_names.astype(str), columns=adata.obs_names.astype(str))
    return counts, adata.obs.copy()


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a table atomically: CSV, or TSV for ``.tsv``/``.txt``/``.tab``, gzipped when the name ends in ``.gz``
    (``NA`` for missing, full float64 precision, the index in column 1)."""
    path = Path(path)
    name = path.name.lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    sep = "\t" if name.endswith((".tsv", ".txt", ".tab")) else ","
    if gz:
        with atomic_path(path) as tmp:
            with gzip.open(tmp, "wt", newline="", encoding="utf-8") as fh:
                table.to_csv(fh, sep=sep, na_rep="NA", float_format="%.17g")
    else:
        with atomic_write(path, "w", newline="") as fh:
            table.to_csv(fh, sep=sep, na_rep="NA", float_format="%.17g")
    return path


def write_results(results: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a DESeq2-shaped results table atomically (see :func:`write_table`; gene names in column 1)."""
    missing = [c for c in RESULT_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"results: missing DESeq2 columns {missing}")
    return write_table(results, path)
