"""DESeq2's ``DESeqDataSetFromTximport`` and ``estimateSizeFactors`` with ``avgTxLength``, for
:func:`diffbio_prob.io.tximport.tximport` results.

R (DESeq2 1.38.3)::

    counts <- round(txi$counts); mode(counts) <- "integer"        # round(): IEC 60559, half to even
    if (txi$countsFromAbundance %in% c("scaledTPM", "lengthScaledTPM")) "using just counts"
    else assays(dds)[["avgTxLength"]] <- txi$length              # stopifnot(all(lengths > 0))
    # estimateSizeFactors(dds), type = "ratio":
    nm <- avgTxLength / exp(rowMeans(log(avgTxLength)))
    sf <- estimateSizeFactorsForMatrix(counts / nm)
    nf <- t(t(nm) * sf); nf <- nf / exp(rowMeans(log(nf)))       # normalizationFactors(dds)

Then ``fit_deseq2(counts, meta, design, normalization_factors=nf)`` runs ``DESeq(dds)`` (with
``nf = None``, the counts-from-abundance case, plain median-of-ratios size factors).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from diffbio_prob.workflows.deseq2.size_factors import median_ratio

__all__ = ["deseq2_inputs_from_tximport", "tximport_normalization_factors"]

_INT_MAX = 2**31 - 1


def _frame(txi, name: str) -> pd.DataFrame:
    value = txi.get(name) if isinstance(txi, dict) else getattr(txi, name, None)
    if not isinstance(value, pd.DataFrame):
        raise TypeError(f"txi: expected a TximportResult (or a mapping) with a DataFrame {name!r}, got "
                        f"{type(value).__name__}")
    return value


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(x)


def _ratio_size_factors(counts: np.ndarray, loggeomeans: np.ndarray) -> np.ndarray:
    return median_ratio(counts, loggeomeans, _log(counts), name="txi", hint="")


def tximport_normalization_factors(counts, lengths, *, type: str = "ratio") -> np.ndarray:
    """DESeq2 ``estimateSizeFactors(dds)`` for a dataset with an ``avgTxLength`` assay: the genes x samples
    normalisation factors (R's ``estimateNormFactors``).

    Args:
        counts: ``(G, N)`` integer counts (``counts(dds)``).
        lengths: ``(G, N)`` positive average transcript lengths (``txi$length``).
        type: ``"ratio"`` (R's default) or ``"poscounts"`` (geometric means over the positive counts).
    """
    counts = np.asarray(counts, float)
    lengths = np.asarray(lengths, float)
    if type not in ("ratio", "poscounts"):
        raise ValueError(f"type: expected 'ratio' or 'poscounts', got {type!r}")
    nm = lengths / np.exp(_log(lengths).mean(axis=1))[:, None]
    cn = counts / nm
    if type == "ratio":
        sf = _ratio_size_factors(cn, _log(cn).mean(axis=1))
    else:
        # geoMeans from counts(dds) (not counts / nm), then sf / exp(mean(log(sf))) (incoming geoMeans)
        lc = _log(counts)
        pos = counts > 0
        geo = np.where(pos.any(axis=1), np.exp(np.where(pos, lc, 0.0).sum(axis=1) / counts.shape[1]), 0.0)
        sf = _ratio_size_factors(cn, _log(geo))
        sf = sf / math.exp(float(np.mean(np.log(sf))))
    nf = nm * sf[None, :]
    return nf / np.exp(np.log(nf).mean(axis=1))[:, None]


def deseq2_inputs_from_tximport(txi, *, size_factor_type: str = "ratio") -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """R's ``DESeqDataSetFromTximport(txi, ...)`` then ``estimateSizeFactors``: the count table DESeq2 uses and
    its normalisation factors.

    Args:
        txi: a :class:`diffbio_prob.io.tximport.TximportResult` (or a mapping with DataFrames ``counts`` and
            ``length`` and a string ``counts_from_abundance``), gene or transcript level.
        size_factor_type: ``"ratio"`` (DESeq2's default) or ``"poscounts"``.

    Returns:
        ``(counts, normalization_factors)``: ``counts`` as R rounds them (``round()``, half to even),
        int64, features x samples; ``normalization_factors`` the features x samples matrix R stores in
        ``normalizationFactors(dds)``, or ``None`` when the counts came from abundance (``scaledTPM``,
        ``lengthScaledTPM``: R then uses only the counts, with ordinary size factors). Pass both to
        ``fit_deseq2(counts, meta, design, normalization_factors=nf)``.

    Raises:
        TypeError: ``txi`` is not a tximport result.
        ValueError: ``dtuScaledTPM`` counts (R refuses them), negative / non-finite counts, counts above
            R's integer limit, or non-positive / missing lengths.
    """
    if not isinstance(size_factor_type, str) or size_factor_type not in ("ratio", "poscounts"):
        raise ValueError(f"size_factor_type: expected 'ratio' or 'poscounts', got {size_factor_type!r}")
    counts = _frame(txi, "counts")
    cfa = txi.get("counts_from_abundance") if isinstance(txi, dict) else getattr(txi, "counts_from_abundance", None)
    if not isinstance(cfa, str):
        raise TypeError(f"txi: expected a string counts_from_abundance, got {type(cfa).__name__}")
    if cfa not in ("no", "scaledTPM", "lengthScaledTPM"):
        raise ValueError(f"txi: DESeqDataSetFromTximport takes counts_from_abundance 'no', 'scaledTPM' or "
                         f"'lengthScaledTPM', got {cfa!r}")
    try:
        raw = counts.to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise TypeError("txi: counts are not numbers") from None
    if not np.all(np.isfinite(raw)):
        raise ValueError("txi: counts contain missing or infinite values")
    rounded = np.rint(raw)   # R's round(x) for digits = 0 is nearbyint: halves go to the even integer
    if np.any(rounded < 0):
        raise ValueError("txi: some counts are negative (DESeq2: some values in assay are negative)")
    if np.any(rounded > _INT_MAX):
        raise ValueError(f"txi: some rounded counts exceed R's integer limit {_INT_MAX} (DESeq2 would get NA)")
    counts_df = pd.DataFrame(rounded.astype(np.int64), index=counts.index.copy(), columns=counts.columns.copy())
    if cfa != "no":
        return counts_df, None
    length = _frame(txi, "length")
    if list(length.index) != list(counts.index) or list(length.columns) != list(counts.columns):
        length = length.reindex(index=counts.index, columns=counts.columns)
    lengths = length.to_numpy(dtype=float)
    if not np.all(lengths > 0):
        raise ValueError("txi: every length must be positive (DESeqDataSetFromTximport: stopifnot(all(lengths > 0)))")
    nf = tximport_normalization_factors(rounded, lengths, type=size_factor_type)
    return counts_df, pd.DataFrame(nf, index=counts.index.copy(), columns=counts.columns.copy())
