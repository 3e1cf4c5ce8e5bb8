"""The entry points: :func:`fit_deseq2` (R's ``DESeq()``), :func:`deseq2` (``results(DESeq(dds))``) and
:func:`~diffbio_prob.workflows.deseq2.run.run_de` (the ``diffbio-prob de`` command) is beside them.

Example:
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> counts = pd.DataFrame(rng.negative_binomial(5, 0.1, size=(50, 8)),
    ...                       index=[f"g{i}" for i in range(50)], columns=[f"s{j}" for j in range(8)])
    >>> meta = pd.DataFrame({"condition": ["A"] * 4 + ["B"] * 4}, index=counts.columns)
    >>> res = deseq2(counts, meta, "~ condition", contrast=["condition", "B", "A"])  # doctest: +SKIP
    >>> list(res.columns)  # doctest: +SKIP
    ['baseMean', 'log2FoldChange', 'lfcSE', 'stat', 'pvalue', 'padj']
"""

from __future__ import annotations

import contextlib
import dataclasses

import jax
import numpy as np
import pandas as pd

from diffbio_prob.io.counts import align_counts, from_anndata, validate_counts
from diffbio_prob.workflows.deseq2 import steps, warmup
from diffbio_prob.workflows.deseq2.checks import check_fit_args, check_results_args
from diffbio_prob.workflows.deseq2.data import DESeq2Data
from diffbio_prob.workflows.deseq2.design import Design, build_design
from diffbio_prob.workflows.deseq2.fit import DESeq2Fit
from diffbio_prob.workflows.deseq2.options import DESeq2Options

__all__ = ["fit_deseq2", "deseq2", "prepare_inputs"]


def prepare_inputs(counts, metadata=None, *, layer: str | None = None):
    """Counts as a genes x samples DataFrame aligned to the metadata (DataFrames or AnnData).

    Returns:
        ``(counts_df, metadata_df)`` with samples in the metadata's order.
    """
    if _is_anndata(counts):
        counts_df, obs = from_anndata(counts, layer=layer)
        metadata = obs if metadata is None else metadata
    elif isinstance(counts, pd.DataFrame):
        counts_df = counts
    elif isinstance(counts, np.ndarray):
        raise TypeError(
            "counts: a bare array has no gene or sample names; pass a pandas DataFrame (either orientation) "
            "or an AnnData"
        )
    else:
        raise TypeError(f"counts: expected a pandas DataFrame or an AnnData, got {type(counts).__name__}")
    if metadata is None:
        raise ValueError("metadata: a sample table (index = sample names) is required for the design")
    aligned, meta, _ = align_counts(counts_df, metadata)
    values = validate_counts(aligned.to_numpy(), name="counts")
    return pd.DataFrame(values, index=aligned.index, columns=aligned.columns), meta


@contextlib.contextmanager
def _precision(precision: str):
    if precision == "float64":
        with jax.enable_x64(True):
            yield
    elif precision == "float32":
        with jax.enable_x64(False):
            yield
    else:
        raise ValueError(f"precision: expected 'float64' or 'float32', got {precision!r}")


def reduced_design(des: Design, reduced: str, meta: pd.DataFrame) -> Design:
    """The LRT's reduced design, which must use only the full design's variables and be smaller."""
    red = build_design(reduced, meta)
    missing = [v for v in red.variables if v not in des.variables]
    if missing:
        raise ValueError(f"reduced: variables {missing} are not in the full design {des.formula!r}")
    if red.n_coef >= des.n_coef:
        raise ValueError(
            f"reduced: {reduced!r} has {red.n_coef} coefficients, the full design {des.n_coef}; "
            "the reduced design must be smaller"
        )
    return red


