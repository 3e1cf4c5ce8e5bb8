"""The DESeq2 data object: what every step reads, frozen, with its gene and sample axes padded once.

It plays the part of R's ``DESeqDataSet`` assays: counts, the model matrix, the normalisation (size
factors, or a gene x sample ``normalizationFactors`` matrix as tximport's route gives it) . Steps never change it; a subset of genes (the non-all-zero
ones, or the genes refitted after outlier replacement) is a new object (:meth:`DESeq2Data.rows`).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from diffbio_prob.parallel import Padding

__all__ = ["DESeq2Data", "small_integer_rows"]


def small_integer_rows(counts: np.ndarray, width: int) -> np.ndarray:
    """The rows of ``counts`` whose values are all integers of at most ``width`` (a boolean mask)."""
    return np.all((counts <= width) & (counts == np.floor(counts)), axis=1)


@dataclasses.dataclass(frozen=True, eq=False)
class DESeq2Data:
    """Counts, design and normalisation of a DESeq2 fit (genes x samples, gene-major).

    Attributes:
        counts: ``(G, N)`` counts as floats.
        design: ``(N, P)`` model matrix.
        size_factors: ``(N,)`` size factors, or ``None`` when ``normalization_factors`` is given.
        normalization_factors: ``(G, N)`` gene x sample normalisation factors (R's
            ``normalizationFactors``), or ``None``.
        batch_rows: run the per-gene programs that skip inactive rows (the line search, the IRLS) on at
            least this many rows: a few genes refitted after outlier replacement then run in the main
            fit's compiled programs, at the cost of their own rows, instead of compiling programs of
            their own. 0: the genes' own count.
        tail_rows: with ``batch_rows``, how many of the main fit's genes its line search ran with count
            tails (``count_tail``) and how many without: the refit's genes go to the same two programs.
    """

    counts: np.ndarray
    design: np.ndarray
    size_factors: np.ndarray | None = None
    normalization_factors: np.ndarray | None = None
    batch_rows: int = 0
    tail_rows: tuple[int, int] | None = None

    def __post_init__(self):
        g, n = self.counts.shape
        if self.design.shape[0] != n:
            raise ValueError(f"design: expected {n} rows (one per sample), got {self.design.shape[0]}")
        if (self.size_factors is None) == (self.normalization_factors is None):
            raise ValueError("give exactly one of size_factors and normalization_factors")
        if self.size_factors is not None and np.shape(self.size_factors) != (n,):
            raise ValueError(f"size_factors: expected {n} values, got shape {np.shape(self.size_factors)}")
        nf = self.normalization_factors
        if nf is not None and np.shape(nf) != (g, n):
            raise ValueError(f"normalization_factors: expected shape ({g}, {n}) (genes x samples), got {np.shape(nf)}")

    @property
    def n_genes(self) -> int:
        return self.counts.shape[0]

    @property
    def n_samples(self) -> int:
        return self.counts.shape[1]

    @property
    def n_coef(self) -> int:
        return self.design.shape[1]

    @functools.cached_property
    def norm_factors(self) -> np.ndarray:
        """``(G, N)``: the normalisation factors, or the size factors repeated for every gene."""
        if self.normalization_factors is not None:
            return np.asarray(self.normalization_factors, dtype=float)
        return np.broadcast_to(np.asarray(self.size_factors, dtype=float), self.counts.shape)

    @functools.cached_property
    def log_offset(self) -> np.ndarray:
        """``(G, N)`` log normalisation factors: the GLM's offset."""
        return np.log(self.norm_factors)

    @functools.cached_property
    def normalized(self) -> np.ndarray:
        """``(G, N)`` normalised counts (R's ``counts(dds, normalized=TRUE)``)."""
        return self.counts / self.norm_factors

    @property
    def xim(self) -> float:
        """DESeq2's ``xim``: the mean of ``1 / sizeFactors`` (of ``1 / colMeans(normalizationFactors)``)."""
        if self.normalization_factors is not None:
            return float(np.mean(1.0 / self.norm_factors.mean(axis=0)))
        return float(np.mean(1.0 / np.asarray(self.size_factors, dtype=float)))

    @functools.cached_property
    def padding(self) -> Padding:
        return Padding.of(self.design, max(self.n_genes, self.batch_rows))

    @functools.cached_property
    def padded_counts(self) -> np.ndarray:
        return self.padding.samples(self.counts, 0.0)

    @functools.cached_property
    def padded_log_offset(self) -> np.ndarray:
        return self.padding.samples(self.log_offset, 0.0)

    @functools.cached_property
    def padded_design(self) -> np.ndarray:
        return self.padding.design(self.design)

    @property
    def sample_mask(self) -> np.ndarray:
        return self.padding.sample_mask

    @property
    def coef_mask(self) -> np.ndarray:
        return self.padding.coef_mask

    def count_tail(self, width: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, tail)``: the genes whose counts are all integers of at most ``width`` (a boolean mask)
        and, for those, ``tail[:, i]`` = how many samples have a count above ``i`` (``(R, width)``)."""
        cache = self.__dict__.setdefault("_count_tails", {})  # the gene-wise and the MAP fit ask for it
        if width not in cache:
            cache[width] = self._count_tail(width)
        return cache[width]

    def _count_tail(self, width: int) -> tuple[np.ndarray, np.ndarray]:
        rows = small_integer_rows(self.counts, width)
        sub = self.counts[rows].astype(np.int64)
        n_rows, n = sub.shape
        hist = np.bincount((np.arange(n_rows)[:, None] * (width + 1) + sub).ravel(),
                           minlength=n_rows * (width + 1)).reshape(n_rows, width + 1)
        return rows, (n - np.cumsum(hist[:, :width], axis=1)).astype(float)

    def rows(self, sel) -> "DESeq2Data":
        """The same data restricted to the genes ``sel`` (boolean mask or indices)."""
        return DESeq2Data(
            counts=self.counts[sel],
            design=self.design,
            size_factors=self.size_factors,
            normalization_factors=None if self.normalization_factors is None else self.normalization_factors[sel],
            batch_rows=self.batch_rows,
            tail_rows=self.tail_rows,
        )

    def with_counts(self, counts: np.ndarray) -> "DESeq2Data":
        """The same data with other counts (outlier replacement)."""
        return dataclasses.replace(self, counts=np.asarray(counts, dtype=float))

    def with_design(self, design: np.ndarray) -> "DESeq2Data":
        """The same data with another model matrix (the LRT's reduced design)."""
        return dataclasses.replace(self, design=np.asarray(design, dtype=float))
