"""Compile the DESeq2 pipeline's programs side by side, as soon as the counts' shape is known.

A first ``DESeq()`` on 10,000 genes spends ~5 s in XLA compiling four programs, one after another at their
first calls and each on one core, while the host work between them (size factors, the host refits of the
gene-wise line search, the trend) leaves the other core idle. :func:`start` hands the same programs to
:func:`diffbio_prob.parallel.precompile` before the size factors are computed: the line search and the
IRLS for every non-zero gene, and, on large tables where some count is replaceable, the small builds the
Cook's-distance refit of up to 256 genes will call unless it runs in the main programs
(:func:`.kernels.refit_shares_programs`). The shapes, shared arguments and static options are
exactly those :mod:`.dispersion` and :mod:`.glm` pass, so the later calls find the compiled programs.
"""

from __future__ import annotations

import jax
import numpy as np

from diffbio_prob.parallel import SMALL_BATCH, BUCKET, Padding, precompile
from diffbio_prob.workflows.deseq2 import kernels, rstats
from diffbio_prob.workflows.deseq2.data import small_integer_rows
from diffbio_prob.workflows.deseq2.dispersion import line_search_options, tails_pay, tails_possible
from diffbio_prob.workflows.deseq2.glm import LN2, RIDGE_LOG2, irls_options, is_just_intercept
from diffbio_prob.workflows.deseq2.options import DESeq2Options

__all__ = ["start"]


def _line_search(n_genes: int, design: np.ndarray, opts: DESeq2Options, shard: bool, n_tail: int = 0) -> None:
    # n_tail: of the n_genes, those the fit runs with count tails (dispersion.tail_split), in a program of
    # their own
    pad = Padding.of(design, n_genes)
    f64 = np.dtype(np.float64)

    def specs(rows: int, tail: bool):
        return (
            jax.ShapeDtypeStruct((rows, pad.n_pad), f64),  # counts
            jax.ShapeDtypeStruct((rows, pad.n_pad), f64),  # mu
            jax.ShapeDtypeStruct((rows,), f64),  # log alpha start
            jax.ShapeDtypeStruct((rows,), f64),  # prior mean
        ) + ((jax.ShapeDtypeStruct((rows, kernels.TAIL_WIDTH), f64),) if tail else ())  # count tails

    shared = (pad.design(design), 1.0, False, pad.sample_mask, pad.coef_mask)
    with jax.enable_x64(True):  # as dispersion._fit
        if n_tail:
            precompile(kernels.k_line_search_tail, specs(n_tail, True), shared, shard=shard,
                       **line_search_options(opts))
        if n_genes > n_tail:
            precompile(kernels.k_line_search, specs(n_genes - n_tail, False), shared, shard=shard,
                       **line_search_options(opts))


def _irls(n_genes: int, design: np.ndarray, opts: DESeq2Options, shard: bool) -> None:
    pad = Padding.of(design, n_genes)
    p = design.shape[1]
    f64 = np.dtype(np.float64)
    gene_specs = (
        jax.ShapeDtypeStruct((n_genes, pad.n_pad), f64),  # counts
        jax.ShapeDtypeStruct((n_genes, pad.n_pad), f64),  # log offset
        jax.ShapeDtypeStruct((n_genes,), f64),  # alpha
        jax.ShapeDtypeStruct((n_genes, pad.p_pad), f64),  # beta start
    )
    ridge = np.broadcast_to(np.asarray(RIDGE_LOG2, dtype=float), (p,)) / LN2**2  # as glm.fit_glm's default
    shared = (pad.design(design), pad.coefs(ridge), pad.sample_mask, pad.coef_mask)
    precompile(kernels.k_irls, gene_specs, shared, shard=shard, **irls_options(opts))


def start(counts: np.ndarray, design: np.ndarray, opts: DESeq2Options, *, test: str, shard: bool) -> None:
    """Start compiling what ``DESeq()`` on ``counts`` (genes x samples) with ``design`` will run.

    Only the programs every run of this shape calls (and, on large tables, the refit's), so none of the
    background work is wasted on a typical run. Call it under the fit's precision context.
    """
    if opts.dispersion_fit != "deseq2":
        return
    m, p = design.shape
    if m <= p:
        return  # no replicates: the fit stops with a ValueError
    nonzero = counts.sum(axis=1) != 0
    n_genes = int(np.count_nonzero(nonzero))
    if n_genes == 0:
        return
    n_tail = 0
    if tails_possible(m, Padding.of(design, n_genes).n_pad):
        n_tail = int(np.count_nonzero(small_integer_rows(counts, kernels.TAIL_WIDTH) & nonzero))
        n_tail = n_tail if tails_pay(n_tail) else 0
    _line_search(n_genes, design, opts, shard, n_tail)
    just_intercept = is_just_intercept(design, np.full(p, RIDGE_LOG2))
    if not just_intercept:
        _irls(n_genes, design, opts, shard)
    # The Cook's refit (Wald test): on a large table some genes almost always have a replaced count; it
    # runs in the programs above or in small ones of its own (kernels.refit_shares_programs)
    replaceable = rstats.n_or_more_in_cell(design, opts.min_replicates_for_replace).any()
    shares = kernels.refit_shares_programs(n_genes, m)
    if test == "wald" and replaceable and n_genes > SMALL_BATCH and not shares:
        _line_search(BUCKET, design, opts, shard)
        if not just_intercept:
            _irls(BUCKET, design, opts, shard)