def fit_deseq2(
    counts,
    metadata=None,
    design: str = "~ condition",
    *,
    test: str = "wald",
    reduced: str | None = None,
    size_factors="ratio",
    normalization_factors=None,
    fit_type: str = "parametric",
    min_replicates_for_replace: float = 7,
    dispersion_fit: str = "deseq2",
    layer: str | None = None,
    inplace: bool = True,
    shard: bool = True,
    precision: str = "float64",
    options: DESeq2Options | None = None,
) -> DESeq2Fit:
    """Run R DESeq2's ``DESeq()`` and return the fitted state (call ``.results()`` on it).

    Args:
        counts: count table as a pandas DataFrame in either orientation (samples matched to
            ``metadata.index`` by name), an AnnData (obs = samples), or a
            :class:`~diffbio_prob.io.tximport.TximportResult` (R's ``DESeqDataSetFromTximport``: counts
            rounded, normalisation factors from the average transcript lengths).
        metadata: sample table (index = sample names); defaults to ``adata.obs`` for AnnData.
        design: formula such as ``"~ group + condition"``.
        test: ``"wald"`` or ``"lrt"``.
        reduced: reduced formula for the LRT (e.g. ``"~ 1"``).
        size_factors: ``"ratio"``, ``"poscounts"``, ``"iterate"`` or an array of ``N`` positive
            factors.
        normalization_factors: a genes x samples matrix of positive normalisation factors (R's
            ``normalizationFactors(dds) <-``, as tximport's average transcript lengths give them): a
            DataFrame matched by gene and sample names, or an array in the counts' order. Replaces size
            factors.
        fit_type: dispersion trend, ``"parametric"`` (falls back to ``"local"`` as R does, with a
            warning), ``"local"`` (locfit) or ``"mean"``.
        min_replicates_for_replace: replace outlier counts in cells with at least this many samples
            and refit (``float("inf")`` to never replace).
        dispersion_fit: ``"deseq2"`` reproduces R's line search (R's numbers); ``"newton"`` goes to
            the exact optimum (faster, ~1e-4 from R in ``alpha``).
        layer: AnnData layer holding the counts.
        inplace: for an AnnData input, write the fit into it (see
            :mod:`diffbio_prob.workflows.deseq2.anndata`: ``layers["normed_counts"]``,
            ``obsm["size_factors"]``, ``var`` dispersion columns, ``varm["LFC"]``, ``uns["deseq2"]``).
        shard: shard genes across JAX devices when there are several.
        precision: ``"float64"`` (default; R's numbers) or ``"float32"``.
        options: further :class:`DESeq2Options`.

    Returns:
        :class:`DESeq2Fit`.
    """
    check_fit_args(test=test, reduced=reduced, size_factors=size_factors, fit_type=fit_type,
                   min_replicates_for_replace=min_replicates_for_replace, dispersion_fit=dispersion_fit,
                   precision=precision)
    if options is not None and not isinstance(options, DESeq2Options):
        raise TypeError(f"options: expected a DESeq2Options, got {type(options).__name__}")
    opts = options or DESeq2Options()
    opts = dataclasses.replace(
        opts, fit_type=fit_type, min_replicates_for_replace=min_replicates_for_replace, dispersion_fit=dispersion_fit
    )
    counts, normalization_factors, size_factors = _from_tximport(counts, normalization_factors, size_factors)
    counts_df, meta = prepare_inputs(counts, metadata, layer=layer)
    des = build_design(design, meta)
    red = reduced_design(des, reduced, meta) if test == "lrt" else None
    y = counts_df.to_numpy(dtype=float)
    n = y.shape[1]
    if isinstance(size_factors, str):
        sf_method = size_factors
        sf = None
    else:
        sf_method = None
        sf = np.asarray(size_factors, dtype=float)
        if sf.shape != (n,):
            raise ValueError(f"size_factors: expected {n} values (one per sample), got shape {sf.shape}")
        if not np.all(np.isfinite(sf)) or np.any(sf <= 0):
            raise ValueError("size_factors: expected finite positive values")
    nf = None
    if normalization_factors is not None:
        if not isinstance(size_factors, str) or size_factors != "ratio":
            raise ValueError("normalization_factors: give either size_factors or normalization_factors, not both")
        nf = _normalization_factors(normalization_factors, counts_df)
    with _precision(precision):
        warmup.start(y, des.matrix, opts, test=test, shard=shard)  # compiles while the host works
        if nf is not None:
            data = DESeq2Data(y, des.matrix, normalization_factors=nf)
        else:
            if sf is None:
                sf = steps.estimate_size_factors(y, sf_method, opts=opts)
            data = DESeq2Data(y, des.matrix, size_factors=sf)
        fit = _deseq(data, counts_df.index, counts_df.columns, des, red, test, opts, shard)
    if inplace and _is_anndata(counts):
        from diffbio_prob.workflows.deseq2.anndata import write_to_anndata

        write_to_anndata(fit, counts)
    return fit


