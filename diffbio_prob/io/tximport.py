"""R tximport 1.26's import of salmon quantifications, with R's numbers.

:func:`tximport` reads salmon's ``quant.sf`` files (and, when asked, the bootstrap or Gibbs draws in
``aux_info/bootstrap``) and returns transcript- or gene-level counts, abundances (TPM) and average
effective lengths exactly as ``tximport::tximport(files, type = "salmon", ...)`` does. It follows
tximport 1.26.1's R code step by step (``tximport``, ``summarizeToGene.list``, ``cleanTx2Gene``,
``replaceMissingLength``, ``makeCountsFromAbundance``, ``medianLengthOverIsoform``, ``readInfRepFish``,
``rowVars``), including R's accumulation order and long-double sums (``rowsum``, ``rowMeans``,
``colSums``, ``mean``), so the results match R to a few ulps (checked against R on
``tests/reference/data/quant2de_ref``).

What R does, and this module does too:

* **Gene level** (``tx_out=False``, needs ``tx2gene``): transcripts absent from ``tx2gene`` are dropped
  (a warning "transcripts missing from tx2gene: n", R's ``message``); none present is an error.
  ``tx2gene`` rows with a duplicated transcript keep the first (warned). Counts and abundances are
  summed per gene, and the gene length is the abundance-weighted mean of the transcripts' effective
  lengths. A gene with zero abundance in some samples gets the geometric mean of its other samples'
  lengths, and one with zero abundance everywhere gets the mean over its transcripts of each
  transcript's mean length across samples. Genes are in sorted order (numeric gene ids sort as
  numbers, as R's ``factor`` does; text sorts by code point, which is R's order in the C locale).
* ``counts_from_abundance``: ``"scaledTPM"`` (TPM scaled to each sample's total count),
  ``"lengthScaledTPM"`` (TPM times the feature's mean length over samples, scaled to the total count),
  ``"dtuScaledTPM"`` (transcript level only, with ``tx2gene``: TPM times the median over the gene's
  isoforms of their mean lengths, scaled to the total count).
* Inferential replicates (``drop_inf_reps=False``): whether they are read is decided by the first
  sample (``cmd_info.json`` with its ``auxDir``, else ``aux_info``; ``meta_info.json``'s
  ``num_bootstraps`` > 0; ``num_valid_targets`` over ``num_targets``). Bootstrap and Gibbs draws are
  treated alike. At gene level each replicate is summed over the gene's transcripts.
  ``var_reduce=True`` keeps only the per-feature variance over replicates (``n - 1`` denominator).

Where this module differs from R, on purpose:

* ``drop_inf_reps`` defaults to ``True`` (R: ``FALSE``), so the draws are read only when asked for;
  ``var_reduce=True`` with ``drop_inf_reps=True`` is an error here (R silently returns no variance).
* A later sample without replicates when the first has them is always an error (R's check misses a
  missing sample in the middle); so is a bootstrap file whose size or ``names.tsv.gz`` does not match
  ``quant.sf`` (R does not read ``names.tsv.gz`` and trusts the order).
* A ``tx2gene`` row with a missing gene id is an error (R makes an ``NA`` gene).
* With ``ignore_after_bar`` at transcript level the variance and replicate tables are renamed too (R
  renames counts, abundance and length only; its replicate matrices have no names).
* A folder path may hold ``quant.sf`` or ``quant.sf.gz`` (gzip is detected from the content).

This module imports numpy and pandas only (anndata lazily, in :meth:`TximportResult.to_anndata`).
"""

from __future__ import annotations

import builtins
import dataclasses
import gzip
import json
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from diffbio_prob.io.base import FormatError, gunzip_bytes
from diffbio_prob.io.rmath import col_sums as _r_col_sums
from diffbio_prob.io.rmath import mean as _r_mean
from diffbio_prob.io.rmath import median as _r_median
from diffbio_prob.io.rmath import row_means as _r_row_means
from diffbio_prob.io.rmath import row_sums as _r_row_sums
from diffbio_prob.io.salmon import read_quant_sf, read_salmon_bootstraps

__all__ = ["COUNTS_FROM_ABUNDANCE", "TximportResult", "read_tx2gene", "tximport"]

