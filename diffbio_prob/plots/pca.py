"""The numbers behind DESeq2's ``plotPCA`` and sample-distance heatmap, in plain numpy/scipy.

:func:`pca_of_transformed` reproduces ``DESeq2:::plotPCA.DESeqTransform`` (R/plots.R)::

    rv <- rowVars(assay(object))                                   # n - 1 denominator
    select <- order(rv, decreasing=TRUE)[seq_len(min(ntop, length(rv)))]
    pca <- prcomp(t(assay(object)[select,]))                       # centred, not scaled
    percentVar <- pca$sdev^2 / sum(pca$sdev^2)

:func:`sample_distances` is the vignette's ``dist(t(assay(vsd)))`` with the rows and columns put in
the leaf order of a complete-linkage clustering on those distances (pheatmap's default
``clustering_method = "complete"``).

Both take the transformed matrix (VST, rlog, log2(normalised + 1), ...) as **genes × samples**, the
orientation of ``assay()`` in R and of our count tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["pca_of_transformed", "sample_distances"]


def _transformed_matrix(matrix, name: str = "matrix") -> np.ndarray:
    """A finite float64 genes × samples array with ≥ 1 gene and ≥ 2 samples, or a clear error."""
    if isinstance(matrix, (str, bytes)) or matrix is None:
        raise TypeError(f"{name}: expected a 2-D genes × samples array of numbers, got {type(matrix).__name__}")
    if isinstance(matrix, pd.DataFrame):
        bad = [c for c in matrix.columns if not pd.api.types.is_numeric_dtype(matrix[c])
               or pd.api.types.is_bool_dtype(matrix[c])]
        if bad:
            raise TypeError(f"{name}: expected numeric columns (samples), got non-numeric column(s) {bad[:5]}")
        arr = matrix.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        arr = np.asarray(matrix)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_:
            raise TypeError(f"{name}: expected a 2-D genes × samples array of numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D genes × samples array, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 2:
        raise ValueError(f"{name}: expected at least 1 gene (row) and 2 samples (columns), got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinite values (transform the counts first, e.g. VST or log2(x + 1))")
    return arr


def pca_of_transformed(matrix, ntop: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of the samples as DESeq2's ``plotPCA`` computes them.

    The ``ntop`` genes with the largest sample variance (denominator n - 1, R's ``rowVars``; ties kept
    in row order, as R's ``order``) are centred per gene (not scaled) and decomposed by SVD, as
    ``prcomp(t(x))`` does.

    The sign of each component is arbitrary (in R it depends on LAPACK). Here it is fixed so that the
    gene with the largest absolute loading on the component loads positively; R's signs may be the
    opposite, so compare ``abs`` values or products of components across implementations.

    Args:
        matrix: transformed expression, genes × samples (numpy array or DataFrame with samples as
            columns); finite values, at least 2 samples.
        ntop: how many of the most variable genes to use (R's default 500; all genes if fewer).

    Returns:
        ``(pcs, percent_var)``: ``pcs`` is samples × k (R's ``pca$x``, k = min(samples, genes used)),
        column j the scores on PC j+1; ``percent_var`` (length k) is ``sdev^2 / sum(sdev^2)``, the
        fraction (0-1, not percent) of variance on each component, summing to 1. For a DataFrame
        ``pd.DataFrame(pcs, index=matrix.columns, columns=[f"PC{j + 1}" for j in range(k)])``.

    Example:
        >>> import numpy as np
        >>> x = np.array([[1.0, 2.0, 9.0, 10.0], [5.0, 5.0, 5.0, 6.0], [0.0, 1.0, 0.0, 1.0]])
        >>> pcs, pv = pca_of_transformed(x, ntop=2)
        >>> pcs.shape, round(float(pv.sum()), 12)
        ((4, 2), 1.0)
    """
    if isinstance(ntop, bool) or not isinstance(ntop, (int, np.integer)) or ntop < 1:
        raise ValueError(f"ntop: expected a positive integer, got {ntop!r}")
    x = _transformed_matrix(matrix)
    n_samples = x.shape[1]
    rv = x.var(axis=1, ddof=1)
    select = np.argsort(-rv, kind="stable")[: min(int(ntop), x.shape[0])]
    centred = x[select].T - x[select].T.mean(axis=0)  # samples × genes, each gene centred
    u, d, vt = np.linalg.svd(centred, full_matrices=False)
    # Deterministic sign: the largest |loading| of each component is positive (R's sign may differ).
    flip = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
    flip[flip == 0] = 1.0
    u, vt = u * flip, vt * flip[:, None]
    pcs = u * d  # = centred @ rotation, R's pca$x
    sdev2 = d**2 / max(1, n_samples - 1)
    total = sdev2.sum()
    if not total > 0:
        raise ValueError("matrix: the selected genes have zero variance across samples; no principal components")
    return pcs, sdev2 / total


def sample_distances(matrix) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances between samples (R's ``dist(t(x))``) and a complete-linkage leaf order.

    Args:
        matrix: transformed expression, genes × samples; finite values, at least 2 samples.

    Returns:
        ``(distances, order)``: the samples × samples distance matrix in the input order, and the
        permutation of samples given by scipy's ``leaves_list(linkage(pdist(x.T), "complete"))``
        (the dendrogram's leaf order; R's ``hclust`` may list the same tree's leaves differently).
    """
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import pdist, squareform

    x = _transformed_matrix(matrix)
    condensed = pdist(x.T, metric="euclidean")
    order = leaves_list(linkage(condensed, method="complete"))
    return squareform(condensed), np.asarray(order, dtype=np.intp)