def _from_tximport(counts, normalization_factors, size_factors):
    """R's ``DESeqDataSetFromTximport``: rounded counts and the average-transcript-length factors."""
    from diffbio_prob.io.tximport import TximportResult

    if not isinstance(counts, TximportResult):
        return counts, normalization_factors, size_factors
    if normalization_factors is not None:
        raise ValueError("normalization_factors: a tximport result brings its own (from its average transcript lengths)")
    if not isinstance(size_factors, str) or size_factors == "iterate":
        raise ValueError("size_factors: with a tximport result use 'ratio' or 'poscounts' (R's estimateSizeFactors "
                         "on top of the length factors)")
    from diffbio_prob.workflows.deseq2.tximport import deseq2_inputs_from_tximport

    counts_df, nf = deseq2_inputs_from_tximport(counts, size_factor_type=size_factors)
    # the size-factor type went into the factors; without factors (scaledTPM counts) R estimates size factors
    return counts_df, nf, ("ratio" if nf is not None else size_factors)


def _is_anndata(x) -> bool:
    return hasattr(x, "obs") and hasattr(x, "var") and hasattr(x, "X")


def _normalization_factors(nf, counts_df: pd.DataFrame) -> np.ndarray:
    g, n = counts_df.shape
    if isinstance(nf, pd.DataFrame):
        if nf.shape == (n, g) and set(map(str, nf.index)) == set(map(str, counts_df.columns)):
            nf = nf.T
        missing_g = counts_df.index.difference(nf.index)
        missing_s = counts_df.columns.difference(nf.columns)
        if len(missing_g) or len(missing_s):
            raise ValueError(
                "normalization_factors: expected a genes x samples table with the counts' names; missing "
                f"genes {list(missing_g[:3])}, samples {list(missing_s[:3])}"
            )
        arr = nf.loc[counts_df.index, counts_df.columns].to_numpy()
    else:
        arr = np.asarray(nf)
        if arr.shape != (g, n):
            raise ValueError(f"normalization_factors: expected shape ({g}, {n}) (genes x samples), got {arr.shape}")
    try:
        arr = arr.astype(float)
    except (TypeError, ValueError):
        raise TypeError("normalization_factors: expected numbers") from None
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError("normalization_factors: expected finite positive values")
    return arr