#: The accepted values of ``counts_from_abundance`` (R's ``countsFromAbundance``).
COUNTS_FROM_ABUNDANCE = ("no", "scaledTPM", "lengthScaledTPM", "dtuScaledTPM")

_TYPES = ("salmon", "sailfish")
_LD = np.longdouble


@dataclasses.dataclass(frozen=True, eq=False)
class TximportResult:
    """What R's ``tximport()`` returns, as pandas tables (features x samples).

    Attributes:
        counts: estimated counts (or counts from abundance), genes or transcripts x samples.
        abundance: TPM (summed per gene at gene level).
        length: effective lengths (abundance-weighted average per gene at gene level).
        inf_reps: sample -> features x replicates table (columns ``infRep1..``), or ``None``.
        variance: features x samples variance over the replicates (``var_reduce=True``), or ``None``.
        counts_from_abundance: ``"no"``, ``"scaledTPM"``, ``"lengthScaledTPM"`` or ``"dtuScaledTPM"``.
        level: ``"gene"`` or ``"transcript"``.
    """

    counts: pd.DataFrame
    abundance: pd.DataFrame
    length: pd.DataFrame
    inf_reps: dict | None
    variance: pd.DataFrame | None
    counts_from_abundance: str
    level: str

    @property
    def samples(self) -> list[str]:
        return [str(s) for s in self.counts.columns]

    def to_anndata(self):
        """An ``anndata.AnnData`` with obs = samples, var = features.

        ``X`` holds the counts; ``layers`` ``"abundance"``, ``"length"``, ``"variance"`` (when present) and
        ``"infRep1"..`` (one layer per replicate, as tximeta/fishpond name them, when every sample has
        the same number of replicates); ``uns["tximport"]`` holds ``counts_from_abundance`` and ``level``.
        """
        import anndata as ad

        samples = list(map(str, self.counts.columns))
        features = list(map(str, self.counts.index))
        layers = {"abundance": self.abundance.to_numpy(float).T.copy(), "length": self.length.to_numpy(float).T.copy()}
        if self.variance is not None:
            layers["variance"] = self.variance.loc[self.counts.index, self.counts.columns].to_numpy(float).T.copy()
        uns = {"tximport": {"counts_from_abundance": self.counts_from_abundance, "level": self.level}}
        if self.inf_reps:
            n_reps = {v.shape[1] for v in self.inf_reps.values()}
            if len(n_reps) != 1:
                raise ValueError("inf_reps: the samples have different numbers of replicates; cannot store them as "
                                 "AnnData layers")
            for k in range(n_reps.pop()):
                layers[f"infRep{k + 1}"] = np.stack(
                    [self.inf_reps[s].iloc[:, k].to_numpy(float) for s in self.counts.columns])
        return ad.AnnData(
            X=self.counts.to_numpy(float).T.copy(),
            obs=pd.DataFrame(index=pd.Index(samples, name="sample")),
            var=pd.DataFrame(index=pd.Index(features, name=self.level)),
            layers=layers,
            uns=uns,
        )


# ---------------------------------------------------------------------------------------------------
# R's numerics: long-double accumulation in the order R adds
# ---------------------------------------------------------------------------------------------------











def _row_vars(x: np.ndarray) -> np.ndarray:
    """tximport's ``rowVars``: ``rowSums((x - rowMeans(x))^2) / (ncol - 1)``."""
    d = x - _r_row_means(x)[:, None]
    return _r_row_sums(d * d).astype(float) / (x.shape[1] - 1)


