"""The ``diffbio-prob de`` command as a function: read the inputs, run DESeq2, write every output atomically.

Every argument, output path and input is checked before the fit, so a mistake fails in a second, not after
the whole pipeline, and leaves no partial output.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import pandas as pd

from diffbio_prob.io.atomic import check_output_path
from diffbio_prob.io.count_formats import read_count_input
from diffbio_prob.io.counts import read_metadata, write_results, write_table
from diffbio_prob.workflows.deseq2.api import fit_deseq2, prepare_inputs, reduced_design
from diffbio_prob.workflows.deseq2.checks import check_fit_args, check_results_args
from diffbio_prob.workflows.deseq2.design import build_design, resolve_contrast

__all__ = ["run_de", "PLOT_FILES", "SHRINK_TYPES"]

SHRINK_TYPES = ("normal", "apeglm")
PLOT_FILES = ("ma.png", "volcano.png", "dispersion.png", "pca.png", "sample_distances.png")


def _plot_files(shrink) -> tuple[str, ...]:
    return PLOT_FILES + (("ma_shrunken.png",) if shrink else ())


def _shrink_coef(contrast, des, shrink: str) -> str:
    con = resolve_contrast(contrast, des)
    if con.coefficient is None:
        raise ValueError(
            f"shrink: lfcShrink(type={shrink!r}) shrinks one coefficient; the contrast {con.label!r} is not one of "
            f"the design's coefficients {list(des.names)} (use one of them, or a design whose reference level "
            "makes it one)"
        )
    return des.names[con.coefficient]


def run_de(
    counts_path,
    metadata_path,
    design: str,
    out,
    *,
    contrast=None,
    test: str = "wald",
    reduced: str | None = None,
    alpha: float = 0.1,
    size_factors: str = "ratio",
    fit_type: str = "parametric",
    independent_filtering: bool = True,
    min_replicates_for_replace: float = 7,
    plots=None,
    shrink: str | None = None,
    vst_out=None,
    normalized_counts_out=None,
    layer: str | None = None,
    sample_names=None,
    salmon=None,
    tx2gene=None,
    quiet: bool = False,
) -> pd.DataFrame:
    """The ``diffbio-prob de`` command: read files, run DESeq2, write the table, transforms and figures.

    Args:
        counts_path: one count file or several: a CSV/TSV table (either orientation), an ``.h5ad``
            (obs = samples), featureCounts output, or one htseq-count file per sample; the format is
            read from the content (:func:`diffbio_prob.io.count_formats.read_count_input`). ``None`` with
            ``salmon``.
        metadata_path: CSV/TSV sample table (first column = sample names), or ``None`` for an
            ``.h5ad``'s obs.
        design, contrast, test, reduced, alpha, size_factors, fit_type, independent_filtering,
            min_replicates_for_replace: as :func:`fit_deseq2` and :meth:`DESeq2Fit.results`.
        out: results CSV (``.tsv`` for tab-separated, ``.gz`` to compress).
        plots: folder for the figures (:data:`PLOT_FILES`, and ``ma_shrunken.png`` with ``shrink``),
            or ``None``.
        shrink: ``"normal"`` or ``"apeglm"``: write R's ``lfcShrink`` table (shrunken log2FoldChange and
            lfcSE, the test's pvalue and padj) to ``out`` instead of ``results()``.
        vst_out: write the variance-stabilised matrix (``vst(blind=TRUE)``) here.
        normalized_counts_out: write ``counts(dds, normalized=TRUE)`` here.
        layer: the ``.h5ad`` layer holding counts (default ``X``).
        sample_names: htseq-count / featureCounts / salmon sample names (see ``read_count_input``).
        salmon: salmon output folders (or quant.sf files), one per sample, read by
            :func:`diffbio_prob.io.tximport.tximport` and fitted as R's ``DESeqDataSetFromTximport``
            (rounded counts, average-transcript-length normalisation factors).
        tx2gene: the transcript -> gene table for ``salmon`` (gene-level DE); without it, transcripts.
        quiet: no progress lines on stderr.

    Returns:
        The table written to ``out``.
    """

    def say(msg):
        if not quiet:
            print(msg, file=sys.stderr)

    check_fit_args(test=test, reduced=reduced, size_factors=size_factors, fit_type=fit_type,
                   min_replicates_for_replace=min_replicates_for_replace)
    check_results_args(alpha=alpha, independent_filtering=independent_filtering)
    if shrink is not None and shrink not in SHRINK_TYPES:
        raise ValueError(f"shrink: expected 'normal' or 'apeglm', got {shrink!r}")
    if shrink is not None and test != "wald":
        raise ValueError("shrink: lfcShrink shrinks Wald-test coefficients; use it with test='wald'")
    check_output_path(out, "out", "file")
    for name, path in (("vst_out", vst_out), ("normalized_counts_out", normalized_counts_out)):
        if path is not None:
            check_output_path(path, name, "file")
    if plots is not None:
        check_output_path(plots, "plots", "dir")
        for name in _plot_files(shrink):
            check_output_path(Path(plots) / name, "plots", "file")
    if (counts_path is None) == (salmon is None):
        raise ValueError("counts: give either count files or salmon folders (salmon=...)")
    if tx2gene is not None and salmon is None:
        raise ValueError("tx2gene: only used with salmon folders")
    if salmon is not None:
        from diffbio_prob.io.tximport import tximport

        txi = tximport(salmon, type="salmon", tx2gene=tx2gene, tx_out=tx2gene is None,
                       sample_names=None if isinstance(sample_names, str) else sample_names)
        fmt = f"salmon via tximport, {txi.level} level"
        counts, fit_input = txi.counts.rename_axis(txi.level), txi
        inp_metadata = None
    else:
        try:
            inp = read_count_input(counts_path, layer=layer, sample_names=sample_names)
        except ValueError as exc:
            name, sep, rest = str(exc).partition(":")
            raise ValueError(f"counts:{rest}" if sep and name == "paths" else str(exc)) from None
        counts = inp.counts
        if counts.index.name is None:
            counts = counts.rename_axis("gene")
        fit_input, fmt, inp_metadata = counts, inp.format, inp.metadata
    if metadata_path is not None:
        meta = read_metadata(metadata_path)
    elif inp_metadata is not None:
        meta = inp_metadata
    else:
        raise ValueError(f"metadata: a sample table is required for {fmt} counts (only .h5ad carries one)")
    try:
        _, meta_aligned = prepare_inputs(counts.round(), meta)
    except ValueError as exc:
        raise ValueError(f"{counts_path or salmon} / {metadata_path or 'obs'}: {exc}") from None
    des = build_design(design, meta_aligned)
    if test == "lrt":
        reduced_design(des, reduced, meta_aligned)
    resolve_contrast(contrast, des)
    coef = _shrink_coef(contrast, des, shrink) if shrink is not None else None
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        fit = fit_deseq2(
            fit_input, meta, design, test=test, reduced=reduced, size_factors=size_factors, fit_type=fit_type,
            min_replicates_for_replace=min_replicates_for_replace,
        )
    for w in caught:  # R's messages (the parametric -> local fallback), one line each, as R prints them
        if issubclass(w.category, RuntimeWarning):
            say(f"diffbio-prob de: note: {w.message}")
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    res = fit.results(contrast, alpha=alpha, independent_filtering=independent_filtering)
    say(
        f"diffbio-prob de: {len(res)} genes, {fit.counts.shape[1]} samples ({fmt}), {res.attrs['contrast']}: "
        f"{int((res['padj'] < alpha).sum())} with padj < {alpha} ({time.perf_counter() - start:.1f} s)"
    )
    table = res
    if shrink is not None:
        from diffbio_prob.workflows.deseq2.shrink import lfc_shrink

        # R's lfcShrink(dds, coef, type, res = res): shrunken log2FoldChange / lfcSE, the test's p and padj
        table = lfc_shrink(fit, coef, type=shrink)
        for col in ("pvalue", "padj"):
            if col in table.columns:
                table[col] = res[col].reindex(table.index)
    vst_df = norm_df = None
    if vst_out is not None or plots is not None:
        from diffbio_prob.workflows.deseq2.transform import vst

        vst_df = vst(fit, blind=True)
    if normalized_counts_out is not None:
        from diffbio_prob.workflows.deseq2.transform import normalized_counts

        norm_df = normalized_counts(fit)
    figures = {}
    if plots is not None:
        figures = _figures(fit, res, table if shrink else None, vst_df, meta_aligned, des, alpha)
    # Everything is computed; only now is anything written (a failure above leaves no partial output).
    (write_table if shrink else write_results)(table, out)  # apeglm's table has no stat column, as R's
    say(f"diffbio-prob de: wrote {out}" + (f" (lfcShrink type={shrink!r}, coef {coef})" if shrink else ""))
    if vst_out is not None:
        write_table(vst_df, vst_out)
        say(f"diffbio-prob de: wrote {vst_out} (vst, blind)")
    if norm_df is not None:
        write_table(norm_df, normalized_counts_out)
        say(f"diffbio-prob de: wrote {normalized_counts_out}")
    if figures:
        from diffbio_prob.plots import save_figure

        for name, fig in figures.items():
            save_figure(fig, Path(plots) / name)
        say(f"diffbio-prob de: wrote {', '.join(figures)} in {plots}")
    return table


def _figures(fit, res, shrunk, vst_df, meta, des, alpha) -> dict:
    from diffbio_prob.plots.de import dispersion_plot, ma_plot, pca_plot, sample_distance_heatmap, volcano_plot
    from diffbio_prob.plots.pca import pca_of_transformed

    figs = {
        "ma.png": ma_plot(res, alpha=alpha),
        "volcano.png": volcano_plot(res, alpha=alpha),
        "dispersion.png": dispersion_plot(fit.dispersions()),
    }
    pcs, pv = pca_of_transformed(vst_df.to_numpy())
    group = meta.loc[vst_df.columns, des.variables[-1]] if des.variables else pd.Series("all", index=vst_df.columns)
    figs["pca.png"] = pca_plot(pcs, pv, group)
    figs["sample_distances.png"] = sample_distance_heatmap(vst_df.to_numpy(), list(vst_df.columns))
    if shrunk is not None:
        figs["ma_shrunken.png"] = ma_plot(shrunk, alpha=alpha, title="MA plot, shrunken log2 fold changes")
    return figs