def _deseq(data: DESeq2Data, genes, samples, des: Design, red: Design | None, test, opts, shard) -> DESeq2Fit:
    g_all = data.n_genes
    all_zero = data.counts.sum(axis=1) == 0
    nz = ~all_zero
    if nz.sum() == 0:
        raise ValueError("counts: every gene has only zero counts")
    xr = red.matrix if red is not None else None
    sub = data.rows(nz)
    disp = steps.estimate_dispersions(sub, opts, shard=shard)
    tf = steps._run_test(sub, disp, opts, test, xr, shard)
    refit = steps.cooks_and_refit(sub, tf, disp, opts, test=test, reduced_design=xr, shard=shard)

    def full(v, fill=np.nan, dtype=float):
        out = np.full((g_all,) + np.shape(v)[1:], fill, dtype=dtype)
        out[nz] = v
        return out

    norm_all = data.normalized
    gd, fd = disp.gene, disp.final
    gene = {
        "baseMean": norm_all.mean(axis=1),
        "baseVar": norm_all.var(axis=1, ddof=1),
        "allZero": all_zero,
        "dispGeneEst": full(gd.disp_gene),
        "dispGeneIter": full(gd.n_iter, 0, int),
        "dispFit": full(disp.disp_fit),
        "dispersion": full(fd.dispersion),
        "dispIter": full(fd.n_iter, 0, int),
        "dispOutlier": full(fd.outlier, False, bool),
        "dispMAP": full(fd.disp_map),
        "betaConv": full(tf.glm.conv, False, bool),
        "betaIter": full(tf.glm.n_iter, 0, int),
        "deviance": full(-2.0 * tf.glm.loglik),
        "maxCooks": full(tf.max_cooks),
        "replace": np.zeros(g_all, bool),
    }
    beta, sigma, mu = full(tf.glm.beta), full(tf.glm.sigma), full(tf.glm.mu)
    stat, pval = full(tf.stat), full(tf.pvalue)
    cooks = full(tf.cooks)
    replace_counts = None
    if refit.replace.any():
        new = data.counts.copy()
        new[nz] = refit.counts
        norm_new = new / data.norm_factors
        gene["baseMean"] = norm_new.mean(axis=1)
        gene["baseVar"] = norm_new.var(axis=1, ddof=1)
        new_all_zero = new.sum(axis=1) == 0
        gene["allZero"] = new_all_zero
        replace = full(refit.replace, False, bool)
        gene["replace"] = replace
        became_zero = replace & new_all_zero
        rows = np.flatnonzero(nz)[refit.refit]
        if rows.size:
            d2, t2 = refit.dispersions, refit.test
            gene["dispGeneEst"][rows] = d2.gene.disp_gene
            gene["dispGeneIter"][rows] = d2.gene.n_iter
            gene["dispFit"][rows] = d2.disp_fit
            gene["dispersion"][rows] = d2.final.dispersion
            gene["dispIter"][rows] = d2.final.n_iter
            gene["dispOutlier"][rows] = d2.final.outlier
            gene["dispMAP"][rows] = d2.final.disp_map
            gene["betaConv"][rows] = t2.glm.conv
            gene["betaIter"][rows] = t2.glm.n_iter
            gene["deviance"][rows] = -2.0 * t2.glm.loglik
            beta[rows], sigma[rows], mu[rows] = t2.glm.beta, t2.glm.sigma, t2.glm.mu
            stat[rows], pval[rows] = t2.stat, t2.pvalue
        for arr in (beta, sigma, stat, pval):
            arr[became_zero] = np.nan
        gene["deviance"][became_zero] = np.nan
        gene["maxCooks"] = full(refit.max_cooks)
        replace_counts = new
    return DESeq2Fit(
        genes=pd.Index(genes),
        samples=pd.Index(samples),
        counts=data.counts,
        design=des,
        reduced=red,
        test=test,
        size_factors=data.size_factors,
        gene=gene,
        beta=beta,
        sigma=sigma,
        stat=stat,
        pvalue=pval,
        cooks=cooks,
        replace_counts=replace_counts,
        trend=disp.trend,
        options=opts,
        mu=mu,
        normalization_factors=data.normalization_factors,
    )


def deseq2(
    counts,
    metadata=None,
    design: str = "~ condition",
    *,
    contrast=None,
    alpha: float = 0.1,
    test: str = "wald",
    reduced: str | None = None,
    independent_filtering: bool = True,
    lfc_threshold: float = 0.0,
    alt_hypothesis: str = "greaterAbs",
    cooks_cutoff=None,
    **fit_kwargs,
) -> pd.DataFrame:
    """``results(DESeq(dds), contrast=...)`` in one call; see :func:`fit_deseq2` and :meth:`DESeq2Fit.results`.

    For an AnnData input the fit and the table (``varm["results"]``) are written into it unless
    ``inplace=False``.

    Returns:
        DESeq2's results table: ``baseMean, log2FoldChange, lfcSE, stat, pvalue, padj`` by gene.
    """
    check_results_args(alpha=alpha, lfc_threshold=lfc_threshold, alt_hypothesis=alt_hypothesis,
                       cooks_cutoff=cooks_cutoff, independent_filtering=independent_filtering)
    fit = fit_deseq2(counts, metadata, design, test=test, reduced=reduced, **fit_kwargs)
    res = fit.results(
        contrast,
        alpha=alpha,
        independent_filtering=independent_filtering,
        lfc_threshold=lfc_threshold,
        alt_hypothesis=alt_hypothesis,
        cooks_cutoff=cooks_cutoff,
    )
    if fit_kwargs.get("inplace", True) and _is_anndata(counts):
        from diffbio_prob.workflows.deseq2.anndata import write_to_anndata

        write_to_anndata(fit, counts, results=res)
    return res