def _rowsum(m: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """R ``rowsum(m, group)``: rows added into their group in row order (double)."""
    out = np.zeros((n_groups, m.shape[1]))
    np.add.at(out, codes, m)
    return out


def _make_counts_from_abundance(counts: np.ndarray, abundance: np.ndarray, length: np.ndarray,
                                how: str) -> np.ndarray:
    """tximport's ``makeCountsFromAbundance``."""
    counts_sum = _r_col_sums(counts)
    if how == "lengthScaledTPM":
        new = abundance * _r_row_means(length)[:, None]
    else:  # scaledTPM
        new = abundance.copy()
    new_sum = _r_col_sums(new)
    with np.errstate(divide="ignore", invalid="ignore"):
        return new * (counts_sum / new_sum)[None, :]


# ---------------------------------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------------------------------

def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def _is_pathlike(x) -> bool:
    return isinstance(x, (str, os.PathLike)) and not isinstance(x, bytes)


def _quant_file(p: Path, label: str) -> Path:
    if p.is_dir():
        for name in ("quant.sf", "quant.sf.gz"):
            if (p / name).is_file():
                return p / name
        raise FileNotFoundError(f"{label}: folder {str(p)!r} has no quant.sf (is it a salmon output folder?)")
    if not p.exists():
        raise FileNotFoundError(f"{label}: {str(p)!r}: no such file or folder")
    if not p.is_file():
        raise ValueError(f"{label}: {str(p)!r} is not a file or folder")
    return p


def _resolve_paths(paths, sample_names) -> tuple[list[Path], list[str]]:
    """The quant.sf files and the sample names (a folder's name by default)."""
    names_from_mapping = None
    if isinstance(paths, Mapping):
        names_from_mapping = [str(k) for k in paths]
        items = list(paths.values())
    elif _is_pathlike(paths):
        items = [paths]
    elif isinstance(paths, (bytes, bytearray)):
        raise TypeError("paths: expected a path, a sequence of paths or a mapping sample -> path, got bytes")
    else:
        try:
            items = list(paths)
        except TypeError:
            raise TypeError("paths: expected a path, a sequence of paths or a mapping sample -> path, got "
                            f"{type(paths).__name__}") from None
    if not items:
        raise ValueError("paths: no salmon quantifications given")
    for i, p in enumerate(items):
        if not _is_pathlike(p):
            raise TypeError(f"paths: item {i} is a {type(p).__name__}, expected a path (str or os.PathLike)")
        if not os.fspath(p).strip():
            raise ValueError(f"paths: item {i} is an empty string")
    files = [_quant_file(Path(p), "paths") for p in items]
    if sample_names is not None:
        if _is_pathlike(sample_names) or isinstance(sample_names, (bytes, Mapping)):
            raise TypeError("sample_names: expected a sequence of names, one per path")
        try:
            names = list(sample_names)
        except TypeError:
            raise TypeError(f"sample_names: expected a sequence of names, got {type(sample_names).__name__}") from None
        bad = [n for n in names if not isinstance(n, str) or not n.strip()]
        if bad:
            raise TypeError(f"sample_names: expected non-empty strings, got {bad[0]!r}")
        if len(names) != len(files):
            raise ValueError(f"sample_names: {len(names)} names for {len(files)} paths")
        what = "sample_names"
    elif names_from_mapping is not None:
        names, what = names_from_mapping, "paths (mapping keys)"
    else:
        names = []
        for p, f in zip(items, files):
            p = Path(p)
            folder = p if p.is_dir() else f.parent
            names.append(Path(os.path.abspath(folder)).name)
        what = "paths (sample names from the folder names)"
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        hint = "; give sample_names=" if what.startswith("paths (sample") else ""
        raise ValueError(f"{what}: duplicate sample name {dup[0]!r}{hint}")
    return files, names


@dataclasses.dataclass(frozen=True)
class _Tx2Gene:
    tx: np.ndarray          # str, unique (first row kept)
    gene: np.ndarray        # str
    gene_rank: dict         # gene -> sort position (R's factor level order)


def _id_strings(col: pd.Series, what: str) -> tuple[np.ndarray, bool]:
    """A tx2gene column as strings (integers without '.0'); also whether it was numeric."""
    if col.isna().any():
        i = int(np.flatnonzero(col.isna().to_numpy())[0])
        raise ValueError(f"tx2gene: row {i + 1} has a missing {what} id")
    numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
    if numeric:
        vals = col.to_numpy()
        if np.issubdtype(vals.dtype, np.floating) and np.all(vals == np.floor(vals)):
            vals = vals.astype(np.int64)
        return np.asarray([str(v) for v in vals], dtype=object), True
    out = np.asarray([str(v) for v in col.to_numpy()], dtype=object)
    empty = np.flatnonzero([not s.strip() for s in out])
    if empty.size:
        raise ValueError(f"tx2gene: row {int(empty[0]) + 1} has an empty {what} id")
    return out, False


def read_tx2gene(tx2gene) -> pd.DataFrame:
    """A tx2gene table as a two-column DataFrame ``tx, gene`` (strings), R's ``cleanTx2Gene`` applied.

    Args:
        tx2gene: a DataFrame with exactly two columns (transcript, gene; their names do not matter, as in
            R), a path to a CSV or TSV file with a header row and two columns (gzip allowed), a
            ``pandas.Series`` (index transcript -> gene) or a mapping transcript -> gene.
    """
    return _as_frame(tx2gene)[0]


def _as_frame(tx2gene) -> tuple[pd.DataFrame, bool]:
    from_file = False
    if isinstance(tx2gene, pd.DataFrame):
        df = tx2gene
    elif isinstance(tx2gene, pd.Series):
        df = pd.DataFrame({"tx": tx2gene.index.to_numpy(), "gene": tx2gene.to_numpy()})
    elif isinstance(tx2gene, Mapping):
        df = pd.DataFrame({"tx": list(tx2gene.keys()), "gene": list(tx2gene.values())})
    elif _is_pathlike(tx2gene):
        df = _read_tx2gene_file(Path(tx2gene))
        from_file = True
    else:
        raise TypeError("tx2gene: expected a DataFrame (transcript, gene), a CSV/TSV path, a Series or a mapping "
                        f"transcript -> gene, got {type(tx2gene).__name__}")
    if df.shape[1] != 2:
        raise ValueError(f"tx2gene: expected exactly 2 columns (transcript, gene) as R's tximport does, got "
                         f"{df.shape[1]}: {list(map(str, df.columns))[:5]}")
    if df.shape[0] == 0:
        raise ValueError("tx2gene: the table has no rows")
    tx, _ = _id_strings(df.iloc[:, 0], "transcript")
    gene, gene_numeric = _id_strings(df.iloc[:, 1], "gene")
    if from_file:  # read.csv would have read an all-integer column as integers (levels sorted as numbers)
        gene_numeric = all(re.fullmatch(r"\s*-?\d+\s*", g) for g in gene)
    out = pd.DataFrame({"tx": tx, "gene": gene})
    if gene_numeric:
        out.attrs["gene_numeric"] = True
    dup = pd.Series(tx).duplicated().to_numpy()
    if dup.any():
        warnings.warn("removing duplicated transcript rows from tx2gene", UserWarning, stacklevel=3)
        out = out.loc[~dup].reset_index(drop=True)
        if gene_numeric:
            out.attrs["gene_numeric"] = True
    return out, gene_numeric


def _read_tx2gene_file(p: Path) -> pd.DataFrame:
    """A CSV or TSV (gzip allowed) with a header row; every field read as text."""
    if not p.exists():
        raise FileNotFoundError(f"tx2gene: {str(p)!r}: no such file")
    if p.is_dir():
        raise ValueError(f"tx2gene: {str(p)!r} is a folder; expected a CSV/TSV file")
    try:
        with open(p, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        opener = gzip.open if gz else open
        with opener(p, "rt", encoding="utf-8") as fh:
            head = fh.readline()
        sep = "\t" if "\t" in head else ","
        return pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False, na_values=["", "NA"],
                           compression="gzip" if gz else None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise ValueError(f"tx2gene: cannot read {str(p)!r} as a CSV/TSV table with a header row: {exc}") from None


def _clean_tx2gene(tx2gene) -> _Tx2Gene:
    df, numeric = _as_frame(tx2gene)
    genes = pd.unique(df["gene"].to_numpy())
    order = sorted(genes, key=(lambda g: (int(g) if re.fullmatch(r"-?\d+", g) else float(g))) if numeric else None)
    return _Tx2Gene(tx=df["tx"].to_numpy(), gene=df["gene"].to_numpy(), gene_rank={g: i for i, g in enumerate(order)})


def _strip_ids(tx_ids: np.ndarray, ignore_tx_version: bool, ignore_after_bar: bool) -> np.ndarray:
    if ignore_tx_version:
        return np.asarray([s.split(".", 1)[0] for s in tx_ids], dtype=object)   # sub("\\..*", "", txId)
    if ignore_after_bar:
        return np.asarray([s.split("|", 1)[0] for s in tx_ids], dtype=object)   # sub("\\|.*", "", txId)
    return tx_ids


# ---------------------------------------------------------------------------------------------------
# inferential replicates (tximport:::readInfRepFish)
# ---------------------------------------------------------------------------------------------------

def _version_tuple(text, path: Path, key: str) -> tuple[int, ...]:
    parts = re.split(r"[.-]", str(text).strip())
    if not parts or not all(p.isdigit() for p in parts):
        raise FormatError(path, None, f"{key} {text!r} is not a version number")
    return tuple(int(p) for p in parts)


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file (tximport reads it to find the inferential replicates)") \
            from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(path, None, f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise FormatError(path, None, "expected a JSON object")
    return obj


def _read_inf_reps(fish_dir: Path, n_tx: int, tx_names: list[str]) -> np.ndarray | None:
    """One sample's replicates as ``(T, R)``, or ``None`` where tximport finds none."""
    cmd_path = fish_dir / "cmd_info.json"
    if not cmd_path.is_file():
        return None
    cmd_info = _read_json(cmd_path)
    aux = cmd_info.get("auxDir", "aux_info")
    if not isinstance(aux, str) or not aux:
        raise FormatError(cmd_path, None, f"auxDir should be a folder name, got {aux!r}")
    aux_path = fish_dir / aux
    if not aux_path.exists():
        return None
    meta_path = aux_path / "meta_info.json"
    minfo = _read_json(meta_path)
    if "salmon_version" in minfo and _version_tuple(minfo["salmon_version"], meta_path, "salmon_version") < (0, 8, 0):
        raise FormatError(meta_path, None, f"salmon_version {minfo['salmon_version']} is older than 0.8.0, which "
                                           "tximport requires for inferential replicates")
    if "sailfish_version" in minfo and _version_tuple(minfo["sailfish_version"], meta_path,
                                                      "sailfish_version") < (0, 9, 0):
        raise FormatError(meta_path, None, f"sailfish_version {minfo['sailfish_version']} is older than 0.9.0")
    n_boot = minfo.get("num_bootstraps")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, float)) or n_boot != int(n_boot):
        raise FormatError(meta_path, None, f"num_bootstraps should be a whole number, got {n_boot!r}")
    n_boot = int(n_boot)
    if n_boot <= 0:
        return None
    n_targets = minfo.get("num_valid_targets", minfo.get("num_targets"))
    if isinstance(n_targets, bool) or not isinstance(n_targets, (int, float)) or n_targets != int(n_targets) \
            or n_targets <= 0:
        raise FormatError(meta_path, None, f"num_valid_targets / num_targets should be a positive whole number, got "
                                           f"{n_targets!r}")
    n_targets = int(n_targets)
    if n_targets != n_tx:
        raise FormatError(meta_path, None, f"num_valid_targets is {n_targets} but quant.sf has {n_tx} transcripts")
    draws_path = aux_path / "bootstrap" / "bootstraps.gz"
    names, draws = None, None
    if (aux_path / "bootstrap" / "names.tsv.gz").is_file():   # tximport itself never reads names.tsv.gz
        try:
            names, draws = read_salmon_bootstraps(aux_path / "bootstrap")
        except FormatError:
            names, draws = None, None
    if draws is None or draws.shape != (n_boot, n_targets):
        # tximport reads n_targets * num_bootstraps doubles, else the same number of 4-byte integers
        if not draws_path.is_file():
            raise FileNotFoundError(f"{draws_path}: no such file (meta_info.json declares {n_boot} draws)")
        raw = gunzip_bytes(draws_path, draws_path.read_bytes())
        if len(raw) == 8 * n_targets * n_boot:
            draws = np.frombuffer(raw, "<f8").reshape(n_boot, n_targets).copy()
        elif len(raw) == 4 * n_targets * n_boot:
            draws = np.frombuffer(raw, "<i4").reshape(n_boot, n_targets).astype(float)
        else:
            raise FormatError(draws_path, None, f"{len(raw)} bytes; meta_info.json declares {n_boot} draws of "
                                                f"{n_targets} transcripts ({8 * n_boot * n_targets} bytes of float64)")
        bad = ~(np.isfinite(draws) & (draws >= 0))
        if bad.any():
            d, t = np.unravel_index(int(np.argmax(bad)), draws.shape)
            raise FormatError(draws_path, None, f"draw {d} of transcript {t + 1} is {float(draws[d, t])!r}; expected "
                                                "a finite non-negative count")
    if names is None:
        return np.ascontiguousarray(draws.T)
    if list(names) != list(tx_names):
        bad = next(i for i, (a, b) in enumerate(zip(names, tx_names)) if a != b) if len(names) == len(tx_names) else 0
        raise FormatError(aux_path / "bootstrap" / "names.tsv.gz", 1,
                          f"transcript names differ from quant.sf's (position {bad + 1}: "
                          f"{names[bad] if bad < len(names) else None!r} vs {tx_names[bad]!r})")
    return np.ascontiguousarray(draws.T)   # R: dim(boots) <- c(T, R), column k = draw k


