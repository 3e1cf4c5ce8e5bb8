"""A DESeq2 fit written back into the AnnData it came from, where PyDESeq2 users look for it.

AnnData's axes are samples (obs) x genes (var). What is written:

==============================  =====================================================================
``layers["normed_counts"]``     ``counts(dds, normalized=TRUE)``, samples x genes
``layers["vst_counts"]``        the vst matrix, when one is given
``obsm["size_factors"]``        size factors, (n_obs, 1) (also ``obs["size_factors"]``)
``var[...]``                    DESeq2's per-gene columns (R's ``mcols(dds)`` names): ``baseMean``,
                                ``baseVar``, ``allZero``, ``dispGeneEst``, ``dispFit``, ``dispMAP``,
                                ``dispersion``, ``dispOutlier``, ``maxCooks``, ``replace``, ``betaConv``
``varm["LFC"]``                 coefficients on the **log2** scale (R's), one column per coefficient name
                                (PyDESeq2's ``LFC`` is on the natural-log scale)
``varm["SE"]``                  their standard errors (log2)
``varm["results"]``             a ``results()`` / ``lfcShrink`` table, when one is given
``uns["deseq2"]``               design, test, trend (``fitType``, coefficients, ``dispPriorVar``,
                                ``varLogDispEsts``), the results' contrast
``uns["trend_coeffs"]``,        PyDESeq2's names for the trend coefficients, its kind and the prior
``uns["disp_function_type"]``,  variance of log dispersions
``uns["prior_disp_var"]``
==============================  =====================================================================
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from diffbio_prob.workflows.deseq2.fit import DESeq2Fit
from diffbio_prob.workflows.deseq2.glm import LOG2E

__all__ = ["write_to_anndata", "GENE_COLUMNS"]

GENE_COLUMNS = (
    "baseMean", "baseVar", "allZero", "dispGeneEst", "dispFit", "dispMAP", "dispersion", "dispOutlier",
    "maxCooks", "replace", "betaConv",
)


def _gene_positions(fit: DESeq2Fit, adata) -> np.ndarray:
    names = pd.Index(adata.var_names.astype(str))
    missing = fit.genes.astype(str).difference(names)
    if len(missing):
        raise ValueError(f"adata: genes of the fit are not in adata.var_names, e.g. {list(missing[:3])}")
    return names.get_indexer(fit.genes.astype(str))


def _sample_positions(fit: DESeq2Fit, adata) -> np.ndarray:
    names = pd.Index(adata.obs_names.astype(str))
    missing = fit.samples.astype(str).difference(names)
    if len(missing):
        raise ValueError(f"adata: samples of the fit are not in adata.obs_names, e.g. {list(missing[:3])}")
    return names.get_indexer(fit.samples.astype(str))


def write_to_anndata(fit: DESeq2Fit, adata, *, results: pd.DataFrame | None = None, vst: pd.DataFrame | None = None):
    """Write ``fit`` (and optionally a results table and a vst matrix) into ``adata`` in place.

    Args:
        fit: a :class:`DESeq2Fit` of this AnnData's counts (genes and samples matched by name; the
            AnnData may hold more genes or samples, which get NaN).
        adata: the ``anndata.AnnData`` (obs = samples, var = genes).
        results: a table from :meth:`DESeq2Fit.results` or ``lfc_shrink`` (indexed by gene).
        vst: a genes x samples vst DataFrame.

    Returns:
        ``adata``.
    """
    if not (hasattr(adata, "obs") and hasattr(adata, "var") and hasattr(adata, "layers")):
        raise TypeError(f"adata: expected an AnnData, got {type(adata).__name__}")
    gi = _gene_positions(fit, adata)
    si = _sample_positions(fit, adata)
    n_obs, n_var = adata.n_obs, adata.n_vars

    def samples_by_genes(m: np.ndarray) -> np.ndarray:  # m: (G, N) in fit order
        out = np.full((n_obs, n_var), np.nan)
        out[np.ix_(si, gi)] = np.asarray(m, dtype=float).T
        return out

    def per_gene(v, fill=np.nan, dtype=float) -> np.ndarray:
        out = np.full(n_var, fill, dtype=dtype)
        out[gi] = v
        return out

    norm = fit.counts / (fit.normalization_factors if fit.normalization_factors is not None else fit.size_factors)
    adata.layers["normed_counts"] = samples_by_genes(norm)
    if vst is not None:
        adata.layers["vst_counts"] = samples_by_genes(vst.loc[fit.genes, fit.samples].to_numpy())
    if fit.size_factors is not None:
        sf = np.full(n_obs, np.nan)
        sf[si] = fit.size_factors
        adata.obsm["size_factors"] = sf
        adata.obs["size_factors"] = sf
    for col in GENE_COLUMNS:
        v = np.asarray(fit.gene[col])
        if v.dtype == bool:
            adata.var[col] = per_gene(v, False, bool)
        else:
            adata.var[col] = per_gene(v.astype(float))
    var_index = adata.var_names
    lfc = np.full((n_var, len(fit.coef_names)), np.nan)
    lfc[gi] = fit.beta * LOG2E
    se = np.full_like(lfc, np.nan)
    se[gi] = np.sqrt(np.maximum(np.diagonal(fit.sigma, axis1=1, axis2=2), 0.0)) * LOG2E
    adata.varm["LFC"] = pd.DataFrame(lfc, index=var_index, columns=fit.coef_names)
    adata.varm["SE"] = pd.DataFrame(se, index=var_index, columns=fit.coef_names)
    t = fit.trend
    info = {
        "design": fit.design.formula,
        "test": fit.test,
        "coef_names": list(fit.coef_names),
        "fitType": t.kind,
        "trend_coefs": np.asarray(t.coefs, dtype=float),
        "dispPriorVar": float(t.prior_var),
        "varLogDispEsts": float(t.var_log_disp_ests),
    }
    if results is not None:
        tab = results.reindex(fit.genes)
        full = pd.DataFrame(np.nan, index=var_index, columns=tab.columns)
        full.iloc[gi] = tab.to_numpy()
        adata.varm["results"] = full
        info["contrast"] = str(results.attrs.get("contrast", ""))
    adata.uns["deseq2"] = info
    adata.uns["trend_coeffs"] = np.asarray(t.coefs, dtype=float)
    adata.uns["disp_function_type"] = t.kind
    adata.uns["prior_disp_var"] = float(t.prior_var)
    return adata
