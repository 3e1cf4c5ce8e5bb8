"""What ``DESeq()`` leaves in a DESeqDataSet, and R's ``results()`` on it."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from diffbio_prob.workflows.deseq2 import rstats
from diffbio_prob.workflows.deseq2.checks import check_results_args
from diffbio_prob.workflows.deseq2.design import Contrast, Design, resolve_contrast
from diffbio_prob.workflows.deseq2.glm import LOG2E
from diffbio_prob.workflows.deseq2.options import DESeq2Options

__all__ = ["DESeq2Fit"]


def _normal_sf(x):
    # scipy.stats.norm.sf's own formula; scipy.special, not scipy.stats, which costs ~0.6 s to import
    return special.ndtr(-x)


@dataclasses.dataclass
class DESeq2Fit:
    """What ``DESeq()`` leaves in a DESeqDataSet, as arrays (natural-log coefficients inside,
    DESeq2's log2 names and scales in :meth:`gene_table`).

    Attributes:
        genes, samples: names.
        counts: ``(G, N)`` original counts (genes x samples).
        design: the :class:`~diffbio_prob.workflows.deseq2.design.Design`.
        reduced: reduced design for the LRT (or ``None``).
        test: ``"wald"`` or ``"lrt"``.
        size_factors: ``(N,)`` (``None`` when normalisation factors were given).
        normalization_factors: ``(G, N)`` gene x sample normalisation factors, or ``None``.
        gene: per-gene columns under DESeq2's names (``baseMean``, ``baseVar``, ``allZero``,
            ``dispGeneEst``, ``dispGeneIter``, ``dispFit``, ``dispersion``, ``dispIter``,
            ``dispOutlier``, ``dispMAP``, ``betaConv``, ``betaIter``, ``deviance``, ``maxCooks``,
            ``replace``), each ``(G,)``.
        beta, sigma: ``(G, P)`` natural-log coefficients and ``(G, P, P)`` their covariances.
        stat, pvalue: Wald statistics/p-values per coefficient ``(G, P)`` or LRT ``(G,)``.
        cooks: ``(G, N)`` Cook's distances of the first fit.
        replace_counts: counts used for the refit (``None`` if no replacement happened).
        trend: dispersion trend (``kind``, ``coefs``, ``var_log_disp_ests``, ``prior_var``).
        options: the :class:`DESeq2Options`.
    """

    genes: pd.Index
    samples: pd.Index
    counts: np.ndarray
    design: Design
    reduced: Design | None
    test: str
    size_factors: np.ndarray
    gene: dict
    beta: np.ndarray
    sigma: np.ndarray
    stat: np.ndarray
    pvalue: np.ndarray
    cooks: np.ndarray
    replace_counts: np.ndarray | None
    trend: Any
    options: DESeq2Options
    mu: np.ndarray | None = None
    normalization_factors: np.ndarray | None = None

    @property
    def coef_names(self) -> list:
        return list(self.design.names)

    def gene_table(self) -> pd.DataFrame:
        """Per-gene intermediate values under DESeq2's ``mcols(dds)`` names (log2 coefficients)."""
        cols = dict(self.gene)
        for k, name in enumerate(self.coef_names):
            cols[name] = self.beta[:, k] * LOG2E
        for k, name in enumerate(self.coef_names):
            cols[f"SE_{name}"] = np.sqrt(np.maximum(self.sigma[:, k, k], 0.0)) * LOG2E
        if self.test == "wald":
            for k, name in enumerate(self.coef_names):
                cols[f"WaldStatistic_{name}"] = self.stat[:, k]
                cols[f"WaldPvalue_{name}"] = self.pvalue[:, k]
        else:
            cols["LRTStatistic"] = self.stat
            cols["LRTPvalue"] = self.pvalue
        return pd.DataFrame(cols, index=self.genes)

    def dispersions(self) -> pd.DataFrame:
        """DESeq2's dispersion columns (``alpha``): dispGeneEst, dispFit, dispMAP, dispersion, dispOutlier."""
        keys = ["baseMean", "dispGeneEst", "dispFit", "dispMAP", "dispersion", "dispOutlier"]
        return pd.DataFrame({k: self.gene[k] for k in keys}, index=self.genes)

    def results(
        self,
        contrast=None,
        *,
        alpha: float = 0.1,
        independent_filtering: bool = True,
        cooks_cutoff: float | bool | None = None,
        lfc_threshold: float = 0.0,
        alt_hypothesis: str = "greaterAbs",
    ) -> pd.DataFrame:
        """R DESeq2's ``results()``: one table with ``baseMean, log2FoldChange, lfcSE, stat, pvalue, padj``.

        Args:
            contrast: ``[factor, numerator, denominator]``, a coefficient name, a numeric vector, or
                ``None`` for the last coefficient.
            alpha: FDR level for independent filtering (R's default 0.1).
            independent_filtering: filter on the mean of normalised counts before BH.
            cooks_cutoff: ``None``/``True`` for ``qf(0.99, p, m - p)``, a number, or ``False``.
            lfc_threshold, alt_hypothesis: R's ``lfcThreshold`` and ``altHypothesis``
                (``greaterAbs``, ``lessAbs``, ``greater``, ``less``; Wald only).

        Returns:
            ``pandas.DataFrame`` indexed by gene; ``attrs`` holds the contrast label and the
            filtering threshold.
        """
        check_results_args(alpha=alpha, lfc_threshold=lfc_threshold, alt_hypothesis=alt_hypothesis,
                           cooks_cutoff=cooks_cutoff, independent_filtering=independent_filtering)
        if self.test != "wald" and not (lfc_threshold == 0 and alt_hypothesis == "greaterAbs"):
            raise ValueError("lfc_threshold / alt_hypothesis: tests against a threshold must be Wald tests")
        con: Contrast = resolve_contrast(contrast, self.design)
        g = self.gene
        all_zero = g["allZero"]
        c = con.vector
        lfc = self.beta @ c * LOG2E
        if con.coefficient is not None:
            k = con.coefficient
            se = np.sqrt(np.maximum(self.sigma[:, k, k], 0.0)) * LOG2E
        else:
            se = np.sqrt(np.maximum(np.einsum("p,gpq,q->g", c, self.sigma, c), 0.0)) * LOG2E
        if self.test == "wald":
            if con.coefficient is not None:
                stat = self.stat[:, con.coefficient].copy()
                pval = self.pvalue[:, con.coefficient].copy()
            else:
                stat = lfc / se
                pval = 2.0 * _normal_sf(np.abs(stat))
        else:
            stat = self.stat.copy()
            pval = self.pvalue.copy()
        # contrasts whose two levels are all zero: LFC 0, stat 0, p 1 (contrastAllZero*)
        cz = self._contrast_all_zero(con) & ~all_zero
        if cz.any():
            lfc[cz] = 0.0
            if self.test == "wald":
                stat[cz] = 0.0
                pval[cz] = 1.0
        if not (lfc_threshold == 0 and alt_hypothesis == "greaterAbs"):
            if self.test != "wald":
                raise ValueError("lfc_threshold / alt_hypothesis: tests against a threshold must be Wald tests")
            t = lfc_threshold
            sf_ = _normal_sf
            if alt_hypothesis == "greaterAbs":
                stat = np.sign(lfc) * np.maximum((np.abs(lfc) - t) / se, 0)
                pval = np.minimum(1.0, 2 * sf_((np.abs(lfc) - t) / se))
            elif alt_hypothesis == "lessAbs":
                above = np.maximum((t - lfc) / se, 0)
                below = np.maximum((lfc + t) / se, 0)
                stat = np.minimum(above, below)
                pval = np.maximum(sf_((t - lfc) / se), sf_((lfc + t) / se))
            elif alt_hypothesis == "greater":
                stat = np.maximum((lfc - t) / se, 0)
                pval = sf_((lfc - t) / se)
            else:
                stat = np.minimum((lfc + t) / se, 0)
                pval = sf_((-t - lfc) / se)
        m, p = self.design.matrix.shape
        if cooks_cutoff is None or cooks_cutoff is True:
            cutoff = special.fdtri(p, m - p, 0.99) if m > p else None
        elif cooks_cutoff is False:
            cutoff = None
        else:
            cutoff = float(cooks_cutoff)
        if cutoff is not None:
            with np.errstate(invalid="ignore"):
                outlier = g["maxCooks"] > cutoff
            outlier = self._cooks_heuristic(outlier)
            pval = np.where(outlier, np.nan, pval)
        for arr in (lfc, se, stat, pval):
            arr[all_zero] = np.nan
        if np.nansum(g["replace"]) > 0:
            # genes whose counts became all zero by replacement: LFC 0, SE 0, stat 0, p 1 (as R)
            now_zero = g["replace"] & (g["baseMean"] == 0)
            lfc[now_zero], se[now_zero], stat[now_zero], pval[now_zero] = 0.0, 0.0, 0.0, 1.0
        info = {"contrast": con.label, "alpha": alpha}
        if independent_filtering:
            padj, finfo = rstats.independent_filtering(pval, g["baseMean"], alpha)
            info.update({"filterThreshold": finfo["filterThreshold"], "filterTheta": finfo["filterTheta"]})
        else:
            padj = rstats.p_adjust_bh(pval)
        res = pd.DataFrame(
            {
                "baseMean": g["baseMean"],
                "log2FoldChange": lfc,
                "lfcSE": se,
                "stat": stat,
                "pvalue": pval,
                "padj": padj,
            },
            index=self.genes,
        )
        res.attrs.update(info)
        return res

    def _contrast_all_zero(self, con: Contrast) -> np.ndarray:
        counts = self.counts
        if con.factor is not None:
            col = self.design.data[con.factor].astype(str).to_numpy()
            use = np.isin(col, list(con.levels))
            return np.all(counts[:, use] == 0, axis=1)
        c = con.vector
        if np.all(c >= 0) or np.all(c <= 0):
            return np.zeros(counts.shape[0], bool)
        which = (self.design.matrix @ (c != 0).astype(float)) != 0
        return (counts @ which.astype(float)) == 0

    def _cooks_heuristic(self, outlier: np.ndarray) -> np.ndarray:
        # R results(): for a design with one 2-level factor, keep genes where 3 or more counts
        # exceed the count at the sample with the largest Cook's distance.
        outlier = np.asarray(outlier, bool).copy()
        if not outlier.any():
            return outlier
        variables = self.design.variables
        if len(variables) == 1 and variables[0] in self.design.factors and len(self.design.factors[variables[0]]) == 2:
            for i in np.flatnonzero(outlier):
                row = self.cooks[i]
                j = int(np.nanargmax(row))
                if np.sum(self.counts[i] > self.counts[i, j]) >= 3:
                    outlier[i] = False
        return outlier