# ---------------------------------------------------------------------------------------------------
# tximport
# ---------------------------------------------------------------------------------------------------

def tximport(
    paths,
    type: str = "salmon",
    tx2gene=None,
    counts_from_abundance: str = "no",
    tx_out: bool = False,
    drop_inf_reps: bool = True,
    var_reduce: bool = False,
    sample_names: Sequence[str] | None = None,
    ignore_tx_version: bool = False,
    ignore_after_bar: bool = False,
) -> TximportResult:
    """R tximport 1.26's ``tximport()`` for salmon output, with R's numbers.

    Args:
        paths: salmon ``quant.sf`` files or their output folders: one path, a sequence, or a mapping
            sample name -> path (R's named ``files``).
        type: ``"salmon"`` (or ``"sailfish"``, the same files).
        tx2gene: transcript -> gene table (see :func:`read_tx2gene`); needed at gene level and for
            ``"dtuScaledTPM"``.
        counts_from_abundance: ``"no"``, ``"scaledTPM"``, ``"lengthScaledTPM"`` or ``"dtuScaledTPM"``
            (transcript level only, needs ``tx2gene``).
        tx_out: stay at transcript level.
        drop_inf_reps: skip salmon's bootstrap / Gibbs draws (default ``True``; R's default is ``FALSE``).
        var_reduce: keep only the per-feature variance of the draws (needs ``drop_inf_reps=False``).
        sample_names: one name per path (default: the mapping's keys, or each sample's folder name).
        ignore_tx_version: match ``tx2gene`` on the transcript names up to their first ``.``.
        ignore_after_bar: match on the names up to their first ``|`` (and, at transcript level, report
            them so).

    Returns:
        :class:`TximportResult`.

    Raises:
        TypeError / ValueError: a bad argument (the message names it); FileNotFoundError: a missing path;
        FormatError (a ValueError): a malformed salmon file.

    Example:
        >>> txi = tximport(["salmon/A1", "salmon/B1"], tx2gene="tx2gene.csv")   # doctest: +SKIP
        >>> txi.counts.shape, txi.level                                          # doctest: +SKIP
        ((2958, 2), 'gene')
    """
    if not isinstance(type, str):
        raise TypeError(f"type: expected a string, got {builtins.type(type).__name__}")
    if type not in _TYPES:
        raise ValueError(f"type: only salmon output is supported ('salmon' or 'sailfish'), got {type!r}")
    if not isinstance(counts_from_abundance, str):
        raise TypeError(f"counts_from_abundance: expected one of {list(COUNTS_FROM_ABUNDANCE)}, got "
                        f"{builtins.type(counts_from_abundance).__name__}")
    if counts_from_abundance not in COUNTS_FROM_ABUNDANCE:
        raise ValueError(f"counts_from_abundance: expected one of {list(COUNTS_FROM_ABUNDANCE)}, got "
                         f"{counts_from_abundance!r}")
    tx_out = _check_bool(tx_out, "tx_out")
    drop_inf_reps = _check_bool(drop_inf_reps, "drop_inf_reps")
    var_reduce = _check_bool(var_reduce, "var_reduce")
    ignore_tx_version = _check_bool(ignore_tx_version, "ignore_tx_version")
    ignore_after_bar = _check_bool(ignore_after_bar, "ignore_after_bar")
    cfa = counts_from_abundance
    if cfa == "dtuScaledTPM":
        if not tx_out:
            raise ValueError("counts_from_abundance: 'dtuScaledTPM' is a transcript-level method; it needs "
                             "tx_out=True (tximport: stopifnot(txOut))")
        if tx2gene is None:
            raise ValueError("tx2gene: 'dtuScaledTPM' requires 'tx2gene' input")
    if var_reduce and drop_inf_reps:
        raise ValueError("var_reduce: the variance comes from the inferential replicates; pass drop_inf_reps=False")
    files, names = _resolve_paths(paths, sample_names)
    if tx2gene is None and not tx_out:
        raise ValueError("tx2gene: summarizing to the gene level needs a tx2gene table (transcript -> gene); give "
                         "tx2gene=, or tx_out=True for transcript-level output (tximport: 'tximport failed at "
                         "summarizing to the gene-level')")
    t2g = _clean_tx2gene(tx2gene) if tx2gene is not None and (not tx_out or cfa == "dtuScaledTPM") else None

    inf_type = "none" if drop_inf_reps else ("var" if var_reduce and tx_out else "full")
    tx_ids = None
    abundance = counts = length = None
    reps: list[np.ndarray | None] = []
    for i, f in enumerate(files):
        q = read_quant_sf(f)
        if i == 0:
            tx_ids = list(q.names)
            n_tx = len(tx_ids)
            abundance = np.empty((n_tx, len(files)))
            counts = np.empty_like(abundance)
            length = np.empty_like(abundance)
        elif q.names != tx_ids:
            if len(q.names) != n_tx:
                detail = f"{len(q.names)} transcripts vs {n_tx}"
            else:
                j = next(k for k, (a, b) in enumerate(zip(q.names, tx_ids)) if a != b)
                detail = f"row {j + 1} is {q.names[j]!r} vs {tx_ids[j]!r}"
            raise ValueError(f"paths: {str(f)!r} lists other transcripts (or another order) than {str(files[0])!r} "
                             f"({detail}); every sample must be quantified against the same index")
        abundance[:, i] = q.tpm
        counts[:, i] = q.num_reads
        length[:, i] = q.effective_lengths
        if inf_type != "none":
            r = _read_inf_reps(f.parent, n_tx, tx_ids)
            if i == 0 and r is None:
                inf_type = "none"   # decided by the first sample, as in R
            elif r is None:
                raise ValueError(
                    f"paths: {str(f.parent)!r} has no inferential replicates but {str(files[0].parent)!r} has "
                    "(tximport: not all samples contain inferential replicates; tximport can only import data "
                    "when either all or no samples contain them)")
            if inf_type != "none":
                reps.append(r)
    tx_index = np.asarray(tx_ids, dtype=object)

    if tx_out:
        out_names = _strip_ids(tx_index, False, ignore_after_bar)
        if cfa != "no":
            how, length4cfa = cfa, length
            if cfa == "dtuScaledTPM":
                length4cfa = _median_length_over_isoform(length, tx_index, t2g, ignore_tx_version, ignore_after_bar)
                how = "lengthScaledTPM"
            counts = _make_counts_from_abundance(counts, abundance, length4cfa, how)
        idx = pd.Index(list(out_names), name="transcript")
        variance, inf = None, None
        if inf_type == "var":
            variance = pd.DataFrame(np.column_stack([_row_vars(r) for r in reps]), index=idx, columns=names)
        elif inf_type == "full":
            inf = {s: _reps_frame(r, idx) for s, r in zip(names, reps)}
        return TximportResult(
            counts=pd.DataFrame(counts, index=idx, columns=names),
            abundance=pd.DataFrame(abundance, index=idx, columns=names),
            length=pd.DataFrame(length, index=idx, columns=names),
            inf_reps=inf, variance=variance, counts_from_abundance=cfa, level="transcript",
        )
    return _summarize_to_gene(tx_index, names, abundance, counts, length, reps if inf_type == "full" else None,
                              t2g, var_reduce, ignore_tx_version, ignore_after_bar, cfa)


def _reps_frame(r: np.ndarray, idx: pd.Index) -> pd.DataFrame:
    return pd.DataFrame(r, index=idx, columns=[f"infRep{k + 1}" for k in range(r.shape[1])])


def _median_length_over_isoform(length: np.ndarray, tx_index: np.ndarray, t2g: _Tx2Gene, ignore_tx_version: bool,
                                ignore_after_bar: bool) -> np.ndarray:
    """tximport's ``medianLengthOverIsoform``: per transcript, the median over its gene's isoforms of their
    mean length across samples, repeated in every sample."""
    tx = _strip_ids(tx_index, ignore_tx_version, ignore_after_bar)
    pos = pd.Index(t2g.tx).get_indexer(tx)
    if (pos < 0).any():
        miss = tx[pos < 0]
        raise ValueError(f"tx2gene: 'dtuScaledTPM' needs every transcript in tx2gene; {miss.size} are missing, "
                         f"e.g. {list(miss[:3])} (tximport: stopifnot(all(txId %in% tx2gene$tx)))")
    gene = t2g.gene[pos]
    ave = _r_row_means(length)
    codes, uniq = pd.factorize(gene)
    med = np.empty(len(uniq))
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniq) + 1))
    for g in range(len(uniq)):
        med[g] = _r_median(ave[order[bounds[g]:bounds[g + 1]]])
    return np.repeat(med[codes][:, None], length.shape[1], axis=1)


def _summarize_to_gene(tx_index, names, abundance, counts, length, reps, t2g: _Tx2Gene, var_reduce,
                       ignore_tx_version, ignore_after_bar, cfa) -> TximportResult:
    """tximport's ``summarizeToGene.list``."""
    tx = _strip_ids(tx_index, ignore_tx_version, ignore_after_bar)
    in_t2g = pd.Index(t2g.tx).get_indexer(tx) >= 0
    if not in_t2g.any():
        raise ValueError(
            "tx2gene: none of the transcripts in the quantification files are present in the first column of "
            "tx2gene. Check to see that you are using the same annotation for both. Example IDs (file): "
            f"{list(tx[:3])}, example IDs (tx2gene): {list(t2g.tx[:3])}. This can sometimes (not always) be fixed "
            "using 'ignore_tx_version' or 'ignore_after_bar'.")
    n_missing = int((~in_t2g).sum())
    if n_missing:
        warnings.warn(f"transcripts missing from tx2gene: {n_missing}", UserWarning, stacklevel=3)
    sub = in_t2g
    pos = pd.Index(t2g.tx).get_indexer(tx[sub])     # match(txId, tx2gene$tx): the first row
    gene_of_tx = t2g.gene[pos]
    levels = sorted(set(gene_of_tx), key=t2g.gene_rank.__getitem__)   # droplevels, in factor order
    rank = {g: i for i, g in enumerate(levels)}
    codes = np.fromiter((rank[g] for g in gene_of_tx), np.int64, count=gene_of_tx.size)
    n_g = len(levels)
    ab_tx, ct_tx, len_tx = abundance[sub], counts[sub], length[sub]
    ab_g = _rowsum(ab_tx, codes, n_g)
    ct_g = _rowsum(ct_tx, codes, n_g)
    weighted = _rowsum(ab_tx * len_tx, codes, n_g)
    with np.errstate(divide="ignore", invalid="ignore"):
        len_g = weighted / ab_g
    # replaceMissingLength
    nan_rows = np.flatnonzero(np.isnan(len_g).any(axis=1))
    if nan_rows.size:
        ave_samp = _r_row_means(len_tx)
        for i in nan_rows:
            row = len_g[i]
            miss = np.isnan(row)
            if miss.all():
                len_g[i, :] = _r_mean(ave_samp[codes == i])     # tapply(aveLengthSamp, geneId, mean)
            else:
                # exp(mean(log(x))) with the C library's log and exp, as R calls them (numpy's own
                # vectorised log/exp can differ from them in the last bit)
                logs = np.asarray([math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan)
                                   for v in row[~miss]])
                m = _r_mean(logs)
                len_g[i, miss] = math.exp(m) if not math.isnan(m) else math.nan
    if cfa != "no":
        ct_g = _make_counts_from_abundance(ct_g, ab_g, len_g, cfa)
    idx = pd.Index(levels, name="gene")
    inf, variance = None, None
    if reps is not None:
        summed = [_rowsum(r[sub], codes, n_g) for r in reps]
        if var_reduce:
            variance = pd.DataFrame(np.column_stack([_row_vars(r) for r in summed]), index=idx, columns=names)
        else:
            inf = {s: _reps_frame(r, idx) for s, r in zip(names, summed)}
    return TximportResult(
        counts=pd.DataFrame(ct_g, index=idx, columns=names),
        abundance=pd.DataFrame(ab_g, index=idx, columns=names),
        length=pd.DataFrame(len_g, index=idx, columns=names),
        inf_reps=inf, variance=variance, counts_from_abundance=cfa, level="gene",
    )
